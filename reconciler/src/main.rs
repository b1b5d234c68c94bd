//! `emqx-reconciler`: runs the blue-green controllers for `EMQX` and
//! `EmqxEnterprise`, behind a Lease so that of several replicas one acts,
//! with `/metrics`, `/healthz` and `/readyz` on the metrics address.

use anyhow::Context as _;
use clap::Parser;
use emqx_crd::logging::{self, LogFormat};
use emqx_crd::v2beta1::{EMQX, EmqxEnterprise};
use emqx_listener::plain::PlainLimits;
use emqx_reconciler::cluster_secrets::{OperatorKey, SecretSource};
use emqx_reconciler::context::Context;
use emqx_reconciler::leader::{self, LeaseTiming};
use emqx_reconciler::metrics::Metrics;
use emqx_reconciler::watch::{Shutdown, run};
use kube::Client;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// jemalloc instead of glibc's malloc: glibc keeps what a burst of passes
/// allocated (many clusters created at once, or a relist of all of them)
/// in its per-thread arenas for the rest of the process's life, so the
/// resident memory stayed at the burst's peak; jemalloc gives freed pages
/// back after a few seconds (the README's scale figures under
/// "Performance" give both, and mimalloc's, which kept its pages too).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options, which it reads itself before `main` from the C
/// string this symbol points to (`malloc_conf`, under tikv-jemalloc-sys's
/// `_rjem_` prefix; `_RJEM_MALLOC_CONF` in the environment still overrides
/// it). `narenas:4`: jemalloc's default is 4 arenas per CPU, each thread
/// allocating in its own, and in a pod without a CPU limit it sees every
/// core of the node: 256 on 64 cores, 12.7 MiB of bookkeeping at 200
/// clusters against 3–5 here. The reconciler runs 2 worker threads
/// (`--worker-threads`), the runtime's own thread and a few blocking ones.
#[allow(unsafe_code)] // a NUL-terminated string jemalloc only reads
#[unsafe(export_name = "_rjem_malloc_conf")]
static MALLOC_CONF: &u8 = &b"narenas:4\0"[0];

/// jemalloc's figures on `/metrics`. A module of this binary, not of the
/// library: a binary that links jemalloc without allocating through it
/// (the sandbox's tests run the library in process) would carry its
/// thread-local state for nothing, and there it pushed a debug build's
/// deepest worker stack over 2 MiB.
mod heap;

