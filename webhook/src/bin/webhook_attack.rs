//! `webhook-attack`: starts an `emqx-webhook` binary on loopback and repeats
//! the attacks of issue 13 against it while measuring what a normal client
//! sees: idle TLS connections with h1 and with h2 ALPN, idle TCP
//! connections, slow headers, the worst body at the limit, and 8 concurrent
//! worst bodies at the token limit. Prints, per attack, the success rate and p50/p99 of normal
//! requests (a fresh TLS connection and one `/validate` each, as an
//! apiserver opens them after losing a connection), the readiness probe's
//! success rate, and the server's peak RSS (`VmHWM`).
//!
//! Run: `cargo build --release -p emqx-webhook --bins &&
//! target/release/webhook-attack [--server PATH] [--server-arg ARG]…
//! [--only TEXT]` (default: the `emqx-webhook` next to this binary; give
//! another build, e.g. of the base commit, to compare; `--server-arg` is
//! passed to it, e.g. `--server-arg --small-review-bytes --server-arg 0` for
//! one review lane; `--only` runs the attacks whose name contains TEXT). Flooders connect from 127.0.0.2–127.0.0.9, normal
//! requests from 127.0.0.1, as a flooding pod and the apiserver would.
//! Every attack is bounded in connections and time; the server is stopped
//! with SIGTERM at the end.

mod bench_support;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context as _, bail};
use axum::http::Request;
use bench_support::ChildServer;
use emqx_certs::{ServiceIdentity, authority, store};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

const HOST: &str = "emqx-webhook.bench.svc";
const SEED: &str = include_str!("../../tests/fixtures/emqx-v2beta1-seed003.json");
/// How long each flood is held while normal requests are measured.
const WINDOW: Duration = Duration::from_secs(15);
/// One normal request every this long during a window.
const NORMAL_EVERY: Duration = Duration::from_millis(50);
/// A normal request slower than this counts as failed (the chart's
/// `timeoutSeconds` is 10; the apiserver's default is 10 too).
const NORMAL_TIMEOUT: Duration = Duration::from_secs(3);
/// The kubelet's default probe timeout.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
const MAX_BODY: usize = 3 * 1024 * 1024;
/// The bench kills the server (its own child) above this RSS, as the
/// kernel's OOM killer would: the machine is shared.
const RSS_CAP_KIB: u64 = 3 * 1024 * 1024;
/// A worst-body request gets this long.
const BODY_TIMEOUT: Duration = Duration::from_secs(60);

/// 0 once the process is gone (the figures are printed, not compared).
fn status_kib(pid: u32, field: &str) -> u64 {
    bench_support::status_kib(pid, field).unwrap_or(0)
}

/// Resets the peak RSS of our child (`/proc/PID/clear_refs`, value 5).
fn reset_peak(pid: u32) {
    let _ = std::fs::write(format!("/proc/{pid}/clear_refs"), "5");
}

fn mib(kib: u64) -> String {
    format!("{:.1}", kib as f64 / 1024.0)
}

#[derive(Clone)]
struct Target {
    addr: SocketAddr,
    health: Option<SocketAddr>,
    pid: u32,
    h1: Arc<rustls::ClientConfig>,
    h2: Arc<rustls::ClientConfig>,
    normal_body: Arc<Vec<u8>>,
}

fn client_config(ca_pem: &str, alpn: &[u8]) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert?)?;
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    Ok(Arc::new(config))
}

async fn tcp_from(source: Ipv4Addr, to: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(IpAddr::V4(source), 0))?;
    let stream = socket.connect(to).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

async fn tls_from(
    source: Ipv4Addr,
    to: SocketAddr,
    config: &Arc<rustls::ClientConfig>,
) -> anyhow::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let tcp = tcp_from(source, to).await?;
    let name = rustls::pki_types::ServerName::try_from(HOST)?;
    Ok(tokio_rustls::TlsConnector::from(config.clone())
        .connect(name, tcp)
        .await?)
}

