//! Concurrent upgrades (issue 16, item 3). Prints figures; asserts nothing.
//!
//! `cargo run --release -p sandbox --example concurrent_upgrades_bench -- --clusters 20 --clients 200`
//!
//! The real `emqx-reconciler` binary as a process (leader election, an
//! operator key, `--max-concurrent-upgrades` at its default 0: unbounded),
//! as `reconciler_bench` runs it. Each cluster has two cores and
//! `--clients` MQTT clients (QoS 1 publishing, persistent sessions, through
//! its listeners Service), upgraded by `kubectl patch ... imagePullPolicy`
//! with the same strategy as `reconciler_bench` (rates 100/s, `waitTakeover`
//! 5, `initialDelaySeconds` 10).
//!
//! 1. **Alone**: `--alone` clusters upgraded one after another, nothing
//!    else upgrading: the median patch → Ready is the reference.
//! 2. **At once**: `--clusters` clusters created, all Ready with their
//!    clients connected, then all patched at once. For each: patch →
//!    Ready (and of it: patch → new StatefulSet (the reconciler's pass),
//!    → new pods created (kube-controller-manager), → new pods Ready (the
//!    kubelet), → the new nodes joined EMQX (`->join`), → the reconciler
//!    reported `InitialDelay` (`->delay`: its pass saw them ready and
//!    joined), → listeners Service switched, switch → Ready, from
//!    [`sandbox::upgrade_timeline`]) and its
//!    ratio to the alone median; the most disconnects of one
//!    client; QoS 1 published / received / lost; sessions lost. Then the
//!    median and maximum ratio (target: each ≤ 1.1, every client
//!    disconnected at most once, no QoS 1 message lost). Last, the CPU
//!    each process used while they ran, and how busy the machine was: on
//!    a saturated machine every step waits for a core.
//!    How much of the ratio is kube-controller-manager's: the correlation
//!    of each cluster's ratio with its new set → pods created, and the
//!    ratios with that time taken out of both sides.
//! 3. For each phase, the reconciler's passes (count, mean duration, mean
//!    wait for a pass slot, from its `/metrics`), and for the at-once
//!    phase the API server's requests by verb and resource (its
//!    `apiserver_request_total`): who loads the API server.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use emqx_crd::v2beta1::EMQX;
use emqx_sim::cluster::BrokerCluster;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};
use mqtt_load::recorder::Summary;
use mqtt_load::{Endpoints, LoadConfig, MqttLoad};
use sandbox::bench_cluster::{cluster_manifest, wait_ready};
use sandbox::condition_history::ConditionHistory;
use sandbox::control_plane::process;
use sandbox::metrics_page::{apiserver_page, median, sum, sums_by};
use sandbox::operator::install_crds;
use sandbox::operator::reconciler_process::{ReconcilerProcess, bench_sandbox};
use sandbox::operator::service_account_login::cluster_admin_login;
use sandbox::seed_003::{listeners_endpoint, update_revision};
use sandbox::upgrade_breakdown::{Phase, breakdown, median_phases, print_breakdown};
use sandbox::upgrade_timeline::UpgradeTimeline;
use sandbox::{EmqxHook, Sandbox};
use serde_json::json;

const NS: &str = "default";
const ACCOUNT: &str = "emqx-reconciler-bench";

