//! The reconciler against the real control plane with simulated EMQX: seed
//! 003's cluster comes up Ready, then `kubectl patch ... imagePullPolicy`
//! runs a whole blue-green upgrade — new set, traffic switch, every old node
//! evacuated to `prohibiting` before its removal (as its console log tells),
//! old set at zero, stopped nodes gone from the EMQX cluster, Ready on the new
//! revision.

mod support;

use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use kube::Api;
use kube::api::ListParams;
use sandbox::seed_003::{Seed003, Stage, load};

/// How long an upgrade of two cores may take.
const LIMIT: Duration = Duration::from_secs(180);

/// Seed 003 with two cores, quick probes and small delays, so the test takes
/// about a minute, Ready as `seed` says; and the EMQX nodes it first ran.
async fn seed_003_ready(seed: Seed003) -> (Stage, Vec<String>) {
    let ready = support::ready(seed).await;
    let nodes = ready
        .hook
        .nodes()
        .values()
        .map(|n| n.node_name.clone())
        .collect();
    (ready, nodes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn seed_003_patch_runs_a_blue_green_upgrade() {
    let (ready, old_nodes) = seed_003_ready(Seed003::new()).await;
    let (old_revision, old_nodes) = (&ready.revision, &old_nodes);
    assert_eq!(old_nodes.len(), 2);
    ready.patch_image_pull_policy().await.expect("patch");
    let done = ready
        .wait_ready(Some(old_revision), LIMIT)
        .await
        .expect("Ready on the new revision");
    let status = done.status.as_ref().expect("status");
    let core = status.core_nodes_status.as_ref().expect("core status");
    assert_ne!(core.update_revision.as_deref(), Some(old_revision.as_str()));
    assert_eq!(
        core.current_revision, core.update_revision,
        "old set drained"
    );
    assert_eq!(core.ready_replicas, Some(2));

    let client = ready.sandbox.client();
    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), "default");
    let old = sets
        .get(&format!("emqx-ee-core-{old_revision}"))
        .await
        .expect("old set kept for history");
    assert_eq!(old.spec.and_then(|s| s.replicas), Some(0));

    // Every old node left through an evacuation that reached prohibiting,
    // and no stopped node lingers in the EMQX cluster.
    let new_nodes: Vec<_> = ready.hook.nodes().into_values().collect();
    assert_eq!(new_nodes.len(), 2);
    let members = new_nodes[0].cluster.summaries();
    for node in old_nodes {
        assert!(
            !members.iter().any(|m| &m.name == node),
            "{node} still listed: {members:?}"
        );
    }
    assert!(members.iter().all(|m| m.running), "{members:?}");
    // What `kubectl logs` shows of an old node: its console told the
    // evacuation, in EMQX's messages, through to prohibiting, then it stopped.
    for ordinal in 0..2 {
        let pod = format!("emqx-ee-core-{old_revision}-{ordinal}");
        let console = ready
            .sandbox
            .container_log("default", &pod, "emqx")
            .expect("the old node's console");
        let told = |msg: &str| console.find(&format!("] msg: {msg}"));
        let started = told("node_evacuation_started").expect(&console);
        let over = told("node_evacuation_evict_sessions_over").expect(&console);
        assert!(started < over, "{console}");
        assert!(
            console
                .trim_end()
                .ends_with("[notice] msg: stopping_emqx_apps"),
            "{console}"
        );
    }
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
        "ForceLeave",
    ] {
        assert!(
            reasons.iter().any(|r| r == expected),
            "no {expected} event in {reasons:?}"
        );
    }
    ready.stop().await.expect("sandbox stops");
}

/// The same upgrade with MQTT clients connected through the listeners
/// Service: traffic moves before the first eviction, each client is
/// disconnected at most once and comes back with its session, no QoS 1
/// message is lost, and every client ends on a new node.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn clients_survive_the_upgrade_with_their_sessions() {
    use mqtt_load::recorder::Summary;

    const CLIENTS: usize = 150;
    let (mut ready, old_nodes) = seed_003_ready(Seed003::new().clients(
        load(CLIENTS, 300, Duration::from_secs(240)),
        Duration::from_secs(60),
    ))
    .await;
    let client = ready.sandbox.client();
    let cluster = ready.cluster().expect("a node");
    let load = ready.load.take().expect("clients");

    ready.patch_image_pull_policy().await.expect("patch");
    ready
        .wait_ready(Some(&ready.revision), LIMIT)
        .await
        .expect("Ready on the new revision");
    assert!(
        load.wait_all_connected(Duration::from_secs(60)).await,
        "clients did not all come back: {:?}",
        load.progress()
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    let report = load.finish(Duration::from_secs(20)).await;
    let summary = Summary::of(&report);
    assert!(
        summary.disconnect_histogram.len() <= 2,
        "a client was disconnected more than once: {summary}"
    );
    assert_eq!(
        summary.disconnect_histogram.get(1).copied(),
        Some(CLIENTS),
        "every client moved once: {summary}"
    );
    assert_eq!(summary.sessions_lost, 0, "{summary}");
    assert!(
        report.lost().is_empty(),
        "lost QoS 1 messages: {:?}",
        report.lost()
    );
    assert!(
        summary.confirmed > 0 && summary.received >= summary.confirmed,
        "{summary}"
    );
    let per_node = cluster.live_connections_by_node();
    for node in &old_nodes {
        assert_eq!(
            per_node.get(node).copied().unwrap_or(0),
            0,
            "{node} still holds clients: {per_node:?}"
        );
    }

    // Per tick, each old node evicted at most connEvictRate (50) clients,
    // ticks at least a second apart: the broker's own record of every tick.
    const CONN_EVICT_RATE: u64 = 50;
    let mut evicted_total = 0;
    for node in &old_nodes {
        let ticks: Vec<_> = cluster
            .evacuation_history(node)
            .into_iter()
            .filter(|e| e.evicted > 0)
            .collect();
        let counts: Vec<u64> = ticks.iter().map(|t| t.evicted).collect();
        assert!(
            counts.iter().all(|n| *n <= CONN_EVICT_RATE),
            "{node} evicted more than {CONN_EVICT_RATE} in a tick: {counts:?}"
        );
        for pair in ticks.windows(2) {
            assert!(
                pair[1].at - pair[0].at >= Duration::from_millis(990),
                "{node}: eviction ticks {:?} apart",
                pair[1].at - pair[0].at
            );
        }
        evicted_total += counts.iter().sum::<u64>();
    }
    // Every subscriber and the one publisher (all on old nodes) was evicted
    // exactly once; 150 on two nodes needed more than one tick somewhere.
    assert_eq!(evicted_total, CLIENTS as u64 + 1, "evicted {evicted_total}");

    // The Service moved before the first eviction.
    let events: Api<k8s_openapi::api::events::v1::Event> =
        Api::namespaced(client.clone(), "default");
    let events = events
        .list(&ListParams::default())
        .await
        .expect("events")
        .items;
    let first_at = |reason: &str| {
        events
            .iter()
            .filter(|e| e.reason.as_deref() == Some(reason))
            .filter_map(|e| e.event_time.as_ref().map(|t| t.0))
            .min()
    };
    let switched = first_at("SwitchTraffic").expect("a SwitchTraffic event");
    let evacuated = first_at("NodeEvacuation").expect("a NodeEvacuation event");
    assert!(
        switched <= evacuated,
        "traffic moved at {switched}, first evacuation at {evacuated}"
    );
    ready.stop().await.expect("sandbox stops");
}
