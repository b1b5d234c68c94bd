//! The kubelet's HTTPS API on the node's address, as much of it as
//! `kubectl logs` needs: `GET /containerLogs/{namespace}/{pod}/{container}`.
//!
//! The apiserver reaches it as it reaches any kubelet (Kubernetes v1.35.4,
//! `pkg/kubelet/client/kubelet_client.go`, `pkg/registry/core/pod/strategy.go`):
//! the Node's InternalIP (`--kubelet-preferred-address-types`) and
//! `status.daemonEndpoints.kubeletEndpoint.Port`, over TLS it verifies with
//! `--kubelet-certificate-authority`, presenting `--kubelet-client-certificate`.
//! Like a kubelet with webhook authentication and authorization
//! (`pkg/kubelet/server/auth.go`), this server takes the user from a client
//! certificate the cluster CA signed (no certificate: 401) and asks the
//! apiserver with a SubjectAccessReview whether that user may `get`
//! `nodes/proxy` of this node (no: 403). The sandbox grants the apiserver's
//! user `system:kubelet-api-admin`, as kubeadm does ([`grant_apiserver_access`]).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::TokioIo;
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use k8s_openapi::api::rbac::v1::ClusterRoleBinding;
use kube::Api;
use kube::api::PostParams;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use crate::control_plane::pki::{CertPair, KUBELET_CLIENT_USER};
use crate::node::container_logs::{self, ByteBudget, LogRequest};
use crate::node::log_book::LogBook;

/// The kubelet's port (`--port`'s default).
pub const KUBELET_PORT: u16 = 10250;

/// How often a followed log is checked for new lines.
const FOLLOW_POLL: Duration = Duration::from_millis(100);

/// Longest a TLS handshake may take before the connection is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

type Body = BoxBody<Bytes, Infallible>;

/// The running server; dropping it stops accepting.
pub struct KubeletServer {
    task: tokio::task::JoinHandle<()>,
}

impl Drop for KubeletServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What the server needs.
pub struct ServerConfig {
    /// Where to listen (the node's address and [`KUBELET_PORT`]).
    pub addr: SocketAddr,
    /// The serving certificate (for the node's address).
    pub serving: CertPair,
    /// The cluster CA, which signs client certificates.
    pub ca_pem: String,
    /// A client for SubjectAccessReviews.
    pub client: kube::Client,
    /// The Node's name (the object of the authorization check).
    pub node_name: String,
    /// The pods' logs.
    pub book: LogBook,
}

struct Shared {
    client: kube::Client,
    node_name: String,
    book: LogBook,
}

/// Who a client certificate says the caller is.
#[derive(Debug, Clone)]
struct Identity {
    user: String,
    groups: Vec<String>,
}

/// Binds and starts serving.
pub async fn start(config: ServerConfig) -> Result<KubeletServer> {
    let tls = tokio_rustls::TlsAcceptor::from(tls_config(&config.serving, &config.ca_pem)?);
    let listener = TcpListener::bind(config.addr)
        .await
        .with_context(|| format!("binding the kubelet API on {}", config.addr))?;
    let ctx = Arc::new(Shared {
        client: config.client,
        node_name: config.node_name,
        book: config.book,
    });
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            let (tls, ctx) = (tls.clone(), ctx.clone());
            tokio::spawn(async move {
                let Ok(Ok(stream)) =
                    tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.accept(stream)).await
                else {
                    return;
                };
                let identity = stream
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|certs| certs.first())
                    .and_then(|cert| identity(cert.as_ref()));
                let service = hyper::service::service_fn(move |request| {
                    let (ctx, identity) = (ctx.clone(), identity.clone());
                    async move { Ok::<_, Infallible>(handle(request, &ctx, identity).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(KubeletServer { task })
}

/// TLS with the node's certificate; a client certificate is asked for and,
/// when given, must chain to the cluster CA.
fn tls_config(serving: &CertPair, ca_pem: &str) -> Result<Arc<rustls::ServerConfig>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.context("reading the cluster CA")?)?;
    }
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .allow_unauthenticated()
    .build()
    .context("building the kubelet's client verifier")?;
    let chain = CertificateDer::pem_slice_iter(serving.cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .context("reading the kubelet's serving certificate")?;
    let key = PrivateKeyDer::from_pem_slice(serving.key_pem.as_bytes())
        .context("reading the kubelet's serving key")?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The user (CN) and groups (O) of an x509 client certificate, as the
/// apiserver's and kubelet's x509 authenticator read them.
fn identity(der: &[u8]) -> Option<Identity> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let subject = cert.subject();
    let user = subject
        .iter_common_name()
        .next()?
        .as_str()
        .ok()?
        .to_string();
    let groups = subject
        .iter_organization()
        .filter_map(|o| o.as_str().ok().map(str::to_string))
        .collect();
    Some(Identity { user, groups })
}

fn text(status: StatusCode, body: impl Into<String>) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from(body.into())).boxed());
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

