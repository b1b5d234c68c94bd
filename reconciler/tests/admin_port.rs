//! The real `emqx-reconciler` binary's admin port (`/healthz`, `/readyz`,
//! `/metrics`) under hostile connections, and its exit on SIGTERM, with an
//! apiserver that accepts connections and never answers (every API call of
//! the reconciler hangs).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::net::{Ipv4Addr, SocketAddr};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};

/// Loopback addresses of this file.
fn ip(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 23, 9, last)
}

/// An "apiserver" that accepts and holds every connection, silent.
async fn black_hole() -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind((ip(1), 0)).await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            if held.len() < 1000 {
                held.push(socket);
            }
        }
    });
    (addr, task)
}

/// An "apiserver" that grants the Lease (a 404 to its read, the create
/// echoed back) and then, once a create has been answered, stops answering
/// anything: the leader's apiserver becoming unreachable. Everything else
/// hangs from the start. The receiver turns true when the Lease is granted.
async fn grants_then_hangs() -> (SocketAddr, tokio::sync::watch::Receiver<bool>) {
    let listener = TcpListener::bind((ip(1), 0)).await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (granted_tx, granted) = tokio::sync::watch::channel(false);
    let granted_tx = std::sync::Arc::new(granted_tx);
    tokio::spawn(async move {
        let mut accepted = 0;
        while let Ok((mut socket, _)) = listener.accept().await {
            accepted += 1;
            if accepted > 1000 {
                continue;
            }
            let granted_tx = granted_tx.clone();
            tokio::spawn(async move {
                loop {
                    let Some((head, body)) = read_request(&mut socket).await else {
                        return;
                    };
                    let is_lease = head.contains("/leases");
                    if !is_lease || *granted_tx.borrow() {
                        // Hang: hold the socket, answer nothing.
                        std::future::pending::<()>().await;
                    }
                    let (status, answer) = if head.starts_with("GET ") {
                        ("404 Not Found", r#"{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"NotFound","code":404}"#.to_owned())
                    } else {
                        let mut lease: serde_json::Value =
                            serde_json::from_slice(&body).unwrap_or_default();
                        lease["metadata"]["resourceVersion"] = "1".into();
                        lease["metadata"]["namespace"] = "default".into();
                        ("201 Created", lease.to_string())
                    };
                    let response = format!(
                        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{answer}",
                        answer.len()
                    );
                    if socket.write_all(response.as_bytes()).await.is_err() {
                        return;
                    }
                    if status.starts_with("201") {
                        let _ = granted_tx.send(true);
                    }
                }
            });
        }
    });
    (addr, granted)
}

/// One HTTP/1.1 request: its head and body (by content-length).
async fn read_request(socket: &mut TcpStream) -> Option<(String, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = socket.read(&mut chunk).await.ok()?;
        if n == 0 || buf.len() > 1 << 20 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let length = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse::<usize>().ok())?
        })
        .unwrap_or(0);
    let mut body = buf[end..].to_vec();
    while body.len() < length {
        let n = socket.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Some((head, body))
}

/// The reconciler process; SIGKILLed and reaped on drop.
struct Reconciler {
    child: Child,
    admin: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Reconciler {
    fn start(apiserver: SocketAddr, admin_ip: Ipv4Addr, extra: &[&str]) -> Reconciler {
        Self::start_at(&format!("https://{apiserver}"), admin_ip, extra)
    }

    fn start_at(server: &str, admin_ip: Ipv4Addr, extra: &[&str]) -> Reconciler {
        let dir = tempfile::tempdir().expect("dir");
        let kubeconfig = support::write_kubeconfig(dir.path(), server);
        let port = {
            let probe = std::net::TcpListener::bind((admin_ip, 0)).expect("free port");
            probe.local_addr().expect("addr").port()
        };
        let admin = SocketAddr::from((admin_ip, port));
        let child = Command::new(env!("CARGO_BIN_EXE_emqx-reconciler"))
            .args([
                "--metrics-addr",
                &admin.to_string(),
                "--enterprise",
                "false",
            ])
            .args(extra)
            .env("KUBECONFIG", &kubeconfig)
            .env("RUST_LOG", "info")
            .env_remove("KUBERNETES_SERVICE_HOST")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting emqx-reconciler");
        Reconciler {
            child,
            admin,
            _dir: dir,
        }
    }

    fn sigterm(&self) {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.child.id()).expect("pid"));
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("SIGTERM");
    }

    /// Sends SIGTERM and returns the exit status, which must come within
    /// 8 s (`what` names the case in the failure); prints how long it took.
    async fn sigterm_and_wait(&mut self, what: &str) -> std::process::ExitStatus {
        self.sigterm();
        let signalled = Instant::now();
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                break status;
            }
            assert!(
                signalled.elapsed() < Duration::from_secs(8),
                "{what}: still running 8 s after SIGTERM"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        eprintln!("{what}: exited {:?} after SIGTERM", signalled.elapsed());
        status
    }
}

impl Drop for Reconciler {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// A connection to `to` from source address `from`.
async fn connect(from: Ipv4Addr, to: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::from((from, 0)))?;
    socket.connect(to).await
}

