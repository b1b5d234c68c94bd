//! Seed 000's flow end to end: a v1beta4 `EmqxEnterprise` running EMQX
//! Enterprise 4.4 (`emqx/emqx-ee:4.4.14`, `blueGreenUpdate`), stored as
//! v1beta4 and reconciled as the v2beta1 hub through the real `emqx-webhook`
//! binary's conversion (a host process registered by URL on 127.0.0.1).
//!
//! `kubectl apply -f emqx-update.yaml` → `.status.emqxNodes` lists three
//! running 4.4 nodes → clients connect → `kubectl patch EmqxEnterprise
//! emqx-ee ... emqxContainer.name=emqx-ee-a` → `BlueGreenUpdating` and
//! `.status.blueGreenUpdateStatus.evacuationsStatus` as the seed prints them
//! while each old node is evacuated through `/api/v4` at 10/s → `Running`
//! on the new nodes, the old set at zero, every client moved once.

#![allow(clippy::panic)]

mod seed_000;
mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use emqx_crd::v2beta1;
use k8s_openapi::api::apps::v1::StatefulSet;
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams};
use mqtt_load::recorder::Summary;
use sandbox::seed_003::{connect_clients, load};
use seed_000::{
    NAME, Stage, condition, create_running, current_version, is_running, manifest, running_nodes,
};
use serde_json::{Value, json};

const CLIENTS: usize = 30;
const EVACUATION_STATES: [&str; 5] = [
    "waiting_health_check",
    "evicting_conns",
    "waiting_takeover",
    "evicting_sessions",
    "prohibiting",
];

