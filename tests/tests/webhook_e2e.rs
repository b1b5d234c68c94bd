//! End to end against the sandbox's real kube-apiserver (issue 5, item 6):
//! the webhook runs in this process on 127.0.0.1 and is registered by URL
//! (caBundle = its CA, IP SAN 127.0.0.1) for admission and for both CRDs'
//! conversion; kubectl then applies the seeds (client- and server-side),
//! sees the warnings, reads across versions, and migrates the storage
//! version of `EmqxEnterprise` from v1beta4 to v2beta1 (checked in etcd).
//!
//! Registration through the chart's Service is covered by the chart's tests.

// The webhook's own test support (fixtures, the in-process TLS server), one
// copy for both crates' tests.
#[path = "../../webhook/tests/support/mod.rs"]
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

/// The resource name kubectl needs to read `obj`'s kind in `obj`'s version.
fn resource_of(obj: &Value) -> String {
    let plural = match obj["kind"].as_str() {
        Some("EMQX") => "emqxes",
        _ => "emqxenterprises",
    };
    let version = obj["apiVersion"]
        .as_str()
        .and_then(|v| v.rsplit_once('/'))
        .map_or("", |(_, v)| v);
    format!("{plural}.{version}.apps.emqx.io")
}

/// `kubectl get` of `name` in `obj`'s kind and version, as JSON.
async fn get_json(sandbox: &Sandbox, obj: &Value, name: &str) -> Value {
    let r = kubectl(
        sandbox,
        &["get", &resource_of(obj), name, "-o", "json"],
        None,
    )
    .await;
    assert!(r.status.success(), "get {name}: {}", r.stderr);
    serde_json::from_str(&r.stdout).expect("kubectl get prints JSON")
}

/// The webhook in this process, registered by URL in a fresh sandbox.
struct Registered {
    server: support::TlsServer,
    sandbox: Sandbox,
    /// `https://127.0.0.1:<port>`.
    base: String,
    /// The webhook's CA, base64, as `caBundle` takes it.
    ca: String,
}

