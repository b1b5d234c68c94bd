//! The main job on a machine without a cluster: seed 003's tutorial, end to
//! end. Starts the sandbox (real etcd, kube-apiserver and
//! kube-controller-manager; simulated node and EMQX), installs the operator
//! with helm (the webhook and the reconciler run as pods: podman containers
//! from `images/build`'s images), applies seed 003's `EMQX` object with three cores,
//! connects N MQTT clients through the listeners Service, patches
//! `imagePullPolicy` as the seed does, shows the upgrade live (and, once the
//! first evacuation shows, the `kubectl emqx status` screen, also
//! written to `kubectl-emqx-status.txt`), and writes
//! the connections-per-node plot (PNG, SVG), the CSV and a summary.
//!
//! `cargo run --release -p sandbox -- [--clients 3000] [--keep] [--out DIR]`

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use emqx_crd::v2beta1::EMQX;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use kube::Api;
use mqtt_load::LoadConfig;
use mqtt_load::recorder::{Summary, write_all};
use sandbox::Sandbox;
use sandbox::operator::chart::{CommandOutput, NAMESPACE, run};
use sandbox::operator::project_binary::build_workspace_binaries;
use sandbox::seed_003::{
    NAME, NAMESPACE as NS, Operator, Pace, Seed003, listeners_endpoint, load, ready_on,
    update_revision,
};
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

/// `kubectl emqx status NAME`, the plugin as a user runs it (the sandbox's
/// kubeconfig); its screen, or why there is none.
async fn plugin_status(sandbox: &Sandbox, plugin: &Path) -> String {
    let mut command = Command::new(plugin);
    command
        .args(["status", NAME, "--namespace", NS])
        .env("KUBECONFIG", sandbox.kubeconfig());
    match run(command, None, Duration::from_secs(20)).await {
        Ok(out) if out.success => out.stdout,
        Ok(out) => format!("kubectl emqx status failed: {}", out.stderr),
        Err(error) => format!("kubectl emqx status failed: {error:#}"),
    }
}

/// Waits until the cluster is Ready on a revision other than `not`, showing
/// the `kubectl get emqx` line and a bar per node being evacuated. With
/// `plugin`, the first time an evacuation shows, `kubectl emqx status` is
/// shown as well and written to `capture`.
async fn watch_until_ready(
    sandbox: &Sandbox,
    api: &Api<EMQX>,
    not: Option<&str>,
    limit: Duration,
    plugin: Option<(&Path, &Path)>,
) -> Result<EMQX> {
    let mut captured = false;
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
            if let Some((plugin, capture)) = plugin
                && !captured
            {
                captured = true;
                let screen = plugin_status(sandbox, plugin).await;
                let _ = bars.println(format!("$ kubectl emqx status {NAME}\n{screen}"));
                std::fs::write(capture, &screen)
                    .with_context(|| format!("writing {}", capture.display()))?;
            }
        }
        if ready_on(&emqx, not).is_ok() {
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
    println!("▶ installing the operator with helm (webhook and reconciler, 2 replicas each)");
    println!(
        "$ helm install emqx-operator charts/emqx-operator --namespace {NAMESPACE} --create-namespace --wait"
    );
    // Three cores as in seed 003's Grafana picture; quicker probes and
    // delays than production so the demo takes minutes, not tens of them.
    let seed = Seed003::new()
        .cores(3)
        .pace(Pace {
            initial_delay_s: 5,
            wait_takeover_s: 5,
            conn_evict_rate: args.rate,
            sess_evict_rate: args.rate,
        })
        .operator(Operator::Chart);
    // The kubectl plugin the demo shows the upgrade with, as a user would.
    let plugin = tokio::task::spawn_blocking(|| build_workspace_binaries(&["kubectl-emqx"]))
        .await??
        .remove(0);
    let stage = seed.stage().await?;
    let (sandbox, client) = (&stage.sandbox, stage.client.clone());
    let mut helm = sandbox.helm();
    helm.args(["version", "--short"]);
    shell("helm version --short", helm, None).await?;
    let mut kubectl = sandbox.kubectl();
    kubectl.args(["get", "pods", "-n", NAMESPACE]);
    shell(&format!("kubectl get pods -n {NAMESPACE}"), kubectl, None).await?;

    println!("▶ seed 003 with 3 core nodes");
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let manifest = args.out.join("emqx-update.yaml");
    std::fs::write(&manifest, serde_json::to_string_pretty(&stage.manifest)?)
        .with_context(|| format!("writing {}", manifest.display()))?;
    let mut kubectl = sandbox.kubectl();
    kubectl.args(["apply", "-f"]).arg(&manifest);
    shell("kubectl apply -f emqx-update.yaml", kubectl, None).await?;
    let api = &stage.api;
    let first = watch_until_ready(sandbox, api, None, Duration::from_secs(180), None).await?;
    let old_revision = update_revision(&first).context("no revision after the first rollout")?;

    let service = listeners_endpoint(&client, NS, NAME).await?;
    println!(
        "▶ mqttx bench conn -c {}   (through the listeners Service {service})",
        args.clients
    );
    let load = stage
        .clients(
            LoadConfig {
                publish_interval: Duration::from_secs(2),
                ..load(args.clients, 500, Duration::from_secs(900))
            },
            Duration::from_secs(180),
        )
        .await?;
    let clients = args.clients;
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
    let capture = args.out.join("kubectl-emqx-status.txt");
    let done = watch_until_ready(
        sandbox,
        api,
        Some(&old_revision),
        Duration::from_secs(600),
        Some((&plugin, &capture)),
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
        let plugin_dir = plugin
            .parent()
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        println!(
            "  export PATH={bin}:{plugin_dir}:$PATH   # kubectl and helm (pinned sources), kubectl-emqx"
        );
        println!("  kubectl emqx status {NAME} --watch");
        println!("  kubectl get emqx {NAME} -o json | jq .status.nodeEvacuationsStatus");
        println!("  kubectl get events --sort-by=.metadata.creationTimestamp");
        println!("  kubectl logs {NAME}-core-<revision>-0 --tail=20   # an EMQX node's console");
        println!(
            "  kubectl logs -f -n {} deploy/{}-reconciler   # the operator, as it reconciles",
            sandbox::operator::chart::NAMESPACE,
            sandbox::operator::chart::RELEASE
        );
        println!("  kubectl get endpointslices -l kubernetes.io/service-name={NAME}-listeners");
        println!("Press Ctrl-C to stop it.");
        let _ = tokio::signal::ctrl_c().await;
    }
    stage.stop().await?;
    Ok(())
}
