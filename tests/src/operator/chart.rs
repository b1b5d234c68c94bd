//! The operator as users install it: the Helm chart `charts/emqx-operator`.
//! With [`crate::operator::project_image::OperatorImages`] the sandbox's
//! kubelet runs a container whose image repository is [`WEBHOOK_IMAGE`] or
//! [`RECONCILER_IMAGE`] as a podman container of `images/build`'s image, so
//! `helm install` brings up real `emqx-webhook` and `emqx-reconciler`
//! containers with the chart's flags, securityContext, ServiceAccounts and
//! RBAC, on their in-cluster configuration.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use k8s_openapi::api::apps::v1::Deployment;
use kube::{Api, Client};

use crate::Sandbox;
pub use crate::operator::project_binary::{RECONCILER_IMAGE, WEBHOOK_IMAGE};
/// The release and namespace the README installs into.
pub const RELEASE: &str = "emqx-operator";
/// The namespace the README installs into (and the CRDs' default
/// conversion Service namespace).
pub const NAMESPACE: &str = "emqx-operator-system";

/// The chart's directory in this repository.
pub fn chart_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../charts/emqx-operator")
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
