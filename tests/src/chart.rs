//! The operator as users install it: the Helm chart `charts/emqx-operator`,
//! with its two images played by this workspace's binaries. The sandbox's
//! kubelet runs a container whose image repository is
//! [`WEBHOOK_IMAGE`] or [`RECONCILER_IMAGE`] as the binary built by cargo,
//! so `helm install` brings up real `emqx-webhook` and `emqx-reconciler`
//! processes with the chart's flags, ServiceAccounts and RBAC.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use k8s_openapi::api::apps::v1::Deployment;
use kube::{Api, Client};

use crate::{Sandbox, SandboxOptions};

/// The webhook's image repository in the chart's values.
pub const WEBHOOK_IMAGE: &str = "emqx-operator/emqx-webhook";
/// The reconciler's image repository in the chart's values.
pub const RECONCILER_IMAGE: &str = "emqx-operator/emqx-reconciler";
/// The release and namespace the README installs into.
pub const RELEASE: &str = "emqx-operator";
/// The namespace the README installs into (and the CRDs' default
/// conversion Service namespace).
pub const NAMESPACE: &str = "emqx-operator-system";

/// The chart's directory in this repository.
pub fn chart_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../charts/emqx-operator")
}

/// The two binaries behind the chart's images.
#[derive(Debug, Clone)]
pub struct OperatorBinaries {
    /// `emqx-webhook`.
    pub webhook: PathBuf,
    /// `emqx-reconciler`.
    pub reconciler: PathBuf,
}

impl OperatorBinaries {
    /// Sandbox options that run them for the chart's images.
    pub fn options(&self, options: SandboxOptions) -> SandboxOptions {
        options
            .project_binary(WEBHOOK_IMAGE, &self.webhook)
            .project_binary(RECONCILER_IMAGE, &self.reconciler)
    }
}

/// Builds `emqx-webhook` and `emqx-reconciler` with cargo, in the profile and
/// target directory of the running executable (a test or the demo), and
/// returns their paths. Cargo releases its build lock while tests and
/// `cargo run` programs run, so this nested build does not wait on the outer
/// one; when nothing changed it takes about a second.
pub fn build_operator_binaries() -> Result<OperatorBinaries> {
    let exe = std::env::current_exe().context("locating the running executable")?;
    let profile_dir = profile_dir(&exe)
        .with_context(|| format!("{} is not under a cargo target directory", exe.display()))?;
    let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") => "dev".to_owned(),
        Some(other) => other.to_owned(),
        None => bail!("no profile directory in {}", exe.display()),
    };
    let target_dir = profile_dir
        .parent()
        .context("profile directory without a parent")?;
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    eprintln!(
        "building emqx-webhook and emqx-reconciler ({profile} profile) for the chart's images"
    );
    let mut build = std::process::Command::new(&cargo);
    // `cargo test` and `cargo run` hand the program the variables they hand
    // build scripts (CARGO_PKG_NAME, OUT_DIR, ...); build scripts such as
    // ring's rerun when those differ, so a nested build would rebuild half
    // the tree, and the next plain build again.
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        if PER_PACKAGE_VARIABLES.iter().any(|p| name.starts_with(p)) {
            build.env_remove(name.as_ref());
        }
    }
    let status = build
        .args([
            "build",
            "--locked",
            "--quiet",
            "-p",
            "emqx-webhook",
            "-p",
            "emqx-reconciler",
            "--bins",
            "--profile",
            &profile,
        ])
        .arg("--target-dir")
        .arg(target_dir)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .with_context(|| format!("running {cargo:?}"))?;
    if !status.success() {
        bail!("cargo build of emqx-webhook and emqx-reconciler failed ({status})");
    }
    let binaries = OperatorBinaries {
        webhook: profile_dir.join("emqx-webhook"),
        reconciler: profile_dir.join("emqx-reconciler"),
    };
    for path in [&binaries.webhook, &binaries.reconciler] {
        if !path.is_file() {
            bail!("cargo built, but {} is missing", path.display());
        }
    }
    Ok(binaries)
}