/// Every flag has an environment variable prefixed `RECONCILER_`, except
/// the two the downward API sets (`POD_NAMESPACE`, `POD_NAME`), as the
/// webhook's `WEBHOOK_` flags.
#[derive(Parser, Debug)]
#[command(
    name = "emqx-reconciler",
    version,
    about = "Blue-green upgrades of EMQX clusters with node evacuation"
)]
struct Args {
    /// Address of /metrics, /healthz and /readyz (give the pod IP: several
    /// replicas may share a host).
    #[arg(long, env = "RECONCILER_METRICS_ADDR", default_value = "0.0.0.0:8080")]
    metrics_addr: SocketAddr,
    /// Watch only these namespaces (comma-separated, or the flag repeated;
    /// default: all). With a list, the reconciler needs rights in those
    /// namespaces only (the chart's Roles).
    #[arg(long, env = "RECONCILER_WATCH_NAMESPACE", value_delimiter = ',')]
    watch_namespace: Vec<String>,
    /// Elect a leader through a Lease before reconciling.
    #[arg(long, env = "RECONCILER_LEADER_ELECT", default_value_t = true, action = clap::ArgAction::Set)]
    leader_elect: bool,
    /// Namespace of the Lease (the operator's own).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    lease_namespace: String,
    /// Name of the Lease.
    #[arg(
        long,
        env = "RECONCILER_LEASE_NAME",
        default_value = "emqx-operator-reconciler"
    )]
    lease_name: String,
    /// How long a standby waits, after it last saw the Lease renewed, before
    /// it takes over (by its own clock, not the holder's `renewTime`).
    #[arg(long, env = "RECONCILER_LEASE_DURATION_SECONDS", default_value_t = 15)]
    lease_duration_seconds: u64,
    /// How long the leader keeps trying to renew before it steps down (and
    /// exits); shorter than the lease duration, so it has stopped before a
    /// standby takes over.
    #[arg(long, env = "RECONCILER_RENEW_DEADLINE_SECONDS", default_value_t = 10)]
    renew_deadline_seconds: u64,
    /// Pause between Lease renewals and acquisition attempts.
    #[arg(long, env = "RECONCILER_LEASE_RETRY_SECONDS", default_value_t = 2)]
    lease_retry_seconds: u64,
    /// After SIGTERM, how long running passes may finish before the process
    /// exits anyway (an unreachable apiserver must not hold it up).
    #[arg(long, env = "RECONCILER_SHUTDOWN_GRACE_SECONDS", default_value_t = 10)]
    shutdown_grace_seconds: u64,
    /// A file holding the operator's key (at least 32 bytes): the cookie and
    /// the operator's API secret of each cluster are derived from it, so the
    /// reconciler only creates Secrets and never reads one. Unset: random
    /// values, read back from the Secrets (needs `get` on Secrets; the only
    /// way for clusters whose Secrets someone else wrote, like the Go
    /// operator's).
    #[arg(long, env = "RECONCILER_OPERATOR_KEY_FILE")]
    operator_key_file: Option<std::path::PathBuf>,
    /// This replica's identity in the Lease and in Events.
    #[arg(long, env = "POD_NAME", default_value = "emqx-reconciler")]
    identity: String,
    /// Timeout of every EMQX API call, in seconds.
    #[arg(long, env = "RECONCILER_EMQX_TIMEOUT_SECONDS", default_value_t = 5)]
    emqx_timeout_seconds: u64,
    /// Seconds between passes over a Ready cluster when nothing it watches
    /// changes: the steady-state polling of each cluster's EMQX API (two
    /// calls per pass) and its objects (a few reads). Upgrades poll on their
    /// own, shorter schedule. Longer means less load with many clusters,
    /// and a later look at a membership change EMQX makes on its own.
    #[arg(
        long,
        env = "RECONCILER_RESYNC_SECONDS",
        default_value_t = 30,
        value_parser = clap::value_parser!(u64).range(1..=86_400)
    )]
    resync_seconds: u64,
    /// Passes that do their work at once, over every kind and namespace
    /// (0: no bound); waiting passes go first come, first served, those of
    /// a cluster that changed or is not Ready before routine ones. A pass is
    /// a few API reads and EMQX calls; a bound keeps the memory of many
    /// clusters created (or relisted) at once from piling up.
    #[arg(
        long,
        env = "RECONCILER_MAX_CONCURRENT_PASSES",
        default_value_t = emqx_reconciler::context::DEFAULT_CONCURRENT_PASSES
    )]
    max_concurrent_passes: u16,
    /// Upgrades that run at once over all clusters this replica reconciles
    /// (0: no bound). A cluster whose upgrade may not start yet waits in
    /// phase Queued (`Progressing=False`, reason `UpgradeQueued`); one that
    /// has started always finishes.
    #[arg(long, env = "RECONCILER_MAX_CONCURRENT_UPGRADES", default_value_t = 0)]
    max_concurrent_upgrades: usize,
    /// Also reconcile EmqxEnterprise objects (read as v2beta1 through the
    /// conversion webhook).
    #[arg(long, env = "RECONCILER_ENTERPRISE", default_value_t = true, action = clap::ArgAction::Set)]
    enterprise: bool,
    /// Log format; the level comes from `RUST_LOG` (default `info`).
    #[arg(
        long,
        env = "RECONCILER_LOG_FORMAT",
        value_enum,
        default_value = "text"
    )]
    log_format: LogFormat,
    /// Threads that run the passes and their requests. The work is mostly
    /// waiting on the apiserver and EMQX (8 % of one core at 1,000 idle
    /// clusters, measured). tokio's default is one per CPU the process
    /// sees, which is every core of the node when the pod has no CPU limit
    /// (the chart sets none), and every thread costs memory of its own.
    #[arg(
        long,
        env = "RECONCILER_WORKER_THREADS",
        default_value_t = 2,
        value_parser = clap::value_parser!(u16).range(1..=1024)
    )]
    worker_threads: u16,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(usize::from(args.worker_threads))
        .enable_all()
        .build()
        .context("starting the async runtime")?
        .block_on(reconcile_clusters(args))
}