/// One request on a fresh TLS connection from 127.0.0.1; the status.
async fn post(target: &Target, path: &str, body: Bytes) -> anyhow::Result<u16> {
    let tls = tls_from(Ipv4Addr::LOCALHOST, target.addr, &target.h1).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
    tokio::spawn(conn);
    let req = Request::post(path)
        .header("host", HOST)
        .header("content-type", "application/json")
        .body(Full::new(body))?;
    let resp = sender.send_request(req).await?;
    let status = resp.status().as_u16();
    resp.into_body().collect().await?;
    Ok(status)
}

async fn normal_request(target: &Target) -> Option<Duration> {
    let started = Instant::now();
    let body = Bytes::from(target.normal_body.as_ref().clone());
    match tokio::time::timeout(NORMAL_TIMEOUT, post(target, "/validate", body)).await {
        Ok(Ok(200)) => Some(started.elapsed()),
        _ => None,
    }
}

/// `/readyz` as the kubelet asks it: on the health port when there is one.
async fn probe(target: &Target) -> bool {
    let attempt = async {
        let status = match target.health {
            Some(addr) => {
                let tcp = TcpStream::connect(addr).await?;
                let (mut sender, conn) =
                    hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
                tokio::spawn(conn);
                let req = Request::get("/readyz")
                    .header("host", "probe")
                    .body(Full::new(Bytes::new()))?;
                sender.send_request(req).await?.status().as_u16()
            }
            None => {
                let tls = tls_from(Ipv4Addr::LOCALHOST, target.addr, &target.h1).await?;
                let (mut sender, conn) =
                    hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
                tokio::spawn(conn);
                let req = Request::get("/readyz")
                    .header("host", HOST)
                    .body(Full::new(Bytes::new()))?;
                sender.send_request(req).await?.status().as_u16()
            }
        };
        anyhow::Ok(status)
    };
    matches!(
        tokio::time::timeout(PROBE_TIMEOUT, attempt).await,
        Ok(Ok(200))
    )
}

struct Window {
    latencies: Vec<Duration>,
    failed: usize,
    probes_ok: usize,
    probes: usize,
    peak_kib: u64,
    attack_connections: u64,
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

/// Runs normal requests and probes for `WINDOW` while `attack` runs.
async fn measure<F>(target: &Target, attack: F) -> Window
where
    F: FnOnce(Instant, Arc<AtomicU64>) -> tokio::task::JoinHandle<()>,
{
    reset_peak(target.pid);
    let opened = Arc::new(AtomicU64::new(0));
    let end = Instant::now() + WINDOW;
    let attack = attack(end, opened.clone());
    // Let the flood build up before measuring.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let prober = {
        let target = target.clone();
        tokio::spawn(async move {
            let (mut ok, mut all) = (0, 0);
            while Instant::now() < end {
                all += 1;
                ok += usize::from(probe(&target).await);
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            (ok, all)
        })
    };
    let mut requests = Vec::new();
    while Instant::now() < end {
        let target = target.clone();
        requests.push(tokio::spawn(async move { normal_request(&target).await }));
        tokio::time::sleep(NORMAL_EVERY).await;
    }
    let mut latencies = Vec::new();
    let mut failed = 0;
    for r in requests {
        match r.await.ok().flatten() {
            Some(d) => latencies.push(d),
            None => failed += 1,
        }
    }
    latencies.sort_unstable();
    let (probes_ok, probes) = prober.await.unwrap_or((0, 0));
    let _ = attack.await;
    Window {
        latencies,
        failed,
        probes_ok,
        probes,
        peak_kib: status_kib(target.pid, "VmHWM:"),
        attack_connections: opened.load(Ordering::Relaxed),
    }
}

fn report(name: &str, w: &Window) {
    let total = w.latencies.len() + w.failed;
    println!(
        "{name:<34} {:>6.1}% of {total:>4}  p50 {:>8.1} ms  p99 {:>8.1} ms  probes {:>3}/{:<3}  peak RSS {:>6} MiB  attack conns {}",
        100.0 * w.latencies.len() as f64 / total.max(1) as f64,
        percentile(&w.latencies, 0.5).as_secs_f64() * 1000.0,
        percentile(&w.latencies, 0.99).as_secs_f64() * 1000.0,
        w.probes_ok,
        w.probes,
        mib(w.peak_kib),
        w.attack_connections,
    );
}

/// The flooding source addresses.
fn flooder(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, 2 + (i % 8) as u8)
}

