//! Benchmarks of the real `emqx-reconciler` binary against the sandbox
//! (issue 6, item 7; issue 16, item 2). Prints figures; asserts nothing.
//!
//! `cargo run --release -p sandbox --example reconciler_bench -- [--clusters 200] [--only-scale | --only-upgrade] [--runs N] [--full] [--reconciler-arg=--worker-threads=64 ...]`
//!
//! The reconciler runs as a host process with leader election on and an
//! operator key (no Secret read back), as the chart deploys it, logged in
//! as its own ServiceAccount (cluster-admin) so that
//! the apiserver's audit log tells its requests from the sandbox's (the
//! kubelet, the service proxy and this program use the admin certificate).
//! The simulated EMQX nodes live in this process (`EmqxHook`), so their
//! memory is not the reconciler's. In order:
//!
//! 1. **Upgrade wall time against its floor** (skipped with `--only-scale`;
//!    `--only-upgrade` runs nothing else): one cluster (2 cores and 400
//!    MQTT clients by default; `--full`: 3 cores, 3,000 clients),
//!    `kubectl patch ... imagePullPolicy`, timed to `Ready` on the new
//!    revision, `--runs` times (a fresh cluster each; medians). Printed
//!    with a **per-phase breakdown** from watchers on the object, its pods
//!    and its listeners Service, a 10 ms sampler of EMQX's member list and
//!    the simulator's evacuation history
//!    ([`sandbox::upgrade_timeline`]): patch → new pods created → Ready →
//!    joined → Service switch, then per old node: evacuation start after
//!    the switch or the previous node's departure, connection eviction,
//!    takeover wait, session eviction, `prohibiting` → pod deleted → pod
//!    gone → node left EMQX's list, and → `Ready`.
//!
//!    The **floor** is the time Kubernetes and EMQX need whatever the
//!    operator does: pod start and readiness probe (as measured; the
//!    operator has no part in them), `initialDelaySeconds`, and per old node
//!    ⌈connections / `connEvictRate`⌉ + `waitTakeover` + ⌈sessions /
//!    `sessEvictRate`⌉ (EMQX evicts a batch every second and moves on at the
//!    first tick that finds none left, so 201 connections at 100/s take
//!    3 s) and pod termination (as measured). Every other phase is the
//!    operator's, with floor 0. Sessions are those EMQX migrated: clients
//!    that reconnect take their sessions over themselves, so this is about
//!    0. Also printed: the older floor of EMQX's figures alone
//!    (`initialDelaySeconds` + Σ connections / rate + `waitTakeover` +
//!    sessions at the patch / rate, counting every session).
//!    `--guard-compare N` runs that upgrade `N` times with the upgrade guard
//!    on and `N` times off (alternating, a fresh cluster each), prints both
//!    medians of "new nodes ready → Ready" side by side and their ratio
//!    (issue #15 item 6: on ≤ 1.02 × off), then stops.
//! 2. **`--clusters` idle one-core clusters created → all Ready**, each
//!    with its listeners, dashboard and headless Services.
//! 3. **Resident memory** (VmRSS of the reconciler process), sampled every
//!    second, median; with jemalloc's own account of it from `/metrics`
//!    (`emqx_reconciler_heap_bytes`: live, their pages, metadata, resident).
//! 4. **Steady state** over `--window-seconds`: the reconciler's CPU
//!    seconds per minute (`/proc/<pid>/stat` utime + stime); its API
//!    requests per minute by verb, reads and watches included (the audit
//!    log's events of its user); EMQX REST calls per minute per cluster
//!    (the simulated nodes' counters of management API calls; readiness
//!    probes are not calls); writes per minute of every writer
//!    (`apiserver_request_total`).
//! 5. **Spec change → new set**: `--changes` clusters patched one after
//!    another, each while every other cluster is idle (the previous one is
//!    Ready on its new revision first); the time until a watch sees the
//!    new StatefulSet, and until the cluster is Ready on it.
//!
//! The steady-state EMQX polling is one pass per Ready cluster every
//! `--resync-seconds` of the reconciler (default 30; chart value
//! `reconciler.resyncSeconds`), two REST calls a pass (`nodes`,
//! `load_rebalance/global_status`).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
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
use sandbox::bench_cluster::{cluster_manifest, is_ready, wait_ready};
use sandbox::control_plane::audit;
use sandbox::control_plane::process;
use sandbox::metrics_page::{apiserver_page, median, percentile, sum, sums_by};
use sandbox::operator::install_crds;
use sandbox::operator::reconciler_process::{ReconcilerProcess, bench_sandbox};
use sandbox::operator::service_account_login::{cluster_admin_login, service_account_user};
use sandbox::seed_003::{listeners_endpoint, update_revision};
use sandbox::upgrade_breakdown::{Phase, breakdown, median_phases, print_breakdown};
use sandbox::upgrade_timeline::UpgradeTimeline;
use sandbox::{EmqxHook, Sandbox};
use serde_json::json;

