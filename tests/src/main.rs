//! The main job on a machine without a cluster: seed 003's tutorial, end to
//! end. Starts the sandbox (real etcd, kube-apiserver and
//! kube-controller-manager; simulated node and EMQX), installs the operator
//! with helm (the webhook and the reconciler run as pods, played by this
//! workspace's binaries), applies seed 003's `EMQX` object with three cores,
//! connects N MQTT clients through the listeners Service, patches
//! `imagePullPolicy` as the seed does, shows the upgrade live, and writes
//! the connections-per-node plot (PNG, SVG), the CSV and a summary.
//!
//! `cargo run --release -p sandbox -- [--clients 3000] [--keep] [--out DIR]`

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use emqx_crd::v2beta1::EMQX;
use emqx_sim::cluster::BrokerCluster;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use kube::Api;
use mqtt_load::recorder::{Summary, write_all};
use mqtt_load::{Endpoints, LoadConfig, MqttLoad};
use sandbox::operator::chart::{
    CommandOutput, NAMESPACE, helm_upgrade_install, run, wait_operator_available,
};
use sandbox::operator::project_binary::build_operator_binaries;
use sandbox::operator::{listeners_endpoint, seed_003_manifest, update_revision};
use sandbox::{EmqxHook, Sandbox, SandboxOptions};
use serde_json::{Value, json};
use tokio::process::Command;

#[derive(Parser, Debug)]
#[command(about = "Seed 003's blue-green upgrade in a sandbox cluster, end to end")]
struct Args {
    /// MQTT clients to connect (like `mqttx bench conn -c 3000`).
    #[arg(long, default_value_t = 3000)]
    clients: usize,
    /// Connections (and sessions) evicted per second on each old node.
    #[arg(long, default_value_t = 200)]
    rate: u32,
    /// Where the plot, CSV and summary go.
    #[arg(long, default_value = "target/demo")]
    out: PathBuf,
    /// Leave the sandbox running and print the KUBECONFIG to use with kubectl.
    #[arg(long)]
    keep: bool,
}

const NAME: &str = "emqx-ee";
const NS: &str = "default";

fn seed_003(rate: u32) -> Result<Value> {
    let mut object = seed_003_manifest()?;
    // Three cores as in seed 003's Grafana picture; quicker probes and
    // delays than production so the demo takes minutes, not tens of them.
    json_patch::merge(
        &mut object,
        &json!({
            "metadata": {"namespace": NS},
            "spec": {
                "updateStrategy": {
                    "initialDelaySeconds": 5,
                    "evacuationStrategy": {"waitTakeover": 5, "connEvictRate": rate, "sessEvictRate": rate}
                },
                "coreTemplate": {"spec": {
                    "replicas": 3,
                    "readinessProbe": {"httpGet": {"path": "/status", "port": "dashboard"}, "periodSeconds": 1, "failureThreshold": 3}
                }}
            }
        }),
    );
    Ok(object)
}

/// Runs a sandbox kubectl/helm command, echoing it as the user would type it.
async fn shell(what: &str, command: Command, stdin: Option<&[u8]>) -> Result<CommandOutput> {
    println!("$ {what}");
    let out = run(command, stdin, Duration::from_secs(240)).await?;
    if !out.success {
        bail!("{what} failed:\n{}{}", out.stdout, out.stderr);
    }
    for line in out.stdout.lines().chain(out.stderr.lines()) {
        println!("  {line}");
    }
    Ok(out)
}

/// `kubectl get emqx emqx-ee` (the CRD's printer columns), one line.
async fn get_line(sandbox: &Sandbox) -> String {
    let mut kubectl = sandbox.kubectl();
    kubectl.args(["get", "emqx", NAME, "--no-headers"]);
    match run(kubectl, None, Duration::from_secs(10)).await {
        Ok(out) if out.success => {
            let line = out
                .stdout
                .split_whitespace()
                .collect::<Vec<_>>()
                .join("   ");
            format!("kubectl get emqx: {line}")
        }
        Ok(out) => out.stderr.trim().to_owned(),
        Err(error) => error.to_string(),
    }
}

