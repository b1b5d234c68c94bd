//! The real `emqx-webhook` binary runs the worker threads it is given, two
//! by default, not one per CPU it sees: in a pod without a CPU limit (the
//! chart sets none) that is every core of the node, each thread with its
//! own allocator arena, while the reviews it answers at once are bounded
//! by `--max-concurrent-reviews` anyway.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// The `worker_threads` of the webhook's `starting` line, started as
/// `launcher` (a command that runs its arguments, e.g. `taskset -c 0`)
/// with `extra` arguments. Provided certificates from an empty directory:
/// the line comes before any certificate is read, and nothing needs the
/// Kubernetes API.
fn worker_threads(launcher: &[&str], extra: &[&str]) -> usize {
    let dir = tempfile::tempdir().expect("dir");
    let binary = env!("CARGO_BIN_EXE_emqx-webhook");
    let (program, args) = match launcher.split_first() {
        Some((program, args)) => (*program, [args, &[binary]].concat()),
        None => (binary, Vec::new()),
    };
    let mut child = Command::new(program)
        .args(args)
        .args(["--cert-mode", "provided", "--log-format", "json"])
        .args(["--listen", "127.23.11.1:0"])
        .arg("--cert-dir")
        .arg(dir.path())
        .args(extra)
        .env("RUST_LOG", "info")
        .env_remove("WEBHOOK_WORKER_THREADS")
        .env_remove("TOKIO_WORKER_THREADS")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting emqx-webhook");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let Ok(event) = serde_json::from_str::<serde_json::Value>(&line) else {
                continue;
            };
            if event["message"] == "starting" {
                let _ = tx.send(event["worker_threads"].as_u64());
                return;
            }
        }
    });
    let found = rx.recv_timeout(Duration::from_secs(30));
    // Only the process this test started, by its handle.
    let _ = child.kill();
    let _ = child.wait();
    let threads = found
        .expect("a `starting` line within 30 s")
        .expect("worker_threads in it");
    usize::try_from(threads).expect("a count")
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
fn zero_worker_threads_is_refused_naming_the_flag() {
    let out = Command::new(env!("CARGO_BIN_EXE_emqx-webhook"))
        .args(["--worker-threads", "0"])
        .env_remove("WEBHOOK_WORKER_THREADS")
        .stdin(Stdio::null())
        .output()
        .expect("running emqx-webhook");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--worker-threads"), "{stderr}");
}
