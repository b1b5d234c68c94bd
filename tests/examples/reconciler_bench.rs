//! Benchmarks of the real `emqx-reconciler` binary against the sandbox
//! (issue 6, item 7). Prints figures; asserts nothing.
//!
//! `cargo run --release -p sandbox --example reconciler_bench -- [--clusters 200] [--full]`
//!
//! The reconciler runs as a host process with the sandbox's admin
//! kubeconfig (leader election on, as deployed); the simulated EMQX nodes
//! live in this process (`EmqxHook`), so their memory is not the
//! reconciler's. In order:
//!
//! 1. **Upgrade wall time against its floor**: one cluster (2 cores and 400
//!    MQTT clients by default; `--full`: 3 cores, 3,000 clients), `kubectl
//!    patch ... imagePullPolicy`, timed to `Ready` on the new revision.
//!    Floor = `initialDelaySeconds` + Σ per old node (connections /
//!    `connEvictRate` + `waitTakeover` + sessions / `sessEvictRate`).
//! 2. **Resident memory** (VmRSS of the reconciler process) managing
//!    `--clusters` idle one-core clusters, sampled every second.
//! 3. **API writes per minute at steady state**: the API server's own
//!    `apiserver_request_total` counters (every verb but GET, LIST, WATCH)
//!    over `--window-seconds`, by verb and resource.
//! 4. **Spec change → new set created**: `--changes` clusters patched one
//!    after another; the time until a watch sees the new StatefulSet.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use emqx_crd::v2beta1::EMQX;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use kube::{Api, Client, ResourceExt};
use mqtt_load::{Endpoints, LoadConfig, MqttLoad};
use sandbox::operator::install_crds;
use sandbox::operator::project_binary;
use sandbox::seed_003::{listeners_endpoint, seed_003_manifest, update_revision};
use sandbox::{EmqxHook, Sandbox, SandboxOptions};
use serde_json::{Value, json};

const NS: &str = "default";

#[derive(Parser, Debug)]
struct Args {
    /// Idle clusters for the memory and steady-state write figures.
    #[arg(long, default_value_t = 200)]
    clusters: usize,
    /// Steady-state window for counting writes (≥ 60 s).
    #[arg(long, default_value_t = 60)]
    window_seconds: u64,
    /// Spec changes timed to their new set.
    #[arg(long, default_value_t = 20)]
    changes: usize,
    /// The full upgrade run: 3 cores, 3,000 clients.
    #[arg(long)]
    full: bool,
    /// Skip the upgrade part.
    #[arg(long)]
    skip_upgrade: bool,
    /// `connEvictRate` and `sessEvictRate` of the upgraded cluster.
    #[arg(long, default_value_t = 100)]
    evict_rate: u32,
    /// `waitTakeover` of the upgraded cluster.
    #[arg(long, default_value_t = 5)]
    wait_takeover: u32,
    /// `initialDelaySeconds` of the upgraded cluster.
    #[arg(long, default_value_t = 10)]
    initial_delay: u32,
}

/// The reconciler binary as a child process, ended by its pid.
struct Reconciler {
    child: Child,
    metrics: String,
    log: std::path::PathBuf,
}