const NS: &str = "default";

/// The reconciler's ServiceAccount (in [`NS`]).
const ACCOUNT: &str = "emqx-reconciler-bench";

#[derive(Parser, Debug)]
struct Args {
    /// Idle clusters for the memory and steady-state figures.
    #[arg(long, default_value_t = 200)]
    clusters: usize,
    /// Steady-state window (≥ 60 s; at least two resync intervals make the
    /// per-minute figures whole passes).
    #[arg(long, default_value_t = 120)]
    window_seconds: u64,
    /// Spec changes timed to their new set (each waits for the cluster's
    /// upgrade to finish, about a minute, before the next).
    #[arg(long, default_value_t = 5)]
    changes: usize,
    /// The full upgrade run: 3 cores, 3,000 clients.
    #[arg(long)]
    full: bool,
    /// Only the scale figures: skip the upgrade part.
    #[arg(long, alias = "skip-upgrade", conflicts_with = "only_upgrade")]
    only_scale: bool,
    /// Only the upgrade part (its breakdown): skip the scale figures.
    #[arg(long)]
    only_upgrade: bool,
    /// Upgrades in the upgrade part, each of a fresh cluster; with more
    /// than one, the breakdown's medians phase by phase.
    #[arg(long, default_value_t = 1)]
    runs: usize,
    /// The reconciler's `--resync-seconds` (its default when not given).
    #[arg(long)]
    resync_seconds: Option<u64>,
    /// `connEvictRate` and `sessEvictRate` of the upgraded cluster.
    #[arg(long, default_value_t = 100)]
    evict_rate: u32,
    /// `waitTakeover` of the upgraded cluster.
    #[arg(long, default_value_t = 5)]
    wait_takeover: u32,
    /// `initialDelaySeconds` of the upgraded cluster.
    #[arg(long, default_value_t = 10)]
    initial_delay: u32,
    /// Upgrade guard on vs off: this many upgrades each, medians side by
    /// side; nothing else runs.
    #[arg(long)]
    guard_compare: Option<usize>,
    /// An argument for the reconciler (repeatable), e.g.
    /// `--reconciler-arg=--worker-threads=64`.
    #[arg(long, allow_hyphen_values = true)]
    reconciler_arg: Vec<String>,
}

/// The reconciler's `/metrics` page.
async fn metrics_text(reconciler: &ReconcilerProcess) -> Option<String> {
    reqwest::get(&reconciler.metrics)
        .await
        .ok()?
        .text()
        .await
        .ok()
}

/// The reconciler's `emqx_reconciler_reconciles_total`, summed.
async fn reconciles(reconciler: &ReconcilerProcess) -> Option<f64> {
    let text = metrics_text(reconciler).await?;
    Some(sum(&text, "emqx_reconciler_reconciles_total"))
}

/// `emqx_reconciler_pass_slot_wait_seconds`: (sum, count) by lane.
async fn slot_waits(reconciler: &ReconcilerProcess) -> BTreeMap<String, (f64, f64)> {
    let Some(text) = metrics_text(reconciler).await else {
        return BTreeMap::new();
    };
    let series = "emqx_reconciler_pass_slot_wait_seconds";
    let counts = sums_by(&text, &format!("{series}_count"), &["lane"]);
    sums_by(&text, &format!("{series}_sum"), &["lane"])
        .into_iter()
        .map(|(key, seconds)| {
            let count = counts.get(&key).copied().unwrap_or(0.0);
            (key.concat(), (seconds, count))
        })
        .collect()
}