/// `workers` clients posting `body` to `path` back to back until `end`, each
/// on a fresh TLS connection from 127.0.0.1.
fn posting(
    target: &Target,
    workers: usize,
    path: &'static str,
    body: Arc<Vec<u8>>,
    end: Instant,
    opened: Arc<AtomicU64>,
) -> tokio::task::JoinHandle<()> {
    let target = target.clone();
    tokio::spawn(async move {
        let mut tasks = Vec::new();
        for _ in 0..workers {
            let (target, body, opened) = (target.clone(), body.clone(), opened.clone());
            tasks.push(tokio::spawn(async move {
                while Instant::now() < end {
                    opened.fetch_add(1, Ordering::Relaxed);
                    let body = Bytes::from(body.as_ref().clone());
                    let _ = tokio::time::timeout_at(end.into(), post(&target, path, body)).await;
                }
            }));
        }
        for t in tasks {
            let _ = t.await;
        }
    })
}

/// `workers` connections kept open until `end`: each opens, does `hold`
/// until the server closes it, and opens again (after a short pause, so a
/// server refusing at once does not make the flooder spin).
fn flood<H, Fut>(
    target: &Target,
    workers: usize,
    end: Instant,
    opened: Arc<AtomicU64>,
    hold: H,
) -> tokio::task::JoinHandle<()>
where
    H: Fn(Target, Ipv4Addr, Instant) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let target = target.clone();
    let hold = Arc::new(hold);
    tokio::spawn(async move {
        let mut tasks = Vec::with_capacity(workers);
        for i in 0..workers {
            let (target, hold, opened) = (target.clone(), hold.clone(), opened.clone());
            tasks.push(tokio::spawn(async move {
                while Instant::now() < end {
                    opened.fetch_add(1, Ordering::Relaxed);
                    let started = Instant::now();
                    let _ =
                        tokio::time::timeout_at(end.into(), hold(target.clone(), flooder(i), end))
                            .await;
                    if started.elapsed() < Duration::from_millis(200) {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
            }));
            // Ramp up rather than open every socket in the same instant.
            if i % 64 == 63 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        for t in tasks {
            let _ = t.await;
        }
    })
}

/// Waits until the peer closes `stream` (or `end`).
async fn until_closed(stream: &mut (impl AsyncReadExt + Unpin)) {
    let mut buf = [0u8; 1024];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

/// An `EMQX` whose `env` is `[{}, {}, …]`, the body at about `size` bytes.
fn worst_object(size: usize) -> Value {
    let envelope = 600; // everything around the array
    worst_object_items(size.saturating_sub(envelope) / 3)
}

/// An `EMQX` whose `env` is `n` times `{}`.
fn worst_object_items(n: usize) -> Value {
    let env: Vec<Value> = (0..n).map(|_| json!({})).collect();
    json!({"apiVersion": "apps.emqx.io/v2beta1", "kind": "EMQX",
        "metadata": {"name": "worst", "namespace": "default"},
        "spec": {"image": "emqx/emqx:5.8.0", "coreTemplate": {"spec": {"env": env}}}})
}

fn admission(obj: &Value, old: Option<&Value>) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
            "kind": {"group": "apps.emqx.io", "version": "v2beta1", "kind": "EMQX"},
            "resource": {"group": "apps.emqx.io", "version": "v2beta1", "resource": "emqxes"},
            "name": obj.pointer("/metadata/name"), "namespace": "default",
            "operation": if old.is_some() { "UPDATE" } else { "CREATE" },
            "userInfo": {"username": "bench"},
            "object": obj, "oldObject": old, "dryRun": false
        }
    }))
    .unwrap_or_default()
}

fn conversion(obj: &Value) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "ConversionReview",
        "request": {"uid": "705ab4f5-6393-11e8-b7cc-42010a800003",
            "desiredAPIVersion": "apps.emqx.io/v2alpha2", "objects": [obj]}
    }))
    .unwrap_or_default()
}