#[derive(Parser, Debug)]
struct Args {
    /// Clusters upgraded at once.
    #[arg(long, default_value_t = 20)]
    clusters: usize,
    /// MQTT clients per cluster.
    #[arg(long, default_value_t = 200)]
    clients: usize,
    /// Upgrades run alone first, one after another (their median is the
    /// reference).
    #[arg(long, default_value_t = 3)]
    alone: usize,
    /// `connEvictRate` and `sessEvictRate`.
    #[arg(long, default_value_t = 100)]
    evict_rate: u32,
    /// `waitTakeover`.
    #[arg(long, default_value_t = 5)]
    wait_takeover: u32,
    /// `initialDelaySeconds`.
    #[arg(long, default_value_t = 10)]
    initial_delay: u32,
    /// Extra arguments for the reconciler (repeatable), e.g.
    /// `--reconciler-arg=--max-concurrent-passes=32`.
    #[arg(long, allow_hyphen_values = true)]
    reconciler_arg: Vec<String>,
    /// Extra flags for the sandbox's kube-controller-manager (repeatable),
    /// e.g. `--controller-manager-arg=--kube-api-qps=100`: its client
    /// sends 20 requests a second (burst 30) by default, each controller
    /// its own, and the StatefulSet controller's share is what 20 new sets
    /// at once wait on.
    #[arg(long, allow_hyphen_values = true)]
    controller_manager_arg: Vec<String>,
}

/// One cluster ready to be upgraded: its clients connected.
struct Prepared {
    name: String,
    old_revision: String,
    /// The old pods with their EMQX nodes.
    old_pods: Vec<(String, String)>,
    load: MqttLoad,
    cluster: Arc<BrokerCluster>,
}

/// One finished upgrade.
struct Upgraded {
    name: String,
    seconds: f64,
    /// Patch → every new pod Ready, → the listeners Service switched.
    new_set: f64,
    new_pods: f64,
    new_ready: f64,
    /// → the new nodes joined EMQX's cluster, → the reconciler's status
    /// says `InitialDelay` (it saw them ready and joined).
    joined: f64,
    delay: f64,
    switched: f64,
    summary: Summary,
    /// Where its time went, phase by phase.
    phases: Vec<Phase>,
}

/// Creates `name` (two cores) and waits until it is Ready.
async fn create(args: &Args, api: &Api<EMQX>, name: &str) -> Result<()> {
    let object = cluster_manifest(
        NS,
        name,
        2,
        json!({
            "type": "Recreate",
            "initialDelaySeconds": args.initial_delay,
            "evacuationStrategy": {"waitTakeover": args.wait_takeover, "connEvictRate": args.evict_rate, "sessEvictRate": args.evict_rate}
        }),
    )?;
    api.create(&PostParams::default(), &object).await?;
    Ok(())
}

/// Connects `--clients` clients to the Ready cluster `name`.
async fn connect(args: &Args, sandbox: &Sandbox, hook: &EmqxHook, name: &str) -> Result<Prepared> {
    let client = sandbox.client();
    let api: Api<EMQX> = Api::namespaced(client.clone(), NS);
    let old_revision = update_revision(&api.get(name).await?).context("a revision")?;
    let prefix = format!("{NS}/{name}-core-");
    let old_pods = pods_of(hook, name, None);
    let cluster = hook
        .nodes()
        .into_iter()
        .find(|(pod, _)| pod.starts_with(&prefix))
        .context("a node of the cluster")?
        .1
        .cluster;
    let service = Endpoints::new(vec![listeners_endpoint(&client, NS, name).await?]);
    let load = MqttLoad::start(
        LoadConfig {
            clients: args.clients,
            client_prefix: format!("{name}-"),
            connect_rate: 200,
            publish_interval: Duration::from_secs(5),
            max_duration: Duration::from_secs(1800),
            ..LoadConfig::default()
        },
        service.clone(),
        service,
        cluster.clone(),
    );
    if !load.wait_all_subscribed(Duration::from_secs(300)).await {
        bail!("{name}: clients did not connect: {:?}", load.progress());
    }
    Ok(Prepared {
        name: name.to_owned(),
        old_revision,
        old_pods,
        load,
        cluster,
    })
}

/// The pods of cluster `name` with their EMQX nodes, those of
/// `not_revision` left out.
fn pods_of(hook: &EmqxHook, name: &str, not_revision: Option<&str>) -> Vec<(String, String)> {
    let prefix = format!("{NS}/{name}-core-");
    hook.nodes()
        .into_iter()
        .filter(|(pod, _)| pod.starts_with(&prefix))
        .filter(|(pod, _)| not_revision.is_none_or(|r| !pod.contains(r)))
        .map(|(pod, node)| (pod[NS.len() + 1..].to_owned(), node.node_name))
        .collect()
}

