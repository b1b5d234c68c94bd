//! Two real `emqx-reconciler` processes elect a leader through a Lease on
//! the sandbox's apiserver. The leader reaches the apiserver through a TCP
//! proxy on loopback that the test freezes: its API calls hang (no error,
//! no answer), as when its node is partitioned. Each replica's
//! `emqx_reconciler_leader` gauge on its own admin port (not behind the
//! proxy) says whether it acts; it is sampled throughout and the two are
//! never 1 at once. The leader steps down (exits) at its renew deadline,
//! and the standby takes over only after the lease duration has passed on
//! its own clock since it last saw a renewal.
//!
//! Host processes, not the chart's containers: each replica must reach the
//! apiserver through the test's freezable proxy (a kubeconfig naming it),
//! which in-cluster configuration cannot be pointed at.

#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use sandbox::{Sandbox, SandboxOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

const LEASE: &str = "emqx-operator-reconciler";
/// Timing of both replicas (seconds): lease, renew deadline, retry.
const DURATION_S: u64 = 8;
const RENEW_DEADLINE_S: u64 = 5;
const RETRY_S: u64 = 1;

/// A TCP proxy on loopback; `freeze` stops it forwarding a single byte more
/// in either direction (and new connections get no upstream), without
/// closing anything.
struct FreezableProxy {
    addr: SocketAddr,
    frozen: Arc<AtomicBool>,
}