/// Starts the webhook and a sandbox, creates both CRDs with conversion
/// through the webhook, registers the admission webhooks, and waits until
/// the apiserver calls them.
async fn start_registered() -> Registered {
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

    Registered {
        server,
        sandbox,
        base,
        ca,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_against_a_real_apiserver_goes_through_the_webhook() {
    let Registered {
        server, sandbox, ..
    } = start_registered().await;

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

    // Every seed applies, client-side and server-side, and comes back
    // defaulted exactly as emqx-crd defaults it; the v2alpha2 one warns.
    for server_side in [false, true] {
        for seed in support::SEEDS {
            let mut obj = support::fixture(seed);
            // Both EmqxEnterprise seeds share a name; keep them apart.
            let name = if server_side {
                format!("{seed}-ssa")
            } else {
                seed.to_owned()
            };
            obj["metadata"]["name"] = json!(name);
            let args: &[&str] = if server_side {
                &["apply", "--server-side", "--field-manager=e2e", "-f", "-"]
            } else {
                &["apply", "-f", "-"]
            };
            let r = kubectl(&sandbox, args, Some(&obj)).await;
            assert!(r.status.success(), "{name}: {}", r.stderr);
            if seed.contains("v2alpha2") {
                assert!(
                    r.stderr.contains("Warning:") && r.stderr.contains("deprecated"),
                    "{name}: {}",
                    r.stderr
                );
            }
            let got = get_json(&sandbox, &obj, &name).await;
            let expected = emqx_crd::dynamic::default_object(&obj).expect("seed defaults");
            assert_eq!(got["spec"], expected["spec"], "{name} defaulted");
            assert_ne!(got["spec"], obj["spec"], "{name}: nothing was defaulted");
        }
    }
    let got = kubectl(
        &sandbox,
        &[
            "get",
            "emqxes.v2beta1.apps.emqx.io",
            "emqx-v2beta1-seed003-ssa",
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

    // An evacuation that would take over an hour at the configured rates,
    // with the load the status reports (the apiserver hands the webhook the
    // stored status on update), is allowed with a warning.
    let mut slow = support::fixture("emqx-v2beta1-seed003");
    slow["metadata"]["name"] = json!("slow-evacuation");
    let r = kubectl(&sandbox, &["apply", "-f", "-"], Some(&slow)).await;
    assert!(r.status.success(), "{}", r.stderr);
    assert!(!r.stderr.contains("over an hour"), "{}", r.stderr);
    let nodes: Vec<Value> = (0..3)
        .map(|i| {
            json!({"node": format!("emqx@slow-evacuation-core-{i}"), "role": "core",
                        "connections": 20000, "liveConnections": 20000})
        })
        .collect();
    let status = json!({"status": {"coreNodes": nodes}});
    let r = kubectl(
        &sandbox,
        &[
            "patch",
            "emqxes.v2beta1.apps.emqx.io",
            "slow-evacuation",
            "--subresource=status",
            "--type=merge",
            "-p",
            &status.to_string(),
        ],
        None,
    )
    .await;
    assert!(r.status.success(), "{}", r.stderr);
    slow["spec"]["updateStrategy"]["evacuationStrategy"] =
        json!({"connEvictRate": 10, "sessEvictRate": 10, "waitTakeover": 10});
    for args in [
        &["apply", "--dry-run=server", "-f", "-"][..],
        &[
            "apply",
            "--server-side",
            "--force-conflicts",
            "--field-manager=e2e",
            "-f",
            "-",
        ][..],
    ] {
        let r = kubectl(&sandbox, args, Some(&slow)).await;
        assert!(r.status.success(), "{}", r.stderr);
        assert!(
            r.stderr.contains("Warning:") && r.stderr.contains("over an hour"),
            "{args:?}: {}",
            r.stderr
        );
    }

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

/// Every stored object under `/registry/apps.emqx.io/<resource>/`, read from
/// etcd itself (its JSON gateway, `POST /v3/kv/range`): custom resources are
/// stored as JSON in the storage version, so this shows what is really there.
async fn etcd_objects(sandbox: &Sandbox, resource: &str) -> Vec<Value> {
    use base64::engine::general_purpose::STANDARD;
    use http_body_util::BodyExt;
    let prefix = format!("/registry/apps.emqx.io/{resource}/");
    // The range end of a prefix: the prefix with its last byte + 1 ('/' → '0').
    let end = format!("/registry/apps.emqx.io/{resource}0");
    let body = json!({"key": STANDARD.encode(&prefix), "range_end": STANDARD.encode(&end)});
    let addr = std::net::SocketAddr::from((
        sandbox.addresses().control_plane(),
        sandbox::control_plane::ETCD_PORT,
    ));
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .expect("etcd reachable");
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
            .await
            .expect("http handshake with etcd");
    tokio::spawn(conn);
    let req = hyper::Request::builder()
        .method("POST")
        .uri("/v3/kv/range")
        .header("host", addr.to_string())
        .header("content-type", "application/json")
        .body(http_body_util::Full::new(bytes::Bytes::from(
            body.to_string(),
        )))
        .expect("request");
    let resp = tokio::time::timeout(Duration::from_secs(10), sender.send_request(req))
        .await
        .expect("etcd answers within 10 s")
        .expect("etcd range");
    assert!(resp.status().is_success(), "etcd: {}", resp.status());
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    let answer: Value = serde_json::from_slice(&bytes).expect("etcd JSON");
    answer["kvs"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|kv| {
            let raw = STANDARD
                .decode(kv["value"].as_str().expect("value"))
                .expect("base64 value");
            serde_json::from_slice(&raw).expect("custom resources are stored as JSON")
        })
        .collect()
}

fn names_and_versions(stored: &[Value]) -> Vec<(String, String)> {
    let mut out: Vec<_> = stored
        .iter()
        .map(|o| {
            (
                o["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                o["apiVersion"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    out.sort();
    out
}

async fn stored_versions(sandbox: &Sandbox, crd: &str) -> Value {
    let r = kubectl(
        sandbox,
        &["get", "crd", crd, "-o", "jsonpath={.status.storedVersions}"],
        None,
    )
    .await;
    assert!(r.status.success(), "{}", r.stderr);
    serde_json::from_str(&r.stdout).expect("storedVersions is a JSON list")
}

/// `content` of every object, read in v1beta4 and in v2beta1.
async fn read_all(sandbox: &Sandbox, names: &[String]) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for name in names {
        for version in ["v1beta4", "v2beta1"] {
            let r = kubectl(
                sandbox,
                &[
                    "get",
                    &format!("emqxenterprises.{version}.apps.emqx.io"),
                    name,
                    "-o",
                    "json",
                ],
                None,
            )
            .await;
            assert!(r.status.success(), "{name} {version}: {}", r.stderr);
            let obj: Value = serde_json::from_str(&r.stdout).expect("json");
            out.push((format!("{name} {version}"), content(&obj)));
        }
    }
    out
}

/// What must survive a migration: everything but bookkeeping metadata and
/// the conversion's own annotation.
fn content(obj: &Value) -> Value {
    let mut annotations = obj["metadata"]["annotations"].clone();
    if let Some(map) = annotations.as_object_mut() {
        map.remove(emqx_crd::names::ANNOTATION_CONVERSION_DATA);
    }
    json!({
        "apiVersion": obj["apiVersion"],
        "labels": obj["metadata"]["labels"],
        "annotations": annotations,
        "spec": obj["spec"],
        "status": obj["status"],
    })
}

/// Paths of `was` whose value is missing or different in `is`.
fn missing_in(was: &Value, is: &Value, path: &mut String, out: &mut Vec<String>) {
    match (was, is) {
        (Value::Object(a), Value::Object(b)) => {
            for (key, value) in a {
                let len = path.len();
                path.push('/');
                path.push_str(key);
                match b.get(key) {
                    Some(other) => missing_in(value, other, path, out),
                    None => out.push(path.clone()),
                }
                path.truncate(len);
            }
        }
        _ if was != is => out.push(path.clone()),
        _ => {}
    }
}

/// The storage-version migration of the README: objects stored as v1beta4,
/// the CRD re-applied with `storage: true` on v2beta1, every object
/// re-written, v1beta4 removed from `status.storedVersions` — and every
/// object reads the same in both versions as before, with etcd holding only
/// v2beta1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_version_migration_rewrites_every_object_without_loss() {
    const CRD: &str = "emqxenterprises.apps.emqx.io";
    let Registered {
        server,
        sandbox,
        base,
        ca,
    } = start_registered().await;

    // Objects stored as v1beta4: both v1beta4 seeds, one written as
    // v2beta1 (stored converted, its v2-only fields in the annotation), and
    // a status written through the status subresource.
    let mut names = Vec::new();
    for seed in [
        "emqxenterprise-v1beta4-seed000",
        "emqxenterprise-v1beta4-seed001",
    ] {
        let mut obj = support::fixture(seed);
        obj["metadata"]["name"] = json!(seed);
        let r = kubectl(&sandbox, &["apply", "-f", "-"], Some(&obj)).await;
        assert!(r.status.success(), "{seed}: {}", r.stderr);
        names.push(seed.to_owned());
    }
    let mut v2 = emqx_crd::dynamic::convert_object(
        &support::fixture("emqxenterprise-v1beta4-seed000"),
        "apps.emqx.io/v2beta1",
    )
    .expect("converts");
    v2["metadata"]["name"] = json!("written-as-v2beta1");
    v2["spec"]["revisionHistoryLimit"] = json!(7);
    v2["metadata"]["labels"] = json!({"team": "mqtt"});
    let r = kubectl(&sandbox, &["create", "-f", "-"], Some(&v2)).await;
    assert!(r.status.success(), "{}", r.stderr);
    names.push("written-as-v2beta1".to_owned());
    let status_file = format!(
        "{}/../shared/tests/seeds/seed000-status-v1beta4.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let status: Value =
        serde_json::from_str(&std::fs::read_to_string(&status_file).expect("status seed"))
            .expect("status seed JSON");
    let patch = json!({"status": status["status"]});
    let r = kubectl(
        &sandbox,
        &[
            "patch",
            "emqxenterprises.v1beta4.apps.emqx.io",
            &names[0],
            "--subresource=status",
            "--type=merge",
            "-p",
            &patch.to_string(),
        ],
        None,
    )
    .await;
    assert!(r.status.success(), "{}", r.stderr);

    let stored = etcd_objects(&sandbox, "emqxenterprises").await;
    assert_eq!(
        names_and_versions(&stored),
        names
            .iter()
            .map(|n| (n.clone(), "apps.emqx.io/v1beta4".to_owned()))
            .collect::<Vec<_>>(),
        "before: stored as v1beta4"
    );
    assert_eq!(stored_versions(&sandbox, CRD).await, json!(["v1beta4"]));
    let before = read_all(&sandbox, &names).await;
    assert!(
        before.iter().any(|(_, c)| !c["status"].is_null()),
        "a status to carry over"
    );

    // 1. Re-apply the CRD with `storage: true` moved to v2beta1 (what a chart
    //    upgrade that moves the flag does).
    let mut crd =
        serde_json::to_value(emqx_crd::crd::emqx_enterprise_crd().expect("CRD")).expect("CRD JSON");
    for version in crd["spec"]["versions"].as_array_mut().expect("versions") {
        version["storage"] = json!(version["name"] == "v2beta1");
    }
    crd["spec"]["conversion"]["webhook"]["clientConfig"] =
        json!({"url": format!("{base}/convert"), "caBundle": ca});
    let r = kubectl(
        &sandbox,
        &[
            "apply",
            "--server-side",
            "--force-conflicts",
            "--field-manager=e2e",
            "-f",
            "-",
        ],
        Some(&crd),
    )
    .await;
    assert!(r.status.success(), "{}", r.stderr);
    assert_eq!(
        stored_versions(&sandbox, CRD).await,
        json!(["v1beta4", "v2beta1"])
    );

    // 2. Re-write every object with an empty patch: the content is unchanged
    //    (and so is kubectl's last-applied annotation, which `kubectl
    //    replace` would rewrite in the version it read), but the apiserver
    //    re-encodes it in the storage version. It switches its storage codec
    //    when it observes the CRD change, so repeat until etcd holds only
    //    v2beta1.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let list = kubectl(&sandbox, &["get", CRD, "-A", "-o", "json"], None).await;
        assert!(list.status.success(), "{}", list.stderr);
        let list: Value = serde_json::from_str(&list.stdout).expect("list JSON");
        let items = list["items"].as_array().cloned().unwrap_or_default();
        assert_eq!(items.len(), names.len());
        for item in &items {
            let r = kubectl(
                &sandbox,
                &[
                    "patch",
                    CRD,
                    "-n",
                    item["metadata"]["namespace"].as_str().unwrap_or_default(),
                    item["metadata"]["name"].as_str().unwrap_or_default(),
                    "--type=merge",
                    "-p",
                    "{}",
                ],
                None,
            )
            .await;
            assert!(r.status.success(), "{}", r.stderr);
        }
        let stored = etcd_objects(&sandbox, "emqxenterprises").await;
        if names_and_versions(&stored)
            .iter()
            .all(|(_, v)| v == "apps.emqx.io/v2beta1")
        {
            assert_eq!(stored.len(), names.len());
            for obj in &stored {
                assert_eq!(
                    obj["spec"]["image"], "emqx/emqx-ee:4.4.14",
                    "v2 form: {obj}"
                );
            }
            break;
        }
        assert!(
            Instant::now() < deadline,
            "objects still stored as v1beta4: {:?}",
            names_and_versions(&stored)
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // 3. Drop v1beta4 from storedVersions (nothing is stored in it any more).
    let patch = json!({"status": {"storedVersions": ["v2beta1"]}});
    let r = kubectl(
        &sandbox,
        &[
            "patch",
            "crd",
            CRD,
            "--subresource=status",
            "--type=merge",
            "-p",
            &patch.to_string(),
        ],
        None,
    )
    .await;
    assert!(r.status.success(), "{}", r.stderr);
    assert_eq!(stored_versions(&sandbox, CRD).await, json!(["v2beta1"]));

    // Every object reads as before, with nothing lost. Only defaults appear:
    // the apiserver defaults an object read from storage with the storage
    // version's schema and does not default it again after conversion, so
    // before, the v2beta1 view lacked v2beta1's defaults (probes,
    // revisionHistoryLimit, ...); now they are stored. The v2beta1 view is
    // exactly the old one defaulted; the v1beta4 view keeps every value it
    // had and may show those defaults where v1beta4 has a field for them.
    let after = read_all(&sandbox, &names).await;
    for ((name, was), (_, is)) in before.iter().zip(&after) {
        let mut lost = Vec::new();
        missing_in(was, is, &mut String::new(), &mut lost);
        assert!(lost.is_empty(), "{name} lost {lost:?}: was {was}, is {is}");
        if name.ends_with("v2beta1") {
            let object = json!({"apiVersion": was["apiVersion"], "kind": "EmqxEnterprise",
                                "metadata": {"name": "x"}, "spec": was["spec"], "status": was["status"]});
            let defaulted = emqx_crd::dynamic::default_object(&object).expect("defaults");
            let mut expected = was.clone();
            expected["spec"] = defaulted["spec"].clone();
            expected["status"] = defaulted["status"].clone();
            assert_eq!(&expected, is, "{name}: not just the old view defaulted");
        }
    }

    assert!(server.stop().await);
    sandbox.stop().await.expect("sandbox stops");
}

/// A v1beta4 `EmqxEnterprise` patched through v2beta1 (a guard setting,
/// which only v2beta1 expresses) keeps its pod template: the apiserver
/// fills v2beta1's schema defaults (two probes on port `dashboard`) on that
/// write before converting to the stored v1beta4, and the conversion takes
/// out what was filled, so the patch starts no upgrade. The setting itself
/// is kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_v1beta4_object_patched_through_v2beta1_keeps_its_pod_template() {
    let Registered {
        server, sandbox, ..
    } = start_registered().await;
    let enterprise = support::fixture("emqxenterprise-v1beta4-seed000");
    let r = kubectl(&sandbox, &["create", "-f", "-"], Some(&enterprise)).await;
    assert!(r.status.success(), "{}", r.stderr);
    let name = enterprise["metadata"]["name"].as_str().expect("a name");
    let before = get_json(&sandbox, &enterprise, name).await;

    let patch = json!({"spec": {"updateStrategy": {"guard": {
        "connectionRecovery": {"windowSeconds": 30}
    }}}});
    let r = kubectl(
        &sandbox,
        &[
            "patch",
            "emqxenterprises.v2beta1.apps.emqx.io",
            name,
            "--type=merge",
            "-p",
            &patch.to_string(),
        ],
        None,
    )
    .await;
    assert!(r.status.success(), "{}", r.stderr);

    let after = get_json(&sandbox, &enterprise, name).await;
    assert_eq!(
        after["spec"]["template"], before["spec"]["template"],
        "the stored pod template changed"
    );
    let mut view = enterprise.clone();
    view["apiVersion"] = json!("apps.emqx.io/v2beta1");
    let view = get_json(&sandbox, &view, name).await;
    assert_eq!(
        view["spec"]["updateStrategy"]["guard"]["connectionRecovery"]["windowSeconds"],
        json!(30),
        "{view}"
    );
    assert!(server.stop().await);
    sandbox.stop().await.expect("sandbox stops");
}
