//! The real `emqx-reconciler` binary, run as its own OS process against the
//! sandbox's apiserver, is killed with SIGKILL at random instants of one
//! blue-green upgrade of seed 003 (three cores, MQTT clients connected) and
//! started again each time. The upgrade must still end Ready with every old
//! node evacuated exactly once, none removed before its evacuation reached
//! `prohibiting`, the old set at zero and the old nodes force-left.
//!
//! The kill instants come from a seeded RNG; the seed is printed and can be
//! replayed with `RESTARTS_SEED=<n>`.
//!
//! A host process, not the chart's container: no helm install here, and a
//! SIGKILL-and-start every ~2 s stays cheap without podman's per-start
//! container setup. (The chart's path runs as containers in `chart`,
//! `kubectl_logs`, `containers`, `go_takeover` and the demo.)

#![allow(clippy::panic, clippy::unwrap_used)]

mod support;
mod upgrade;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sandbox::seed_003::{NAME, Operator, Pace, Seed003, condition, is_true, load, update_revision};
use tokio::time::Instant;
use upgrade::Recorder;

/// Kills during the upgrade, at least.
const MIN_KILLS: usize = 10;
/// The default seed, so CI runs are repeatable.
const DEFAULT_SEED: u64 = 20_261_122;

/// The reconciler binary of this build, built first if needed (a no-op
/// when up to date), so the test never runs a stale reconciler.
fn reconciler_binary() -> PathBuf {
    sandbox::operator::project_binary::build_operator_binaries()
        .expect("operator binaries")
        .reconciler
}

/// One run of the reconciler process; SIGKILLed and reaped on drop.
struct Reconciler {
    child: Child,
}

impl Reconciler {
    fn start(binary: &Path, kubeconfig: &Path, log: &Path) -> Reconciler {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .expect("log file");
        let err = out.try_clone().expect("log file");
        let child = Command::new(binary)
            .args([
                "--watch-namespace",
                "default",
                "--metrics-addr",
                "127.0.0.1:0",
                "--lease-namespace",
                "default",
                // A restarted pod keeps its name, so it renews its own Lease
                // at once instead of waiting for it to expire.
                "--identity",
                "reconciler-0",
                "--enterprise",
                "false",
            ])
            .env("KUBECONFIG", kubeconfig)
            .env("RUST_LOG", "info")
            .env_remove("KUBERNETES_SERVICE_HOST")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("starting emqx-reconciler");
        Reconciler { child }
    }

    fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// SIGKILL: no shutdown path runs, exactly like a node failure.
    fn kill(mut self) {
        self.sigkill();
    }

    fn sigkill(&mut self) {
        // Only a child not yet reaped: its pid cannot have been reused.
        if !matches!(self.child.try_wait(), Ok(None)) {
            return;
        }
        if let Ok(pid) = i32::try_from(self.child.id()) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        let _ = self.child.wait();
    }
}

impl Drop for Reconciler {
    fn drop(&mut self) {
        self.sigkill();
    }
}

