//! The real `emqx-reconciler` binary as a host process, as the chart runs
//! it (an operator key, so no Secret is read back; leader election), for
//! the benchmarks (`reconciler_bench`, `concurrent_upgrades_bench`). It is
//! ended by its pid when dropped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use anyhow::{Context, Result};

use crate::Sandbox;
use crate::control_plane::process;
use crate::operator::project_binary;

/// The reconciler binary as a child process.
pub struct ReconcilerProcess {
    child: Child,
    /// Its Prometheus endpoint (`http://127.0.0.1:<port>/metrics`).
    pub metrics: String,
    /// Its stdout and stderr.
    pub log: PathBuf,
}

impl Drop for ReconcilerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl ReconcilerProcess {
    /// Starts `binary` watching `namespace` (its Lease there too), logged
    /// in through `kubeconfig`, with `extra` arguments (e.g.
    /// `--resync-seconds=30`); logs at `warn` into the sandbox's log folder.
    pub fn start(
        binary: &Path,
        kubeconfig: &Path,
        sandbox: &Sandbox,
        namespace: &str,
        extra: &[String],
    ) -> Result<ReconcilerProcess> {
        let port = project_binary::free_port()?;
        let log_dir = sandbox
            .state_dir()
            .map_or_else(std::env::temp_dir, |d| d.join("logs"));
        std::fs::create_dir_all(&log_dir)?;
        let log_path = log_dir.join("emqx-reconciler.log");
        let log = std::fs::File::create(&log_path)?;
        // As the chart deploys it: cookies and API secrets derived from an
        // operator key, so no Secret is read back.
        let key_path = log_dir.join("operator.key");
        let key: String = (0..32)
            .map(|_| format!("{:02x}", rand::random::<u8>()))
            .collect();
        std::fs::write(&key_path, key)?;
        let child = Command::new(binary)
            .arg(format!("--operator-key-file={}", key_path.display()))
            .args(extra)
            .env("KUBECONFIG", kubeconfig)
            .env("RUST_LOG", "warn")
            .args([
                "--metrics-addr",
                &format!("127.0.0.1:{port}"),
                "--watch-namespace",
                namespace,
                "--lease-namespace",
                namespace,
                "--identity",
                "bench",
                "--enterprise",
                "false",
            ])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        Ok(ReconcilerProcess {
            child,
            metrics: format!("http://127.0.0.1:{port}/metrics"),
            log: log_path,
        })
    }

    /// Fails, with the end of its log, once the process has exited: a
    /// benchmark must not wait out its limit on a reconciler that is gone
    /// (in a cluster its Deployment would restart it; here nothing does).
    pub fn check_running(&mut self) -> Result<()> {
        let Some(status) = self.child.try_wait()? else {
            return Ok(());
        };
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(20).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        anyhow::bail!(
            "emqx-reconciler exited ({status}); the end of {}:\n{}",
            self.log.display(),
            tail.join("\n")
        )
    }

    /// Its pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its resident memory (VmRSS), KiB.
    pub fn rss_kib(&self) -> Option<u64> {
        process::rss_kib(self.child.id())
    }

    /// Its CPU time so far (utime + stime), clock ticks.
    pub fn cpu_ticks(&self) -> Option<u64> {
        process::cpu_ticks(self.child.id())
    }
}

/// What both benchmarks start from: the release `emqx-reconciler` built in
/// the profile of the running program, and a sandbox with simulated EMQX
/// (`hook`) whose audit log records the requests of the reconciler's
/// ServiceAccount `account` in `namespace`; `controller_manager_args` are
/// added to kube-controller-manager's flags.
pub async fn bench_sandbox(
    namespace: &str,
    account: &str,
    controller_manager_args: &[String],
) -> Result<(PathBuf, std::sync::Arc<crate::EmqxHook>, Sandbox)> {
    let binary = tokio::task::spawn_blocking(|| {
        project_binary::build_operator_binaries().map(|b| b.reconciler)
    })
    .await??;
    let hook = crate::EmqxHook::new();
    let options = crate::SandboxOptions::default()
        .hook(hook.clone())
        .audit_requests_of(
            crate::operator::service_account_login::service_account_user(namespace, account),
        )
        .controller_manager_args(controller_manager_args.iter().cloned());
    let sandbox = Sandbox::start(options).await?;
    Ok((binary, hook, sandbox))
}
