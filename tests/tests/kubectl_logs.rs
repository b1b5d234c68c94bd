//! `kubectl logs` against the sandbox, through the real apiserver to the
//! simulated kubelet's HTTPS API: the chart's webhook pod (`-c` picks the
//! container) and an EMQX pod (its console, in EMQX 5's line format),
//! `--tail`, `--limit-bytes`, `--previous` refused as a kubelet refuses
//! it, and `-f` that ends when the pod stops. Straight to the kubelet's
//! port: no client certificate is a 401, bad queries get the kubelet's own
//! refusals.

mod support;

use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, ListParams};
use kube::{Api, ResourceExt};
use sandbox::operator::chart::{CommandOutput, NAMESPACE, run};
use sandbox::seed_003::{Operator, Seed003};
use support::wait_for;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const LIMIT: Duration = Duration::from_secs(60);

async fn kubectl(sandbox: &sandbox::Sandbox, args: &[&str]) -> CommandOutput {
    let mut kubectl = sandbox.kubectl();
    kubectl.args(args);
    run(kubectl, None, LIMIT).await.expect("kubectl runs")
}

fn container_of(pod: &Pod) -> String {
    pod.spec
        .as_ref()
        .and_then(|s| s.containers.first())
        .map(|c| c.name.clone())
        .expect("a container")
}

