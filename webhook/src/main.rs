//! `emqx-webhook`: see the library crate for the parts.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use anyhow::Context as _;
use clap::Parser;
use emqx_certs::CertResolver;
use emqx_certs::keeper::CertKeeper;
use emqx_webhook::config::Args;
use emqx_webhook::metrics::ListenerName;
use emqx_webhook::routes::{AppState, health_router, review_router, router};
use emqx_webhook::server::{self, ConnectionLimits, Listener, Transport};
use emqx_webhook::{telemetry, tls};
use tokio::sync::watch;

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(usize::from(args.worker_threads))
        .enable_all()
        .build()
        .context("starting the async runtime")?
        .block_on(serve(args))
}

async fn serve(args: Args) -> anyhow::Result<()> {
    telemetry::init(args.log_format);
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        worker_threads = tokio::runtime::Handle::current().metrics().num_workers(),
        "starting"
    );
    tls::install_crypto_provider();

    let mode = args.cert_mode()?;
    let request_limits = args.request_limits()?;
    let connection_limits = args.connection_limits()?;
    let refresh = args.cert_refresh()?;
    let client = if mode.needs_kube() {
        Some(
            kube::Client::try_default()
                .await
                .context("connecting to the Kubernetes API")?,
        )
    } else {
        None
    };
    let namespace = if mode.needs_kube() {
        args.namespace_or_default(mode.name())?
    } else {
        String::new()
    };

    let resolver = Arc::new(CertResolver::new());
    let state = AppState::new(resolver.clone());
    let keeper = CertKeeper::new(mode.clone(), resolver.clone(), client, namespace);
    // The first refresh runs before we listen so a healthy start serves at
    // once; failure is not fatal (the loop retries, /readyz says why not ready).
    if let Err(e) = keeper.refresh(std::time::SystemTime::now()).await {
        tracing::warn!(error = %e, mode = mode.name(), "no certificate yet; retrying");
    }

    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        // Err means the sender is gone, which also means stop.
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let keeper_task = tokio::spawn(keeper.run(refresh, stopped(stop_rx.clone())));

    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    let health = match args.health_listen {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding {addr}"))?,
        ),
        None => None,
    };
    tracing::info!(listen = %args.listen, health_listen = ?args.health_listen, cert_mode = mode.name(), "serving");
    let tls_config = tls::server_config(resolver)?;
    let shutting_down = state.shutting_down.clone();
    let signal = async move {
        wait_for_signal().await;
        tracing::info!("signal received; shutting down");
        shutting_down.store(true, Ordering::Relaxed);
        let _ = stop_tx.send(true);
    };
    let metrics = state.metrics.clone();
    let webhook_app = if health.is_some() {
        review_router(state.clone(), request_limits)
    } else {
        router(state.clone(), request_limits)
    };
    let webhook = server::serve(
        Listener {
            name: ListenerName::Webhook,
            tcp: listener,
            transport: Transport::Tls(tls_config),
            app: webhook_app,
            limits: connection_limits,
        },
        metrics.clone(),
        stopped(stop_rx.clone()),
    );
    let health = async {
        if let Some(tcp) = health {
            server::serve(
                Listener {
                    name: ListenerName::Health,
                    tcp,
                    transport: Transport::Plain,
                    app: health_router(state.clone()),
                    limits: ConnectionLimits::health(),
                },
                metrics.clone(),
                stopped(stop_rx.clone()),
            )
            .await;
        }
    };
    tokio::join!(signal, webhook, health);
    let _ = keeper_task.await;
    tracing::info!("stopped");
    Ok(())
}

async fn wait_for_signal() {
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