impl Drop for Reconciler {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Reconciler {
    fn start(binary: &Path, sandbox: &Sandbox) -> Result<Reconciler> {
        let port = project_binary::free_port()?;
        let log_dir = sandbox
            .state_dir()
            .map_or_else(std::env::temp_dir, |d| d.join("logs"));
        std::fs::create_dir_all(&log_dir)?;
        let log_path = log_dir.join("emqx-reconciler.log");
        let log = std::fs::File::create(&log_path)?;
        let child = Command::new(binary)
            .env("KUBECONFIG", sandbox.kubeconfig())
            .env("RUST_LOG", "warn")
            .args([
                "--metrics-addr",
                &format!("127.0.0.1:{port}"),
                "--watch-namespace",
                NS,
                "--lease-namespace",
                NS,
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
        Ok(Reconciler {
            child,
            metrics: format!("http://127.0.0.1:{port}/metrics"),
            log: log_path,
        })
    }

    fn rss_kib(&self) -> Option<u64> {
        sandbox::control_plane::process::rss_kib(self.child.id())
    }

    async fn reconciles(&self) -> Option<f64> {
        let text = reqwest::get(&self.metrics).await.ok()?.text().await.ok()?;
        text.lines()
            .filter(|l| l.starts_with("emqx_reconciler_reconciles_total"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .reduce(|a, b| a + b)
    }
}

fn cluster_manifest(name: &str, cores: u32, strategy: Value) -> Result<EMQX> {
    let mut object = seed_003_manifest()?;
    json_patch::merge(
        &mut object,
        &json!({
            "metadata": {"name": name, "namespace": NS},
            "spec": {
                "updateStrategy": strategy,
                "coreTemplate": {"spec": {
                    "replicas": cores,
                    "readinessProbe": {"httpGet": {"path": "/status", "port": "dashboard"}, "periodSeconds": 1, "failureThreshold": 3}
                }}
            }
        }),
    );
    Ok(serde_json::from_value(object)?)
}

fn is_ready(emqx: &EMQX) -> bool {
    emqx.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

async fn wait_ready(
    api: &Api<EMQX>,
    name: &str,
    not_revision: Option<&str>,
    limit: Duration,
) -> Result<()> {
    let deadline = Instant::now() + limit;
    loop {
        if let Ok(emqx) = api.get(name).await {
            let revision = update_revision(&emqx);
            if is_ready(&emqx) && revision.is_some() && revision.as_deref() != not_revision {
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            bail!("{name} not Ready within {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn median(v: &mut [f64]) -> f64 {
    percentile(v, 0.5)
}

/// Nearest-rank percentile.
fn percentile(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let rank = (p * v.len() as f64).ceil().max(1.0) as usize;
    v[rank.min(v.len()) - 1]
}

/// `apiserver_request_total` summed by (verb, resource[/subresource]) for
/// every write verb.
async fn write_counts(client: &Client) -> Result<BTreeMap<(String, String), f64>> {
    let request = http::Request::get("/metrics").body(Vec::new())?;
    let text = client.request_text(request).await?;
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("apiserver_request_total{") else {
            continue;
        };
        let Some((labels, value)) = rest.rsplit_once("} ") else {
            continue;
        };
        let labels = parse_labels(labels);
        let verb = labels.get("verb").cloned().unwrap_or_default();
        if matches!(verb.as_str(), "GET" | "LIST" | "WATCH" | "CONNECT") {
            continue;
        }
        let mut resource = labels.get("resource").cloned().unwrap_or_default();
        if let Some(sub) = labels.get("subresource").filter(|s| !s.is_empty()) {
            resource = format!("{resource}/{sub}");
        }
        let value: f64 = value.trim().parse().unwrap_or(0.0);
        *out.entry((verb, resource)).or_insert(0.0) += value;
    }
    Ok(out)
}

fn parse_labels(s: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let mut rest = s;
    while let Some((key, after)) = rest.split_once("=\"") {
        let mut value = String::new();
        let mut chars = after.char_indices();
        let mut end = after.len();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => {
                    if let Some((_, n)) = chars.next() {
                        value.push(n);
                    }
                }
                '"' => {
                    end = i + 1;
                    break;
                }
                c => value.push(c),
            }
        }
        out.insert(key.trim_start_matches(',').to_owned(), value);
        rest = &after[end..];
    }
    out
}

async fn upgrade_part(args: &Args, sandbox: &Sandbox, hook: &Arc<EmqxHook>) -> Result<()> {
    let (cores, clients) = if args.full { (3, 3000) } else { (2, 400) };
    let client = sandbox.client();
    let api: Api<EMQX> = Api::namespaced(client.clone(), NS);
    let name = "upgrade";
    let object = cluster_manifest(
        name,
        cores,
        json!({
            "type": "Recreate",
            "initialDelaySeconds": args.initial_delay,
            "evacuationStrategy": {"waitTakeover": args.wait_takeover, "connEvictRate": args.evict_rate, "sessEvictRate": args.evict_rate}
        }),
    )?;
    api.create(&PostParams::default(), &object).await?;
    wait_ready(&api, name, None, Duration::from_secs(300)).await?;
    let old_revision = update_revision(&api.get(name).await?).context("a revision")?;
    let old_nodes: BTreeSet<String> = hook
        .nodes()
        .into_iter()
        .filter(|(pod, _)| pod.starts_with(&format!("{NS}/{name}-core-")))
        .map(|(_, n)| n.node_name)
        .collect();
    let cluster = hook
        .nodes()
        .into_values()
        .find(|n| old_nodes.contains(&n.node_name))
        .context("a node of the upgraded cluster")?
        .cluster;
    let service = Endpoints::new(vec![listeners_endpoint(&client, NS, name).await?]);
    let load = MqttLoad::start(
        LoadConfig {
            clients,
            connect_rate: 500,
            publish_interval: Duration::from_secs(5),
            max_duration: Duration::from_secs(900),
            ..LoadConfig::default()
        },
        service.clone(),
        service,
        cluster.clone(),
    );
    if !load.wait_all_subscribed(Duration::from_secs(120)).await {
        bail!("clients did not connect: {:?}", load.progress());
    }
    let per_node = cluster.live_connections_by_node();
    let rate = f64::from(args.evict_rate);
    let floor = f64::from(args.initial_delay)
        + old_nodes
            .iter()
            .map(|n| {
                let c = per_node.get(n).copied().unwrap_or(0) as f64;
                // Every client holds a persistent session: sessions = connections.
                c / rate + f64::from(args.wait_takeover) + c / rate
            })
            .sum::<f64>();

    // Watch for the moment every new pod is ready (the floor starts there).
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    let started = Instant::now();
    api.patch(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"imagePullPolicy": "Never"}})),
    )
    .await?;
    let mut new_ready_at = None;
    let deadline = started + Duration::from_secs(900);
    loop {
        if new_ready_at.is_none() {
            let list = pods
                .list(&ListParams::default().labels(&format!("apps.emqx.io/instance={name}")))
                .await?;
            let ready_new = list
                .items
                .iter()
                .filter(|p| !p.name_any().contains(&old_revision))
                .filter(|p| {
                    p.status
                        .as_ref()
                        .and_then(|s| s.conditions.as_ref())
                        .is_some_and(|cs| {
                            cs.iter().any(|c| c.type_ == "Ready" && c.status == "True")
                        })
                })
                .count();
            if ready_new >= cores as usize {
                new_ready_at = Some(started.elapsed());
            }
        }
        let emqx = api.get(name).await?;
        if is_ready(&emqx) && update_revision(&emqx).is_some_and(|r| r != old_revision) {
            break;
        }
        if Instant::now() > deadline {
            bail!("upgrade not finished within 900 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let total = started.elapsed().as_secs_f64();
    let report = load.finish(Duration::from_secs(10)).await;
    let summary = mqtt_load::recorder::Summary::of(&report);
    let from_ready = new_ready_at.map(|t| total - t.as_secs_f64());
    println!(
        "== upgrade wall time ({cores} cores, {clients} clients, connEvictRate=sessEvictRate={}, waitTakeover={}, initialDelaySeconds={})",
        args.evict_rate, args.wait_takeover, args.initial_delay
    );
    println!("connections per old node at the patch: {per_node:?}");
    println!("floor: {floor:.1} s");
    println!("patch -> Ready: {total:.1} s ({:.2}x floor)", total / floor);
    if let Some(t) = from_ready {
        println!(
            "new nodes ready -> Ready: {t:.1} s ({:.2}x floor; new pods ready {:.1} s after the patch)",
            t / floor,
            total - t
        );
    }
    println!("clients: {summary}");
    Ok(())
}

async fn idle_clusters(args: &Args, sandbox: &Sandbox) -> Result<Vec<String>> {
    let api: Api<EMQX> = Api::namespaced(sandbox.client(), NS);
    let names: Vec<String> = (0..args.clusters).map(|i| format!("idle-{i:03}")).collect();
    let started = Instant::now();
    for name in &names {
        let mut object = cluster_manifest(
            name,
            1,
            json!({"type": "Recreate", "initialDelaySeconds": 0,
                   "evacuationStrategy": {"waitTakeover": 0, "connEvictRate": 1000, "sessEvictRate": 1000}}),
        )?;
        // The sandbox's ClusterIP range is a /24: 200 listeners Services fit,
        // 200 more dashboard Services would not (their creation would fail
        // and be retried every pass, which is not an idle cluster).
        object.spec.dashboard_service_template =
            Some(serde_json::from_value(json!({"enabled": false}))?);
        api.create(&PostParams::default(), &object).await?;
    }
    let deadline = started + Duration::from_secs(1800);
    loop {
        let list = api.list(&ListParams::default()).await?;
        let ready = list
            .items
            .iter()
            .filter(|e| e.name_any().starts_with("idle-") && is_ready(e))
            .count();
        if ready == names.len() {
            break;
        }
        if Instant::now() > deadline {
            bail!(
                "only {ready}/{} idle clusters Ready after 30 min",
                names.len()
            );
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    println!(
        "== {} idle clusters Ready {:.1} s after their creation",
        names.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(names)
}

async fn memory_part(reconciler: &Reconciler, clusters: usize) -> Result<()> {
    // Let the first passes' allocations settle.
    tokio::time::sleep(Duration::from_secs(30)).await;
    let mut samples = Vec::new();
    for _ in 0..30 {
        if let Some(kib) = reconciler.rss_kib() {
            samples.push(kib as f64 / 1024.0);
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let max = samples.iter().copied().fold(0.0, f64::max);
    println!(
        "== resident memory of emqx-reconciler managing {clusters} idle clusters: median {:.1} MiB, max {max:.1} MiB ({} samples, 1 s apart)",
        median(&mut samples),
        samples.len()
    );
    Ok(())
}

async fn writes_part(args: &Args, sandbox: &Sandbox, reconciler: &Reconciler) -> Result<()> {
    let client = sandbox.client();
    let window = Duration::from_secs(args.window_seconds.max(60));
    let before = write_counts(&client).await?;
    let passes_before = reconciler.reconciles().await.unwrap_or(0.0);
    tokio::time::sleep(window).await;
    let after = write_counts(&client).await?;
    let passes = reconciler.reconciles().await.unwrap_or(0.0) - passes_before;
    let minutes = window.as_secs_f64() / 60.0;
    println!(
        "== API writes at steady state over {:.0} s ({passes:.0} reconcile passes in the window):",
        window.as_secs_f64()
    );
    let (mut total, mut leases) = (0.0, 0.0);
    for (key, value) in &after {
        let delta = value - before.get(key).copied().unwrap_or(0.0);
        if delta > 0.0 {
            println!("  {:>7} {:<40} {delta:.0}", key.0, key.1);
            if key.1.starts_with("leases") {
                leases += delta;
            } else {
                total += delta;
            }
        }
    }
    println!(
        "writes per minute, all writers, Leases excluded: {:.1}; Lease writes per minute (leader election renewals, the simulated node's heartbeat): {:.1}",
        total / minutes,
        leases / minutes
    );
    // What the reconciler warned about (it runs with RUST_LOG=warn).
    let log = std::fs::read_to_string(&reconciler.log).unwrap_or_default();
    let warnings: Vec<&str> = log.lines().collect();
    println!("reconciler log: {} warning lines; last 10:", warnings.len());
    for line in warnings.iter().rev().take(10).rev() {
        println!("  {}", line.chars().take(400).collect::<String>());
    }
    Ok(())
}

async fn create_latency_part(args: &Args, sandbox: &Sandbox, names: &[String]) -> Result<()> {
    let client = sandbox.client();
    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), NS);
    let api: Api<EMQX> = Api::namespaced(client.clone(), NS);
    let seen: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let watch = {
        let seen = seen.clone();
        let stream = watcher(
            sets.clone(),
            watcher::Config::default().labels("apps.emqx.io/instance"),
        );
        tokio::spawn(async move {
            let mut stream = std::pin::pin!(stream);
            while let Some(event) = stream.next().await {
                let objects = match event {
                    Ok(watcher::Event::Apply(o) | watcher::Event::InitApply(o)) => vec![o],
                    _ => continue,
                };
                let mut seen = seen
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                for o in objects {
                    seen.entry(o.name_any()).or_insert_with(Instant::now);
                }
            }
        })
    };
    // The watch lists what exists first.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut latencies = Vec::new();
    for name in names.iter().take(args.changes) {
        let prefix = format!("{name}-core-");
        let before: BTreeSet<String> = sets
            .list(&ListParams::default().labels(&format!("apps.emqx.io/instance={name}")))
            .await?
            .items
            .iter()
            .map(ResourceExt::name_any)
            .collect();
        let t0 = Instant::now();
        api.patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"imagePullPolicy": "Never"}})),
        )
        .await?;
        let deadline = t0 + Duration::from_secs(60);
        let created = loop {
            let found = seen
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .iter()
                .find(|(n, _)| n.starts_with(&prefix) && !before.contains(*n))
                .map(|(_, at)| *at);
            if let Some(at) = found {
                break at;
            }
            if Instant::now() > deadline {
                bail!("no new set for {name} within 60 s");
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        };
        latencies.push(created.saturating_duration_since(t0).as_secs_f64() * 1000.0);
    }
    watch.abort();
    let n = latencies.len();
    let p50 = percentile(&mut latencies, 0.5);
    let p99 = percentile(&mut latencies, 0.99);
    println!(
        "== spec change -> new StatefulSet seen by a watch, over {n} changes: p50 {p50:.0} ms, p99 {p99:.0} ms (all: {:?})",
        latencies
            .iter()
            .map(|l| l.round() as i64)
            .collect::<Vec<_>>()
    );
    Ok(())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 4)]
async fn main() -> Result<()> {
    let args = Args::parse();
    let binary = tokio::task::spawn_blocking(|| {
        project_binary::build_operator_binaries().map(|b| b.reconciler)
    })
    .await??;
    let hook = EmqxHook::new();
    let sandbox = Sandbox::start(SandboxOptions::default().hook(hook.clone())).await?;
    let result = async {
        install_crds(&sandbox.client()).await?;
        let reconciler = Reconciler::start(&binary, &sandbox)?;
        println!(
            "reconciler: {} (pid {})",
            binary.display(),
            reconciler.child.id()
        );
        if !args.skip_upgrade {
            upgrade_part(&args, &sandbox, &hook).await?;
        }
        let names = idle_clusters(&args, &sandbox).await?;
        memory_part(&reconciler, args.clusters).await?;
        writes_part(&args, &sandbox, &reconciler).await?;
        create_latency_part(&args, &sandbox, &names).await?;
        anyhow::Ok(())
    }
    .await;
    sandbox.stop().await?;
    result
}