fn condition_true(emqx: &EMQX, type_: &str) -> bool {
    emqx.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == type_ && c.status == "True"))
}

/// Waits until the cluster is Ready on a revision other than `not`, showing
/// the `kubectl get emqx` line and a bar per node being evacuated.
async fn watch_until_ready(
    sandbox: &Sandbox,
    api: &Api<EMQX>,
    not: Option<&str>,
    limit: Duration,
) -> Result<EMQX> {
    let bars = MultiProgress::new();
    let line = bars.add(ProgressBar::new_spinner());
    line.enable_steady_tick(Duration::from_millis(200));
    let style =
        ProgressStyle::with_template("  evacuating {prefix:60} [{bar:30}] {pos}/{len} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar());
    let mut node_bars: std::collections::BTreeMap<String, ProgressBar> = Default::default();
    let deadline = Instant::now() + limit;
    let mut printed = String::new();
    loop {
        let emqx = api.get(NAME).await?;
        let now = get_line(sandbox).await;
        // Without a terminal (CI logs) the bars are hidden; print each
        // change of the `kubectl get` line instead (but for its AGE column).
        let without_age = now
            .rsplit_once("   ")
            .map_or(now.as_str(), |(rest, _)| rest);
        if !std::io::stdout().is_terminal() && without_age != printed {
            println!("  {now}");
            without_age.clone_into(&mut printed);
        }
        line.set_message(now);
        for e in emqx
            .status
            .as_ref()
            .and_then(|s| s.node_evacuations_status.clone())
            .unwrap_or_default()
        {
            let node = e.node.clone().unwrap_or_default();
            let stats = e.stats.clone().unwrap_or_default();
            let initial = u64::try_from(stats.initial_connected.unwrap_or(0)).unwrap_or(0);
            let current = u64::try_from(stats.current_connected.unwrap_or(0)).unwrap_or(0);
            let bar = node_bars.entry(node.clone()).or_insert_with(|| {
                let b = bars.add(ProgressBar::new(initial.max(1)));
                b.set_style(style.clone());
                b.set_prefix(node.clone());
                b
            });
            bar.set_position(initial.saturating_sub(current));
            bar.set_message(e.state.clone().unwrap_or_default());
        }
        let ready = condition_true(&emqx, "Ready") && update_revision(&emqx).as_deref() != not;
        if ready {
            for bar in node_bars.values() {
                bar.finish();
            }
            line.finish_with_message(get_line(sandbox).await);
            return Ok(emqx);
        }
        if Instant::now() > deadline {
            line.abandon();
            bail!("not Ready after {limit:?}: {}", get_line(sandbox).await);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> Result<()> {
    let args = Args::parse();
    let started = Instant::now();
    println!(
        "▶ starting the sandbox: etcd, kube-apiserver, kube-controller-manager (built from pinned sources on first use)"
    );
    let binaries = build_operator_binaries()?;
    let hook = EmqxHook::new();
    let sandbox =
        Sandbox::start(binaries.options(SandboxOptions::default().hook(hook.clone()))).await?;
    let client = sandbox.client();

    println!("▶ installing the operator with helm (webhook and reconciler, 2 replicas each)");
    let mut helm = sandbox.helm();
    helm.args(["version", "--short"]);
    shell("helm version --short", helm, None).await?;
    println!(
        "$ helm install emqx-operator charts/emqx-operator --namespace {NAMESPACE} --create-namespace --wait"
    );
    helm_upgrade_install(&sandbox, &[]).await?;
    wait_operator_available(&client, Duration::from_secs(180)).await?;
    let mut kubectl = sandbox.kubectl();
    kubectl.args(["get", "pods", "-n", NAMESPACE]);
    shell(&format!("kubectl get pods -n {NAMESPACE}"), kubectl, None).await?;

    println!("▶ seed 003 with 3 core nodes");
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let manifest = args.out.join("emqx-update.yaml");
    std::fs::write(
        &manifest,
        serde_json::to_string_pretty(&seed_003(args.rate)?)?,
    )
    .with_context(|| format!("writing {}", manifest.display()))?;
    let mut kubectl = sandbox.kubectl();
    kubectl.args(["apply", "-f"]).arg(&manifest);
    shell("kubectl apply -f emqx-update.yaml", kubectl, None).await?;
    let api: Api<EMQX> = Api::namespaced(client.clone(), NS);
    let first = watch_until_ready(&sandbox, &api, None, Duration::from_secs(180)).await?;
    let old_revision = update_revision(&first).context("no revision after the first rollout")?;

    let service = listeners_endpoint(&client, NS, NAME).await?;
    println!(
        "▶ mqttx bench conn -c {}   (through the listeners Service {service})",
        args.clients
    );
    let cluster: Arc<BrokerCluster> = hook
        .nodes()
        .into_values()
        .next()
        .map(|n| n.cluster)
        .context("no EMQX node runs")?;
    let load = MqttLoad::start(
        LoadConfig {
            clients: args.clients,
            connect_rate: 500,
            publish_interval: Duration::from_secs(2),
            max_duration: Duration::from_secs(900),
            ..LoadConfig::default()
        },
        Endpoints::new(vec![service]),
        Endpoints::new(vec![service]),
        cluster,
    );
    let clients = args.clients;
    if !load.wait_all_subscribed(Duration::from_secs(180)).await {
        bail!("clients did not connect: {:?}", load.progress());
    }
    println!("  ✔ success [{clients}/{clients}] - Connected");
    tokio::time::sleep(Duration::from_secs(5)).await;

    println!("▶ the upgrade, as seed 003 triggers it");
    let mut kubectl = sandbox.kubectl();
    kubectl.args([
        "patch",
        "emqx",
        NAME,
        "--type=merge",
        "-p",
        r#"{"spec":{"imagePullPolicy":"Never"}}"#,
    ]);
    shell(
        &format!(r#"kubectl patch emqx {NAME} --type=merge -p '{{"spec":{{"imagePullPolicy":"Never"}}}}'"#),
        kubectl,
        None,
    )
    .await?;
    let upgrade_started = Instant::now();
    let done = watch_until_ready(
        &sandbox,
        &api,
        Some(&old_revision),
        Duration::from_secs(600),
    )
    .await?;
    println!(
        "  ✔ upgraded {old_revision} → {} in {:.0} s",
        update_revision(&done).unwrap_or_default(),
        upgrade_started.elapsed().as_secs_f64()
    );
    load.wait_all_connected(Duration::from_secs(60)).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let report = load.finish(Duration::from_secs(30)).await;
    let artifacts = write_all(
        &report,
        &args.out,
        &format!(
            "Blue-green upgrade of {NAME}: {clients} clients, evacuation at {}/s",
            args.rate
        ),
    )?;
    println!("\n{}", Summary::of(&report));
    println!(
        "wrote {}, {}, {}, {}",
        artifacts.png.display(),
        artifacts.svg.display(),
        artifacts.csv.display(),
        artifacts.summary.display()
    );
    println!("total {:.0} s", started.elapsed().as_secs_f64());

    if args.keep {
        let bin = sandbox
            .binaries()
            .kubectl
            .parent()
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        println!("\nThe sandbox keeps running. In another shell:");
        println!("  export KUBECONFIG={}", sandbox.kubeconfig().display());
        println!("  export PATH={bin}:$PATH   # kubectl and helm, built from pinned sources");
        println!("  kubectl get emqx {NAME} -o json | jq .status.nodeEvacuationsStatus");
        println!("  kubectl get events --sort-by=.metadata.creationTimestamp");
        println!("Press Ctrl-C to stop it.");
        let _ = tokio::signal::ctrl_c().await;
    }
    sandbox.stop().await?;
    Ok(())
}
