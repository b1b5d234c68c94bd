//! Helpers shared by the sandbox's integration tests: waiting with a
//! deadline, seed 003 staged or Ready, pods' conditions.

#![allow(dead_code, clippy::panic)]

use std::future::Future;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use sandbox::seed_003::{Seed003, Stage};

/// Polls `check` every 200 ms until it returns `Some`, or fails after `timeout`
/// with `what` and the last observation.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    sandbox::seed_003::wait_for(what, timeout, check)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

/// Seed 003's cluster Ready as `seed` says, with tracing for the test's output.
pub async fn ready(seed: Seed003) -> Stage {
    init_tracing();
    seed.ready().await.expect("seed 003 Ready")
}

/// The sandbox and operator of `seed`, the object not yet created.
pub async fn stage(seed: Seed003) -> Stage {
    init_tracing();
    seed.stage().await.expect("sandbox and operator start")
}

/// The status of condition `type_` of `pod` ("True", "False", or "").
pub fn pod_condition(pod: &Pod, type_: &str) -> String {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == type_))
        .map(|c| c.status.clone())
        .unwrap_or_default()
}

/// Whether `pod` is Ready.
pub fn is_ready(pod: &Pod) -> bool {
    pod_condition(pod, "Ready") == "True"
}

/// The pod IP.
pub fn pod_ip(pod: &Pod) -> Option<std::net::Ipv4Addr> {
    pod.status.as_ref()?.pod_ip.as_deref()?.parse().ok()
}

/// Sends one line over a fresh TCP connection and returns the reply line.
pub async fn ask(addr: std::net::SocketAddr, line: &str) -> Result<String, String> {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let stream = tokio::time::timeout(Duration::from_secs(3), tokio::net::TcpStream::connect(addr))
        .await
        .map_err(|_| format!("connect {addr}: timeout"))?
        .map_err(|e| format!("connect {addr}: {e}"))?;
    let (read, mut write) = stream.into_split();
    write
        .write_all(format!("{line}\n").as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut lines = BufReader::new(read).lines();
    tokio::time::timeout(Duration::from_secs(3), lines.next_line())
        .await
        .map_err(|_| "reply timeout".to_string())?
        .map_err(|e| e.to_string())?
        .ok_or_else(|| "closed without a reply".to_string())
}

/// A tracing subscriber for test output (idempotent).
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_test_writer()
        .try_init();
}
