//! A template env entry that overrides a variable the operator sets (the
//! Go operator 2.2.29 fixture's `EMQX_API_KEY__BOOTSTRAP_FILE`) is rendered
//! once with the user's value, so server-side apply takes the set and the
//! cluster comes up Ready; then an upgrade's Events name each node they are
//! about instead of folding into the first node's series.

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use kube::Api;
use kube::api::ListParams;
use sandbox::seed_003::{NAME, NAMESPACE, Seed003};
use serde_json::json;

/// How long an upgrade of two cores may take.
const LIMIT: Duration = Duration::from_secs(180);

/// The user's entry of /work/shared/fixtures/go-operator-2.2.29/emqx.yaml.
const USER_BOOTSTRAP_FILE: &str = "/opt/emqx/data/bootstrap_api_key";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_env_override_of_an_operator_variable_reaches_ready() {
    let ready = support::ready(
        Seed003::new().merge(json!({"spec": {"coreTemplate": {"spec": {
            "env": [
                {"name": "EMQX_API_KEY__BOOTSTRAP_FILE", "value": USER_BOOTSTRAP_FILE},
            ]
        }}}})),
    )
    .await;
    let client = ready.sandbox.client();
    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), NAMESPACE);
    let set = sets
        .get(&format!("{NAME}-core-{}", ready.revision))
        .await
        .expect("the core set");
    let env = set
        .spec
        .and_then(|s| s.template.spec)
        .map(|p| p.containers[0].env.clone().unwrap_or_default())
        .unwrap_or_default();
    let bootstrap: Vec<_> = env
        .iter()
        .filter(|e| e.name == "EMQX_API_KEY__BOOTSTRAP_FILE")
        .collect();
    assert_eq!(bootstrap.len(), 1, "{env:?}");
    assert_eq!(bootstrap[0].value.as_deref(), Some(USER_BOOTSTRAP_FILE));

    // An upgrade: each old node's force_leave and the traffic switch are
    // Events of their own, naming their node or revision.
    let old_nodes: BTreeSet<String> = ready
        .hook
        .nodes()
        .values()
        .map(|n| n.node_name.clone())
        .collect();
    assert_eq!(old_nodes.len(), 2);
    ready.patch_image_pull_policy().await.expect("patch");
    let done = ready
        .wait_ready(Some(&ready.revision), LIMIT)
        .await
        .expect("Ready on the new revision");
    let new_revision = sandbox::seed_003::update_revision(&done).expect("a new revision");
    let events: Api<k8s_openapi::api::events::v1::Event> =
        Api::namespaced(client.clone(), NAMESPACE);
    let events = events
        .list(&ListParams::default())
        .await
        .expect("events")
        .items;
    let of = |reason: &str| -> Vec<(String, String)> {
        events
            .iter()
            .filter(|e| e.reason.as_deref() == Some(reason))
            .map(|e| {
                (
                    e.action.clone().unwrap_or_default(),
                    e.note.clone().unwrap_or_default(),
                )
            })
            .collect()
    };
    let left: BTreeSet<String> = of("ForceLeave")
        .into_iter()
        .filter_map(|(action, note)| {
            let node = action.strip_prefix("ForceLeave ")?.to_owned();
            assert!(note.contains(&node), "{action:?} with note {note:?}");
            Some(node)
        })
        .collect();
    assert_eq!(left, old_nodes, "ForceLeave Events: {:?}", of("ForceLeave"));
    let switched = of("SwitchTraffic");
    assert!(
        switched
            .iter()
            .any(|(action, note)| action.ends_with(&new_revision) && note.ends_with(&new_revision)),
        "{switched:?}"
    );
    ready.stop().await.expect("sandbox stops");
}
