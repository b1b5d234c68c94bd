//! Containers whose image is mapped to a binary run as real host processes:
//! test programs (`sandbox-probe`) and the tests that run the operator's
//! binaries as processes for speed or to SIGKILL them. (The chart's own path
//! runs the images as containers: [`crate::node::pod_container`].)
//!
//! - The image repository (`emqx-operator/emqx-webhook`) maps to a binary path
//!   ([`crate::SandboxOptions::project_binaries`]). The process is that binary;
//!   `command[1..]` then `args` are its arguments (`command[0]`, the path inside
//!   the image, is replaced by the binary), after `$(VAR)` expansion.
//! - The environment is exactly the container's resolved env plus `PATH`,
//!   `HOME` (the pod directory), `HOSTNAME` and `KUBECONFIG` (a kubeconfig with
//!   a token of the pod's ServiceAccount, so the process has exactly the RBAC
//!   rights the chart grants it). Nothing else of the test's environment leaks in.
//! - Volumes: there are no mount namespaces, so paths are *rewritten*: every
//!   argument or env value that is a path under a volume's `mountPath` (alone or
//!   after `--flag=`) is replaced by the host directory of that volume.
//!   A path the binary builds itself (a compiled-in default) is not rewritten:
//!   pass such paths as arguments or env.
//! - The process must bind the pod IP (e.g. from `status.podIP` through the
//!   downward API), not 0.0.0.0: all pods share the machine's ports.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::node::pod_env::expand;

/// Rewrites `value` if it is a path under one of `mounts` (mountPath → host dir),
/// either the whole value or the part after the first `=`.
pub fn rewrite_mount_paths(value: &str, mounts: &BTreeMap<String, PathBuf>) -> String {
    let rewrite = |path: &str| -> Option<String> {
        // Longest mountPath first, so /a/b wins over /a.
        let mut best: Option<(&String, &PathBuf)> = None;
        for (mount, host) in mounts {
            let under = path == mount
                || path
                    .strip_prefix(mount.as_str())
                    .is_some_and(|rest| rest.starts_with('/'))
                || mount == "/" && path.starts_with('/');
            if under && best.is_none_or(|(m, _)| m.len() < mount.len()) {
                best = Some((mount, host));
            }
        }
        let (mount, host) = best?;
        let rest = path[mount.len()..].trim_start_matches('/');
        Some(if rest.is_empty() {
            host.display().to_string()
        } else {
            host.join(rest).display().to_string()
        })
    };
    if let Some(new) = rewrite(value) {
        return new;
    }
    if let Some((flag, path)) = value.split_once('=')
        && let Some(new) = rewrite(path)
    {
        return format!("{flag}={new}");
    }
    value.to_string()
}

/// The argument vector of a project-binary container.
pub fn arguments(
    command: &[String],
    args: &[String],
    env: &BTreeMap<String, String>,
    mounts: &BTreeMap<String, PathBuf>,
) -> Vec<String> {
    command
        .iter()
        .skip(1)
        .chain(args.iter())
        .map(|a| rewrite_mount_paths(&expand(a, env), mounts))
        .collect()
}

/// A running project-binary container.
#[derive(Debug)]
pub struct ProcessContainer {
    child: tokio::process::Child,
    /// Its log file (stdout and stderr).
    pub log: PathBuf,
}

/// How to start a process container.
#[derive(Debug, Clone)]
pub struct ProcessSpec {
    /// The binary.
    pub binary: PathBuf,
    /// Arguments (already expanded and rewritten).
    pub args: Vec<String>,
    /// Environment (already rewritten).
    pub env: Vec<(String, String)>,
    /// Working and home directory.
    pub dir: PathBuf,
    /// Log file.
    pub log: PathBuf,
}

impl ProcessContainer {
    /// Starts the process.
    pub fn start(spec: &ProcessSpec) -> Result<ProcessContainer> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&spec.log)
            .with_context(|| format!("opening {}", spec.log.display()))?;
        let mut command = tokio::process::Command::new(&spec.binary);
        command
            .args(&spec.args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", &spec.dir)
            .envs(spec.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .current_dir(&spec.dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true);
        let child = command
            .spawn()
            .with_context(|| format!("starting {}", spec.binary.display()))?;
        Ok(ProcessContainer {
            child,
            log: spec.log.clone(),
        })
    }

    /// The pid, while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// `Some(exit code)` once it has exited (signals as 128+n).
    pub fn exit_code(&mut self) -> Option<i32> {
        use std::os::unix::process::ExitStatusExt;
        match self.child.try_wait() {
            Ok(Some(status)) => Some(
                status
                    .code()
                    .unwrap_or_else(|| 128 + status.signal().unwrap_or(0)),
            ),
            Ok(None) => None,
            Err(_) => Some(-1),
        }
    }

    /// SIGTERM, up to `grace`, then SIGKILL; reaps the process.
    pub async fn stop(mut self, grace: Duration) {
        if let Some(pid) = self.child.id().and_then(|p| i32::try_from(p).ok()) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
            if tokio::time::timeout(grace, self.child.wait())
                .await
                .is_err()
            {
                let _ = self.child.kill().await;
            }
        }
        let _ = self.child.wait().await;
    }
}

/// The file name for a container's log inside the pod directory (the
/// current instance's).
pub fn log_path(pod_dir: &Path, container: &str) -> PathBuf {
    pod_dir.join(format!("{container}.log"))
}

/// The log of the container's previous instance (see `log_book.rs`).
pub fn previous_log_path(pod_dir: &Path, container: &str) -> PathBuf {
    pod_dir.join(format!("{container}.previous.log"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_under_mounts_are_rewritten() {
        let mounts: BTreeMap<String, PathBuf> = [
            (
                "/etc/certs".to_string(),
                PathBuf::from("/tmp/p/volumes/certs"),
            ),
            (
                "/etc/certs/extra".to_string(),
                PathBuf::from("/tmp/p/volumes/extra"),
            ),
        ]
        .into();
        assert_eq!(
            rewrite_mount_paths("/etc/certs/tls.crt", &mounts),
            "/tmp/p/volumes/certs/tls.crt"
        );
        assert_eq!(
            rewrite_mount_paths("--cert-dir=/etc/certs", &mounts),
            "--cert-dir=/tmp/p/volumes/certs"
        );
        assert_eq!(
            rewrite_mount_paths("/etc/certs/extra/a", &mounts),
            "/tmp/p/volumes/extra/a"
        );
        assert_eq!(rewrite_mount_paths("/etc/certsX", &mounts), "/etc/certsX");
        assert_eq!(rewrite_mount_paths("--port=8443", &mounts), "--port=8443");
        assert_eq!(rewrite_mount_paths("", &mounts), "");
    }

    #[test]
    fn arguments_drop_the_image_path_and_expand() {
        let env: BTreeMap<String, String> =
            [("POD_IP".to_string(), "127.100.0.3".to_string())].into();
        let args = arguments(
            &["/emqx-webhook".into(), "serve".into()],
            &["--bind=$(POD_IP):8443".into()],
            &env,
            &BTreeMap::new(),
        );
        assert_eq!(args, vec!["serve", "--bind=127.100.0.3:8443"]);
    }
}
