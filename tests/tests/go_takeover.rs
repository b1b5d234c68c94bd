//! Taking over a cluster the Go EMQX Operator 2.2.29 created, end to end
//! (issue #18): the objects Go wrote, captured from a real Go-created
//! cluster (`reconciler/tests/fixtures/go-operator-2.2.29/`), are created
//! as they were, their pods run by the real StatefulSet controller and
//! played by the EMQX simulator, MQTT clients connected; then our chart is
//! installed as the README's "Switching from the Go operator" says. For a
//! minute nothing of the running cluster may change — no pod, set, Service
//! selector, ConfigMap, PDB or Secret, no client disconnected — and the
//! object must say Ready in our status. The apiserver's audit log gives
//! every write our reconciler made meanwhile (the write log, printed).
//! Then a Go pod restarts, then all three at once, and each becomes Ready
//! through our on-serving condition; and seed 003's patch runs a
//! blue-green from Go's set to ours, each client disconnected once and no
//! QoS 1 message lost.

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use base64::Engine as _;
use emqx_crd::v2beta1::EMQX;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{ListParams, Patch, PatchParams};
use kube::{Api, Client, ResourceExt};
use mqtt_load::recorder::Summary;
use sandbox::control_plane::audit::AuditedWrite;
use sandbox::operator::chart::{
    NAMESPACE as OPERATOR_NAMESPACE, helm_upgrade_install, run, wait_operator_available,
};
use sandbox::operator::install_crds;
use sandbox::operator::project_image::build_operator_images;
use sandbox::seed_003::{condition, connect_clients, load, ready_on};
use sandbox::{EmqxHook, Sandbox, SandboxOptions};
use serde_json::{Value, json};
use support::{is_ready, pod_condition, wait_for};

/// The captured cluster: object `probe` in `default`, three cores of
/// revision `57b88cb8f`.
const NAME: &str = "probe";
const NS: &str = "default";
const GO_REVISION: &str = "57b88cb8f";
const GO_SET: &str = "probe-core-57b88cb8f";
const CORES: usize = 3;
const ON_SERVING: &str = "apps.emqx.io/on-serving";
/// The chart's reconciler ServiceAccount, as the apiserver names its user.
const RECONCILER_USER: &str = "system:serviceaccount:emqx-operator-system:emqx-operator-reconciler";
/// How long nothing may change after the takeover.
const QUIET: Duration = Duration::from_secs(60);
const LIMIT: Duration = Duration::from_secs(180);
const CLIENTS: usize = 100;

macro_rules! fixture {
    ($file:literal) => {
        include_str!(concat!(
            "../../reconciler/tests/fixtures/go-operator-2.2.29/",
            $file
        ))
    };
}

fn documents(text: &str) -> Vec<Value> {
    serde_saphyr::from_multiple(text).expect("fixture YAML")
}

