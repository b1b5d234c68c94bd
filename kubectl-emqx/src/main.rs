//! `kubectl emqx`: see the library crate.

use std::io::{IsTerminal as _, Write as _};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, Result};
use clap::{Parser, Subcommand};
use emqx_crd::migrate::CliArgs;
use emqx_crd::v1beta4;
use emqx_crd::v2beta1::{self, EMQX};
use kube::api::{ListParams, Patch, PatchParams};
use kube::config::KubeConfigOptions;
use kube::{Api, Client, Config, ResourceExt};
use kubectl_emqx::snapshot::Kind;
use kubectl_emqx::steer::{Steer, patch};
use kubectl_emqx::{render, snapshot};

/// Watch and steer blue-green upgrades of EMQX clusters.
#[derive(Parser, Debug)]
#[command(name = "kubectl emqx", version)]
struct Args {
    /// Namespace (default: the kubeconfig context's).
    #[arg(short, long, global = true)]
    namespace: Option<String>,
    /// kubeconfig context (default: the current one).
    #[arg(long, global = true)]
    context: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// The cluster's revisions, sets, pods, EMQX nodes, evacuations (bars
    /// with rate and time left), conditions and recent Events. Without NAME:
    /// one line per cluster.
    Status {
        name: Option<String>,
        /// Redraw every --interval seconds until interrupted.
        #[arg(short, long)]
        watch: bool,
        #[arg(long, default_value_t = 2)]
        interval: u64,
        /// With --watch: stop after this many screens (0: never).
        #[arg(long, default_value_t = 0)]
        updates: u64,
        /// Without NAME: every namespace.
        #[arg(short = 'A', long)]
        all_namespaces: bool,
    },
    /// Pause reconciliation (the operator observes and reports only).
    Pause { name: String },
    /// Resume a paused cluster.
    Resume { name: String },
    /// Let an upgrade waiting for promotion (`promotion: Manual`) move clients.
    Promote { name: String },
    /// Abort the running upgrade: the old revision serves, the new sets go.
    Abort { name: String },
    /// Retry an aborted upgrade.
    Retry { name: String },
    /// Turn an EmqxEnterprise v1beta4 manifest (stdin) into an EMQX v2beta1
    /// manifest (stdout), as emqx-migrate does.
    Migrate(CliArgs),
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args = Args::parse();
    if let Command::Migrate(migrate) = &args.command {
        return ExitCode::from(migrate.run_stdio("kubectl emqx migrate"));
    }
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kubectl emqx: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<()> {
    let options = KubeConfigOptions {
        context: args.context.clone(),
        ..KubeConfigOptions::default()
    };
    let config = match Config::from_kubeconfig(&options).await {
        Ok(config) => config,
        // In a pod, without a kubeconfig.
        Err(_) if args.context.is_none() => Config::infer().await.context("no kubeconfig")?,
        Err(e) => return Err(e).context("reading the kubeconfig"),
    };
    let namespace = args
        .namespace
        .clone()
        .unwrap_or_else(|| config.default_namespace.clone());
    let client = Client::try_from(config).context("building the API client")?;
    let api: Api<EMQX> = Api::namespaced(client.clone(), &namespace);
    let steer = |name: &str, steer: Steer| {
        let (client, namespace, name) = (client.clone(), namespace.clone(), name.to_owned());
        async move {
            let (kind, object) = snapshot::find(&client, &namespace, &name).await?;
            let (body, said) = patch(steer, &object)?;
            // The annotations, on whichever kind the cluster is (an
            // EmqxEnterprise through its stored v1beta4).
            let params = PatchParams::default();
            let body = Patch::Merge(&body);
            match kind {
                Kind::Emqx => Api::<EMQX>::namespaced(client, &namespace)
                    .patch(&name, &params, &body)
                    .await
                    .map(|_| ()),
                Kind::EmqxEnterprise => {
                    Api::<v1beta4::EmqxEnterprise>::namespaced(client, &namespace)
                        .patch(&name, &params, &body)
                        .await
                        .map(|_| ())
                }
            }
            .with_context(|| format!("annotating {} {namespace}/{name}", kind.name()))?;
            println!("{said}");
            anyhow::Ok(())
        }
    };
    match args.command {
        Command::Status {
            name: Some(name),
            watch,
            interval,
            updates,
            ..
        } => {
            let mut shown = 0u64;
            loop {
                let screen = render::status(&snapshot::fetch(&client, &namespace, &name).await?);
                let mut stdout = std::io::stdout().lock();
                if watch && stdout.is_terminal() {
                    // Home and clear, as `watch` does.
                    write!(stdout, "\x1b[H\x1b[2J")?;
                }
                writeln!(stdout, "{screen}")?;
                stdout.flush()?;
                shown += 1;
                if !watch || (updates > 0 && shown >= updates) {
                    return Ok(());
                }
                tokio::time::sleep(Duration::from_secs(interval.max(1))).await;
            }
        }
        Command::Status {
            name: None,
            all_namespaces,
            ..
        } => {
            let (emqx, enterprise): (Api<EMQX>, Api<v2beta1::EmqxEnterprise>) = if all_namespaces {
                (Api::all(client.clone()), Api::all(client))
            } else {
                (api, Api::namespaced(client, &namespace))
            };
            let mut rows: Vec<(Kind, EMQX)> =
                listed(emqx.list(&ListParams::default()).await, "EMQX")?
                    .into_iter()
                    .map(|o| (Kind::Emqx, o))
                    .collect();
            rows.extend(
                listed(
                    enterprise.list(&ListParams::default()).await,
                    "EmqxEnterprise",
                )?
                .into_iter()
                .map(|o| (Kind::EmqxEnterprise, snapshot::enterprise_as_emqx(o))),
            );
            println!(
                "{:<20} {:<24} {:<15} {:<26} {:<12} IMAGE",
                "NAMESPACE", "NAME", "KIND", "STATUS", "REVISION"
            );
            for (kind, o) in rows {
                println!(
                    "{:<20} {:<24} {:<15} {:<26} {:<12} {}",
                    o.namespace().unwrap_or_default(),
                    o.name_any(),
                    kind.name(),
                    render::phase(&o),
                    o.status
                        .as_ref()
                        .and_then(|s| s.core_nodes_status.as_ref())
                        .and_then(|s| s.update_revision.clone())
                        .unwrap_or_default(),
                    o.spec.image
                );
            }
            Ok(())
        }
        Command::Pause { name } => steer(&name, Steer::Pause).await,
        Command::Resume { name } => steer(&name, Steer::Resume).await,
        Command::Promote { name } => steer(&name, Steer::Promote).await,
        Command::Abort { name } => steer(&name, Steer::Abort).await,
        Command::Retry { name } => steer(&name, Steer::Retry).await,
        Command::Migrate(_) => unreachable!("handled before connecting"),
    }
}

/// Every object of one kind; none when its CRD is not installed (a
/// cluster with only one of the two).
fn listed<K: Clone>(
    answer: Result<kube::core::ObjectList<K>, kube::Error>,
    kind: &str,
) -> Result<Vec<K>> {
    match answer {
        Ok(list) => Ok(list.items),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(Vec::new()),
        Err(e) => Err(e).with_context(|| format!("listing {kind}")),
    }
}