/// Patches the prepared cluster and waits for Ready on the new revision.
async fn upgrade(
    args: Arc<Args>,
    api: Api<EMQX>,
    client: Client,
    hook: Arc<EmqxHook>,
    prepared: Prepared,
) -> Result<Upgraded> {
    let timeline = UpgradeTimeline::start(
        &client,
        NS,
        &prepared.name,
        &prepared.old_revision,
        prepared.cluster.clone(),
    );
    // The watchers' first lists mark what exists before the patch.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = Instant::now();
    api.patch(
        &prepared.name,
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"imagePullPolicy": "Never"}})),
    )
    .await?;
    wait_ready(
        &api,
        &prepared.name,
        Some(&prepared.old_revision),
        Duration::from_secs(1200),
    )
    .await?;
    let seconds = started.elapsed().as_secs_f64();
    // The timeline's own watch of the object may see Ready a moment
    // after `wait_ready`'s did; its breakdown needs the mark.
    let marked = Instant::now() + Duration::from_secs(10);
    while timeline.at("ready").is_none() && Instant::now() < marked {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let since = |at: Option<Instant>| {
        at.map_or(f64::NAN, |t| {
            t.saturating_duration_since(started).as_secs_f64()
        })
    };
    let new_set = since(timeline.latest("set:", &prepared.old_revision));
    let new_pods = since(timeline.latest("created:", &prepared.old_revision));
    let new_ready = since(timeline.latest("ready:", &prepared.old_revision));
    let joined = since(timeline.latest("joined:", &prepared.old_revision));
    let delay = since(timeline.at("reason:InitialDelay"));
    let switched = since(timeline.at("switch"));
    let new_pods_and_nodes = pods_of(&hook, &prepared.name, Some(&prepared.old_revision));
    let phases = breakdown(
        &timeline,
        &prepared.cluster,
        started,
        &prepared.old_pods,
        &new_pods_and_nodes,
        f64::from(args.evict_rate),
        f64::from(args.wait_takeover),
        f64::from(args.initial_delay),
    )
    .with_context(|| format!("{}: the phases of its upgrade", prepared.name))?;
    drop(timeline);
    let report = prepared.load.finish(Duration::from_secs(10)).await;
    Ok(Upgraded {
        name: prepared.name,
        seconds,
        new_set,
        new_pods,
        new_ready,
        joined,
        delay,
        switched,
        summary: Summary::of(&report),
        phases,
    })
}

/// Sums of the reconciler's pass series at one moment: (sum, count) of
/// each histogram.
#[derive(Default, Clone)]
struct PassFigures {
    /// `pass_stage_seconds` by stage.
    stages: BTreeMap<String, (f64, f64)>,
    passes: f64,
    duration: (f64, f64),
    wait: (f64, f64),
}

