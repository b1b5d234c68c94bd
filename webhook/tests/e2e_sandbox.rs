//! End to end against the sandbox's real kube-apiserver (issue 5, item 6,
//! first part): the webhook runs in this process on 127.0.0.1 and is
//! registered by URL (caBundle = its CA, IP SAN 127.0.0.1) for admission and
//! for both CRDs' conversion; kubectl then applies the seeds.
//!
//! Not yet covered here: registration through the chart's Service (needs the
//! chart), server-side apply, storage-version migration.

mod support;

use std::time::{Duration, Instant, SystemTime};

use base64::Engine as _;
use emqx_certs::authority;
use sandbox::{Sandbox, SandboxOptions};
use serde_json::{Value, json};

struct Kubectl {
    status: std::process::ExitStatus,
    stdout: String,
    stderr: String,
}

async fn kubectl(sandbox: &Sandbox, args: &[&str], stdin: Option<&Value>) -> Kubectl {
    use tokio::io::AsyncWriteExt;
    let mut cmd = sandbox.kubectl();
    cmd.args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().expect("kubectl");
    let mut input = child.stdin.take().expect("stdin");
    if let Some(v) = stdin {
        input
            .write_all(v.to_string().as_bytes())
            .await
            .expect("write stdin");
    }
    drop(input);
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("kubectl finished within 60 s")
        .expect("kubectl output");
    Kubectl {
        status: out.status,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn webhook_configuration(kind: &str, url: &str, ca: &str) -> Value {
    json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": kind,
        "metadata": {"name": if kind.starts_with("Validating") { "emqx-operator-validating" } else { "emqx-operator-mutating" }},
        "webhooks": [{
            "name": "apps.emqx.io.webhook.test",
            "admissionReviewVersions": ["v1"],
            "sideEffects": "None",
            "failurePolicy": "Fail",
            "timeoutSeconds": 10,
            "clientConfig": {"url": url, "caBundle": ca},
            "rules": [{
                "apiGroups": ["apps.emqx.io"],
                "apiVersions": ["*"],
                "operations": ["CREATE", "UPDATE"],
                "resources": ["emqxes", "emqxenterprises"]
            }]
        }]
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_against_a_real_apiserver_goes_through_the_webhook() {
    let mut identity = support::identity();
    identity.extra_names = vec!["127.0.0.1".into()];
    let bundle = authority::new_bundle(&identity, SystemTime::now(), None).expect("bundle");
    let server =
        support::TlsServer::start_with(bundle.clone(), Default::default(), Default::default())
            .await;
    let base = format!("https://127.0.0.1:{}", server.addr.port());
    let ca = base64::engine::general_purpose::STANDARD.encode(bundle.ca_pem.as_bytes());

    let sandbox = Sandbox::start(SandboxOptions::default())
        .await
        .expect("sandbox starts");
    let crds = format!(
        "{}/../charts/emqx-operator/files/crds",
        env!("CARGO_MANIFEST_DIR")
    );
    let created = kubectl(&sandbox, &["create", "-f", &crds], None).await;
    assert!(created.status.success(), "{}", created.stderr);
    for crd in ["emqxes.apps.emqx.io", "emqxenterprises.apps.emqx.io"] {
        let patch = json!([{"op": "replace", "path": "/spec/conversion/webhook/clientConfig",
                            "value": {"url": format!("{base}/convert"), "caBundle": ca}}]);
        let r = kubectl(
            &sandbox,
            &["patch", "crd", crd, "--type=json", "-p", &patch.to_string()],
            None,
        )
        .await;
        assert!(r.status.success(), "{}", r.stderr);
        let r = kubectl(
            &sandbox,
            &[
                "wait",
                "--for=condition=Established",
                "--timeout=60s",
                &format!("crd/{crd}"),
            ],
            None,
        )
        .await;
        assert!(r.status.success(), "{}", r.stderr);
    }
    for (kind, path) in [
        ("ValidatingWebhookConfiguration", "/validate"),
        ("MutatingWebhookConfiguration", "/mutate"),
    ] {
        let cfg = webhook_configuration(kind, &format!("{base}{path}"), &ca);
        let r = kubectl(&sandbox, &["create", "-f", "-"], Some(&cfg)).await;
        assert!(r.status.success(), "{}", r.stderr);
    }

    // The apiserver picks up new webhook configurations lazily: wait until
    // the validating webhook's deprecation warning for v2alpha2 shows.
    let alpha = support::fixture("emqx-v2alpha2-seed001");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = kubectl(
            &sandbox,
            &["apply", "--dry-run=server", "-f", "-"],
            Some(&alpha),
        )
        .await;
        if r.status.success() && r.stderr.contains("Warning:") && r.stderr.contains("deprecated") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "webhook never answered: {} {}",
            r.stdout,
            r.stderr
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // Rejected with the field named on --dry-run=server. The CRD's CEL rule
    // answers before the validating webhook is asked; both name the field.
    let mut bad = support::fixture("emqx-v2beta1-seed003");
    bad["spec"]["updateStrategy"]["evacuationStrategy"]["connEvictRate"] = json!(0);
    let r = kubectl(
        &sandbox,
        &["apply", "--dry-run=server", "-f", "-"],
        Some(&bad),
    )
    .await;
    assert!(!r.status.success());
    assert!(
        r.stderr
            .contains("spec.updateStrategy.evacuationStrategy.connEvictRate"),
        "{}",
        r.stderr
    );

    let mut negative = support::fixture("emqx-v2alpha2-seed001");
    negative["spec"]["updateStrategy"]["initialDelaySeconds"] = json!(-1);
    let r = kubectl(
        &sandbox,
        &["apply", "--dry-run=server", "-f", "-"],
        Some(&negative),
    )
    .await;
    assert!(!r.status.success());
    assert!(r.stderr.contains("initialDelaySeconds"), "{}", r.stderr);

    // Every seed applies and comes back defaulted.
    for seed in support::SEEDS {
        let mut obj = support::fixture(seed);
        // Both EmqxEnterprise seeds share a name; keep them apart.
        obj["metadata"]["name"] = json!(seed);
        let r = kubectl(&sandbox, &["apply", "-f", "-"], Some(&obj)).await;
        assert!(r.status.success(), "{seed}: {}", r.stderr);
        if seed.contains("v2alpha2") {
            assert!(
                r.stderr.contains("Warning:") && r.stderr.contains("deprecated"),
                "{seed}: {}",
                r.stderr
            );
        }
    }
    let got = kubectl(
        &sandbox,
        &[
            "get",
            "emqxes.v2beta1.apps.emqx.io",
            "emqx-v2beta1-seed003",
            "-o",
            "json",
        ],
        None,
    )
    .await;
    let got: Value = serde_json::from_str(&got.stdout).expect("json");
    assert_eq!(
        got["spec"]["clusterDomain"], "cluster.local",
        "defaulted: {got}"
    );
    assert_eq!(
        got["spec"]["updateStrategy"]["evacuationStrategy"]["connEvictRate"],
        1000
    );

    // A v1beta4 object read as v2beta1 goes through /convert, and back.
    let name = "emqxenterprise-v1beta4-seed000";
    let v2 = kubectl(
        &sandbox,
        &[
            "get",
            "emqxenterprises.v2beta1.apps.emqx.io",
            name,
            "-o",
            "json",
        ],
        None,
    )
    .await;
    assert!(v2.status.success(), "{}", v2.stderr);
    let v2: Value = serde_json::from_str(&v2.stdout).expect("json");
    assert_eq!(v2["apiVersion"], "apps.emqx.io/v2beta1");
    assert_eq!(v2["spec"]["image"], "emqx/emqx-ee:4.4.14", "{v2}");
    let mut write_back = v2.clone();
    if let Some(meta) = write_back["metadata"].as_object_mut() {
        meta.remove("managedFields");
    }
    let r = kubectl(&sandbox, &["replace", "-f", "-"], Some(&write_back)).await;
    assert!(
        r.status.success(),
        "writing the v2beta1 form back: {}",
        r.stderr
    );
    let v1 = kubectl(
        &sandbox,
        &[
            "get",
            "emqxenterprises.v1beta4.apps.emqx.io",
            name,
            "-o",
            "json",
        ],
        None,
    )
    .await;
    let v1: Value = serde_json::from_str(&v1.stdout).expect("json");
    assert_eq!(
        v1["spec"]["template"]["spec"]["emqxContainer"]["image"]["version"], "4.4.14",
        "{v1}"
    );
    assert_eq!(v1["spec"]["replicas"], 3);

    // With the webhook gone (stopped and unregistered), the CRD's CEL rules
    // still refuse bad rates.
    assert!(server.stop().await);
    for cfg in [
        "validatingwebhookconfiguration/emqx-operator-validating",
        "mutatingwebhookconfiguration/emqx-operator-mutating",
    ] {
        let r = kubectl(&sandbox, &["delete", cfg], None).await;
        assert!(r.status.success(), "{}", r.stderr);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = kubectl(
            &sandbox,
            &["apply", "--dry-run=server", "-f", "-"],
            Some(&bad),
        )
        .await;
        assert!(
            !r.status.success(),
            "accepted without the webhook: {}",
            r.stdout
        );
        if !r.stderr.contains("failed calling webhook") {
            assert!(
                r.stderr
                    .contains("connEvictRate must be between 1 and 1000000"),
                "{}",
                r.stderr
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "apiserver kept calling the removed webhook: {}",
            r.stderr
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    sandbox.stop().await.expect("sandbox stops");
}