/// Prefixes of the variables cargo sets for one package's programs.
const PER_PACKAGE_VARIABLES: [&str; 8] = [
    "CARGO_MANIFEST_",
    "CARGO_PKG_",
    "CARGO_CRATE_",
    "CARGO_BIN_",
    "CARGO_CFG_",
    "CARGO_PRIMARY_PACKAGE",
    "CARGO_TARGET_TMPDIR",
    "OUT_DIR",
];

/// `target/<profile>` of an executable in `target/<profile>/` or
/// `target/<profile>/{deps,examples}/`.
fn profile_dir(exe: &Path) -> Option<PathBuf> {
    let dir = exe.parent()?;
    let dir = match dir.file_name()?.to_str()? {
        "deps" | "examples" => dir.parent()?,
        _ => dir,
    };
    Some(dir.to_path_buf())
}

/// Output of a finished command.
#[derive(Debug)]
pub struct CommandOutput {
    /// Exit success.
    pub success: bool,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

/// Runs a prepared command (helm or kubectl from [`Sandbox`]) with optional
/// standard input, bounded by `limit`.
pub async fn run(
    mut command: tokio::process::Command,
    stdin: Option<&[u8]>,
    limit: Duration,
) -> Result<CommandOutput> {
    use tokio::io::AsyncWriteExt;
    command
        .stdin(if stdin.is_some() {
            std::process::Stdio::piped()
        } else {
            std::process::Stdio::null()
        })
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = command.spawn().context("spawning command")?;
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(input).await.context("writing stdin")?;
        drop(pipe);
    }
    let out = tokio::time::timeout(limit, child.wait_with_output())
        .await
        .with_context(|| format!("command did not finish within {limit:?}"))?
        .context("waiting for command")?;
    Ok(CommandOutput {
        success: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

/// `helm install` (or upgrade, with `--install`) of the chart as the README
/// does it, plus `extra` arguments; waits until the chart's Deployments are
/// available (`--wait`).
pub async fn helm_upgrade_install(sandbox: &Sandbox, extra: &[&str]) -> Result<CommandOutput> {
    let mut helm = sandbox.helm();
    helm.args(["upgrade", "--install", RELEASE])
        .arg(chart_dir())
        .args([
            "--namespace",
            NAMESPACE,
            "--create-namespace",
            "--wait",
            "--timeout",
            "3m",
        ])
        .args(extra);
    let out = run(helm, None, Duration::from_secs(240)).await?;
    if !out.success {
        bail!(
            "helm upgrade --install failed:\n{}{}",
            out.stdout,
            out.stderr
        );
    }
    Ok(out)
}

/// Waits until both Deployments of the release have all replicas updated
/// and available.
pub async fn wait_operator_available(client: &Client, limit: Duration) -> Result<()> {
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), NAMESPACE);
    let deadline = tokio::time::Instant::now() + limit;
    let names = [
        format!("{RELEASE}-webhook"),
        format!("{RELEASE}-reconciler"),
    ];
    loop {
        let mut waiting = Vec::new();
        for name in &names {
            let d = deployments.get(name).await?;
            let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
            let status = d.status.unwrap_or_default();
            let done = status.observed_generation >= d.metadata.generation
                && status.updated_replicas.unwrap_or(0) == want
                && status.available_replicas.unwrap_or(0) == want
                && status.replicas.unwrap_or(0) == want;
            if !done {
                waiting.push(format!(
                    "{name}: {}/{want} available, {} updated, {} total",
                    status.available_replicas.unwrap_or(0),
                    status.updated_replicas.unwrap_or(0),
                    status.replicas.unwrap_or(0)
                ));
            }
        }
        if waiting.is_empty() {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            bail!(
                "operator not available after {limit:?}: {}",
                waiting.join("; ")
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profile_dir_of_tests_binaries_and_examples() {
        for (exe, dir) in [
            ("/w/target/debug/deps/chart-0123", "/w/target/debug"),
            ("/w/target/release/sandbox", "/w/target/release"),
            ("/w/target/release/examples/bench", "/w/target/release"),
        ] {
            assert_eq!(profile_dir(Path::new(exe)), Some(PathBuf::from(dir)));
        }
    }
}
