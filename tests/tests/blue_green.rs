//! The reconciler against the real control plane with simulated EMQX: seed
//! 003's cluster comes up Ready, then `kubectl patch ... imagePullPolicy`
//! runs a whole blue-green upgrade — new set, traffic switch, every old node
//! evacuated to `prohibiting` before its removal, old set at zero, stopped
//! nodes gone from the EMQX cluster, Ready on the new revision.

mod support;

use std::time::Duration;

use emqx_crd::v2beta1::EMQX;
use k8s_openapi::api::apps::v1::StatefulSet;
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use sandbox::operator::{listeners_endpoint, update_revision};
use sandbox::{EmqxHook, Sandbox, SandboxOptions};
use serde_json::{Value, json};
use support::wait_for;

/// Seed 003's manifest with two cores, quick probes and small delays, so the
/// test takes about a minute.
fn seed_003_quick() -> Value {
    let mut object = sandbox::operator::seed_003_manifest().expect("seed 003");
    json_patch::merge(
        &mut object,
        &json!({
            "metadata": {"namespace": "default"},
            "spec": {
                "updateStrategy": {
                    "initialDelaySeconds": 2,
                    "evacuationStrategy": {"waitTakeover": 2, "connEvictRate": 50, "sessEvictRate": 50}
                },
                "coreTemplate": {"spec": {
                    "replicas": 2,
                    "readinessProbe": {"httpGet": {"path": "/status", "port": "dashboard"}, "periodSeconds": 1, "failureThreshold": 3}
                }}
            }
        }),
    );
    object
}

fn condition(emqx: &EMQX, type_: &str) -> Option<(String, String)> {
    emqx.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status.clone(), c.message.clone()))
}

async fn wait_ready(api: &Api<EMQX>, revision_not: Option<String>) -> EMQX {
    wait_for("EMQX Ready", Duration::from_secs(180), || {
        let api = api.clone();
        let revision_not = revision_not.clone();
        async move {
            let emqx = api.get("emqx-ee").await.map_err(|e| e.to_string())?;
            let ready = condition(&emqx, "Ready");
            let update = update_revision(&emqx);
            match ready {
                Some((s, _)) if s == "True" && update.is_some() && update != revision_not => {
                    Ok(emqx)
                }
                other => Err(format!("Ready={other:?}, updateRevision={update:?}")),
            }
        }
    })
    .await
}

/// A sandbox running the reconciler, with seed 003's cluster Ready.
struct Ready {
    sandbox: Sandbox,
    hook: std::sync::Arc<EmqxHook>,
    reconciler: sandbox::operator::InProcessReconciler,
    api: Api<EMQX>,
    revision: String,
    nodes: Vec<String>,
}

impl Ready {
    async fn start() -> Ready {
        support::init_tracing();
        let hook = EmqxHook::new();
        let sandbox = Sandbox::start(SandboxOptions::default().hook(hook.clone()))
            .await
            .expect("sandbox starts");
        let client = sandbox.client();
        sandbox::operator::install_crds(&client)
            .await
            .expect("CRDs installed");
        let reconciler = sandbox::operator::InProcessReconciler::start(client.clone(), "default");
        // kubectl apply -f emqx-update.yaml
        let api: Api<EMQX> = Api::namespaced(client, "default");
        let object: EMQX = serde_json::from_value(seed_003_quick()).expect("EMQX");
        api.create(&PostParams::default(), &object)
            .await
            .expect("create EMQX");
        let first = wait_ready(&api, None).await;
        let revision = update_revision(&first).expect("a revision");
        let nodes = hook.nodes().values().map(|n| n.node_name.clone()).collect();
        Ready {
            sandbox,
            hook,
            reconciler,
            api,
            revision,
            nodes,
        }
    }

    /// kubectl patch emqx emqx-ee --type=merge -p '{"spec":{"imagePullPolicy":"Never"}}'
    async fn patch_image_pull_policy(&self) {
        self.api
            .patch(
                "emqx-ee",
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"imagePullPolicy": "Never"}})),
            )
            .await
            .expect("patch");
    }

    async fn stop(self) {
        self.reconciler.stop().await;
        self.sandbox.stop().await.expect("sandbox stops");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn seed_003_patch_runs_a_blue_green_upgrade() {
    let ready = Ready::start().await;
    let (api, old_revision, old_nodes) = (&ready.api, &ready.revision, &ready.nodes);
    assert_eq!(old_nodes.len(), 2);
    ready.patch_image_pull_policy().await;
    let done = wait_ready(api, Some(old_revision.clone())).await;
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
    ready.stop().await;
}

/// The same upgrade with MQTT clients connected through the listeners
/// Service: traffic moves before the first eviction, each client is
/// disconnected at most once and comes back with its session, no QoS 1
/// message is lost, and every client ends on a new node.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn clients_survive_the_upgrade_with_their_sessions() {
    use mqtt_load::recorder::Summary;
    use mqtt_load::{Endpoints, LoadConfig, MqttLoad};

    let ready = Ready::start().await;
    let client = ready.sandbox.client();
    let service = Endpoints::new(vec![
        listeners_endpoint(&client, "default", "emqx-ee")
            .await
            .expect("listeners Service"),
    ]);
    let cluster = ready
        .hook
        .nodes()
        .into_values()
        .next()
        .expect("a node")
        .cluster;
    const CLIENTS: usize = 150;
    let load = MqttLoad::start(
        LoadConfig {
            clients: CLIENTS,
            connect_rate: 300,
            publish_interval: Duration::from_secs(1),
            max_duration: Duration::from_secs(240),
            ..LoadConfig::default()
        },
        service.clone(),
        service,
        cluster.clone(),
    );
    assert!(
        load.wait_all_subscribed(Duration::from_secs(60)).await,
        "clients did not connect: {:?}",
        load.progress()
    );

    ready.patch_image_pull_policy().await;
    wait_ready(&ready.api, Some(ready.revision.clone())).await;
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
    for node in &ready.nodes {
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
    for node in &ready.nodes {
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
    ready.stop().await;
}