/// `apiserver_request_total` summed by (verb, resource[/subresource]) for
/// every write verb.
async fn write_counts(client: &Client) -> Result<BTreeMap<(String, String), f64>> {
    let text = apiserver_page(client).await?;
    let mut out = BTreeMap::new();
    let by = sums_by(
        &text,
        "apiserver_request_total",
        &["verb", "resource", "subresource"],
    );
    for (key, value) in by {
        let [verb, resource, sub] = <[String; 3]>::try_from(key).unwrap_or_default();
        if matches!(verb.as_str(), "GET" | "LIST" | "WATCH" | "CONNECT") {
            continue;
        }
        let resource = if sub.is_empty() {
            resource
        } else {
            format!("{resource}/{sub}")
        };
        *out.entry((verb, resource)).or_insert(0.0) += value;
    }
    Ok(out)
}

/// `--guard-compare N`: N good upgrades with the guard on and N with it
/// off, alternating; the medians of "new nodes ready → Ready".
async fn guard_compare(
    args: &Args,
    sandbox: &Sandbox,
    hook: &Arc<EmqxHook>,
    n: usize,
) -> Result<()> {
    let (mut on, mut off) = (Vec::new(), Vec::new());
    for i in 0..n {
        for guard in [true, false] {
            let name = format!("up-{}-{i}", if guard { "on" } else { "off" });
            let run = upgrade_once(args, sandbox, hook, &name, guard).await?;
            let t = run.from_ready.unwrap_or(run.total);
            if guard {
                on.push(t)
            } else {
                off.push(t)
            }
            let api: Api<EMQX> = Api::namespaced(sandbox.client(), NS);
            api.delete(&name, &Default::default()).await?;
        }
    }
    let (m_on, m_off) = (median(&on), median(&off));
    println!("== upgrade guard on vs off ({n} upgrades each; new nodes ready -> Ready, s)");
    println!("guard on : {on:.1?} median {m_on:.2}");
    println!("guard off: {off:.1?} median {m_off:.2}");
    println!("ratio on/off: {:.4}", m_on / m_off);
    Ok(())
}

async fn upgrade_part(args: &Args, sandbox: &Sandbox, hook: &Arc<EmqxHook>) -> Result<()> {
    let runs = args.runs.max(1);
    let mut all = Vec::new();
    for i in 0..runs {
        let name = if runs == 1 {
            "upgrade".to_owned()
        } else {
            format!("upgrade-{i}")
        };
        let run = upgrade_once(args, sandbox, hook, &name, true).await?;
        print_breakdown(&format!("run {} of {runs}", i + 1), &run.phases);
        all.push(run);
        if runs > 1 {
            let api: Api<EMQX> = Api::namespaced(sandbox.client(), NS);
            api.delete(&name, &Default::default()).await?;
        }
    }
    if runs > 1 {
        let runs_phases: Vec<Vec<Phase>> = all.iter().map(|r| r.phases.clone()).collect();
        let phases = median_phases(&runs_phases);
        if !phases.is_empty() {
            print_breakdown(&format!("median of {runs} runs, phase by phase"), &phases);
        }
        let totals: Vec<f64> = all.iter().map(|r| r.total).collect();
        let ratios: Vec<f64> = all.iter().map(|r| r.total / r.floor).collect();
        println!(
            "== {runs} upgrades: patch -> Ready {totals:.1?} s, median {:.2} s; ratio to the floor {ratios:.3?}, median {:.3}",
            median(&totals),
            median(&ratios)
        );
    }
    Ok(())
}

struct UpgradeRun {
    total: f64,
    /// New nodes ready → Ready.
    from_ready: Option<f64>,
    /// The floor of the whole upgrade: the phases' floors summed.
    floor: f64,
    phases: Vec<Phase>,
}