/// The captured objects other than the `EMQX` object and the pod, adapted
/// only where this sandbox differs from the one they were captured in:
/// - `status` is dropped: each object's controller writes its own (the
///   StatefulSet controller, the disruption controller);
/// - `ownerReferences[].uid` is the `EMQX` object's here (the capture
///   removed UIDs; the apiserver needs one);
/// - the `clusterIP(s)` of the Services that have one are dropped: they
///   were addresses of the capturing sandbox's Service range, and this one
///   allocates from its own (the headless Service keeps its `None`);
/// - the Secrets' data (captured `REDACTED`) is made again in Go's shape —
///   a node cookie, and `key:secret` lines with the operator's key
///   `emqx-operator-controller` — and their `apps.emqx.io/last-applied`
///   annotations (a copy of that data, also redacted) are left out.
///
/// - the licence (see [`licence_conf`]) is prepended to `emqx.conf`, as Go
///   renders `spec.config.data` into it.
///
/// The pod is not created: the StatefulSet controller makes the pods from
/// Go's template, as it did for Go.
fn go_objects(owner_uid: &str) -> Vec<Value> {
    let mut objects = Vec::new();
    for text in [
        fixture!("configmap.yaml"),
        fixture!("secret.yaml"),
        fixture!("service.yaml"),
        fixture!("poddisruptionbudget.yaml"),
        fixture!("statefulset.yaml"),
    ] {
        objects.extend(documents(text));
    }
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    for object in &mut objects {
        let map = object.as_object_mut().expect("an object");
        map.remove("status");
        for owner in object["metadata"]["ownerReferences"]
            .as_array_mut()
            .into_iter()
            .flatten()
        {
            owner["uid"] = json!(owner_uid);
        }
        match object["kind"].as_str() {
            Some("ConfigMap") => {
                let conf = object["data"]["emqx.conf"].as_str().expect("emqx.conf");
                object["data"]["emqx.conf"] = json!(format!("{}{conf}", licence_conf()));
            }
            Some("Service") if object["spec"]["clusterIP"] != "None" => {
                let spec = object["spec"].as_object_mut().expect("spec");
                spec.remove("clusterIP");
                spec.remove("clusterIPs");
            }
            Some("Secret") => {
                let key = object["data"]
                    .as_object()
                    .and_then(|d| d.keys().next().cloned())
                    .expect("a data key");
                let value = match key.as_str() {
                    "node_cookie" => "go-made-node-cookie-0123456789".to_owned(),
                    _ => "emqx-operator-controller:g0M4deS3cretF0rTheOperat0r".to_owned(),
                };
                object["data"] = json!({ key: b64(&value) });
                object["metadata"]["annotations"]
                    .as_object_mut()
                    .expect("annotations")
                    .remove("apps.emqx.io/last-applied");
            }
            _ => {}
        }
    }
    objects
}

async fn kubectl(sandbox: &Sandbox, args: &[&str], stdin: Option<&[u8]>) -> String {
    let mut kubectl = sandbox.kubectl();
    kubectl.args(args);
    let out = run(kubectl, stdin, LIMIT).await.expect("kubectl runs");
    assert!(
        out.success,
        "kubectl {args:?}: {}{}",
        out.stdout, out.stderr
    );
    out.stdout
}

/// A licence for three nodes. The captured cluster ran EMQX 6.0.1 on three
/// cores with no `license.key` in a sandbox whose simulator did not model
/// the licence yet; real EMQX 6 shuts the second node down on joining
/// (`emqx-sim/EMQX-FACTS.md`), so a real cluster of this shape carries a
/// key. It is set in `spec.config.data` (and Go's record of it) and in the
/// `emqx.conf` Go rendered from it, consistently, as Go would have.
fn licence_conf() -> String {
    format!(
        "license {{ key = \"{}\" }}\n",
        emqx_sim::licence::test_key(1)
    )
}

/// `kubectl create` of the captured `EMQX` object, then its captured status
/// through the status subresource (as Go's manager wrote it). Returns the
/// object's UID.
async fn create_go_emqx(sandbox: &Sandbox) -> String {
    let mut emqx = documents(fixture!("emqx.yaml")).remove(0);
    let status = emqx
        .as_object_mut()
        .and_then(|o| o.remove("status"))
        .expect("captured status");
    emqx["spec"]["config"]["data"] = json!(licence_conf());
    emqx["metadata"]["annotations"]["apps.emqx.io/last-emqx-configuration"] = json!(licence_conf());
    let body = serde_json::to_vec(&emqx).expect("json");
    kubectl(sandbox, &["create", "-f", "-"], Some(&body)).await;
    let patch = json!({ "status": status }).to_string();
    kubectl(
        sandbox,
        &[
            "patch",
            "emqx",
            NAME,
            "--subresource=status",
            "--type=merge",
            "-p",
            &patch,
        ],
        None,
    )
    .await;
    let api: Api<EMQX> = Api::namespaced(sandbox.client(), NS);
    api.get(NAME).await.expect("EMQX").uid().expect("uid")
}

