//! The workspace's own binaries (`emqx-reconciler`, `emqx-webhook`) for tests
//! and benchmarks that run them as host processes or as the chart's images:
//! built with cargo in the
//! profile of the caller, found in the workspace's target directory.
//! (Cargo gives a test `CARGO_BIN_EXE_*` only for its own package's
//! binaries.)

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::SandboxOptions;

/// The webhook's image repository in the chart's values.
pub const WEBHOOK_IMAGE: &str = "emqx-operator/emqx-webhook";
/// The reconciler's image repository in the chart's values.
pub const RECONCILER_IMAGE: &str = "emqx-operator/emqx-reconciler";

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
    let paths = build_workspace_binaries(&["emqx-webhook", "emqx-reconciler"])?;
    Ok(OperatorBinaries {
        webhook: paths[0].clone(),
        reconciler: paths[1].clone(),
    })
}

/// Builds binaries of this workspace (each the package's binary of the same
/// name) as [`build_operator_binaries`] does, and returns their paths in
/// the order given.
pub fn build_workspace_binaries(binaries: &[&str]) -> Result<Vec<PathBuf>> {
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
    let names = binaries.join(" and ");
    eprintln!("building {names} ({profile} profile)");
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
    build.args(["build", "--locked", "--quiet"]);
    for binary in binaries {
        build.args(["-p", binary]);
    }
    let status = build
        .args(["--bins", "--profile", &profile])
        .arg("--target-dir")
        .arg(target_dir)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .with_context(|| format!("running {cargo:?}"))?;
    if !status.success() {
        bail!("cargo build of {names} failed ({status})");
    }
    let paths: Vec<PathBuf> = binaries.iter().map(|b| profile_dir.join(b)).collect();
    for path in &paths {
        if !path.is_file() {
            bail!("cargo built, but {} is missing", path.display());
        }
    }
    Ok(paths)
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

/// A free TCP port on 127.0.0.1 (bound, then released: good enough for a
/// child process that binds it a moment later on loopback).
pub fn free_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("binding 127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
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
