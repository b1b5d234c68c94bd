//! The real `emqx-reconciler` binary runs the worker threads it is given,
//! two by default, not one per CPU it sees, and jemalloc's arenas are 4,
//! not 4 per CPU: in a pod without a CPU limit that is every core of the
//! node, and each thread and arena costs memory (the README's scale
//! figures: 26 MiB at 200 clusters with 2, 44 MiB with 64 and the allocator
//! arenas of a 64-core node).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// The `worker_threads` of the reconciler's `starting` line, started as
/// `launcher` (a command that runs its arguments, e.g. `taskset -c 0`)
/// with `extra` arguments.
fn worker_threads(launcher: &[&str], extra: &[&str]) -> usize {
    let threads = starting_line(launcher, extra, &[])["worker_threads"]
        .as_u64()
        .expect("worker_threads in it");
    usize::try_from(threads).expect("a count")
}

/// The reconciler's `starting` line as JSON, started as `worker_threads`
/// says, with `env` added. Its apiserver is an address nothing listens on:
/// the line comes before any call.
fn starting_line(launcher: &[&str], extra: &[&str], env: &[(&str, &str)]) -> serde_json::Value {
    let dir = tempfile::tempdir().expect("dir");
    let kubeconfig = support::write_kubeconfig(dir.path(), "https://127.23.10.1:1");
    let binary = env!("CARGO_BIN_EXE_emqx-reconciler");
    let (program, args) = match launcher.split_first() {
        Some((program, args)) => (*program, [args, &[binary]].concat()),
        None => (binary, Vec::new()),
    };
    let mut child = Command::new(program)
        .args(args)
        .args(["--metrics-addr", "127.23.10.2:0", "--enterprise", "false"])
        .args(extra)
        .env("KUBECONFIG", &kubeconfig)
        .env("RUST_LOG", "info")
        .env("RECONCILER_LOG_FORMAT", "json")
        .env_remove("RECONCILER_WORKER_THREADS")
        .env_remove("TOKIO_WORKER_THREADS")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env_remove("_RJEM_MALLOC_CONF")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting emqx-reconciler");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let Ok(event) = serde_json::from_str::<serde_json::Value>(&line) else {
                continue;
            };
            if event["message"] == "starting" {
                let _ = tx.send(event);
                return;
            }
        }
    });
    let found = rx.recv_timeout(Duration::from_secs(30));
    let _ = child.kill();
    let _ = child.wait();
    found.expect("a `starting` line within 30 s")
}

#[test]
fn two_worker_threads_by_default_whatever_the_cpus() {
    // One CPU visible: tokio's own default would be 1.
    assert_eq!(worker_threads(&["taskset", "-c", "0"], &[]), 2);
    assert_eq!(worker_threads(&[], &[]), 2);
}

#[test]
fn worker_threads_as_asked() {
    assert_eq!(worker_threads(&[], &["--worker-threads", "5"]), 5);
    assert_eq!(
        worker_threads(&["taskset", "-c", "0"], &["--worker-threads=3"]),
        3
    );
}

#[test]
fn four_allocator_arenas_whatever_the_cpus() {
    // jemalloc's own default is 4 per CPU: 8 on two, 4 on one.
    let arenas = |launcher: &[&str], env: &[(&str, &str)]| {
        starting_line(launcher, &[], env)["allocator_arenas"]
            .as_u64()
            .expect("allocator_arenas in it")
    };
    assert_eq!(arenas(&[], &[]), 4);
    assert_eq!(arenas(&["taskset", "-c", "0"], &[]), 4);
    // The environment still decides when it says.
    assert_eq!(arenas(&[], &[("_RJEM_MALLOC_CONF", "narenas:16")]), 16);
}