/// Plays the Go manager's one job for running pods (it does not run here):
/// `update_pod_conditions.go` sets `apps.emqx.io/on-serving` True on a pod
/// whose containers are ready. Returns once every core is Ready.
async fn play_go_manager_until_ready(client: &Client) {
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    wait_for("Go's pods Ready", LIMIT, || {
        let pods = pods.clone();
        async move {
            let listed = pods
                .list(&ListParams::default().labels("apps.emqx.io/instance=probe"))
                .await
                .map_err(|e| e.to_string())?
                .items;
            for pod in &listed {
                if pod_condition(pod, "ContainersReady") == "True"
                    && pod_condition(pod, ON_SERVING) != "True"
                {
                    let patch = json!({"status": {"conditions": [{
                        "type": ON_SERVING,
                        "status": "True",
                        "lastTransitionTime": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                    }]}});
                    pods.patch_status(
                        &pod.name_any(),
                        &PatchParams::default(),
                        &Patch::Strategic(&patch),
                    )
                    .await
                    .map_err(|e| e.to_string())?;
                }
            }
            let ready = listed.iter().filter(|p| is_ready(p)).count();
            if ready == CORES {
                Ok(())
            } else {
                Err(format!("{ready}/{CORES} pods Ready"))
            }
        }
    })
    .await;
}

/// What the takeover must leave alone, by `kind/name`: sets (spec,
/// labels, annotations, generation), pods (UID, spec, labels,
/// annotations), Services (selector, ports, labels, annotations), the
/// ConfigMap, PDB and Secrets (as last written: `resourceVersion`).
async fn snapshot(client: &Client) -> BTreeMap<String, Value> {
    let lp = ListParams::default().labels("apps.emqx.io/instance=probe");
    let mut seen = BTreeMap::new();
    let meta = |o: &Value| {
        json!({
            "uid": o["metadata"]["uid"],
            "labels": o["metadata"]["labels"],
            "annotations": o["metadata"]["annotations"],
        })
    };
    let sets = Api::<StatefulSet>::namespaced(client.clone(), NS)
        .list(&lp)
        .await
        .expect("sets");
    for set in sets {
        let o = serde_json::to_value(&set).expect("json");
        seen.insert(
            format!("StatefulSet/{}", set.name_any()),
            json!([meta(&o), o["metadata"]["generation"], o["spec"]]),
        );
    }
    let pods = Api::<Pod>::namespaced(client.clone(), NS)
        .list(&lp)
        .await
        .expect("pods");
    for pod in pods {
        let o = serde_json::to_value(&pod).expect("json");
        seen.insert(
            format!("Pod/{}", pod.name_any()),
            json!([meta(&o), o["spec"]]),
        );
    }
    let services = Api::<k8s_openapi::api::core::v1::Service>::namespaced(client.clone(), NS)
        .list(&lp)
        .await
        .expect("services");
    for svc in services {
        let o = serde_json::to_value(&svc).expect("json");
        seen.insert(
            format!("Service/{}", svc.name_any()),
            json!([meta(&o), o["spec"]["selector"], o["spec"]["ports"]]),
        );
    }
    let rv = |o: Value| json!([meta(&o), o["metadata"]["resourceVersion"]]);
    for cm in Api::<k8s_openapi::api::core::v1::ConfigMap>::namespaced(client.clone(), NS)
        .list(&lp)
        .await
        .expect("config maps")
    {
        seen.insert(
            format!("ConfigMap/{}", cm.name_any()),
            rv(serde_json::to_value(&cm).expect("json")),
        );
    }
    for secret in Api::<k8s_openapi::api::core::v1::Secret>::namespaced(client.clone(), NS)
        .list(&lp)
        .await
        .expect("secrets")
    {
        seen.insert(
            format!("Secret/{}", secret.name_any()),
            rv(serde_json::to_value(&secret).expect("json")),
        );
    }
    for pdb in
        Api::<k8s_openapi::api::policy::v1::PodDisruptionBudget>::namespaced(client.clone(), NS)
            .list(&lp)
            .await
            .expect("PDBs")
    {
        let o = serde_json::to_value(&pdb).expect("json");
        seen.insert(
            format!("PodDisruptionBudget/{}", pdb.name_any()),
            json!([meta(&o), o["spec"]]),
        );
    }
    seen
}

/// The `kind/name`s whose snapshot differs.
fn changed(before: &BTreeMap<String, Value>, now: &BTreeMap<String, Value>) -> Vec<String> {
    before
        .keys()
        .chain(now.keys())
        .filter(|k| before.get(*k) != now.get(*k))
        .cloned()
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect()
}