/// Largest body of each endpoint at or under `limit`, and its request path.
fn worst_bodies(limit: usize) -> Vec<(&'static str, &'static str, Vec<u8>)> {
    let fit = |make: &dyn Fn(usize) -> Vec<u8>| {
        // Shrink until the whole review fits under the limit.
        let mut size = limit;
        loop {
            let body = make(size);
            if body.len() <= limit || size < 1024 {
                return body;
            }
            size -= (body.len() - limit) + 64;
        }
    };
    vec![
        (
            "/mutate CREATE",
            "/mutate",
            fit(&|s| admission(&worst_object(s), None)),
        ),
        (
            "/validate CREATE",
            "/validate",
            fit(&|s| admission(&worst_object(s), None)),
        ),
        ("/validate UPDATE", "/validate", {
            fit(&|s| {
                let o = worst_object(s / 2);
                admission(&o, Some(&o))
            })
        }),
        (
            "/convert",
            "/convert",
            fit(&|s| conversion(&worst_object(s))),
        ),
    ]
}

/// The same shape with as many values as a review may have: about
/// `tokens` structural tokens (`{` and `,` per item).
fn worst_bodies_by_tokens(tokens: usize) -> Vec<(&'static str, &'static str, Vec<u8>)> {
    let n = tokens.saturating_sub(200) / 2;
    vec![
        (
            "/mutate CREATE",
            "/mutate",
            admission(&worst_object_items(n), None),
        ),
        (
            "/validate CREATE",
            "/validate",
            admission(&worst_object_items(n), None),
        ),
        ("/validate UPDATE", "/validate", {
            let o = worst_object_items(n / 2);
            admission(&o, Some(&o))
        }),
        ("/convert", "/convert", conversion(&worst_object_items(n))),
    ]
}

struct Args {
    server: PathBuf,
    max_body: usize,
    max_tokens: usize,
    server_args: Vec<String>,
    only: Option<String>,
}

impl Args {
    /// Whether the attack named `name` is run.
    fn wanted(&self, name: &str) -> bool {
        self.only.as_ref().is_none_or(|o| name.contains(o.as_str()))
    }
}

