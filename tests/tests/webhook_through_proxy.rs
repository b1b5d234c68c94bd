//! The apiserver calls an admission webhook registered by Service reference,
//! exactly as in a cluster: it resolves the Service to its loopback ClusterIP
//! and the sandbox's service proxy carries the TLS connection to the pod.

#![allow(clippy::panic)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use base64::Engine;
use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use kube::Api;
use kube::api::PostParams;
use sandbox::node::pod_env::image_repository;
use sandbox::{PodContext, PodHook, RunningPod, Sandbox, SandboxOptions};
use serde_json::json;
use support::wait_for;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

/// Plays `test/deny-webhook`: an HTTPS AdmissionReview server on the pod IP
/// that denies every request, naming the pod that answered.
struct DenyWebhook {
    tls: Arc<rustls::ServerConfig>,
}

struct Running(tokio::task::JoinHandle<()>);

#[async_trait::async_trait]
impl RunningPod for Running {
    async fn stop(self: Box<Self>, _grace: Duration) {
        self.0.abort();
    }
}

#[async_trait::async_trait]
impl PodHook for DenyWebhook {
    fn handles(&self, image: &str) -> bool {
        image_repository(image) == "test/deny-webhook"
    }

    async fn start(&self, ctx: PodContext) -> anyhow::Result<Box<dyn RunningPod>> {
        let listener = tokio::net::TcpListener::bind((ctx.ip, 8443))
            .await
            .context("bind")?;
        let acceptor = tokio_rustls::TlsAcceptor::from(self.tls.clone());
        let pod = ctx.pod.metadata.name.clone().unwrap_or_default();
        Ok(Box::new(Running(tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                let pod = pod.clone();
                tokio::spawn(async move {
                    if let Ok(tls) = acceptor.accept(stream).await {
                        let _ = serve(tls, &pod).await;
                    }
                });
            }
        }))))
    }
}

/// Minimal HTTP/1.1 keep-alive loop answering AdmissionReviews with a denial
/// (and plain GETs, the readiness probe, with 200).
async fn serve<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    stream: S,
    pod: &str,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream);
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).await? == 0 {
            return Ok(());
        }
        let mut length = 0usize;
        loop {
            let mut header = String::new();
            reader.read_line(&mut header).await?;
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse().unwrap_or(0).min(1 << 20);
            }
        }
        let mut body = vec![0u8; length];
        reader.read_exact(&mut body).await?;
        let answer = if request_line.starts_with("POST") {
            let review: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
            json!({
                "apiVersion": "admission.k8s.io/v1",
                "kind": "AdmissionReview",
                "response": {
                    "uid": review["request"]["uid"],
                    "allowed": false,
                    "status": {"code": 403, "message": format!("denied by sandbox webhook pod {pod}")}
                }
            })
            .to_string()
        } else {
            "ok".to_string()
        };
        let response = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{answer}",
            answer.len()
        );
        reader.get_mut().write_all(response.as_bytes()).await?;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apiserver_reaches_a_webhook_service_through_the_proxy() {
    support::init_tracing();
    // A CA and a serving certificate for the Service's DNS name.
    let ca_key = rcgen::KeyPair::generate().expect("key");
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).expect("ca");
    let key = rcgen::KeyPair::generate().expect("key");
    let cert = rcgen::CertificateParams::new(vec!["deny.default.svc".to_string()])
        .expect("params")
        .signed_by(&key, &ca)
        .expect("cert");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )
        .expect("tls config");
    let hook = Arc::new(DenyWebhook { tls: Arc::new(tls) });
    let sandbox = Sandbox::start(SandboxOptions::default().hook(hook))
        .await
        .expect("sandbox starts");
    let client = sandbox.client();
    let pp = PostParams::default();

    let deployment: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "deny", "namespace": "default"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "deny"}},
            "template": {"metadata": {"labels": {"app": "deny"}}, "spec": {"containers": [{
                "name": "webhook", "image": "test/deny-webhook:1",
                "ports": [{"name": "https", "containerPort": 8443}],
                "readinessProbe": {"httpGet": {"port": "https", "scheme": "HTTPS", "path": "/readyz"}, "periodSeconds": 1}
            }]}}}
    }))
    .expect("deployment");
    Api::<Deployment>::namespaced(client.clone(), "default")
        .create(&pp, &deployment)
        .await
        .expect("deployment");
    let service: Service = serde_json::from_value(json!({
        "metadata": {"name": "deny", "namespace": "default"},
        "spec": {"selector": {"app": "deny"}, "ports": [{"port": 443, "targetPort": "https"}]}
    }))
    .expect("service");
    Api::<Service>::namespaced(client.clone(), "default")
        .create(&pp, &service)
        .await
        .expect("service");
    let webhook: ValidatingWebhookConfiguration = serde_json::from_value(json!({
        "metadata": {"name": "deny"},
        "webhooks": [{
            "name": "deny.sandbox.test",
            "clientConfig": {
                "service": {"namespace": "default", "name": "deny", "path": "/validate", "port": 443},
                "caBundle": base64::engine::general_purpose::STANDARD.encode(ca.pem()),
            },
            "rules": [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["configmaps"]}],
            "objectSelector": {"matchLabels": {"webhook-test": "deny"}},
            "sideEffects": "None",
            "admissionReviewVersions": ["v1"],
            "failurePolicy": "Fail",
            "timeoutSeconds": 5
        }]
    }))
    .expect("webhook configuration");
    Api::<ValidatingWebhookConfiguration>::all(client.clone())
        .create(&pp, &webhook)
        .await
        .expect("webhook configuration");

    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let message = wait_for("the webhook's denial", Duration::from_secs(60), || {
        let config_maps = config_maps.clone();
        async move {
            let cm: ConfigMap = serde_json::from_value(
                json!({"metadata": {"generateName": "probe-", "labels": {"webhook-test": "deny"}}}),
            )
            .map_err(|e| e.to_string())?;
            match config_maps.create(&PostParams::default(), &cm).await {
                Err(kube::Error::Api(status))
                    if status
                        .message
                        .contains("denied by sandbox webhook pod deny-") =>
                {
                    Ok(status.message)
                }
                Err(e) => Err(e.to_string()),
                Ok(_) => Err("admitted (webhook not yet called?)".into()),
            }
        }
    })
    .await;
    assert!(message.contains("deny.sandbox.test"), "{message}");
    // Objects the webhook does not select are unaffected.
    let plain: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": "plain"}})).expect("cm");
    config_maps
        .create(&pp, &plain)
        .await
        .expect("unselected ConfigMap is admitted");
    sandbox.stop().await.expect("stop");
}