impl FreezableProxy {
    async fn start(bind_ip: std::net::IpAddr, upstream: SocketAddr) -> FreezableProxy {
        let listener = TcpListener::bind((bind_ip, 0)).await.expect("bind proxy");
        let addr = listener.local_addr().expect("addr");
        let frozen = Arc::new(AtomicBool::new(false));
        let flag = frozen.clone();
        tokio::spawn(async move {
            let mut accepted = 0;
            while let Ok((client, _)) = listener.accept().await {
                accepted += 1;
                if accepted > 500 {
                    continue;
                }
                let flag = flag.clone();
                tokio::spawn(async move {
                    if flag.load(Ordering::SeqCst) {
                        // Hold the client, never connect upstream.
                        let _client = client;
                        std::future::pending::<()>().await;
                        return;
                    }
                    let Ok(server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let (cr, cw) = client.into_split();
                    let (sr, sw) = server.into_split();
                    tokio::join!(pipe(cr, sw, flag.clone()), pipe(sr, cw, flag));
                });
            }
        });
        FreezableProxy { addr, frozen }
    }

    fn freeze(&self) {
        self.frozen.store(true, Ordering::SeqCst);
    }
}

/// Copies until EOF; once frozen, holds what it read and never writes.
async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    frozen: Arc<AtomicBool>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if frozen.load(Ordering::SeqCst) {
            // Keep both halves open: the peer sees a connection that
            // accepted its bytes and never answers.
            let _keep = (from, to);
            std::future::pending::<()>().await;
            return;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

/// One reconciler process; SIGKILLed and reaped on drop.
struct Replica {
    name: &'static str,
    child: Child,
    admin: SocketAddr,
}

impl Replica {
    fn start(binary: &Path, name: &'static str, kubeconfig: &Path, log: &Path) -> Replica {
        let port = sandbox::operator::project_binary::free_port().expect("port");
        let admin = SocketAddr::from(([127, 0, 0, 1], port));
        let out = std::fs::File::create(log).expect("log");
        let err = out.try_clone().expect("log");
        let child = Command::new(binary)
            .args([
                "--watch-namespace",
                "default",
                "--metrics-addr",
                &admin.to_string(),
                "--lease-namespace",
                "default",
                "--identity",
                name,
                "--enterprise",
                "false",
                "--lease-duration-seconds",
                &DURATION_S.to_string(),
                "--renew-deadline-seconds",
                &RENEW_DEADLINE_S.to_string(),
                "--lease-retry-seconds",
                &RETRY_S.to_string(),
            ])
            .env("KUBECONFIG", kubeconfig)
            .env("RUST_LOG", "info")
            .env_remove("KUBERNETES_SERVICE_HOST")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("starting emqx-reconciler");
        Replica { name, child, admin }
    }

    /// `Some(true)` while it reports acting, `Some(false)` while it reports
    /// waiting, `None` when it does not answer (not running).
    async fn acting(&self) -> Option<bool> {
        let exchange = async {
            let mut stream = TcpStream::connect(self.admin).await.ok()?;
            stream
                .write_all(b"GET /metrics HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
                .await
                .ok()?;
            let mut page = String::new();
            stream.read_to_string(&mut page).await.ok()?;
            page.lines().find_map(|l| match l {
                "emqx_reconciler_leader 1" => Some(true),
                "emqx_reconciler_leader 0" => Some(false),
                _ => None,
            })
        };
        tokio::time::timeout(Duration::from_secs(1), exchange)
            .await
            .ok()
            .flatten()
    }

    fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// A copy of the admin kubeconfig that reaches the apiserver through `proxy`.
fn kubeconfig_through(original: &Path, server: &str, proxy: SocketAddr, dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(original).expect("kubeconfig");
    assert!(text.contains(server), "the kubeconfig names {server}");
    let path = dir.join("kubeconfig-through-proxy");
    std::fs::write(&path, text.replace(server, &format!("https://{proxy}"))).expect("write");
    path
}

async fn holder(leases: &Api<Lease>) -> Option<String> {
    leases
        .get_opt(LEASE)
        .await
        .ok()
        .flatten()
        .and_then(|l| l.spec?.holder_identity)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_leader_whose_apiserver_hangs_steps_down_before_the_standby_takes_over() {
    support::init_tracing();
    let binary = tokio::task::spawn_blocking(|| {
        sandbox::operator::project_binary::build_operator_binaries()
            .expect("operator binaries")
            .reconciler
    })
    .await
    .expect("build");
    let sandbox = Sandbox::start(SandboxOptions::default())
        .await
        .expect("sandbox");
    let client = sandbox.client();
    sandbox::operator::install_crds(&client)
        .await
        .expect("CRDs");
    let leases: Api<Lease> = Api::namespaced(client.clone(), "default");

    let server = sandbox.server();
    let upstream: SocketAddr = server
        .trim_start_matches("https://")
        .parse()
        .expect("apiserver address");
    // Same IP as the apiserver, so its certificate still matches.
    let proxy = FreezableProxy::start(upstream.ip(), upstream).await;
    let dir = tempfile::tempdir().expect("dir");
    let through_proxy = kubeconfig_through(sandbox.kubeconfig(), &server, proxy.addr, dir.path());

    let mut a = Replica::start(
        &binary,
        "replica-a",
        &through_proxy,
        &dir.path().join("a.log"),
    );
    support::wait_for("replica-a leading", Duration::from_secs(60), || async {
        match (a.acting().await, holder(&leases).await) {
            (Some(true), Some(h)) if h == "replica-a" => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    let b = Replica::start(
        &binary,
        "replica-b",
        sandbox.kubeconfig(),
        &dir.path().join("b.log"),
    );
    support::wait_for(
        "replica-b up and waiting",
        Duration::from_secs(30),
        || async {
            match b.acting().await {
                Some(false) => Ok(()),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;
    // Both running, a renewing: b stays a standby for several lease
    // durations' worth of renewals.
    let calm_until = Instant::now() + Duration::from_secs(DURATION_S + 2);
    while Instant::now() < calm_until {
        assert_eq!(b.acting().await, Some(false), "b acted while a renewed");
        assert_eq!(a.acting().await, Some(true), "a stopped while renewing");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    proxy.freeze();
    let frozen_at = Instant::now();
    let mut a_stopped = None;
    let mut b_started = None;
    let limit = frozen_at + Duration::from_secs(DURATION_S + RENEW_DEADLINE_S + 20);
    while b_started.is_none() && Instant::now() < limit {
        // Sampled together: never both acting.
        let (a_now, b_now) = tokio::join!(a.acting(), b.acting());
        let now = Instant::now();
        assert!(
            !(a_now == Some(true) && b_now == Some(true)),
            "both replicas acting {:?} after the freeze",
            now - frozen_at
        );
        if a_now != Some(true) && a_stopped.is_none() {
            a_stopped = Some(now);
        }
        if a_now == Some(true) && a_stopped.is_some() {
            panic!("replica-a acting again after it stopped");
        }
        if b_now == Some(true) {
            b_started = Some(now);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let a_stopped = a_stopped.expect("replica-a never stopped acting") - frozen_at;
    let b_started = b_started.expect("replica-b never took over") - frozen_at;
    eprintln!("after the freeze: a stopped at {a_stopped:?}, b took over at {b_started:?}");
    // a stops within its renew deadline of its last renewal (plus a retry).
    assert!(
        a_stopped <= Duration::from_secs(RENEW_DEADLINE_S + RETRY_S + 2),
        "a stopped only {a_stopped:?} after the freeze"
    );
    // b waits the lease duration after the last renewal it saw, which was
    // at most one retry period before the freeze.
    assert!(
        b_started >= Duration::from_secs(DURATION_S - RETRY_S) - Duration::from_millis(500),
        "b took over {b_started:?} after the freeze, before the lease could expire"
    );
    assert!(b_started > a_stopped);
    assert_eq!(holder(&leases).await.as_deref(), Some("replica-b"));
    // a stepped down by exiting, saying why.
    let deadline = Instant::now() + Duration::from_secs(5);
    let status = loop {
        if let Some(status) = a.exited() {
            break status;
        }
        assert!(Instant::now() < deadline, "replica-a still running");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(!status.success());
    let log = std::fs::read_to_string(dir.path().join("a.log")).expect("a's log");
    assert!(log.contains("stepping down"), "{}: {log}", a.name);
    // b keeps it: still the only one acting a while later.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(b.acting().await, Some(true), "{} stopped", b.name);
    assert_eq!(holder(&leases).await.as_deref(), Some("replica-b"));
    drop((a, b));
    sandbox.stop().await.expect("stop");
}