/// `GET path` from `from` on a fresh connection: the status line and body.
async fn get(from: Ipv4Addr, to: SocketAddr, path: &str) -> Result<String, String> {
    let exchange = async {
        let mut stream = connect(from, to).await.map_err(|e| e.to_string())?;
        stream
            .write_all(
                format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").as_bytes(),
            )
            .await
            .map_err(|e| e.to_string())?;
        let mut answer = String::new();
        stream
            .read_to_string(&mut answer)
            .await
            .map_err(|e| e.to_string())?;
        Ok(answer)
    };
    tokio::time::timeout(Duration::from_secs(2), exchange)
        .await
        .map_err(|_| format!("GET {path} from {from}: no answer in 2 s"))?
}

async fn wait_listening(admin: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while get(ip(2), admin, "/healthz").await.is_err() {
        assert!(Instant::now() < deadline, "admin port never answered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// True when the server has closed `stream` (EOF or reset) within `limit`.
async fn closed_by_server(stream: &mut TcpStream, limit: Duration) -> bool {
    let mut buf = [0u8; 256];
    matches!(
        tokio::time::timeout(limit, stream.read(&mut buf)).await,
        Ok(Ok(0) | Err(_))
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_are_answered_through_idle_floods_and_half_sent_requests() {
    let (apiserver, _hole) = black_hole().await;
    let reconciler = Reconciler::start(apiserver, ip(10), &[]);
    wait_listening(reconciler.admin).await;

    // 200 connections that never send a byte, from the address the probe
    // will come from too, and 20 requests cut in the middle of their
    // headers from another.
    let started = Instant::now();
    let mut idle = Vec::new();
    for _ in 0..200 {
        idle.push(connect(ip(3), reconciler.admin).await.expect("connect"));
    }
    let mut half_sent = Vec::new();
    for _ in 0..20 {
        let mut stream = connect(ip(4), reconciler.admin).await.expect("connect");
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\nx-slow: ")
            .await
            .expect("write");
        half_sent.push(stream);
    }
    for (from, path, expect) in [
        (ip(3), "/healthz", "ok"),
        (ip(4), "/readyz", "ready"),
        (ip(5), "/metrics", "emqx_reconciler_leader 0"),
    ] {
        let answer = get(from, reconciler.admin, path)
            .await
            .unwrap_or_else(|e| panic!("probe during the flood: {e}"));
        assert!(
            answer.starts_with("HTTP/1.1 200") && answer.contains(expect),
            "{path} from {from}: {answer:?}"
        );
    }

    // The flood only ever pushed itself out: of the 200 idle connections
    // at most the per-peer quota is still open.
    let mut still_open = 0;
    for stream in &mut idle {
        if !closed_by_server(stream, Duration::from_millis(20)).await {
            still_open += 1;
        }
    }
    assert!(
        still_open <= 16,
        "{still_open} idle connections of one peer still open"
    );
    // A half-sent request is closed by the header timeout (2 s), the rest
    // of the idle ones by the idle timeout (5 s).
    for stream in &mut half_sent {
        assert!(
            closed_by_server(stream, Duration::from_secs(8)).await,
            "a half-sent request was kept open"
        );
    }
    for stream in &mut idle {
        assert!(
            closed_by_server(stream, Duration::from_secs(8)).await,
            "an idle connection was kept open"
        );
    }
    assert!(started.elapsed() < Duration::from_secs(30));
    let metrics = get(ip(5), reconciler.admin, "/metrics")
        .await
        .expect("metrics");
    assert!(
        metrics.contains(
            r#"emqx_reconciler_admin_connections_dropped_total{reason="evicted_peer_quota"}"#
        ),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_it_promptly_with_the_apiserver_unreachable() {
    let (apiserver, _hole) = black_hole().await;
    // Without leader election the controllers start and every list and
    // watch hangs; with it, acquiring the Lease hangs.
    for extra in [
        &["--leader-elect", "false", "--shutdown-grace-seconds", "3"][..],
        &["--leader-elect", "true"][..],
    ] {
        let mut reconciler = Reconciler::start(apiserver, ip(20), extra);
        wait_listening(reconciler.admin).await;
        // A probe connection held open must not hold up the exit either.
        let _held = connect(ip(21), reconciler.admin).await.expect("connect");
        tokio::time::sleep(Duration::from_secs(2)).await;
        let status = reconciler.sigterm_and_wait(&format!("{extra:?}")).await;
        assert!(status.success(), "{extra:?}: exit status {status}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_a_leader_promptly_when_the_apiserver_stops_answering() {
    let (apiserver, mut granted) = grants_then_hangs().await;
    // A renew deadline far beyond the test: what ends the process is the
    // bounded shutdown, not stepping down.
    let mut reconciler = Reconciler::start_at(
        &format!("http://{apiserver}"),
        ip(30),
        &[
            "--lease-namespace",
            "default",
            "--lease-duration-seconds",
            "120",
            "--renew-deadline-seconds",
            "100",
            "--lease-retry-seconds",
            "1",
            "--shutdown-grace-seconds",
            "2",
        ],
    );
    tokio::time::timeout(Duration::from_secs(30), granted.wait_for(|g| *g))
        .await
        .expect("the Lease was never created")
        .expect("granted");
    wait_listening(reconciler.admin).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let metrics = get(ip(2), reconciler.admin, "/metrics")
            .await
            .unwrap_or_default();
        if metrics.contains("emqx_reconciler_leader 1") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "never reported leading: {metrics}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Renewals now hang; the controllers' lists hang from the start.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let status = reconciler
        .sigterm_and_wait("a leader (handing back the Lease hung?)")
        .await;
    assert!(status.success(), "exit status {status}");
}
