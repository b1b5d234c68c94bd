//! `emqx-reconciler`: runs the blue-green controllers for `EMQX` and
//! `EmqxEnterprise`, behind a Lease so that of several replicas one acts,
//! with `/metrics`, `/healthz` and `/readyz` on the metrics address.

use anyhow::Context as _;
use clap::Parser;
use emqx_crd::v2beta1::{EMQX, EmqxEnterprise};
use emqx_reconciler::controller::{Context, Shutdown, run};
use emqx_reconciler::leader::{self, LeaseTiming};
use emqx_reconciler::metrics::Metrics;
use kube::Client;
use kube::runtime::events::{Recorder, Reporter};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

#[derive(Parser, Debug)]
#[command(
    version,
    about = "Blue-green upgrades of EMQX clusters with node evacuation"
)]
struct Args {
    /// Address of /metrics, /healthz and /readyz (give the pod IP: several
    /// replicas may share a host).
    #[arg(long, env = "METRICS_ADDR", default_value = "0.0.0.0:8080")]
    metrics_addr: SocketAddr,
    /// Watch only this namespace (default: all).
    #[arg(long, env = "WATCH_NAMESPACE")]
    namespace: Option<String>,
    /// Elect a leader through a Lease before reconciling.
    #[arg(long, env = "LEADER_ELECT", default_value_t = true, action = clap::ArgAction::Set)]
    leader_elect: bool,
    /// Namespace of the Lease (the operator's own).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    lease_namespace: String,
    /// Name of the Lease.
    #[arg(long, default_value = "emqx-operator-reconciler")]
    lease_name: String,
    /// This replica's identity in the Lease.
    #[arg(long, env = "POD_NAME", default_value = "emqx-reconciler")]
    identity: String,
    /// Timeout of every EMQX API call, in seconds.
    #[arg(long, default_value_t = 5)]
    emqx_timeout_seconds: u64,
    /// Also reconcile EmqxEnterprise objects (read as v2beta1 through the
    /// conversion webhook).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    enterprise: bool,
    /// Log as JSON lines.
    #[arg(long, env = "LOG_JSON", default_value_t = false, action = clap::ArgAction::Set)]
    log_json: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    if args.log_json {
        tracing_subscriber::fmt()
            .json()
            .with_env_filter(filter)
            .init();
    } else {
        tracing_subscriber::fmt().with_env_filter(filter).init();
    }
    let client = Client::try_default()
        .await
        .context("no Kubernetes client configuration")?;
    let metrics = Arc::new(Metrics::default());
    let listener = tokio::net::TcpListener::bind(args.metrics_addr)
        .await
        .with_context(|| format!("binding {}", args.metrics_addr))?;
    tokio::spawn(serve_admin(listener, metrics.clone()));

    let leading = if args.leader_elect {
        tracing::info!(lease = %args.lease_name, identity = %args.identity, "waiting for leadership");
        let acquire = leader::acquire(
            client.clone(),
            &args.lease_namespace,
            &args.lease_name,
            &args.identity,
            LeaseTiming::default(),
        );
        tokio::select! {
            leading = acquire => Some(leading.context("leader election")?),
            () = terminate() => {
                tracing::info!("terminating before leadership");
                return Ok(());
            }
        }
    } else {
        None
    };

    let ctx = Arc::new(Context {
        client: client.clone(),
        recorder: Recorder::new(
            client.clone(),
            Reporter {
                controller: "emqx-operator".into(),
                instance: Some(args.identity.clone()),
            },
        ),
        metrics,
        emqx_timeout: Duration::from_secs(args.emqx_timeout_seconds),
    });
    let mut held = leading.as_ref().map(|l| l.held.clone());
    let shutdown = async move {
        let lost = async {
            match held.as_mut() {
                Some(rx) => {
                    let _ = rx.wait_for(|leader| !leader).await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            () = terminate() => tracing::info!("terminating"),
            () = lost => tracing::error!("leadership lost; stopping"),
        }
    };
    let shutdown: Shutdown = futures::future::FutureExt::shared(Box::pin(shutdown));
    let emqx = run::<EMQX>(
        client.clone(),
        args.namespace.as_deref(),
        ctx.clone(),
        shutdown.clone(),
    );
    if args.enterprise {
        let enterprise = run::<EmqxEnterprise>(client, args.namespace.as_deref(), ctx, shutdown);
        futures::join!(emqx, enterprise);
    } else {
        emqx.await;
    }
    // The controllers have stopped: hand the Lease over now rather than let
    // the standby wait out its duration (a rollout's pause in upgrades).
    if let Some(leadership) = leading {
        leadership.release().await;
    }
    Ok(())
}

async fn terminate() {
    #[cfg(unix)]
    {
        let Ok(mut term) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        else {
            let _ = tokio::signal::ctrl_c().await;
            return;
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

async fn serve_admin(listener: tokio::net::TcpListener, metrics: Arc<Metrics>) {
    use axum::routing::get;
    let app = axum::Router::new()
        .route("/healthz", get(|| async { "ok" }))
        // A standby replica is ready too: readiness gates Deployment
        // rollouts, and a new pod waiting for the Lease must not hold a
        // rollout up (only the old leader's exit hands the Lease over).
        .route("/readyz", get(|| async { "ready" }))
        .route(
            "/metrics",
            get(move || {
                let body = metrics.encode();
                async move { body }
            }),
        );
    if let Err(error) = axum::serve(listener, app).await {
        tracing::error!(%error, "admin server stopped");
    }
}