async fn handle(
    request: Request<Incoming>,
    ctx: &Shared,
    identity: Option<Identity>,
) -> Response<Body> {
    let Some(identity) = identity else {
        return text(StatusCode::UNAUTHORIZED, "Unauthorized");
    };
    let path = request.uri().path().to_string();
    if !path.starts_with("/containerLogs/") {
        return text(StatusCode::NOT_FOUND, "404 page not found");
    }
    if request.method() != http::Method::GET {
        return text(StatusCode::METHOD_NOT_ALLOWED, "405: Method Not Allowed");
    }
    match authorized(ctx, &identity).await {
        Ok(true) => {}
        Ok(false) => {
            return text(
                StatusCode::FORBIDDEN,
                format!(
                    "Forbidden (user={}, verb=get, resource=nodes, subresource(s)=[proxy])",
                    identity.user
                ),
            );
        }
        Err(e) => {
            tracing::warn!("kubelet authorization of {}: {e:#}", identity.user);
            return text(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!(
                    "Authorization error (user={}, verb=get, resource=nodes, subresource(s)=[proxy])",
                    identity.user
                ),
            );
        }
    }
    match container_logs::parse(&path, request.uri().query()) {
        Ok(logs) => serve_logs(ctx, logs).await,
        Err(refusal) => text(refusal.status, refusal.message),
    }
}

/// The kubelet's check (`pkg/kubelet/server/auth.go`): may the caller `get`
/// `nodes/proxy` of this node? (`/containerLogs` maps to `proxy`.)
async fn authorized(ctx: &Shared, identity: &Identity) -> Result<bool> {
    let review = SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: Some(identity.user.clone()),
            groups: Some(identity.groups.clone()),
            resource_attributes: Some(ResourceAttributes {
                verb: Some("get".into()),
                group: Some(String::new()),
                version: Some("v1".into()),
                resource: Some("nodes".into()),
                subresource: Some("proxy".into()),
                name: Some(ctx.node_name.clone()),
                ..ResourceAttributes::default()
            }),
            ..SubjectAccessReviewSpec::default()
        },
        ..SubjectAccessReview::default()
    };
    let answer = Api::<SubjectAccessReview>::all(ctx.client.clone())
        .create(&PostParams::default(), &review)
        .await
        .context("SubjectAccessReview")?;
    Ok(answer.status.is_some_and(|s| s.allowed))
}