impl PassFigures {
    /// Reads the reconciler's `/metrics` (zeros if it cannot be read: the
    /// line printed then says so by its counts).
    async fn read(reconciler: &ReconcilerProcess) -> PassFigures {
        let text = match reqwest::get(&reconciler.metrics).await {
            Ok(response) => response.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        let histogram = |name: &str| {
            (
                sum(&text, &format!("{name}_sum")),
                sum(&text, &format!("{name}_count")),
            )
        };
        let stage = "emqx_reconciler_pass_stage_seconds";
        let counts = sums_by(&text, &format!("{stage}_count"), &["stage"]);
        let stages = sums_by(&text, &format!("{stage}_sum"), &["stage"])
            .into_iter()
            .map(|(key, seconds)| {
                let count = counts.get(&key).copied().unwrap_or(0.0);
                (key.concat(), (seconds, count))
            })
            .collect();
        PassFigures {
            stages,
            passes: sum(&text, "emqx_reconciler_reconciles_total"),
            duration: histogram("emqx_reconciler_reconcile_duration_seconds"),
            wait: histogram("emqx_reconciler_pass_slot_wait_seconds"),
        }
    }

    /// What happened between `before` and `self`, for `clusters` upgrades.
    fn describe_since(&self, before: &PassFigures, clusters: usize) -> String {
        let passes = self.passes - before.passes;
        let mean_ms = |(sum, count): (f64, f64), (was_sum, was_count): (f64, f64)| {
            if count > was_count {
                format!("{:.0} ms", (sum - was_sum) / (count - was_count) * 1000.0)
            } else {
                "-".to_owned()
            }
        };
        let stages: Vec<String> = self
            .stages
            .iter()
            .map(|(stage, now)| {
                let was = before.stages.get(stage).copied().unwrap_or_default();
                format!("{stage} {}", mean_ms(*now, was))
            })
            .collect();
        format!(
            "{passes:.0} passes ({:.1} a cluster), mean pass {} (stages, mean: {}), mean wait for a slot {}",
            passes / clusters.max(1) as f64,
            mean_ms(self.duration, before.duration),
            stages.join(", "),
            mean_ms(self.wait, before.wait),
        )
    }
}

/// The API server's `apiserver_request_total`, summed by (verb, resource);
/// empty if its page cannot be read.
async fn apiserver_requests(client: &Client) -> BTreeMap<Vec<String>, f64> {
    match apiserver_page(client).await {
        Ok(text) => sums_by(&text, "apiserver_request_total", &["verb", "resource"]),
        Err(_) => BTreeMap::new(),
    }
}

/// The requests of `after` not yet in `before`, most first.
fn requests_since(
    before: &BTreeMap<Vec<String>, f64>,
    after: &BTreeMap<Vec<String>, f64>,
) -> Vec<(String, f64)> {
    let mut out: Vec<(String, f64)> = after
        .iter()
        .map(|(key, n)| (key.join(" "), n - before.get(key).copied().unwrap_or(0.0)))
        .filter(|(_, n)| *n > 0.0)
        .collect();
    out.sort_by(|a, b| b.1.total_cmp(&a.1));
    out
}

/// Pearson's correlation of `x` and `y` (NaN when either is constant).
fn correlation(x: &[f64], y: &[f64]) -> f64 {
    let n = x.len().min(y.len()) as f64;
    let (mx, my) = (x.iter().sum::<f64>() / n, y.iter().sum::<f64>() / n);
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (a, b) in x.iter().zip(y) {
        sxy += (a - mx) * (b - my);
        sxx += (a - mx) * (a - mx);
        syy += (b - my) * (b - my);
    }
    sxy / (sxx * syy).sqrt()
}

/// Patch → Ready without kube-controller-manager's share: the time from
/// the new StatefulSet to its pods, which the operator does not control
/// (its StatefulSet controller sends 20 requests a second by default, and
/// twenty new sets at once queue behind it).
fn without_set_to_pods(u: &Upgraded) -> f64 {
    u.seconds - (u.new_pods - u.new_set)
}

/// Each phase's median alone and at once, and what being many added.
fn compare_phases(alone: &[Phase], many: &[Phase]) {
    if alone.len() != many.len() {
        return;
    }
    println!("== each phase: alone against at once (medians, s)");
    println!(
        "{:<58} {:>8} {:>8} {:>8}",
        "phase", "alone", "at once", "added"
    );
    for (a, m) in alone.iter().zip(many) {
        println!(
            "{:<58} {:>8.2} {:>8.2} {:>+8.2}",
            a.name,
            a.measured,
            m.measured,
            m.measured - a.measured
        );
    }
}

/// CPU ticks so far of each sandbox process (etcd, kube-apiserver,
/// kube-controller-manager, ...), by name.
fn sandbox_cpu_ticks(sandbox: &Sandbox) -> Vec<(String, u64)> {
    sandbox
        .pids()
        .into_iter()
        .filter_map(|(name, pid)| process::cpu_ticks(pid).map(|t| (name, t)))
        .collect()
}

/// The machine's CPU ticks from the first line of `/proc/stat`.
struct MachineTicks {
    busy: u64,
    total: u64,
}

impl MachineTicks {
    /// The share of all cores busy between `before` and `self`.
    fn busy_share_since(&self, before: &MachineTicks) -> f64 {
        let total = self.total.saturating_sub(before.total);
        if total == 0 {
            return f64::NAN;
        }
        self.busy.saturating_sub(before.busy) as f64 / total as f64
    }
}

/// `cpu user nice system idle iowait irq softirq steal ...`: idle and
/// iowait are not busy.
fn machine_ticks() -> Option<MachineTicks> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?.strip_prefix("cpu ")?;
    let fields: Vec<u64> = line
        .split_whitespace()
        .take(8)
        .map(str::parse)
        .collect::<Result<_, _>>()
        .ok()?;
    let total: u64 = fields.iter().sum();
    let idle = fields.get(3)? + fields.get(4)?;
    Some(MachineTicks {
        busy: total - idle,
        total,
    })
}

