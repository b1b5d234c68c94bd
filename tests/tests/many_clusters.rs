//! Many clusters on one reconciler (issue 16, the CI-sized version of the
//! scale benchmark, `tests/examples/reconciler_bench.rs`): 20 one-core
//! `EMQX` objects created at once all become Ready, each with its own
//! listeners and dashboard ClusterIPs; then, at steady state, the reconciler
//! keeps looking at every cluster (every `--resync-seconds`, here 5) and
//! writes nothing. The reconciler runs in this process as the chart runs it
//! (an operator key: the clusters' Secrets get derived values and are never
//! read back), logged in as its own ServiceAccount, so the apiserver's
//! audit log tells its requests apart. Then a Secret someone deleted comes
//! back as soon as a pod needs it. A test of behaviour, not of speed: the
//! deadlines are generous.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use emqx_crd::v2beta1::EMQX;
use emqx_reconciler::cluster_secrets::{OperatorKey, SecretSource};
use k8s_openapi::api::core::v1::{Pod, Secret, Service};
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::{Api, ResourceExt};
use sandbox::control_plane::kubeconfig;
use sandbox::operator::service_account_login::{cluster_admin_login, service_account_user};
use sandbox::operator::{InProcessReconciler, install_crds};
use sandbox::seed_003::{is_true, one_core_cluster};
use sandbox::{EmqxHook, Sandbox, SandboxOptions};
use serde_json::json;
use support::wait_for;

const NS: &str = "default";
const ACCOUNT: &str = "emqx-reconciler";
const CLUSTERS: usize = 20;
/// The reconciler's resync of Ready clusters in this test.
const RESYNC: Duration = Duration::from_secs(5);
/// The steady-state window: three resyncs, so every cluster is looked at
/// at least twice even on a busy machine.
const WINDOW: Duration = Duration::from_secs(15);

fn cluster(name: &str) -> EMQX {
    one_core_cluster(name, NS, &json!({})).expect("an EMQX object")
}

