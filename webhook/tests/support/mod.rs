//! Shared by the integration tests: review bodies, seed fixtures, an
//! in-process router, and a real TLS server on loopback with a client.

#![allow(dead_code)] // each test crate uses a different subset

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use emqx_certs::{CertBundle, CertResolver, ServiceIdentity, authority};
use emqx_webhook::metrics::ListenerName;
use emqx_webhook::routes::{AppState, RequestLimits, router};
use emqx_webhook::server::{self, ConnectionLimits, Listener, Transport};
use emqx_webhook::tls;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tower::ServiceExt;

/// The seed manifests as JSON objects, named by file. (The path goes through
/// `../webhook` because the sandbox's webhook end-to-end test includes this
/// module too: both crates sit beside `webhook/`.)
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

/// An AdmissionReview v1 request for `object` (and `old` on UPDATE).
pub fn admission_body(
    uid: &str,
    operation: &str,
    object: &Value,
    old: Option<&Value>,
    dry_run: bool,
) -> Vec<u8> {
    let api_version = object["apiVersion"].as_str().unwrap_or_default();
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    let kind = object["kind"].as_str().unwrap_or_default();
    let resource = match kind {
        "EMQX" => "emqxes",
        "EmqxEnterprise" => "emqxenterprises",
        _ => "others",
    };
    serde_json::to_vec(&json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {"group": group, "version": version, "kind": kind},
            "resource": {"group": group, "version": version, "resource": resource},
            "requestKind": {"group": group, "version": version, "kind": kind},
            "name": object.pointer("/metadata/name"),
            "namespace": object.pointer("/metadata/namespace"),
            "operation": operation,
            "userInfo": {"username": "kubernetes-admin", "groups": ["system:masters", "system:authenticated"]},
            "object": object,
            "oldObject": old,
            "dryRun": dry_run,
            "options": {"apiVersion": "meta.k8s.io/v1", "kind": if operation == "UPDATE" { "UpdateOptions" } else { "CreateOptions" }}
        }
    }))
    .expect("serialize review")
}

/// A ConversionReview v1 request.
pub fn conversion_body(uid: &str, desired: &str, objects: &[Value]) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "ConversionReview",
        "request": {"uid": uid, "desiredAPIVersion": desired, "objects": objects}
    }))
    .expect("serialize review")
}

/// The router with a loaded certificate and default limits.
pub fn app() -> (Router, AppState) {
    let resolver = Arc::new(CertResolver::new());
    resolver.install(&bundle()).expect("install");
    let state = AppState::new(resolver);
    (router(state.clone(), RequestLimits::default()), state)
}

/// Sends one request through the router in-process.
pub async fn call(app: &Router, method: &str, path: &str, body: Vec<u8>) -> (StatusCode, Vec<u8>) {
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", "application/json")
        .body(Body::from(body))
        .expect("request");
    let resp = app.clone().oneshot(req).await.expect("infallible");
    let status = resp.status();
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    (status, bytes.to_vec())
}

/// A review response body as JSON.
pub fn json_of(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes)
        .map_err(|e| format!("{e}: {}", String::from_utf8_lossy(bytes)))
        .expect("response is JSON")
}

/// A self-signed bundle for `emqx-webhook.test.svc`.
pub fn bundle() -> CertBundle {
    authority::new_bundle(&identity(), SystemTime::now(), None).expect("bundle")
}

/// The test Service identity.
pub fn identity() -> ServiceIdentity {
    ServiceIdentity {
        service: "emqx-webhook".into(),
        namespace: "test".into(),
        cluster_domain: "cluster.local".into(),
        extra_names: Vec::new(),
    }
}

/// A webhook served over TLS on 127.0.0.1 in this process.
pub struct TlsServer {
    pub addr: SocketAddr,
    pub resolver: Arc<CertResolver>,
    pub ca_pem: String,
    pub state: AppState,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl TlsServer {
    /// Starts one with short timeouts so hostile-client tests finish quickly.
    pub async fn start(limits: ConnectionLimits, request_limits: RequestLimits) -> Self {
        Self::start_with(bundle(), limits, request_limits).await
    }

    /// Starts one serving `b`.
    pub async fn start_with(
        b: CertBundle,
        limits: ConnectionLimits,
        request_limits: RequestLimits,
    ) -> Self {
        tls::install_crypto_provider();
        let resolver = Arc::new(CertResolver::new());
        resolver.install(&b).expect("install");
        let state = AppState::new(resolver.clone());
        let app = router(state.clone(), request_limits);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let config = tls::server_config(resolver.clone()).expect("tls config");
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(server::serve(
            Listener {
                name: ListenerName::Webhook,
                tcp: listener,
                transport: Transport::Tls(config),
                app,
                limits,
            },
            state.metrics.clone(),
            async {
                let _ = stopped.await;
            },
        ));
        TlsServer {
            addr,
            resolver,
            ca_pem: b.ca_pem,
            state,
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

/// Short limits for tests.
pub fn test_limits() -> ConnectionLimits {
    ConnectionLimits {
        handshake_timeout: Duration::from_millis(500),
        header_read_timeout: Duration::from_millis(700),
        idle_timeout: Duration::from_millis(700),
        max_connections: 64,
        max_connections_per_peer: 64,
        shutdown_grace: Duration::from_secs(2),
    }
}

/// A rustls client trusting `ca_pem`, offering `alpn`.
pub fn client_config(ca_pem: &str, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.expect("ca pem")).expect("add root");
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

/// Connects and completes a TLS handshake for `emqx-webhook.test.svc`.
pub async fn tls_connect(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let name = rustls::pki_types::ServerName::try_from("emqx-webhook.test.svc").expect("name");
    tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
}

/// One HTTP/1.1 request over a fresh TLS connection; returns status and body.
pub async fn https_post(server: &TlsServer, path: &str, body: Vec<u8>) -> (u16, Vec<u8>) {
    let tls = tls_connect(server.addr, client_config(&server.ca_pem, &[b"http/1.1"]))
        .await
        .expect("tls");
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
            .await
            .expect("h1 handshake");
    tokio::spawn(conn);
    let req = Request::builder()
        .method("POST")
        .uri(path)
        .header("host", "emqx-webhook.test.svc")
        .header("content-type", "application/json")
        .body(http_body_util::Full::new(bytes::Bytes::from(body)))
        .expect("request");
    let resp = sender.send_request(req).await.expect("send");
    let status = resp.status().as_u16();
    let body = resp
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes()
        .to_vec();
    (status, body)
}