fn parse_args() -> anyhow::Result<Args> {
    let mut server = std::env::current_exe()?
        .parent()
        .map(|d| d.join("emqx-webhook"))
        .context("no directory for the server binary")?;
    let mut max_body = MAX_BODY;
    let mut max_tokens = 32 * 1024;
    let mut server_args = Vec::new();
    let mut only = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--server" => server = args.next().context("--server PATH")?.into(),
            "--max-body" => max_body = args.next().context("--max-body BYTES")?.parse()?,
            "--max-json-tokens" => {
                max_tokens = args.next().context("--max-json-tokens N")?.parse()?;
            }
            "--server-arg" => server_args.push(args.next().context("--server-arg ARG")?),
            "--only" => only = Some(args.next().context("--only TEXT")?),
            other => bail!(
                "unknown argument {other}; usage: webhook-attack [--server PATH] [--server-arg ARG]… [--only TEXT] [--max-body BYTES] [--max-json-tokens N]"
            ),
        }
    }
    Ok(Args {
        server,
        max_body,
        max_tokens,
        server_args,
        only,
    })
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    let (server_bin, max_body, max_tokens) = (args.server.clone(), args.max_body, args.max_tokens);
    if !server_bin.exists() {
        bail!("{} not found; build it first", server_bin.display());
    }
    let help = Command::new(&server_bin).arg("--help").output()?;
    let has_health = String::from_utf8_lossy(&help.stdout).contains("--health-listen");
    let identity = ServiceIdentity {
        service: "emqx-webhook".into(),
        namespace: "bench".into(),
        cluster_domain: "cluster.local".into(),
        extra_names: Vec::new(),
    };
    let bundle = authority::new_bundle(&identity, SystemTime::now(), None)?;
    let dir = std::env::temp_dir().join(format!("webhook-attack-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    store::write_dir(&dir, &bundle)?;
    let free = || -> anyhow::Result<u16> {
        Ok(std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port())
    };
    let addr: SocketAddr = format!("127.0.0.1:{}", free()?).parse()?;
    let health: Option<SocketAddr> = if has_health {
        Some(format!("127.0.0.1:{}", free()?).parse()?)
    } else {
        None
    };
    let mut cmd = Command::new(&server_bin);
    cmd.args(["--cert-mode", "provided", "--listen", &addr.to_string()])
        .arg("--cert-dir")
        .arg(&dir)
        .arg("--max-body-bytes")
        .arg(max_body.to_string())
        .args(&args.server_args);
    if let Some(h) = health {
        cmd.args(["--health-listen", &h.to_string()]);
    }
    let child = cmd
        .env("RUST_LOG", "error")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {}", server_bin.display()))?;
    let server = ChildServer {
        child,
        dir,
        grace: Duration::from_secs(25),
    };
    let pid = server.child.id();
    let killed_at = Arc::new(AtomicU64::new(0));
    {
        let killed_at = killed_at.clone();
        std::thread::spawn(move || {
            loop {
                let rss = status_kib(pid, "VmRSS:");
                if rss == 0 {
                    return; // gone
                }
                if rss > RSS_CAP_KIB {
                    killed_at.store(rss, Ordering::Relaxed);
                    if let Ok(pid) = i32::try_from(pid) {
                        let _ = nix::sys::signal::kill(
                            nix::unistd::Pid::from_raw(pid),
                            nix::sys::signal::Signal::SIGKILL,
                        );
                    }
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        });
    }
    let seed: Value = serde_json::from_str(SEED)?;
    let defaulted = emqx_crd::dynamic::default_object(&seed)?;
    let target = Target {
        addr,
        health,
        pid,
        h1: client_config(&bundle.ca_pem, b"http/1.1")?,
        h2: client_config(&bundle.ca_pem, b"h2")?,
        normal_body: Arc::new(admission(&defaulted, Some(&defaulted))),
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while !probe(&target).await {
        if Instant::now() > deadline {
            bail!("server not ready within 20 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "emqx-webhook attack bench: {} {} (pid {pid}) on {addr}, probes on {}; max body {max_body} bytes",
        server_bin.display(),
        args.server_args.join(" "),
        health.map_or("the TLS port".to_owned(), |h| h.to_string()),
    );
    println!(
        "per window: {} s, one normal request (fresh TLS + /validate UPDATE of the defaulted seed 003, {} bytes, {} JSON tokens) every {} ms, failed if not 200 within {} s; probe /readyz every 500 ms, {} s timeout",
        WINDOW.as_secs(),
        target.normal_body.len(),
        emqx_webhook::intake::json_tokens(&target.normal_body),
        NORMAL_EVERY.as_millis(),
        NORMAL_TIMEOUT.as_secs(),
        PROBE_TIMEOUT.as_secs()
    );
    println!();
    println!(
        "{:<34} {:>14}  {:>14}  {:>14}  {:>11}  {:>16}",
        "attack", "normal ok", "p50", "p99", "probes", "peak RSS"
    );

    if args.wanted("none") {
        let w = measure(&target, |end, _| {
            tokio::spawn(tokio::time::sleep_until(end.into()))
        })
        .await;
        report("none", &w);
    }

    if args.wanted("1100 idle TLS conns, ALPN h1") {
        let w = measure(&target, |end, opened| {
            flood(&target, 1100, end, opened, |t, src, _| async move {
                let mut tls = tls_from(src, t.addr, &t.h1).await?;
                until_closed(&mut tls).await;
                Ok(())
            })
        })
        .await;
        report("1100 idle TLS conns, ALPN h1", &w);
    }

    if args.wanted("1100 idle TLS conns, ALPN h2") {
        let w = measure(&target, |end, opened| {
            flood(&target, 1100, end, opened, |t, src, _| async move {
                let mut tls = tls_from(src, t.addr, &t.h2).await?;
                until_closed(&mut tls).await;
                Ok(())
            })
        })
        .await;
        report("1100 idle TLS conns, ALPN h2", &w);
    }

    if args.wanted("2000 idle TCP conns") {
        let w = measure(&target, |end, opened| {
            flood(&target, 2000, end, opened, |t, src, _| async move {
                let mut tcp = tcp_from(src, t.addr).await?;
                until_closed(&mut tcp).await;
                Ok(())
            })
        })
        .await;
        report("2000 idle TCP conns", &w);
    }

    if args.wanted("1100 slow-header conns") {
        let w = measure(&target, |end, opened| {
            flood(&target, 1100, end, opened, |t, src, end| async move {
                let mut tls = tls_from(src, t.addr, &t.h1).await?;
                tls.write_all(b"POST /validate HTTP/1.1\r\nHost: x\r\n")
                    .await?;
                // One header byte every 500 ms until the server gives up.
                while Instant::now() < end {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    tls.write_all(b"X").await?;
                }
                Ok(())
            })
        })
        .await;
        report("1100 slow-header conns", &w);
    }

    let by_tokens = worst_bodies_by_tokens(max_tokens);
    if args.wanted("worst bodies one at a time") {
        println!();
        println!("worst bodies (env: [{{}}, …]) at the limit, one at a time, peak RSS of each:");
        let bodies = worst_bodies(max_body);
        for (heading, set) in [
            ("at the byte limit", &bodies),
            ("at the JSON token limit", &by_tokens),
        ] {
            println!("  {heading}:");
            for (name, path, body) in set {
                reset_peak(pid);
                let before = status_kib(pid, "VmRSS:");
                let started = Instant::now();
                let status = tokio::time::timeout(
                    BODY_TIMEOUT,
                    post(&target, path, Bytes::from(body.clone())),
                )
                .await
                .unwrap_or_else(|_| Err(anyhow::anyhow!("no answer within {BODY_TIMEOUT:?}")));
                let peak = status_kib(pid, "VmHWM:");
                println!(
                    "  {name:<18} {:>8} bytes → {:<10} in {:>8.1} ms; RSS before {:>6} MiB, peak {:>6} MiB (+{:.0}× the body)",
                    body.len(),
                    match &status {
                        Ok(s) => format!("HTTP {s}"),
                        Err(_) => "no answer".to_owned(),
                    },
                    started.elapsed().as_secs_f64() * 1000.0,
                    mib(before),
                    mib(peak),
                    peak.saturating_sub(before) as f64 * 1024.0 / body.len() as f64,
                );
            }
        }
    }
    // The worst review that is answered (not refused): at the token limit.
    let big = Arc::new(
        by_tokens
            .iter()
            .find(|(n, _, _)| *n == "/convert")
            .map(|(_, _, b)| b.clone())
            .unwrap_or_default(),
    );
    if args.wanted("8 concurrent worst /convert") {
        let w = measure(&target, |end, opened| {
            posting(&target, 8, "/convert", big, end, opened)
        })
        .await;
        report("8 concurrent worst /convert", &w);
    }

    // Few values, many bytes: 3 MiB of `spec.config.data`, under the token
    // limit, so each is read whole (the body budget is what bounds them).
    let string_body = {
        let mut obj = worst_object_items(0);
        obj["spec"]["config"] = json!({"data": "x".repeat(max_body.saturating_sub(1024))});
        Arc::new(admission(&obj, None))
    };
    if args.wanted("8 concurrent 3 MiB string bodies") {
        let w = measure(&target, |end, opened| {
            posting(&target, 8, "/validate", string_body, end, opened)
        })
        .await;
        report("8 concurrent 3 MiB string bodies", &w);
    }
    let alive = matches!(
        std::fs::read_to_string(format!("/proc/{pid}/status")),
        Ok(s) if !s.contains("State:\tZ")
    );
    println!();
    let killed = killed_at.load(Ordering::Relaxed);
    if killed > 0 {
        println!(
            "server KILLED by the bench at RSS {} MiB (cap {} MiB)",
            mib(killed),
            mib(RSS_CAP_KIB)
        );
    }
    println!(
        "server still running: {alive}; RSS now {} MiB",
        mib(status_kib(pid, "VmRSS:"))
    );
    drop(server);
    Ok(())
}