async fn serve_logs(ctx: &Shared, request: LogRequest) -> Response<Body> {
    let LogRequest {
        namespace,
        pod: pod_name,
        container,
        ..
    } = &request;
    let Some(pod) = ctx.book.pod(namespace, pod_name) else {
        return text(
            StatusCode::NOT_FOUND,
            format!("pod {pod_name:?} does not exist"),
        );
    };
    let Some(state) = pod.containers.get(container).copied() else {
        return text(
            StatusCode::NOT_FOUND,
            format!("container {container:?} not found in pod {pod_name:?}"),
        );
    };
    let (path, follow) = if request.previous {
        let path = pod.previous(container);
        if !path.exists() {
            return text(
                StatusCode::BAD_REQUEST,
                format!(
                    "previous terminated container {container:?} in pod {pod_name:?} not found"
                ),
            );
        }
        // A terminated instance has nothing more to say.
        (path, None)
    } else {
        let path = pod.current(container);
        if state.starts == 0 || !path.exists() {
            return text(
                StatusCode::BAD_REQUEST,
                format!(
                    "container {container:?} in pod {pod_name:?} is waiting to start: ContainerCreating"
                ),
            );
        }
        let follow = request.follow.then(|| Followed {
            book: ctx.book.clone(),
            namespace: namespace.clone(),
            pod: pod_name.clone(),
            uid: pod.uid.clone(),
            container: container.clone(),
            starts: state.starts,
        });
        (path, follow)
    };
    let mut file = match tokio::fs::File::open(&path).await {
        Ok(file) => file,
        Err(e) => {
            return text(
                StatusCode::BAD_REQUEST,
                format!("failed to open log file {}: {e}", path.display()),
            );
        }
    };
    let (tx, rx) = mpsc::channel::<Bytes>(8);
    let budget = ByteBudget::new(request.limit_bytes);
    let tail = request.tail_lines;
    tokio::spawn(async move {
        if let Err(e) = stream_log(&mut file, tail, budget, follow, &tx).await {
            tracing::debug!("streaming {}: {e}", path.display());
        }
    });
    let frames = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|chunk| (Ok::<_, Infallible>(Frame::data(chunk)), rx))
    });
    let mut response = Response::new(BodyExt::boxed(StreamBody::new(frames)));
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain"),
    );
    response
}

/// The container instance a followed log belongs to.
struct Followed {
    book: LogBook,
    namespace: String,
    pod: String,
    uid: String,
    container: String,
    starts: u64,
}

impl Followed {
    /// Whether the instance still runs (not stopped, not replaced, pod not gone).
    fn running(&self) -> bool {
        self.book
            .pod(&self.namespace, &self.pod)
            .filter(|p| p.uid == self.uid)
            .and_then(|p| p.containers.get(&self.container).copied())
            .is_some_and(|c| c.running && c.starts == self.starts)
    }
}

/// Sends the (tailed) log, then, when following, what the instance appends
/// until it stops or the caller goes away.
async fn stream_log(
    file: &mut tokio::fs::File,
    tail: Option<u64>,
    mut budget: ByteBudget,
    follow: Option<Followed>,
    tx: &mpsc::Sender<Bytes>,
) -> std::io::Result<()> {
    let mut content = Vec::new();
    file.read_to_end(&mut content).await?;
    let start = container_logs::tail_start(&content, tail);
    if !send(tx, &mut budget, &content[start..]).await {
        return Ok(());
    }
    let Some(follow) = follow else {
        return Ok(());
    };
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        // Read what is there; stop once the instance is over and drained.
        let running = follow.running();
        loop {
            let n = file.read(&mut buffer).await?;
            if n == 0 {
                break;
            }
            if !send(tx, &mut budget, &buffer[..n]).await {
                return Ok(());
            }
        }
        if !running {
            return Ok(());
        }
        tokio::select! {
            () = tx.closed() => return Ok(()),
            () = tokio::time::sleep(FOLLOW_POLL) => {}
        }
    }
}

/// Sends what the budget allows; false once nothing more is to be sent.
async fn send(tx: &mpsc::Sender<Bytes>, budget: &mut ByteBudget, chunk: &[u8]) -> bool {
    let part = budget.take(chunk);
    if !part.is_empty() && tx.send(Bytes::copy_from_slice(part)).await.is_err() {
        return false;
    }
    !budget.spent()
}

/// Grants the apiserver's kubelet-client user `system:kubelet-api-admin`
/// (kubeadm's `kubeadm:apiserver-kubelet-client` binding), so the kubelet's
/// SubjectAccessReview lets `kubectl logs` through. Idempotent.
pub async fn grant_apiserver_access(client: &kube::Client) -> Result<()> {
    let binding: ClusterRoleBinding = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "sandbox:apiserver-kubelet-client"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "system:kubelet-api-admin"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": KUBELET_CLIENT_USER}],
    }))?;
    match Api::<ClusterRoleBinding>::all(client.clone())
        .create(&PostParams::default(), &binding)
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
        Err(e) => Err(e).context("granting the apiserver system:kubelet-api-admin"),
    }
}