fn seed() -> u64 {
    std::env::var("RESTARTS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(DEFAULT_SEED)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkilled_reconciler_finishes_the_upgrade_without_double_or_early_steps() {
    let seed = seed();
    eprintln!("kill instants from seed {seed} (replay with RESTARTS_SEED={seed})");
    let mut rng = StdRng::seed_from_u64(seed);
    let binary = tokio::task::spawn_blocking(reconciler_binary)
        .await
        .expect("build");
    let pace = Pace {
        initial_delay_s: 3,
        wait_takeover_s: 3,
        conn_evict_rate: 5,
        sess_evict_rate: 5,
    };
    let stage = support::stage(
        Seed003::new()
            .cores(3)
            .pace(pace)
            .operator(Operator::Caller),
    )
    .await;
    let logs = tempfile::tempdir().expect("log dir");
    let log = logs.path().join("reconciler.log");
    let kubeconfig = stage.sandbox.kubeconfig().to_path_buf();
    let mut reconciler = Reconciler::start(&binary, &kubeconfig, &log);

    stage.create().await.expect("create EMQX");
    let first = stage
        .wait_ready(None, Duration::from_secs(120))
        .await
        .expect("EMQX Ready");
    let old_revision = update_revision(&first).expect("a revision");
    let old_set = format!("{}-core-{old_revision}", NAME);
    let old_nodes = stage.nodes();
    assert_eq!(old_nodes.len(), 3, "{old_nodes:?}");
    const CLIENTS: usize = 60;
    let load = stage
        .clients(
            load(CLIENTS, 100, Duration::from_secs(240)),
            Duration::from_secs(60),
        )
        .await
        .expect("clients connect");

    let recorder = Recorder::start(&stage);
    let t0 = Instant::now();
    stage.patch_image_pull_policy().await.expect("patch");
    let deadline = t0 + Duration::from_secs(240);
    let mut kills: Vec<(f32, String)> = Vec::new();
    loop {
        // The upgrade's floor is ~27 s (three nodes × (4 ticks + waitTakeover)
        // + initialDelay), so at most 2.4 s between kills makes ≥ 11 of them.
        let run_for = Duration::from_millis(rng.random_range(500..2_400));
        let until = Instant::now() + run_for;
        let mut done = false;
        while Instant::now() < until {
            let emqx = stage.api.get(NAME).await.expect("EMQX");
            let revision = update_revision(&emqx);
            let ready = is_true(&emqx, "Ready");
            if ready && revision.as_deref() != Some(old_revision.as_str()) {
                done = true;
                break;
            }
            assert!(
                reconciler.alive(),
                "reconciler exited by itself: {}",
                sandbox::control_plane::process::log_tail(&log, 30)
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        if done {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "upgrade not done after {} kills; last log: {}",
            kills.len(),
            sandbox::control_plane::process::log_tail(&log, 30)
        );
        // Where the upgrade stood when the reconciler died.
        let at = stage
            .api
            .get(NAME)
            .await
            .ok()
            .and_then(|e| condition(&e, "Ready"))
            .map(|c| format!("{}: {}", c.reason, c.message))
            .unwrap_or_default();
        reconciler.kill();
        kills.push((t0.elapsed().as_secs_f32(), at));
        reconciler = Reconciler::start(&binary, &kubeconfig, &log);
    }
    let upgrade_took = t0.elapsed();
    for (at, state) in &kills {
        eprintln!("SIGKILL at {at:.1}s during {state}");
    }
    eprintln!(
        "upgrade done after {:.1}s and {} kills",
        upgrade_took.as_secs_f32(),
        kills.len()
    );
    assert!(
        kills.len() >= MIN_KILLS,
        "only {} kills fit into the upgrade ({upgrade_took:?}); seed {seed}",
        kills.len()
    );

    // Clients came back, each disconnected once, sessions kept.
    assert!(
        load.wait_all_connected(Duration::from_secs(60)).await,
        "clients did not all come back: {:?}",
        load.progress()
    );
    let report = load.finish(Duration::from_secs(20)).await;
    let summary = mqtt_load::recorder::Summary::of(&report);
    assert!(
        summary.disconnect_histogram.len() <= 2,
        "a client was disconnected more than once: {summary}"
    );
    assert_eq!(summary.sessions_lost, 0, "{summary}");

    let seen = recorder.finish().await;
    let cluster = stage.cluster().expect("a running EMQX node");
    upgrade::print_evidence(&cluster, &old_nodes, t0);
    upgrade::assert_orderly(&cluster, &old_set, &old_nodes, pace, &seen);
    upgrade::assert_old_set_at_zero(&stage, &old_set).await;
    // The new nodes were never evacuated.
    for node in stage.nodes().values() {
        assert!(
            cluster.evacuation_history(node).is_empty(),
            "new node {node} was evacuated"
        );
    }
    drop(reconciler);
    stage.stop().await.expect("sandbox stops");
}