/// One upgrade of a fresh cluster `name`: patch → Ready, new nodes ready →
/// Ready (seconds), its floor and the per-phase breakdown.
async fn upgrade_once(
    args: &Args,
    sandbox: &Sandbox,
    hook: &Arc<EmqxHook>,
    name: &str,
    guard: bool,
) -> Result<UpgradeRun> {
    let (cores, clients) = if args.full { (3, 3000) } else { (2, 400) };
    let client = sandbox.client();
    let api: Api<EMQX> = Api::namespaced(client.clone(), NS);
    let object = cluster_manifest(
        NS,
        name,
        cores,
        json!({
            "type": "Recreate",
            "initialDelaySeconds": args.initial_delay,
            "evacuationStrategy": {"waitTakeover": args.wait_takeover, "connEvictRate": args.evict_rate, "sessEvictRate": args.evict_rate},
            "guard": {"enabled": guard}
        }),
    )?;
    api.create(&PostParams::default(), &object).await?;
    wait_ready(&api, name, None, Duration::from_secs(300)).await?;
    let old_revision = update_revision(&api.get(name).await?).context("a revision")?;
    let pod_prefix = format!("{NS}/{name}-core-");
    let old_pods: Vec<(String, String)> = hook
        .nodes()
        .into_iter()
        .filter(|(pod, _)| pod.starts_with(&pod_prefix))
        .map(|(pod, n)| {
            (
                pod.trim_start_matches(&format!("{NS}/")).to_owned(),
                n.node_name,
            )
        })
        .collect();
    let old_nodes: BTreeSet<String> = old_pods.iter().map(|(_, n)| n.clone()).collect();
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

    let timeline = UpgradeTimeline::start(&client, NS, name, &old_revision, cluster.clone());
    // The watchers' first lists mark the old pods; let them land first.
    tokio::time::sleep(Duration::from_millis(500)).await;
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
        if timeline.at("ready").is_some() {
            break;
        }
        if Instant::now() > deadline {
            bail!("upgrade not finished within 900 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let total = timeline
        .at("ready")
        .context("ready")?
        .duration_since(started)
        .as_secs_f64();
    let new_pods: Vec<(String, String)> = hook
        .nodes()
        .into_iter()
        .filter(|(pod, _)| pod.starts_with(&pod_prefix) && !pod.contains(&old_revision))
        .map(|(pod, n)| {
            (
                pod.trim_start_matches(&format!("{NS}/")).to_owned(),
                n.node_name,
            )
        })
        .collect();
    let phases = breakdown(
        &timeline,
        &cluster,
        started,
        &old_pods,
        &new_pods,
        rate,
        f64::from(args.wait_takeover),
        f64::from(args.initial_delay),
    )?;
    drop(timeline);
    let phase_floor: f64 = phases.iter().map(|p| p.floor).sum();
    let report = load.finish(Duration::from_secs(10)).await;
    let summary = mqtt_load::recorder::Summary::of(&report);
    let from_ready = new_ready_at.map(|t| total - t.as_secs_f64());
    println!(
        "== upgrade wall time ({cores} cores, {clients} clients, connEvictRate=sessEvictRate={}, waitTakeover={}, initialDelaySeconds={}, guard {})",
        args.evict_rate,
        args.wait_takeover,
        args.initial_delay,
        if guard { "on" } else { "off" }
    );
    println!("connections per old node at the patch: {per_node:?}");
    println!(
        "floor of EMQX's figures alone (initialDelaySeconds + per old node connections/rate + waitTakeover + sessions/rate): {floor:.1} s"
    );
    println!(
        "patch -> Ready: {total:.2} s ({:.3}x that; {:.3}x the floor with pod start, readiness probe and termination, {phase_floor:.2} s)",
        total / floor,
        total / phase_floor
    );
    if let Some(t) = from_ready {
        println!(
            "new nodes ready -> Ready: {t:.1} s ({:.2}x floor; new pods ready {:.1} s after the patch)",
            t / floor,
            total - t
        );
    }
    println!("clients: {summary}");
    Ok(UpgradeRun {
        total,
        from_ready,
        floor: phase_floor,
        phases,
    })
}

async fn idle_clusters(
    args: &Args,
    sandbox: &Sandbox,
    reconciler: &mut ReconcilerProcess,
) -> Result<Vec<String>> {
    let api: Api<EMQX> = Api::namespaced(sandbox.client(), NS);
    let names: Vec<String> = (0..args.clusters).map(|i| format!("idle-{i:03}")).collect();
    let started = Instant::now();
    for name in &names {
        let object = cluster_manifest(
            NS,
            name,
            1,
            json!({"type": "Recreate", "initialDelaySeconds": 0,
                   "evacuationStrategy": {"waitTakeover": 0, "connEvictRate": 1000, "sessEvictRate": 1000}}),
        )?;
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
        reconciler.check_running()?;
        if Instant::now() > deadline {
            bail!(
                "only {ready}/{} idle clusters Ready after 30 min",
                names.len()
            );
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    println!(
        "== {} idle clusters (1 core each; listeners, dashboard and headless Services) created -> all Ready: {:.1} s",
        names.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(names)
}

async fn memory_part(reconciler: &ReconcilerProcess, clusters: usize) -> Result<()> {
    // Let the first passes' allocations settle.
    tokio::time::sleep(Duration::from_secs(30)).await;
    let mut samples = Vec::new();
    let mut heap: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for _ in 0..30 {
        if let Some(kib) = reconciler.rss_kib() {
            samples.push(kib as f64 / 1024.0);
        }
        for (kind, bytes) in heap_bytes(reconciler).await {
            heap.entry(kind).or_default().push(bytes / 1048576.0);
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let max = samples.iter().copied().fold(0.0, f64::max);
    let rss = median(&samples);
    println!(
        "== resident memory of emqx-reconciler managing {clusters} idle clusters: median {rss:.1} MiB, max {max:.1} MiB ({} samples, 1 s apart)",
        samples.len()
    );
    let medians: Vec<(&str, f64)> = ["allocated", "active", "metadata", "resident"]
        .into_iter()
        .filter_map(|kind| Some((kind, median(heap.get(kind)?))))
        .collect();
    if let Some((_, resident)) = medians.iter().find(|(kind, _)| *kind == "resident") {
        let split: Vec<String> = medians
            .iter()
            .map(|(kind, m)| format!("{kind} {m:.1}"))
            .collect();
        println!(
            "   jemalloc's account (emqx_reconciler_heap_bytes, medians, MiB): {}; RSS minus its resident, an upper bound, so at least this is code, stacks and other mappings: {:.1} MiB",
            split.join(", "),
            rss - resident
        );
    }
    Ok(())
}

/// `emqx_reconciler_heap_bytes` by kind.
async fn heap_bytes(reconciler: &ReconcilerProcess) -> Vec<(String, f64)> {
    let Some(text) = metrics_text(reconciler).await else {
        return Vec::new();
    };
    sums_by(&text, "emqx_reconciler_heap_bytes", &["kind"])
        .into_iter()
        .map(|(kind, bytes)| (kind.concat(), bytes))
        .collect()
}

/// The byte offset just past the last complete line of the audit log now:
/// where a window's events start.
fn audit_log_end(log: &Path) -> Result<u64> {
    use std::io::{Read, Seek, SeekFrom};
    let Ok(mut file) = std::fs::File::open(log) else {
        return Ok(0);
    };
    let len = file.metadata()?.len();
    let start = len.saturating_sub(1 << 20);
    file.seek(SeekFrom::Start(start))?;
    let mut tail = Vec::new();
    file.read_to_end(&mut tail)?;
    let tail = &tail[..usize::try_from(len - start)?.min(tail.len())];
    Ok(tail
        .iter()
        .rposition(|b| *b == b'\n')
        .map_or(start, |i| start + i as u64 + 1))
}

/// The management API calls every simulated node of the idle clusters has
/// served so far.
fn emqx_calls(hook: &EmqxHook) -> emqx_sim::rest::calls::ApiCallCount {
    let mut sum = emqx_sim::rest::calls::ApiCallCount::default();
    for (pod, node) in hook.nodes() {
        if pod.starts_with(&format!("{NS}/idle-")) {
            let count = node.api_calls.count();
            sum.reads += count.reads;
            sum.writes += count.writes;
        }
    }
    sum
}

async fn steady_state_part(
    args: &Args,
    sandbox: &Sandbox,
    hook: &EmqxHook,
    reconciler: &ReconcilerProcess,
) -> Result<()> {
    let client = sandbox.client();
    let log = sandbox.audit_log().context("no audit log")?;
    let user = service_account_user(NS, ACCOUNT);
    let window = Duration::from_secs(args.window_seconds.max(60));

    let before = write_counts(&client).await?;
    let passes_before = reconciles(reconciler).await.unwrap_or(0.0);
    let waits_before = slot_waits(reconciler).await;
    let ticks_before = reconciler.cpu_ticks().context("reconciler gone")?;
    let calls_before = emqx_calls(hook);
    let offset = audit_log_end(&log)?;
    let from = chrono::Utc::now();
    tokio::time::sleep(window).await;
    let to = chrono::Utc::now();
    let ticks = reconciler.cpu_ticks().context("reconciler gone")? - ticks_before;
    let calls_after = emqx_calls(hook);
    let after = write_counts(&client).await?;
    let passes = reconciles(reconciler).await.unwrap_or(0.0) - passes_before;
    let waits_after = slot_waits(reconciler).await;
    let minutes = window.as_secs_f64() / 60.0;
    let (requests, _) = audit::read_requests_from(&log, offset)?;

    println!(
        "== steady state over {:.0} s, {} idle clusters ({passes:.0} reconcile passes in the window, {:.1} per cluster per minute)",
        window.as_secs_f64(),
        args.clusters,
        passes / args.clusters.max(1) as f64 / minutes
    );
    for (lane, (sum, count)) in &waits_after {
        let (sum_before, count_before) = waits_before.get(lane).copied().unwrap_or_default();
        let (sum, count) = (sum - sum_before, count - count_before);
        if count > 0.0 {
            println!(
                "passes in lane {lane}: {count:.0}, mean wait for a slot {:.0} ms",
                sum / count * 1000.0
            );
        }
    }
    let cpu = ticks as f64 / process::clock_ticks_per_second() as f64;
    println!(
        "reconciler CPU: {:.2} s per minute ({:.1} % of one core)",
        cpu / minutes,
        cpu / window.as_secs_f64() * 100.0
    );

    let mut by_verb: BTreeMap<String, u64> = BTreeMap::new();
    let mut by_target: BTreeMap<(String, String), u64> = BTreeMap::new();
    for r in requests
        .iter()
        .filter(|r| r.user == user && r.at >= from && r.at <= to)
    {
        *by_verb.entry(r.verb.clone()).or_default() += 1;
        *by_target.entry((r.verb.clone(), r.target())).or_default() += 1;
    }
    let total: u64 = by_verb.values().sum();
    println!(
        "reconciler API requests per minute (audit log, user {user}): {:.1} in all; by verb: {}",
        total as f64 / minutes,
        by_verb
            .iter()
            .map(|(v, n)| format!("{v} {:.1}", *n as f64 / minutes))
            .collect::<Vec<_>>()
            .join(", ")
    );
    for ((verb, target), n) in &by_target {
        println!("  {verb:>7} {target:<40} {:.1}/min", *n as f64 / minutes);
    }
    let (lease_writes, object_writes): (Vec<_>, Vec<_>) = requests
        .iter()
        .filter(|r| r.user == user && r.at >= from && r.at <= to && r.is_write())
        .partition(|r| r.resource == "leases");
    println!(
        "reconciler writes per minute: {:.1} (target 0), besides its leader election's Lease renewals {:.1}",
        object_writes.len() as f64 / minutes,
        lease_writes.len() as f64 / minutes
    );

    let reads = calls_after.reads.saturating_sub(calls_before.reads);
    let writes = calls_after.writes.saturating_sub(calls_before.writes);
    let per_cluster = (reads + writes) as f64 / args.clusters.max(1) as f64 / minutes;
    println!(
        "EMQX REST calls per minute per cluster: {per_cluster:.2} ({reads} reads, {writes} writes in all; readiness probes not counted)"
    );

    println!("API writes of every writer (apiserver_request_total):");
    let (mut all, mut leases) = (0.0, 0.0);
    for (key, value) in &after {
        let delta = value - before.get(key).copied().unwrap_or(0.0);
        if delta > 0.0 {
            println!("  {:>7} {:<40} {delta:.0}", key.0, key.1);
            if key.1.starts_with("leases") {
                leases += delta;
            } else {
                all += delta;
            }
        }
    }
    println!(
        "writes per minute, all writers, Leases excluded: {:.1}; Lease writes per minute (leader election renewals, the simulated node's heartbeat): {:.1}",
        all / minutes,
        leases / minutes
    );
    // What the reconciler warned about (it runs with RUST_LOG=warn).
    let text = std::fs::read_to_string(&reconciler.log).unwrap_or_default();
    let warnings: Vec<&str> = text.lines().collect();
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
    let mut to_ready = Vec::new();
    for name in names.iter().take(args.changes) {
        let prefix = format!("{name}-core-");
        let before: BTreeSet<String> = sets
            .list(&ListParams::default().labels(&format!("apps.emqx.io/instance={name}")))
            .await?
            .items
            .iter()
            .map(ResourceExt::name_any)
            .collect();
        let old_revision = update_revision(&api.get(name).await?);
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
        // The next change comes when this cluster is idle again, so that each
        // is timed while every other cluster is idle.
        wait_ready(
            &api,
            name,
            old_revision.as_deref(),
            Duration::from_secs(300),
        )
        .await?;
        to_ready.push(t0.elapsed().as_secs_f64());
    }
    watch.abort();
    let n = latencies.len();
    let all: Vec<i64> = latencies.iter().map(|l| l.round() as i64).collect();
    let p50 = percentile(&latencies, 0.5);
    let p99 = percentile(&latencies, 0.99);
    println!(
        "== spec change on one cluster while the other {} are idle -> new StatefulSet seen by a watch, over {n} changes: p50 {p50:.0} ms, p99 {p99:.0} ms (all: {all:?})",
        names.len().saturating_sub(1)
    );
    let all: Vec<String> = to_ready.iter().map(|t| format!("{t:.1}")).collect();
    println!(
        "   -> Ready on the new revision (1 core, no clients, initialDelaySeconds 0): median {:.1} s (all: {})",
        median(&to_ready),
        all.join(", ")
    );
    Ok(())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 4)]
async fn main() -> Result<()> {
    let args = Args::parse();
    let (binary, hook, sandbox) = bench_sandbox(NS, ACCOUNT, &[]).await?;
    let result = async {
        install_crds(&sandbox.client()).await?;
        let login = cluster_admin_login(&sandbox, NS, ACCOUNT).await?;
        let extra: Vec<String> = args
            .resync_seconds
            .map(|s| format!("--resync-seconds={s}"))
            .into_iter()
            .chain(args.reconciler_arg.iter().cloned())
            .collect();
        let mut reconciler =
            ReconcilerProcess::start(&binary, &login.kubeconfig, &sandbox, NS, &extra)?;
        println!(
            "reconciler: {} (pid {}, user {}, --resync-seconds {}, extra arguments {:?}, _RJEM_MALLOC_CONF {:?})",
            binary.display(),
            reconciler.pid(),
            login.user,
            args.resync_seconds
                .map_or_else(|| "default".to_owned(), |s| s.to_string()),
            args.reconciler_arg,
            std::env::var("_RJEM_MALLOC_CONF").unwrap_or_default()
        );
        if let Some(n) = args.guard_compare {
            return guard_compare(&args, &sandbox, &hook, n).await;
        }
        if !args.only_scale {
            upgrade_part(&args, &sandbox, &hook).await?;
        }
        if args.only_upgrade {
            return Ok(());
        }
        let names = idle_clusters(&args, &sandbox, &mut reconciler).await?;
        memory_part(&reconciler, args.clusters).await?;
        steady_state_part(&args, &sandbox, &hook, &reconciler).await?;
        create_latency_part(&args, &sandbox, &names).await?;
        // Every figure above is of one process that ran throughout.
        reconciler.check_running()?;
        anyhow::Ok(())
    }
    .await;
    sandbox.stop().await?;
    result
}