async fn reconcile_clusters(args: Args) -> anyhow::Result<()> {
    logging::init(args.log_format);
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        worker_threads = tokio::runtime::Handle::current().metrics().num_workers(),
        // The arenas threads are given (`MALLOC_CONF` above); jemalloc
        // keeps one more of its own for the largest allocations.
        allocator_arenas = tikv_jemalloc_ctl::opt::narenas::read().ok(),
        "starting"
    );
    let timing = LeaseTiming {
        duration: Duration::from_secs(args.lease_duration_seconds),
        renew_deadline: Duration::from_secs(args.renew_deadline_seconds),
        retry: Duration::from_secs(args.lease_retry_seconds),
    }
    .validate()
    .map_err(|e| {
        anyhow::anyhow!(
            "--lease-duration-seconds, --renew-deadline-seconds, --lease-retry-seconds: {e}"
        )
    })?;
    let grace = Duration::from_secs(args.shutdown_grace_seconds);
    let secret_source = match &args.operator_key_file {
        Some(path) => {
            let bytes = std::fs::read(path)
                .with_context(|| format!("--operator-key-file {}", path.display()))?;
            let key = OperatorKey::from_file_bytes(&bytes)
                .map_err(|e| anyhow::anyhow!("--operator-key-file {}: {e}", path.display()))?;
            SecretSource::Derived(key)
        }
        None => SecretSource::Read,
    };
    let client = Client::try_default()
        .await
        // kube's own error names the step that failed, not what is missing.
        .context(
            "no Kubernetes client configuration (in a pod: the ServiceAccount token, ca.crt and \
             namespace under /var/run/secrets/kubernetes.io/serviceaccount/ and \
             KUBERNETES_SERVICE_HOST/PORT; elsewhere: KUBECONFIG or ~/.kube/config)",
        )?;
    let mut metrics = Metrics::default();
    // jemalloc is this binary's allocator (above), so its figures are ours.
    metrics
        .registry
        .register_collector(Box::new(heap::HeapCollector));
    let metrics = Arc::new(metrics);
    let listener = tokio::net::TcpListener::bind(args.metrics_addr)
        .await
        .with_context(|| format!("binding {}", args.metrics_addr))?;

    // SIGTERM/SIGINT, once, seen by everything that stops on it.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        terminate().await;
        tracing::info!("terminating");
        let _ = stop_tx.send(true);
    });
    let stopping = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|stop| *stop).await;
        }
    };
    tokio::spawn(serve_admin(listener, metrics.clone(), stopping()));

    let leading = if args.leader_elect {
        tracing::info!(lease = %args.lease_name, identity = %args.identity, "waiting for leadership");
        let acquire = leader::acquire(
            client.clone(),
            &args.lease_namespace,
            &args.lease_name,
            &args.identity,
            timing,
        );
        tokio::select! {
            leading = acquire => Some(leading),
            () = stopping() => {
                tracing::info!("terminating before leadership");
                return Ok(());
            }
        }
    } else {
        None
    };
    metrics.leader.set(1);

    let ctx = Arc::new(
        Context::new(
            client.clone(),
            &args.identity,
            metrics.clone(),
            Duration::from_secs(args.emqx_timeout_seconds),
        )
        .with_secret_source(secret_source)
        .with_resync(Duration::from_secs(args.resync_seconds))
        .with_concurrent_passes(args.max_concurrent_passes)
        .with_upgrade_limit(args.max_concurrent_upgrades),
    );
    let shutdown: Shutdown = futures::future::FutureExt::shared(Box::pin(stopping()));
    // One controller per kind and namespace (`None`: all namespaces).
    let mut namespaces: Vec<Option<&str>> = args
        .watch_namespace
        .iter()
        .map(|ns| ns.trim())
        .filter(|ns| !ns.is_empty())
        .map(Some)
        .collect();
    namespaces.dedup();
    if namespaces.is_empty() {
        namespaces.push(None);
    }
    let mut runs: Vec<std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + '_>>> =
        Vec::new();
    for namespace in namespaces {
        runs.push(Box::pin(run::<EMQX>(
            client.clone(),
            namespace,
            ctx.clone(),
            shutdown.clone(),
        )));
        if args.enterprise {
            runs.push(Box::pin(run::<EmqxEnterprise>(
                client.clone(),
                namespace,
                ctx.clone(),
                shutdown.clone(),
            )));
        }
    }
    let controllers = async {
        futures::future::join_all(runs).await;
    };
    let mut held = leading.as_ref().map(|l| l.held.clone());
    let stepped_down = async {
        match held.as_mut() {
            Some(rx) => {
                let _ = rx.wait_for(|leader| !leader).await;
            }
            None => std::future::pending::<()>().await,
        }
    };
    // After SIGTERM, running passes get `grace` to finish.
    let grace_over = async {
        stopping().await;
        tokio::time::sleep(grace).await;
    };
    tokio::select! {
        () = controllers => {}
        () = grace_over => {
            tracing::warn!(?grace, "controllers still stopping after the shutdown grace (an unreachable apiserver?); exiting anyway");
        }
        () = stepped_down => {
            // Stop acting at once: returning drops the runtime and with it
            // every running pass; a standby may take over after the lease
            // duration, which is longer than the renew deadline that has
            // just passed.
            metrics.leader.set(0);
            anyhow::bail!("stepped down from leadership (lease {} not renewed); exiting so that only one replica acts", args.lease_name);
        }
    }
    metrics.leader.set(0);
    // The controllers have stopped: hand the Lease over now rather than let
    // the standby wait out its duration (a rollout's pause in upgrades).
    if let Some(leadership) = leading {
        leadership.release(RELEASE_LIMIT).await;
    }
    Ok(())
}

/// How long handing the Lease back may take at exit.
const RELEASE_LIMIT: Duration = Duration::from_secs(2);

/// SIGTERM or SIGINT, as the webhook waits for them.
async fn terminate() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => {
            // Without signal handlers, ctrl-c is the only way to stop cleanly.
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// `/healthz`, `/readyz` and `/metrics` behind the shared listener limits
/// (connection cap with oldest-idle eviction, first-byte and header
/// timeouts), stopping with the process.
async fn serve_admin(
    listener: tokio::net::TcpListener,
    metrics: Arc<Metrics>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    use axum::routing::get;
    let page = metrics.clone();
    let app = axum::Router::new()
        .route("/healthz", get(|| async { "ok" }))
        // A standby replica is ready too: readiness gates Deployment
        // rollouts, and a new pod waiting for the Lease must not hold a
        // rollout up (only the old leader's exit hands the Lease over).
        .route("/readyz", get(|| async { "ready" }))
        .route(
            "/metrics",
            get(move || {
                let body = page.encode();
                async move { body }
            }),
        );
    emqx_listener::plain::serve(listener, app, PlainLimits::default(), metrics, shutdown).await;
}