/// `(status, body)` of `GET path` straight to the kubelet's port, as the
/// sandbox's admin (`with_cert`) or with no client certificate.
async fn kubelet_get(sandbox: &sandbox::Sandbox, path: &str, with_cert: bool) -> (u16, String) {
    let kubeconfig: serde_json::Value =
        serde_json::from_slice(&std::fs::read(sandbox.kubeconfig()).expect("kubeconfig"))
            .expect("kubeconfig json");
    let data = |value: &serde_json::Value| {
        base64::engine::general_purpose::STANDARD
            .decode(value.as_str().expect("base64 field"))
            .expect("base64")
    };
    let mut roots = rustls::RootCertStore::empty();
    let ca = data(&kubeconfig["clusters"][0]["cluster"]["certificate-authority-data"]);
    for cert in CertificateDer::pem_slice_iter(&ca) {
        roots.add(cert.expect("ca")).expect("root");
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots);
    let config = if with_cert {
        let user = &kubeconfig["users"][0]["user"];
        let chain = CertificateDer::pem_slice_iter(&data(&user["client-certificate-data"]))
            .collect::<Result<Vec<_>, _>>()
            .expect("client cert");
        let key = PrivateKeyDer::from_pem_slice(&data(&user["client-key-data"])).expect("key");
        builder
            .with_client_auth_cert(chain, key)
            .expect("client auth")
    } else {
        builder.with_no_client_auth()
    };
    let node = sandbox.addresses().node();
    let tcp = tokio::net::TcpStream::connect((node, sandbox::node::kubelet_server::KUBELET_PORT))
        .await
        .expect("kubelet port");
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(
            ServerName::IpAddress(std::net::IpAddr::V4(node).into()),
            tcp,
        )
        .await
        .expect("TLS to the kubelet");
    tls.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: {node}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .expect("request");
    let mut response = String::new();
    let _ = tokio::time::timeout(LIMIT, tls.read_to_string(&mut response)).await;
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    let body = response
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or_default()
        .to_string();
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kubectl_logs_reads_project_and_emqx_containers() {
    let stage = support::ready(Seed003::new().operator(Operator::Chart)).await;
    let sandbox = &stage.sandbox;

    // The chart's webhook: `kubectl logs -c webhook` is what the process wrote.
    let pods: Api<Pod> = Api::namespaced(stage.client.clone(), NAMESPACE);
    let webhook = pods
        .list(&ListParams::default().labels("app.kubernetes.io/component=webhook"))
        .await
        .expect("webhook pods")
        .items
        .into_iter()
        .next()
        .expect("a webhook pod")
        .name_any();
    let out = kubectl(
        sandbox,
        &["logs", "-n", NAMESPACE, &webhook, "-c", "webhook"],
    )
    .await;
    assert!(out.success, "kubectl logs of {webhook}: {}", out.stderr);
    assert!(out.stdout.contains("serving"), "{}", out.stdout);
    let file = sandbox
        .container_log(NAMESPACE, &webhook, "webhook")
        .expect("the webhook's log file");
    assert!(
        file.starts_with(&out.stdout),
        "kubectl logs is not the container's log:\n{}\n---\n{file}",
        out.stdout
    );
    let out = kubectl(sandbox, &["logs", "-n", NAMESPACE, &webhook, "-c", "nope"]).await;
    assert!(!out.success);
    assert!(out.stderr.contains("nope"), "{}", out.stderr);

    // An EMQX core: its console says it booted and saw the other core join.
    let emqx_pods = stage.pods().await.expect("EMQX pods");
    let core = emqx_pods
        .iter()
        .find(|p| p.name_any().ends_with("-0"))
        .expect("core 0");
    let (core_name, container) = (core.name_any(), container_of(core));
    let namespace = core.namespace().unwrap_or_default();
    let console = wait_for("the other core in core 0's console", LIMIT, || {
        let sandbox = &sandbox;
        let (namespace, core_name) = (&namespace, &core_name);
        async move {
            let out = kubectl(sandbox, &["logs", "-n", namespace, core_name]).await;
            if !out.success {
                return Err(out.stderr);
            }
            if out.stdout.contains("[info] msg: cluster_node_up, node: ") {
                Ok(out.stdout)
            } else {
                Err(out.stdout)
            }
        }
    })
    .await;
    assert!(
        console.contains(" is running now!\n"),
        "no boot line:\n{console}"
    );
    let structured = console
        .lines()
        .find(|l| l.contains(" [info] msg: cluster_node_up"))
        .expect("a structured line");
    let time = structured.split(' ').next().expect("a time");
    assert!(
        chrono::DateTime::parse_from_rfc3339(time).is_ok() && time.ends_with("+00:00"),
        "not EMQX's time format: {structured}"
    );

    // --tail: the last lines of the same log.
    let out = kubectl(
        sandbox,
        &[
            "logs", "-n", &namespace, &core_name, "-c", &container, "--tail=2",
        ],
    )
    .await;
    assert!(out.success, "{}", out.stderr);
    let file = sandbox
        .container_log(&namespace, &core_name, &container)
        .expect("core 0's log file");
    let last_two: Vec<&str> = file.lines().rev().take(2).collect::<Vec<_>>();
    let got: Vec<&str> = out.stdout.lines().rev().collect();
    assert_eq!(got, last_two, "--tail=2 of:\n{file}");

    // --limit-bytes: the first bytes of the same log, cut mid-line.
    let out = kubectl(
        sandbox,
        &[
            "logs",
            "-n",
            &namespace,
            &core_name,
            "-c",
            &container,
            "--limit-bytes=10",
        ],
    )
    .await;
    assert!(out.success, "{}", out.stderr);
    assert_eq!(out.stdout, file[..10], "--limit-bytes=10 of:\n{file}");

    // --previous of a container that never restarted: the kubelet's refusal.
    let out = kubectl(
        sandbox,
        &["logs", "-n", &namespace, &core_name, "--previous"],
    )
    .await;
    assert!(!out.success);
    assert!(
        out.stderr.contains("previous terminated container"),
        "{}",
        out.stderr
    );

    // Straight to the kubelet: who has no certificate is not let in; bad
    // queries are refused as the kubelet refuses them.
    let logs = format!("/containerLogs/{namespace}/{core_name}/{container}");
    assert_eq!(kubelet_get(sandbox, &logs, false).await.0, 401);
    let (status, body) = kubelet_get(sandbox, &format!("{logs}?tailLines=1"), true).await;
    assert_eq!(status, 200, "{body}");
    for (query, status) in [
        ("tailLines=-1", 422),
        ("tailLines=x", 400),
        ("stream=Stdout", 400),
        ("sinceSeconds=10", 400),
    ] {
        assert_eq!(
            kubelet_get(sandbox, &format!("{logs}?{query}"), true)
                .await
                .0,
            status,
            "{query}"
        );
    }
    let (status, body) = kubelet_get(
        sandbox,
        &format!("/containerLogs/{namespace}/{core_name}/nope"),
        true,
    )
    .await;
    assert_eq!(
        (status, body.trim()),
        (
            404,
            format!("container \"nope\" not found in pod \"{core_name}\"").as_str()
        )
    );

    // -f follows until the pod stops: deleting it ends the stream, whose
    // last line is EMQX's stopping line.
    let mut follow = sandbox.kubectl();
    follow
        .args(["logs", "-f", "-n", &namespace, &core_name])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = follow.spawn().expect("kubectl logs -f starts");
    let mut stdout = child.stdout.take().expect("stdout");
    let reader = tokio::spawn(async move {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text).await;
        text
    });
    // Let the stream begin before the pod goes.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        child.try_wait().expect("kubectl state").is_none(),
        "kubectl logs -f ended before the pod stopped"
    );
    let emqx_pods: Api<Pod> = Api::namespaced(stage.client.clone(), &namespace);
    emqx_pods
        .delete(&core_name, &DeleteParams::default())
        .await
        .expect("pod deleted");
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("kubectl logs -f ends within 30 s of the pod's deletion")
        .expect("kubectl exit status");
    assert!(status.success(), "kubectl logs -f: {status}");
    let followed = reader.await.expect("reader");
    assert!(
        followed.starts_with(&console[..console.find('\n').unwrap_or(0)]),
        "-f did not start at the beginning:\n{followed}"
    );
    assert!(
        followed
            .trim_end()
            .ends_with("[notice] msg: stopping_emqx_apps"),
        "-f did not end with the stopping line:\n{followed}"
    );
    stage.stop().await.expect("sandbox stops");
}
