//! `webhook-bench`: starts `emqx-webhook` as its own process on 127.0.0.1
//! with a self-signed certificate and drives it over TLS with keep-alive.
//! Prints p50/p99 latency and requests/s for mutate, validate and convert of
//! the seed objects at concurrency 1 and 8, the latency of a request on a
//! fresh TLS connection, and the server's RSS idle and after the load.
//!
//! Run: `cargo build --release -p emqx-webhook --bins && target/release/webhook-bench`
//! (the server binary must sit next to this one). Every loop is bounded in
//! count and time; the server is stopped with SIGTERM at the end.

mod bench_support;

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context as _, bail};
use axum::http::Request;
use bench_support::ChildServer;
use emqx_certs::{ServiceIdentity, authority, store};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};

const SEEDS: [&str; 4] = [
    include_str!("../../tests/fixtures/emqx-v2beta1-seed003.json"),
    include_str!("../../tests/fixtures/emqx-v2alpha2-seed001.json"),
    include_str!("../../tests/fixtures/emqxenterprise-v1beta4-seed000.json"),
    include_str!("../../tests/fixtures/emqxenterprise-v1beta4-seed001.json"),
];
const HOST: &str = "emqx-webhook.bench.svc";
/// Requests per (endpoint, concurrency) run; 6 runs ≥ 100,000 requests.
const REQUESTS_PER_RUN: usize = 20_000;
/// A run stops after this long even if it has not sent its count.
const RUN_TIME_LIMIT: Duration = Duration::from_secs(30);
const FRESH_CONNECTIONS: usize = 200;

fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    bench_support::status_kib(pid, "VmRSS:").context("VmRSS not found")
}

fn admission(obj: &Value, old: Option<&Value>) -> Vec<u8> {
    let api_version = obj["apiVersion"].as_str().unwrap_or_default();
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    let kind = obj["kind"].as_str().unwrap_or_default();
    let resource = if kind == "EMQX" {
        "emqxes"
    } else {
        "emqxenterprises"
    };
    let operation = if old.is_some() { "UPDATE" } else { "CREATE" };
    serde_json::to_vec(&json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
            "kind": {"group": group, "version": version, "kind": kind},
            "resource": {"group": group, "version": version, "resource": resource},
            "name": obj.pointer("/metadata/name"), "namespace": obj.pointer("/metadata/namespace"),
            "operation": operation,
            "userInfo": {"username": "kubernetes-admin", "groups": ["system:masters", "system:authenticated"]},
            "object": obj, "oldObject": old, "dryRun": false
        }
    }))
    .unwrap_or_default()
}

fn conversion(desired: &str, obj: &Value) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "ConversionReview",
        "request": {"uid": "705ab4f5-6393-11e8-b7cc-42010a800003", "desiredAPIVersion": desired, "objects": [obj]}
    }))
    .unwrap_or_default()
}

/// An endpoint and the request bodies sent to it in turn.
type Workload = (&'static str, Vec<Vec<u8>>);

/// The request bodies per endpoint: every seed, as the API server sends them.
fn workloads() -> anyhow::Result<Vec<Workload>> {
    let seeds = SEEDS
        .iter()
        .map(|s| serde_json::from_str::<Value>(s))
        .collect::<Result<Vec<_>, _>>()?;
    let defaulted = seeds
        .iter()
        .map(emqx_crd::dynamic::default_object)
        .collect::<Result<Vec<_>, _>>()?;
    let mutate = seeds.iter().map(|o| admission(o, None)).collect();
    let validate = defaulted.iter().map(|o| admission(o, Some(o))).collect();
    let convert = defaulted
        .iter()
        .map(|o| {
            let target = match o["apiVersion"].as_str() {
                Some("apps.emqx.io/v1beta4") | Some("apps.emqx.io/v2alpha2") => {
                    "apps.emqx.io/v2beta1"
                }
                _ if o["kind"] == "EMQX" => "apps.emqx.io/v2alpha2",
                _ => "apps.emqx.io/v1beta4",
            };
            conversion(target, o)
        })
        .collect();
    Ok(vec![
        ("/mutate", mutate),
        ("/validate", validate),
        ("/convert", convert),
    ])
}

fn client_config(ca_pem: &str) -> anyhow::Result<Arc<rustls::ClientConfig>> {
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
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

async fn connect(addr: SocketAddr, tls: &Arc<rustls::ClientConfig>) -> anyhow::Result<Sender> {
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let name = rustls::pki_types::ServerName::try_from(HOST)?;
    let stream = tokio_rustls::TlsConnector::from(tls.clone())
        .connect(name, tcp)
        .await?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    Ok(sender)
}

async fn post(sender: &mut Sender, path: &str, body: &[u8]) -> anyhow::Result<()> {
    sender.ready().await?;
    let req = Request::post(path)
        .header("host", HOST)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::copy_from_slice(body)))?;
    let resp = sender.send_request(req).await?;
    let status = resp.status();
    let body = resp.into_body().collect().await?.to_bytes();
    if status != 200 {
        bail!("{path}: HTTP {status}: {}", String::from_utf8_lossy(&body));
    }
    Ok(())
}

struct RunResult {
    latencies: Vec<Duration>,
    elapsed: Duration,
}