/// Our reconciler's writes completed from `since` on.
fn reconciler_writes(sandbox: &Sandbox, since: chrono::DateTime<chrono::Utc>) -> Vec<AuditedWrite> {
    sandbox
        .audited_writes()
        .expect("audit log")
        .into_iter()
        .filter(|w| w.user == RECONCILER_USER && w.at >= since)
        .collect()
}

/// The status Go left on the object.
fn go_status() -> Value {
    documents(fixture!("emqx.yaml")).remove(0)["status"].take()
}

/// The JSON pointers under which `a` and `b` differ (leaves only; a list
/// of another length is one change).
fn changed_paths(a: &Value, b: &Value, at: &str) -> Vec<String> {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => x
            .keys()
            .chain(y.keys().filter(|k| !x.contains_key(*k)))
            .flat_map(|k| {
                changed_paths(
                    x.get(k).unwrap_or(&Value::Null),
                    y.get(k).unwrap_or(&Value::Null),
                    &format!("{at}/{k}"),
                )
            })
            .collect(),
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => x
            .iter()
            .zip(y)
            .enumerate()
            .flat_map(|(i, (p, q))| changed_paths(p, q, &format!("{at}/{i}")))
            .collect(),
        _ if a == b => Vec::new(),
        _ => {
            let value = b.to_string();
            let short: String = value.chars().take(160).collect();
            let more = if short.len() < value.len() { "…" } else { "" };
            vec![format!("{at}={short}{more}")]
        }
    }
}

/// Whether a write may happen while a taken-over cluster runs unchanged:
/// our status on the object and the reconciler's leader Lease. No Event:
/// nothing was done (the README's step 5 says so).
fn expected_while_quiet(w: &AuditedWrite) -> bool {
    match w.target().as_str() {
        "emqxes/status" => w.namespace.as_deref() == Some(NS) && w.name == NAME,
        "leases" => w.namespace.as_deref() == Some(OPERATOR_NAMESPACE),
        _ => false,
    }
}

/// Deletes the Go pods of these ordinals at once and waits until the
/// StatefulSet made each again and it is Ready through the on-serving
/// condition our reconciler set (the writes are printed), and the object
/// is Ready again on Go's revision.
async fn restart_go_pods(sandbox: &Sandbox, hook: &EmqxHook, ordinals: &[u32]) {
    let pods: Api<Pod> = Api::namespaced(sandbox.client(), NS);
    let deleted_at = chrono::Utc::now();
    let mut old = BTreeMap::new();
    for i in ordinals {
        let name = format!("{GO_SET}-{i}");
        let uid = pods.get(&name).await.expect("pod").uid();
        pods.delete(&name, &kube::api::DeleteParams::default())
            .await
            .expect("pod deleted");
        old.insert(name, uid);
    }
    let ready = sandbox::seed_003::wait_for("the restarted pods Ready", LIMIT, || {
        let (pods, old) = (pods.clone(), old.clone());
        async move {
            for (name, old_uid) in &old {
                let pod = pods.get(name).await.map_err(|e| e.to_string())?;
                if pod.uid() == *old_uid || !is_ready(&pod) {
                    return Err(format!(
                        "{name}: uid {:?} (old {old_uid:?}), conditions {:?}",
                        pod.uid(),
                        pod.status.and_then(|s| s.conditions)
                    ));
                }
            }
            Ok(())
        }
    })
    .await;
    let writes = reconciler_writes(sandbox, deleted_at);
    // The StatefulSet recreates each pod under its name, so its EMQX node
    // comes back: force-leaving it in between makes the new node leave the
    // cluster (mria 0.8.18 `force_leave/1`), and it never becomes Ready.
    let force_left: Vec<String> = writes
        .iter()
        .filter(|w| w.resource == "events")
        .filter(|w| w.body.as_ref().is_some_and(|b| b["reason"] == "ForceLeave"))
        .map(|w| format!("{w} {}", w.body.clone().unwrap_or_default()))
        .collect();
    assert!(
        force_left.is_empty(),
        "a restarting Go pod's node was force-left: {force_left:#?}"
    );
    if ready.is_err() {
        dump_reconciler_logs(sandbox).await;
        eprintln!("EMQX members: {:?}", hook.cluster().map(|c| c.summaries()));
    }
    ready.expect("the restarted pods Ready");
    let marked: Vec<AuditedWrite> = writes
        .into_iter()
        .filter(|w| w.target() == "pods/status")
        .collect();
    eprintln!("[go_takeover] on-serving writes after restarting {ordinals:?}:");
    for w in &marked {
        eprintln!("  {w} {}", w.body.clone().unwrap_or_default());
    }
    for name in old.keys() {
        assert!(
            marked.iter().any(|w| &w.name == name
                && w.code == 200
                && w.body
                    .as_ref()
                    .is_some_and(|b| b.to_string().contains(ON_SERVING))),
            "our reconciler did not set {ON_SERVING} on {name}"
        );
    }
    let api: Api<EMQX> = Api::namespaced(sandbox.client(), NS);
    let emqx = wait_for("Ready after the restart", LIMIT, || {
        let api = api.clone();
        async move {
            let emqx = api.get(NAME).await.map_err(|e| e.to_string())?;
            ready_by_us(&emqx).map(|_| emqx)
        }
    })
    .await;
    assert_eq!(ready_on(&emqx, None), Ok(GO_REVISION.to_owned()));
}

