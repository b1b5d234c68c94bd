//! What the webhook's end-to-end test needs besides the sandbox: the
//! webhook's seed fixtures (kept with the webhook's own tests, which use
//! them too) and the webhook served over TLS on 127.0.0.1 in this process.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use emqx_certs::{CertBundle, CertResolver, ServiceIdentity};
use emqx_webhook::routes::{AppState, RequestLimits, router};
use emqx_webhook::server::{self, ConnectionLimits};
use emqx_webhook::tls;
use serde_json::Value;
use tokio::sync::oneshot;

/// The webhook's seed manifests as JSON objects, named by file.
pub fn fixture(name: &str) -> Value {
    let path = format!(
        "{}/../webhook/tests/fixtures/{name}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("{path}: {e}"))
        .expect("fixture readable");
    serde_json::from_str(&text)
        .map_err(|e| format!("{path}: {e}"))
        .expect("fixture is JSON")
}

/// Every seed fixture.
pub const SEEDS: [&str; 4] = [
    "emqx-v2beta1-seed003",
    "emqx-v2alpha2-seed001",
    "emqxenterprise-v1beta4-seed000",
    "emqxenterprise-v1beta4-seed001",
];

/// The Service identity the webhook's certificate names.
pub fn identity() -> ServiceIdentity {
    ServiceIdentity {
        service: "emqx-webhook".into(),
        namespace: "test".into(),
        cluster_domain: "cluster.local".into(),
        extra_names: Vec::new(),
    }
}

/// The webhook served over TLS on 127.0.0.1 in this process.
pub struct TlsServer {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl TlsServer {
    /// Starts one serving `bundle`.
    pub async fn start_with(
        bundle: CertBundle,
        limits: ConnectionLimits,
        request_limits: RequestLimits,
    ) -> Self {
        tls::install_crypto_provider();
        let resolver = Arc::new(CertResolver::new());
        resolver.install(&bundle).expect("install");
        let app = router(AppState::new(resolver.clone()), request_limits);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let config = tls::server_config(resolver).expect("tls config");
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(server::serve(listener, config, app, limits, async {
            let _ = stopped.await;
        }));
        TlsServer {
            addr,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Signals shutdown and waits (bounded) for the server to return.
    pub async fn stop(mut self) -> bool {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.task.take() {
            Some(task) => tokio::time::timeout(Duration::from_secs(10), task)
                .await
                .is_ok(),
            None => true,
        }
    }
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}