/// What the test saw of the update while it ran.
#[derive(Default, Debug)]
struct Seen {
    updating_first: bool,
    running_false: bool,
    evacuations: Vec<Value>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn seed_000_v1beta4_enterprise_4_4_blue_green_update() {
    support::init_tracing();
    let Stage {
        hook,
        sandbox,
        webhook,
        reconciler,
        client,
        api,
    } = Stage::start().await;

    // kubectl apply -f emqx-update.yaml (through the admission webhooks; the
    // apiserver may need a moment to call a new webhook configuration).
    let created = create_running(&api, manifest(None), "Running with three 4.4 nodes").await;
    let status = created.status.clone().expect("status");
    let old_nodes = running_nodes(&created);
    let old_revision = current_version(&created).expect("currentStatefulSetVersion");
    for node in status.emqx_nodes.iter().flatten() {
        let name = node.node.as_deref().unwrap_or_default();
        assert!(
            name.starts_with(&format!("emqx-ee@emqx-ee-core-{old_revision}-"))
                && name.ends_with(".emqx-ee-headless.default.svc.cluster.local"),
            "{name}"
        );
        assert_eq!(node.node_status.as_deref(), Some("Running"), "4.4 spelling");
        assert_eq!(node.version.as_deref(), Some("4.4.14"));
        assert!(node.otp_release.is_some());
    }
    assert_eq!((status.replicas, status.ready_replicas), (Some(3), Some(3)));
    assert!(
        condition(&created, "BlueGreenUpdating").is_none(),
        "no update yet: {:?}",
        status.conditions
    );

    // mqttx bench conn -c 30, through the listeners Service.
    let cluster = hook.cluster().expect("a node");
    let load = connect_clients(
        &client,
        "default",
        NAME,
        cluster.clone(),
        load(CLIENTS, 100, Duration::from_secs(600)),
        Duration::from_secs(60),
    )
    .await
    .expect("clients connect");

    // kubectl patch EmqxEnterprise emqx-ee --type='merge' -p '{"spec": {"template": {"spec": {"emqxContainer": {"name": "emqx-ee-a"}} }}}'
    api.patch(
        NAME,
        &PatchParams::default(),
        &Patch::Merge(
            json!({"spec": {"template": {"spec": {"emqxContainer": {"name": "emqx-ee-a"}}}}}),
        ),
    )
    .await
    .expect("patch");

    // kubectl get emqxenterprise emqx-ee -o json | jq ".status.blueGreenUpdateStatus.evacuationsStatus"
    let mut seen = Seen::default();
    // The simulated 4.4 broker waits its default 60 s `wait_health_check`
    // per node (the reconciler sends none to 4.4: whether 4.4 accepts it is
    // unverified), so three nodes take over three minutes.
    let deadline = std::time::Instant::now() + Duration::from_secs(420);
    let done = loop {
        let e = api.get(NAME).await.expect("get");
        let conditions = e
            .status
            .as_ref()
            .and_then(|s| s.conditions.clone())
            .unwrap_or_default();
        if conditions
            .first()
            .is_some_and(|c| c.type_ == "BlueGreenUpdating" && c.status == "True")
        {
            seen.updating_first = true;
        }
        if condition(&e, "Running").is_some_and(|c| c.status == "False") {
            seen.running_false = true;
        }
        let raw = serde_json::to_value(&e).expect("json");
        if let Some(list) = raw
            .pointer("/status/blueGreenUpdateStatus/evacuationsStatus")
            .and_then(Value::as_array)
        {
            seen.evacuations.extend(list.iter().cloned());
        }
        let revision = current_version(&e);
        if is_running(&e) && revision.is_some() && revision.as_deref() != Some(&old_revision) {
            break e;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "update not finished in 420 s: {:?}; seen {seen:?}",
            e.status
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };

    // During the update: BlueGreenUpdating True (listed first), Running
    // False, and evacuation entries in the seed's shape.
    assert!(seen.updating_first, "{seen:?}");
    assert!(seen.running_false, "{seen:?}");
    assert!(!seen.evacuations.is_empty(), "no evacuationsStatus seen");
    let new_nodes = running_nodes(&done);
    for entry in &seen.evacuations {
        let node = entry["node"].as_str().expect("node");
        assert!(
            old_nodes.contains(node),
            "evacuated {node}, not an old node"
        );
        assert_eq!(entry["connection_eviction_rate"], 10, "{entry}");
        assert_eq!(entry["session_eviction_rate"], 10, "{entry}");
        assert_eq!(entry["session_goal"], 0, "{entry}");
        let state = entry["state"].as_str().expect("state");
        assert!(EVACUATION_STATES.contains(&state), "{entry}");
        for key in [
            "initial_connected",
            "initial_sessions",
            "current_connected",
            "current_sessions",
        ] {
            assert!(entry["stats"][key].is_number(), "{key} in {entry}");
        }
        let recipients: BTreeSet<String> = entry["session_recipients"]
            .as_array()
            .expect("session_recipients")
            .iter()
            .filter_map(|r| r.as_str().map(str::to_owned))
            .collect();
        assert!(
            !recipients.is_empty() && recipients.is_subset(&new_nodes),
            "recipients {recipients:?} are not the new nodes {new_nodes:?}"
        );
    }

    // At the end: Running on three new 4.4 nodes; BlueGreenUpdating False.
    let status = done.status.clone().expect("status");
    assert_eq!(new_nodes.len(), 3, "{status:?}");
    assert!(new_nodes.is_disjoint(&old_nodes));
    assert_eq!((status.replicas, status.ready_replicas), (Some(3), Some(3)));
    let update = condition(&done, "BlueGreenUpdating").expect("BlueGreenUpdating kept");
    assert_eq!(
        (update.status.as_str(), update.reason.as_deref()),
        ("False", Some("BlueGreenUpdateFinished"))
    );
    let first_true = status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.status == "True")
        .map(|c| c.type_.clone());
    assert_eq!(first_true.as_deref(), Some("Running"));

    // Every old node went through its evacuation to prohibiting (the 4.4
    // nodes serve only /api/v4) and no longer runs in the EMQX cluster.
    // (4.4 has no REST force_leave; a stopped 4.4 node may stay listed as
    // stopped until EMQX's autoclean removes it.)
    for node in &old_nodes {
        let history = cluster.evacuation_history(node);
        assert!(
            history.iter().any(|e| e.state == "prohibiting"),
            "{node}: {history:?}"
        );
    }
    let members = cluster.summaries();
    for node in &old_nodes {
        assert!(
            !members.iter().any(|m| &m.name == node && m.running),
            "{node} still running: {members:?}"
        );
    }
    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), "default");
    let old = sets
        .get(&format!("{NAME}-core-{old_revision}"))
        .await
        .expect("old set kept for history");
    assert_eq!(old.spec.and_then(|s| s.replicas), Some(0));

    // Each client moved once and kept its session.
    assert!(
        load.wait_all_connected(Duration::from_secs(60)).await,
        "clients did not all come back: {:?}",
        load.progress()
    );
    let report = load.finish(Duration::from_secs(10)).await;
    let summary = Summary::of(&report);
    assert!(
        summary.disconnect_histogram.len() <= 2,
        "a client was disconnected more than once: {summary}"
    );
    assert_eq!(summary.sessions_lost, 0, "{summary}");
    assert!(
        report.lost().is_empty(),
        "lost QoS 1 messages: {:?}",
        report.lost()
    );

    // The v2beta1 view of the same object converts through the webhook.
    let v2: Api<v2beta1::EmqxEnterprise> = Api::namespaced(client.clone(), "default");
    let hub = v2.get(NAME).await.expect("v2beta1 view");
    assert_eq!(hub.spec.emqx.image, "emqx/emqx-ee:4.4.14");
    let events: Api<k8s_openapi::api::events::v1::Event> =
        Api::namespaced(client.clone(), "default");
    let reasons: Vec<String> = events
        .list(&ListParams::default())
        .await
        .expect("events")
        .items
        .into_iter()
        .filter_map(|e| e.reason)
        .collect();
    for expected in [
        "CreateNewSet",
        "SwitchTraffic",
        "NodeEvacuation",
        "RemoveOldNode",
    ] {
        assert!(
            reasons.iter().any(|r| r == expected),
            "no {expected} event in {reasons:?}"
        );
    }

    reconciler.stop().await;
    webhook.stop();
    sandbox.stop().await.expect("sandbox stops");
}