fn max_disconnects(s: &Summary) -> usize {
    s.disconnect_histogram
        .iter()
        .rposition(|n| *n > 0)
        .unwrap_or(0)
}

fn print_row(u: &Upgraded, reference: f64) {
    let s = &u.summary;
    println!(
        "{:<10} {:>8.2} {:>6.2} {:>6.2} {:>6.2} {:>6.2} {:>6.2} {:>7.2} {:>8.2} {:>7.3} {:>6} {:>9} {:>9} {:>5} {:>6} {:>9}",
        u.name,
        u.seconds,
        u.new_set,
        u.new_pods,
        u.new_ready,
        u.joined,
        u.delay,
        u.switched,
        u.seconds - u.switched,
        u.seconds / reference,
        max_disconnects(s),
        s.confirmed,
        s.received,
        s.lost,
        s.sessions_lost,
        s.max_disconnected_at_once
    );
}

fn print_header() {
    println!(
        "{:<10} {:>8} {:>6} {:>6} {:>6} {:>6} {:>6} {:>7} {:>8} {:>7} {:>6} {:>9} {:>9} {:>5} {:>6} {:>9}",
        "cluster",
        "patch->R",
        "->set",
        "->pods",
        "->new",
        "->join",
        "->delay",
        "->switch",
        "switch->R",
        "ratio",
        "maxdis",
        "published",
        "received",
        "lost",
        "s.lost",
        "at once"
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 4)]
async fn main() -> Result<()> {
    let args = Arc::new(Args::parse());
    let (binary, hook, sandbox) = bench_sandbox(NS, ACCOUNT, &args.controller_manager_arg).await?;
    let result = async {
        install_crds(&sandbox.client()).await?;
        let login = cluster_admin_login(&sandbox, NS, ACCOUNT).await?;
        let reconciler = ReconcilerProcess::start(
            &binary,
            &login.kubeconfig,
            &sandbox,
            NS,
            &args.reconciler_arg,
        )?;
        println!(
            "reconciler: {} (pid {}, --max-concurrent-upgrades default 0: unbounded; extra arguments {:?}); kube-controller-manager extra flags {:?}",
            binary.display(),
            reconciler.pid(),
            args.reconciler_arg,
            args.controller_manager_arg
        );
        let api: Api<EMQX> = Api::namespaced(sandbox.client(), NS);

        // 1. Alone.
        let alone_passes = PassFigures::read(&reconciler).await;
        let mut alone = Vec::new();
        for i in 0..args.alone {
            let name = format!("alone-{i}");
            create(&args, &api, &name).await?;
            wait_ready(&api, &name, None, Duration::from_secs(300)).await?;
            let prepared = connect(&args, &sandbox, &hook, &name).await?;
            let done = upgrade(
                args.clone(),
                api.clone(),
                sandbox.client(),
                hook.clone(),
                prepared,
            )
            .await?;
            api.delete(&name, &Default::default()).await?;
            alone.push(done);
        }
        let seconds: Vec<f64> = alone.iter().map(|u| u.seconds).collect();
        let reference = median(&seconds);
        println!(
            "== alone: {} upgrades one after another (2 cores, {} clients each), patch -> Ready median {reference:.2} s",
            alone.len(),
            args.clients
        );
        print_header();
        for u in &alone {
            print_row(u, reference);
        }
        println!(
            "reconciler, alone (creation and clients included): {}",
            PassFigures::read(&reconciler)
                .await
                .describe_since(&alone_passes, alone.len())
        );

        // 2. At once.
        let names: Vec<String> = (0..args.clusters).map(|i| format!("many-{i:02}")).collect();
        let started = Instant::now();
        for name in &names {
            create(&args, &api, name).await?;
        }
        for name in &names {
            wait_ready(&api, name, None, Duration::from_secs(900)).await?;
        }
        println!(
            "== {} clusters created -> all Ready: {:.1} s",
            names.len(),
            started.elapsed().as_secs_f64()
        );
        let mut prepared = Vec::new();
        for name in &names {
            prepared.push(connect(&args, &sandbox, &hook, name).await?);
        }
        println!(
            "{} clients connected and subscribed; patching all {} clusters at once",
            args.clients * names.len(),
            names.len()
        );
        let conditions = ConditionHistory::start(&sandbox.client(), NS);
        let ticks_before = reconciler.cpu_ticks().context("reconciler gone")?;
        let own_before = process::cpu_ticks(std::process::id());
        let sandbox_before = sandbox_cpu_ticks(&sandbox);
        let machine_before = machine_ticks();
        let passes_before = PassFigures::read(&reconciler).await;
        let requests_before = apiserver_requests(&sandbox.client()).await;
        let wall = Instant::now();
        let tasks: Vec<_> = prepared
            .into_iter()
            .map(|p| {
                tokio::spawn(upgrade(
                    args.clone(),
                    api.clone(),
                    sandbox.client(),
                    hook.clone(),
                    p,
                ))
            })
            .collect();
        let mut done = Vec::new();
        for t in tasks {
            done.push(t.await??);
        }
        let wall = wall.elapsed().as_secs_f64();
        let passes_after = PassFigures::read(&reconciler).await;
        let requests = requests_since(&requests_before, &apiserver_requests(&sandbox.client()).await);
        let hz = process::clock_ticks_per_second() as f64;
        let reconciler_cpu =
            (reconciler.cpu_ticks().context("reconciler gone")? - ticks_before) as f64 / hz;
        let own_cpu = own_before
            .zip(process::cpu_ticks(std::process::id()))
            .map(|(a, b)| (b - a) as f64 / hz);
        let sandbox_cpu: Vec<(String, f64)> = sandbox_cpu_ticks(&sandbox)
            .into_iter()
            .filter_map(|(name, after)| {
                let before = sandbox_before.iter().find(|(n, _)| *n == name)?.1;
                Some((name, after.saturating_sub(before) as f64 / hz))
            })
            .collect();
        let machine = machine_before
            .zip(machine_ticks())
            .map(|(before, after)| after.busy_share_since(&before));
        println!(
            "== {} upgrades at once (--max-concurrent-upgrades 0: unbounded), reference {reference:.2} s",
            done.len()
        );
        print_header();
        for u in &done {
            print_row(u, reference);
        }
        let ratios: Vec<f64> = done.iter().map(|u| u.seconds / reference).collect();
        let max = ratios.iter().copied().fold(0.0, f64::max);
        let over = ratios.iter().filter(|r| **r > 1.1).count();
        let worst_disconnects = done
            .iter()
            .map(|u| max_disconnects(&u.summary))
            .max()
            .unwrap_or(0);
        let lost: usize = done.iter().map(|u| u.summary.lost).sum();
        let published: u64 = done.iter().map(|u| u.summary.confirmed).sum();
        let sessions_lost: usize = done.iter().map(|u| u.summary.sessions_lost).sum();
        println!(
            "ratio to alone: median {:.3}, max {max:.3} ({over} of {} over 1.1); most disconnects of one client {worst_disconnects}; QoS 1 lost {lost} of {published}; sessions lost {sessions_lost}",
            median(&ratios),
            done.len()
        );
        // How much of the spread is the controller-manager's: the ratio
        // against its pod-creation time, and the ratio with that time
        // taken out on both sides.
        let pods: Vec<f64> = done.iter().map(|u| u.new_pods - u.new_set).collect();
        let reference_without = median(&alone.iter().map(without_set_to_pods).collect::<Vec<_>>());
        let ratios_without: Vec<f64> = done
            .iter()
            .map(|u| without_set_to_pods(u) / reference_without)
            .collect();
        println!(
            "new StatefulSet -> its pods created (kube-controller-manager): median {:.2} s, max {:.2} s (alone {:.2} s); correlation of the ratio with it {:.2}; without it on both sides: median {:.3}, max {:.3} ({} of {} over 1.1)",
            median(&pods),
            pods.iter().copied().fold(0.0, f64::max),
            median(&alone.iter().map(|u| u.new_pods - u.new_set).collect::<Vec<_>>()),
            correlation(&ratios, &pods),
            median(&ratios_without),
            ratios_without.iter().copied().fold(0.0, f64::max),
            ratios_without.iter().filter(|r| **r > 1.1).count(),
            done.len()
        );
        let moved = conditions.moved_without_a_flip();
        println!(
            "conditions: {} sightings, lastTransitionTime moved without a flip {} times{}",
            conditions.sightings(),
            moved.len(),
            moved.first().map_or_else(String::new, |m| format!(" (e.g. {m})"))
        );
        println!(
            "all {} done in {wall:.1} s; CPU in that time: reconciler {reconciler_cpu:.1} s, this process (simulated EMQX nodes, MQTT clients, service proxy, kubelet) {}",
            done.len(),
            own_cpu.map_or_else(|| "?".to_owned(), |c| format!("{c:.1} s")),
        );
        let others: Vec<String> = sandbox_cpu
            .iter()
            .map(|(name, cpu)| format!("{name} {cpu:.1} s"))
            .collect();
        println!(
            "  control plane: {}; machine busy {} of {} cores",
            others.join(", "),
            machine.map_or_else(|| "?".to_owned(), |b| format!("{:.0}%", b * 100.0)),
            std::thread::available_parallelism().map_or(0, usize::from),
        );
        println!(
            "reconciler, at once: {}",
            passes_after.describe_since(&passes_before, done.len())
        );
        let alone_phases = median_phases(&alone.iter().map(|u| u.phases.clone()).collect::<Vec<_>>());
        let many_phases = median_phases(&done.iter().map(|u| u.phases.clone()).collect::<Vec<_>>());
        print_breakdown(&format!("alone, median of {}", alone.len()), &alone_phases);
        print_breakdown(&format!("{} at once, median of each phase", done.len()), &many_phases);
        compare_phases(&alone_phases, &many_phases);
        let total: f64 = requests.iter().map(|(_, n)| n).sum();
        let top: Vec<String> = requests
            .iter()
            .take(12)
            .map(|(what, n)| format!("{what} {:.1}/s", n / wall))
            .collect();
        println!(
            "API server requests while they ran: {:.0}/s; most: {}",
            total / wall,
            top.join(", ")
        );
        anyhow::Ok(())
    }
    .await;
    sandbox.stop().await?;
    result
}