/// The reconcilers' logs, for a failure's diagnosis.
async fn dump_reconciler_logs(sandbox: &Sandbox) {
    let pods: Api<Pod> = Api::namespaced(sandbox.client(), OPERATOR_NAMESPACE);
    for pod in pods
        .list(&ListParams::default())
        .await
        .map(|l| l.items)
        .unwrap_or_default()
    {
        let name = pod.name_any();
        if let Some(log) = sandbox.container_log(OPERATOR_NAMESPACE, &name, "reconciler") {
            let tail: Vec<&str> = log.lines().rev().take(60).collect();
            eprintln!("--- {name}:");
            for line in tail.iter().rev() {
                eprintln!("{line}");
            }
        }
    }
}

/// Ready by our reconciler: its conditions carry the generation they were
/// computed for (Go's never do).
fn ready_by_us(emqx: &EMQX) -> Result<String, String> {
    let ready = condition(emqx, "Ready").ok_or_else(|| "no Ready condition".to_owned())?;
    if ready.observed_generation != emqx.metadata.generation {
        return Err(format!("Ready is still Go's: {ready:?}"));
    }
    ready_on(emqx, None)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn go_created_cluster_is_taken_over_without_touching_a_broker() {
    support::init_tracing();
    let started = Instant::now();
    // The chart's path: the operator's pods are podman containers from
    // images/build's images.
    let images = tokio::task::spawn_blocking(build_operator_images)
        .await
        .expect("image build task")
        .expect("operator images");
    let hook = EmqxHook::new();
    let options = images.options(SandboxOptions::default().hook(hook.clone()).audit_writes());
    let sandbox = Sandbox::start(options).await.expect("sandbox starts");
    let client = sandbox.client();
    let emqx_api: Api<EMQX> = Api::namespaced(client.clone(), NS);

    // The Go chart's CRDs, which stay when it is uninstalled (README step
    // 1). Their text was not captured; ours stand in for them: the same
    // group, kinds, versions and field names, v2beta1 stored.
    install_crds(&client).await.expect("CRDs");
    // Go's objects, as Go wrote them; its manager is gone (step 2).
    let uid = create_go_emqx(&sandbox).await;
    let list = json!({"apiVersion": "v1", "kind": "List", "items": go_objects(&uid)});
    kubectl(
        &sandbox,
        &["create", "-f", "-"],
        Some(&serde_json::to_vec(&list).expect("json")),
    )
    .await;
    play_go_manager_until_ready(&client).await;
    let go_nodes: Vec<String> = hook.nodes().values().map(|n| n.node_name.clone()).collect();
    assert_eq!(go_nodes.len(), CORES, "{go_nodes:?}");
    let cluster = hook.cluster().expect("an EMQX node");
    let quiet_load = connect_clients(
        &client,
        NS,
        NAME,
        cluster.clone(),
        load(CLIENTS, 100, Duration::from_secs(600)),
        Duration::from_secs(60),
    )
    .await
    .expect("clients connect to Go's cluster");
    eprintln!(
        "[go_takeover] Go's cluster running with {CLIENTS} clients after {:.0}s",
        started.elapsed().as_secs_f64()
    );
    let before = snapshot(&client).await;
    assert!(before.contains_key(&format!("StatefulSet/{GO_SET}")));

    // README step 3: our release owns the CRDs; step 4: helm install.
    for args in [
        &[
            "annotate",
            "crd",
            "emqxes.apps.emqx.io",
            "emqxenterprises.apps.emqx.io",
            "--overwrite",
            "meta.helm.sh/release-name=emqx-operator",
            "meta.helm.sh/release-namespace=emqx-operator-system",
        ][..],
        &[
            "label",
            "crd",
            "emqxes.apps.emqx.io",
            "emqxenterprises.apps.emqx.io",
            "--overwrite",
            "app.kubernetes.io/managed-by=Helm",
        ],
    ] {
        kubectl(&sandbox, args, None).await;
    }
    let takeover = chrono::Utc::now();
    // The Go operator's Secrets hold random values: the reconciler must read
    // them back (its default derives both from its own key and reads none).
    helm_upgrade_install(&sandbox, &["--set", "reconciler.readClusterSecrets=true"])
        .await
        .expect("helm install");
    wait_operator_available(&client, LIMIT)
        .await
        .expect("operator available");
    eprintln!(
        "[go_takeover] chart installed after {:.0}s",
        started.elapsed().as_secs_f64()
    );

    // For a minute: nothing of the running cluster changes, no client is
    // disconnected, and the object is Ready in our status.
    let quiet_until = Instant::now() + QUIET;
    let mut ours = None;
    while Instant::now() < quiet_until {
        let now = snapshot(&client).await;
        let diff = changed(&before, &now);
        assert!(
            diff.is_empty(),
            "the takeover changed {diff:?}:\n{}",
            diff.iter()
                .map(|k| format!(
                    "{k}\n  before {:?}\n  now    {:?}",
                    before.get(k),
                    now.get(k)
                ))
                .collect::<Vec<_>>()
                .join("\n")
        );
        let emqx = emqx_api.get(NAME).await.expect("EMQX");
        if ours.is_none() {
            ours = ready_by_us(&emqx).ok();
        }
        let disconnected: Vec<String> = (0..CLIENTS)
            .filter_map(|i| quiet_load.client_log(i))
            .filter(|l| l.disconnects() > 0)
            .map(|l| l.client_id)
            .collect();
        assert!(disconnected.is_empty(), "disconnected: {disconnected:?}");
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let emqx = emqx_api.get(NAME).await.expect("EMQX");
    assert_eq!(
        ready_by_us(&emqx),
        Ok(GO_REVISION.to_owned()),
        "{:?}",
        emqx.status
    );
    assert_eq!(
        ours.as_deref(),
        Some(GO_REVISION),
        "never Ready in our status"
    );

    let writes = reconciler_writes(&sandbox, takeover);
    eprintln!(
        "[go_takeover] write log: every write of {RECONCILER_USER} from helm install to {}s after the operator was available ({} writes):",
        QUIET.as_secs(),
        writes.len()
    );
    // Each status write, with what it changed (the first: against the
    // status Go left).
    let mut status = go_status();
    for w in &writes {
        eprintln!("  {w}");
        if w.target() == "emqxes/status"
            && let Some(new) = w.body.as_ref().map(|b| b["status"].clone())
        {
            eprintln!(
                "      changed: {}",
                changed_paths(&status, &new, "").join(" ")
            );
            status = new;
        }
    }
    let unexpected: Vec<String> = writes
        .iter()
        .filter(|w| !expected_while_quiet(w))
        .map(ToString::to_string)
        .collect();
    assert!(
        unexpected.is_empty(),
        "writes to a running cluster taken over: {unexpected:#?}"
    );
    // Ours replaces Go's status once (twice when the second pass starts
    // before the watch brought the first write); an idle cluster's status
    // is not written again and again.
    let status_writes = writes
        .iter()
        .filter(|w| w.target() == "emqxes/status" && w.code == 200)
        .count();
    assert!(
        (1..=2).contains(&status_writes),
        "{status_writes} status writes in {}s",
        QUIET.as_secs()
    );

    let report = quiet_load.finish(Duration::from_secs(20)).await;
    let summary = Summary::of(&report);
    assert!(report.lost().is_empty(), "lost: {:?}", report.lost());
    assert_eq!(summary.disconnect_histogram, vec![CLIENTS], "{summary}");
    assert!(summary.confirmed > 0, "{summary}");

    // A Go pod restarts: the StatefulSet makes it again, and it is Ready
    // once our reconciler sets its on-serving condition (nobody else does).
    restart_go_pods(&sandbox, &hook, &[1]).await;
    let after_restart = snapshot(&client).await;
    assert_eq!(
        changed(&before, &after_restart),
        vec![format!("Pod/{GO_SET}-1")],
        "only the restarted pod is new"
    );
    // Every Go pod restarts at once (a node drained, say): then no pod is
    // Ready, EMQX is asked through pods whose containers are, and each
    // gets its on-serving condition again.
    restart_go_pods(&sandbox, &hook, &[0, 1, 2]).await;

    // Seed 003's patch: a blue-green from Go's set to ours, under load.
    let upgrade_load = connect_clients(
        &client,
        NS,
        NAME,
        hook.cluster().expect("an EMQX node"),
        load(CLIENTS, 100, Duration::from_secs(600)),
        Duration::from_secs(60),
    )
    .await
    .expect("clients connect");
    let nodes_before: Vec<String> = hook.nodes().values().map(|n| n.node_name.clone()).collect();
    let patched_at = Instant::now();
    kubectl(
        &sandbox,
        &[
            "patch",
            "emqx",
            NAME,
            "--type=merge",
            "-p",
            r#"{"spec":{"imagePullPolicy":"Never"}}"#,
        ],
        None,
    )
    .await;
    let upgraded =
        sandbox::seed_003::wait_for("Ready on our revision", Duration::from_secs(300), || {
            let api = emqx_api.clone();
            async move {
                let emqx = api.get(NAME).await.map_err(|e| e.to_string())?;
                ready_on(&emqx, Some(GO_REVISION))
            }
        })
        .await;
    if upgraded.is_err() {
        dump_reconciler_logs(&sandbox).await;
    }
    let upgraded = upgraded.expect("Ready on our revision");
    eprintln!(
        "[go_takeover] blue-green to {upgraded} took {:.0}s",
        patched_at.elapsed().as_secs_f64()
    );
    assert!(
        upgrade_load
            .wait_all_connected(Duration::from_secs(60))
            .await,
        "clients did not all come back: {:?}",
        upgrade_load.progress()
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    let report = upgrade_load.finish(Duration::from_secs(20)).await;
    let summary = Summary::of(&report);
    eprintln!("[go_takeover] blue-green clients: {summary}");
    assert_eq!(
        summary.disconnect_histogram.get(1).copied(),
        Some(CLIENTS),
        "every client moved exactly once: {summary}"
    );
    assert_eq!(summary.disconnect_histogram.len(), 2, "{summary}");
    assert_eq!(summary.sessions_lost, 0, "{summary}");
    assert!(report.lost().is_empty(), "lost: {:?}", report.lost());

    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), NS);
    let go_set = sets.get(GO_SET).await.expect("Go's set kept for history");
    assert_eq!(go_set.spec.and_then(|s| s.replicas), Some(0));
    let members = hook.cluster().expect("a node").summaries();
    for node in &nodes_before {
        assert!(
            !members.iter().any(|m| &m.name == node),
            "{node} still in the cluster: {members:?}"
        );
    }
    eprintln!(
        "[go_takeover] done in {:.0}s",
        started.elapsed().as_secs_f64()
    );
    sandbox.stop().await.expect("sandbox stops");
}