/// Management API calls served so far, by cluster (`<name>-core-…` pods).
fn emqx_calls_by_cluster(hook: &EmqxHook, names: &[String]) -> BTreeMap<String, u64> {
    let nodes = hook.nodes();
    names
        .iter()
        .map(|name| {
            let prefix = format!("{NS}/{name}-core-");
            let calls = nodes
                .iter()
                .filter(|(pod, _)| pod.starts_with(&prefix))
                .map(|(_, node)| node.api_calls.count().total())
                .sum();
            (name.clone(), calls)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_clusters_become_ready_and_the_steady_state_reads_but_never_writes() {
    support::init_tracing();
    let hook = EmqxHook::new();
    let user = service_account_user(NS, ACCOUNT);
    let sandbox = Sandbox::start(
        SandboxOptions::default()
            .hook(hook.clone())
            .audit_requests_of(user.clone()),
    )
    .await
    .expect("sandbox starts");
    install_crds(&sandbox.client()).await.expect("CRDs");
    let login = cluster_admin_login(&sandbox, NS, ACCOUNT)
        .await
        .expect("the reconciler's login");
    let client = kubeconfig::client(&login.document)
        .await
        .expect("the reconciler's client");
    let key = OperatorKey::from_file_bytes(b"many-clusters-test-operator-key-0123456789")
        .expect("an operator key");
    let reconciler = InProcessReconciler::start_with(client, NS, |ctx| {
        ctx.with_resync(RESYNC)
            .with_secret_source(SecretSource::Derived(key))
    });

    let api: Api<EMQX> = Api::namespaced(sandbox.client(), NS);
    let names: Vec<String> = (0..CLUSTERS).map(|i| format!("many-{i:02}")).collect();
    for name in &names {
        api.create(&PostParams::default(), &cluster(name))
            .await
            .expect("create");
    }
    wait_for(
        &format!("all {CLUSTERS} clusters Ready"),
        Duration::from_secs(180),
        || async {
            let list = api
                .list(&ListParams::default())
                .await
                .map_err(|e| e.to_string())?;
            let not_ready: Vec<String> = list
                .items
                .iter()
                .filter(|e| !is_true(e, "Ready"))
                .map(ResourceExt::name_any)
                .collect();
            if list.items.len() == CLUSTERS && not_ready.is_empty() {
                Ok(())
            } else {
                Err(format!(
                    "{} objects, not Ready: {not_ready:?}",
                    list.items.len()
                ))
            }
        },
    )
    .await;

    // Each cluster has its own listeners and dashboard ClusterIPs, all in
    // the sandbox's range.
    let services: Api<Service> = Api::namespaced(sandbox.client(), NS);
    let plan = sandbox.addresses();
    let mut ips = BTreeSet::new();
    for name in &names {
        for service in [format!("{name}-listeners"), format!("{name}-dashboard")] {
            let ip = services
                .get(&service)
                .await
                .unwrap_or_else(|e| panic!("Service {service}: {e}"))
                .spec
                .and_then(|s| s.cluster_ip)
                .and_then(|ip| ip.parse().ok())
                .unwrap_or_else(|| panic!("Service {service} has no ClusterIP"));
            assert!(plan.is_service_ip(ip), "{service}: {ip}");
            assert!(ips.insert(ip), "{service}: {ip} twice");
        }
    }

    // Steady state: let the passes that Ready itself caused settle, then
    // watch a window.
    tokio::time::sleep(RESYNC * 2).await;
    let log = sandbox.audit_log().expect("an audit log");
    let (_, offset) =
        sandbox::control_plane::audit::read_requests_from(&log, 0).expect("the audit log reads");
    let calls_before = emqx_calls_by_cluster(&hook, &names);
    let from = chrono::Utc::now();
    tokio::time::sleep(WINDOW).await;
    let to = chrono::Utc::now();
    let calls_after = emqx_calls_by_cluster(&hook, &names);
    let (requests, _) = sandbox::control_plane::audit::read_requests_from(&log, offset)
        .expect("the audit log reads");
    let requests: Vec<_> = requests
        .into_iter()
        .filter(|r| r.user == user && r.at >= from && r.at <= to)
        .collect();

    let writes: Vec<String> = requests
        .iter()
        .filter(|r| r.is_write())
        .map(ToString::to_string)
        .collect();
    assert!(
        writes.is_empty(),
        "the reconciler wrote at steady state: {writes:#?}"
    );
    // Not idle by doing nothing: every cluster was looked at, through its
    // objects and its EMQX API, at least twice in three resync intervals.
    let lists = requests
        .iter()
        .filter(|r| r.verb == "list" && r.resource == "statefulsets")
        .count();
    assert!(
        lists >= 2 * CLUSTERS,
        "{lists} StatefulSet lists by the reconciler in {WINDOW:?}"
    );
    for name in &names {
        let polled = calls_after[name] - calls_before[name];
        assert!(
            polled >= 2 * 2,
            "{name}: {polled} EMQX API calls in {WINDOW:?} (two a pass, a pass every {RESYNC:?})"
        );
    }

    secret_deleted_comes_back_when_a_pod_needs_it(&sandbox, &names[0]).await;
    reconciler.stop().await;
    sandbox.stop().await.expect("sandbox stops");
}

/// Someone deletes cluster `name`'s node-cookie Secret, and later its pod
/// goes: the StatefulSet's new pod waits to start (its env names the
/// Secret: `CreateContainerConfigError`), that brings a pass, and the pass
/// creates the Secret again with the same derived value, so the pod starts
/// and joins. Nothing is written while no pod needs it (the steady window
/// above), and nothing waits for a clock.
async fn secret_deleted_comes_back_when_a_pod_needs_it(sandbox: &Sandbox, name: &str) {
    let secrets: Api<Secret> = Api::namespaced(sandbox.client(), NS);
    let pods: Api<Pod> = Api::namespaced(sandbox.client(), NS);
    let cookie = format!("{name}-node-cookie");
    let old = secrets.get(&cookie).await.expect("the cookie Secret");
    secrets
        .delete(&cookie, &DeleteParams::default())
        .await
        .expect("delete the cookie Secret");
    let selector = format!("{}={name}", emqx_crd::names::LABEL_INSTANCE);
    let old_pods = pods
        .list(&ListParams::default().labels(&selector))
        .await
        .expect("the cluster's pods");
    let old_uids: BTreeSet<String> = old_pods.items.iter().filter_map(|p| p.uid()).collect();
    for pod in &old_pods.items {
        pods.delete(&pod.name_any(), &DeleteParams::default())
            .await
            .expect("delete the pod");
    }
    wait_for(
        &format!("{cookie} created again and {name}'s new pod Ready"),
        Duration::from_secs(90),
        || async {
            let secret = secrets
                .get_opt(&cookie)
                .await
                .map_err(|e| e.to_string())?
                .ok_or("the Secret is not back")?;
            let list = pods
                .list(&ListParams::default().labels(&selector))
                .await
                .map_err(|e| e.to_string())?;
            let fresh_ready = list
                .items
                .iter()
                .filter(|p| p.uid().is_some_and(|u| !old_uids.contains(&u)))
                .filter(|p| {
                    p.status
                        .as_ref()
                        .and_then(|s| s.conditions.as_ref())
                        .is_some_and(|cs| {
                            cs.iter().any(|c| c.type_ == "Ready" && c.status == "True")
                        })
                })
                .count();
            if fresh_ready == old_uids.len() {
                Ok(secret)
            } else {
                Err(format!(
                    "{fresh_ready} of {} new pods Ready",
                    old_uids.len()
                ))
            }
        },
    )
    .await;
    let back = secrets.get(&cookie).await.expect("the cookie Secret");
    assert_ne!(back.uid(), old.uid(), "a new Secret");
    assert_eq!(
        back.data, old.data,
        "the same derived cookie, so the new pod joins the running nodes"
    );
}