async fn run(
    addr: SocketAddr,
    tls: &Arc<rustls::ClientConfig>,
    path: &'static str,
    bodies: Arc<Vec<Vec<u8>>>,
    concurrency: usize,
    total: usize,
) -> anyhow::Result<RunResult> {
    let per_worker = total / concurrency;
    let started = Instant::now();
    let mut workers = Vec::new();
    for w in 0..concurrency {
        let mut sender = connect(addr, tls).await?;
        let bodies = bodies.clone();
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(per_worker);
            for i in 0..per_worker {
                if started.elapsed() > RUN_TIME_LIMIT {
                    break;
                }
                let body = &bodies[(i + w) % bodies.len()];
                let t = Instant::now();
                post(&mut sender, path, body).await?;
                latencies.push(t.elapsed());
            }
            anyhow::Ok(latencies)
        }));
    }
    let mut latencies = Vec::with_capacity(total);
    for w in workers {
        latencies.extend(w.await??);
    }
    Ok(RunResult {
        latencies,
        elapsed: started.elapsed(),
    })
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64() * 1000.0)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let server_bin = std::env::current_exe()?
        .parent()
        .map(|d| d.join("emqx-webhook"))
        .context("no directory for the server binary")?;
    if !server_bin.exists() {
        bail!(
            "{} not found; build it first: cargo build --release -p emqx-webhook --bins",
            server_bin.display()
        );
    }
    let identity = ServiceIdentity {
        service: "emqx-webhook".into(),
        namespace: "bench".into(),
        cluster_domain: "cluster.local".into(),
        extra_names: Vec::new(),
    };
    let bundle = authority::new_bundle(&identity, SystemTime::now(), None)?;
    let dir = std::env::temp_dir().join(format!("webhook-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    store::write_dir(&dir, &bundle)?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse()?;
    let child = Command::new(&server_bin)
        .args(["--cert-mode", "provided", "--listen", &addr.to_string()])
        .arg("--cert-dir")
        .arg(&dir)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("starting {}", server_bin.display()))?;
    let server = ChildServer {
        child,
        dir,
        grace: Duration::from_secs(10),
    };
    let pid = server.child.id();
    let tls = client_config(&bundle.ca_pem)?;

    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(mut s) = connect(addr, &tls).await {
            let req = Request::get("/readyz")
                .header("host", HOST)
                .body(Full::new(Bytes::new()))?;
            if s.send_request(req).await.is_ok_and(|r| r.status() == 200) {
                break;
            }
        }
        if Instant::now() > deadline {
            bail!("server not ready within 20 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_idle = rss_kib(pid)?;

    println!("emqx-webhook benchmark: server pid {pid} on {addr}, TLS 1.3, HTTP/1.1 keep-alive");
    println!(
        "client and server share this machine's {} cores",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!();
    println!(
        "{:<10} {:>4} {:>9} {:>10} {:>10} {:>10}",
        "endpoint", "conc", "requests", "p50 ms", "p99 ms", "req/s"
    );
    let mut total_requests = 0usize;
    // One request per body first: what emqx-crd builds on first use (its CRD
    // schemas, for defaulting) shows up here, not as growth under load.
    let mut first = connect(addr, &tls).await?;
    for (path, bodies) in workloads()? {
        for body in &bodies {
            post(&mut first, path, body).await?;
            total_requests += 1;
        }
    }
    drop(first);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rss_first = rss_kib(pid)?;
    for (path, bodies) in workloads()? {
        let bodies = Arc::new(bodies);
        // Warm-up: connections, allocator, caches.
        run(addr, &tls, path, bodies.clone(), 1, 500).await?;
        total_requests += 500;
        for concurrency in [1usize, 8] {
            let r = run(
                addr,
                &tls,
                path,
                bodies.clone(),
                concurrency,
                REQUESTS_PER_RUN,
            )
            .await?;
            let mut lat = r.latencies;
            lat.sort_unstable();
            total_requests += lat.len();
            println!(
                "{:<10} {:>4} {:>9} {:>10} {:>10} {:>10.0}",
                path,
                concurrency,
                lat.len(),
                ms(percentile(&lat, 0.50)),
                ms(percentile(&lat, 0.99)),
                lat.len() as f64 / r.elapsed.as_secs_f64()
            );
        }
    }

    let validate_body = workloads()?
        .into_iter()
        .find(|(p, _)| *p == "/validate")
        .and_then(|(_, b)| b.into_iter().next())
        .context("no validate body")?;
    let mut fresh = Vec::with_capacity(FRESH_CONNECTIONS);
    for _ in 0..FRESH_CONNECTIONS {
        let t = Instant::now();
        let mut s = connect(addr, &tls).await?;
        post(&mut s, "/validate", &validate_body).await?;
        fresh.push(t.elapsed());
        total_requests += 1;
    }
    fresh.sort_unstable();
    println!();
    println!(
        "fresh TLS connection + one /validate: median {} ms, p99 {} ms (n={FRESH_CONNECTIONS})",
        ms(percentile(&fresh, 0.5)),
        ms(percentile(&fresh, 0.99))
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_after = rss_kib(pid)?;
    println!(
        "server RSS: idle {:.1} MiB, after one request per seed and endpoint {:.1} MiB, after {total_requests} requests {:.1} MiB",
        rss_idle as f64 / 1024.0,
        rss_first as f64 / 1024.0,
        rss_after as f64 / 1024.0
    );
    drop(server);
    Ok(())
}
