//! The workspace's own binaries (`emqx-reconciler`, `emqx-webhook`) for tests
//! and benchmarks that run them as host processes: built with cargo in the
//! profile of the caller, found in the workspace's target directory.
//! (Cargo gives a test `CARGO_BIN_EXE_*` only for its own package's
//! binaries.)

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

/// The workspace root (this crate lives in `tests/`).
fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

/// Builds `binary` of `package` with the profile this code was built with
/// (release when debug assertions are off) and returns its path. Cargo's
/// own lock serialises concurrent builds; a second call costs a no-op build.
pub fn build(package: &str, binary: &str) -> Result<PathBuf> {
    let release = !cfg!(debug_assertions);
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(workspace_root())
        .args(["build", "-q", "-p", package, "--bin", binary]);
    if release {
        cmd.arg("--release");
    }
    let status = cmd
        .status()
        .with_context(|| format!("running cargo build -p {package} --bin {binary}"))?;
    if !status.success() {
        bail!("cargo build -p {package} --bin {binary} failed: {status}");
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| workspace_root().join("target"), PathBuf::from);
    let path = target
        .join(if release { "release" } else { "debug" })
        .join(binary);
    if !path.is_file() {
        bail!("{} missing after a successful build", path.display());
    }
    Ok(path)
}

/// A free TCP port on 127.0.0.1 (bound, then released: good enough for a
/// child process that binds it a moment later on loopback).
pub fn free_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("binding 127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}
