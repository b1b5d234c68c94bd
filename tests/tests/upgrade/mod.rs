//! What the resilience tests of the blue-green upgrade share: seed 003's
//! cluster brought up Ready, MQTT clients through the listeners Service, and
//! an evidence recorder that watches the apiserver (every scale-down of an
//! old set, every condition the EMQX object showed) while the simulator keeps
//! its own record (evacuation steps, node stops). The assertions compare the
//! two: a node leaves only after its evacuation reached `prohibiting`.

#![allow(dead_code, clippy::panic, clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use emqx_crd::v2beta1::EMQX;
use emqx_sim::cluster::{BrokerCluster, NodeStop};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use mqtt_load::{Endpoints, LoadConfig, MqttLoad};
use sandbox::operator::{listeners_endpoint, update_revision};
use sandbox::{EmqxHook, Sandbox, SandboxOptions};
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::support::wait_for;

/// The object's name in seed 003.
pub const NAME: &str = "emqx-ee";

/// How an upgrade is paced.
#[derive(Debug, Clone, Copy)]
pub struct Pace {
    pub cores: u32,
    pub initial_delay_s: u32,
    pub wait_takeover_s: u32,
    pub conn_evict_rate: u32,
    pub sess_evict_rate: u32,
}

/// Seed 003's manifest in namespace `default` with `image` (when given),
/// quick probes and the given pace.
pub fn seed_003(pace: Pace, image: Option<&str>) -> Value {
    let mut object = sandbox::operator::seed_003_manifest().expect("seed 003");
    json_patch::merge(
        &mut object,
        &json!({
            "metadata": {"namespace": "default"},
            "spec": {
                "updateStrategy": {
                    "initialDelaySeconds": pace.initial_delay_s,
                    "evacuationStrategy": {
                        "waitTakeover": pace.wait_takeover_s,
                        "connEvictRate": pace.conn_evict_rate,
                        "sessEvictRate": pace.sess_evict_rate
                    }
                },
                "coreTemplate": {"spec": {
                    "replicas": pace.cores,
                    "readinessProbe": {"httpGet": {"path": "/status", "port": "dashboard"}, "periodSeconds": 1, "failureThreshold": 3}
                }}
            }
        }),
    );
    if let Some(image) = image {
        object["spec"]["image"] = json!(image);
    }
    object
}

/// One condition of the object.
pub fn condition(emqx: &EMQX, type_: &str) -> Option<(String, String, String)> {
    emqx.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
}

/// Waits until the object is Ready on a revision other than `revision_not`.
pub async fn wait_ready(api: &Api<EMQX>, revision_not: Option<&str>, timeout: Duration) -> EMQX {
    wait_for("EMQX Ready", timeout, || async move {
        let emqx = api.get(NAME).await.map_err(|e| e.to_string())?;
        let ready = condition(&emqx, "Ready");
        let update = update_revision(&emqx);
        match ready {
            Some((s, _, _))
                if s == "True" && update.is_some() && update.as_deref() != revision_not =>
            {
                Ok(emqx)
            }
            other => Err(format!("Ready={other:?}, updateRevision={update:?}")),
        }
    })
    .await
}

/// A sandbox with CRDs installed and the hook playing EMQX; the reconciler
/// is the test's business (in process or as a real process).
pub struct Stage {
    pub sandbox: Sandbox,
    pub hook: Arc<EmqxHook>,
    pub api: Api<EMQX>,
}

impl Stage {
    pub async fn start() -> Stage {
        crate::support::init_tracing();
        let hook = EmqxHook::new();
        let sandbox = Sandbox::start(SandboxOptions::default().hook(hook.clone()))
            .await
            .expect("sandbox starts");
        let client = sandbox.client();
        sandbox::operator::install_crds(&client)
            .await
            .expect("CRDs installed");
        let api: Api<EMQX> = Api::namespaced(client, "default");
        Stage { sandbox, hook, api }
    }

    /// `kubectl apply -f emqx.yaml`.
    pub async fn create(&self, object: Value) {
        let object: EMQX = serde_json::from_value(object).expect("EMQX");
        self.api
            .create(&PostParams::default(), &object)
            .await
            .expect("create EMQX");
    }

    /// kubectl patch emqx emqx-ee --type=merge -p '{"spec":{"imagePullPolicy":"Never"}}'
    pub async fn patch_image_pull_policy(&self) {
        self.api
            .patch(
                NAME,
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"imagePullPolicy": "Never"}})),
            )
            .await
            .expect("patch");
    }

    /// The running EMQX nodes: pod name (without namespace) → node name.
    pub fn nodes(&self) -> BTreeMap<String, String> {
        self.hook
            .nodes()
            .into_iter()
            .map(|(key, n)| {
                let pod = key.rsplit('/').next().unwrap_or(&key).to_owned();
                (pod, n.node_name)
            })
            .collect()
    }

    /// The simulated EMQX cluster.
    pub fn cluster(&self) -> Arc<BrokerCluster> {
        self.hook
            .nodes()
            .into_values()
            .next()
            .expect("a running EMQX node")
            .cluster
    }

    /// `count` MQTT clients through the listeners Service, all connected and
    /// subscribed.
    pub async fn clients(&self, count: usize, max_duration: Duration) -> MqttLoad {
        let client = self.sandbox.client();
        let service = Endpoints::new(vec![
            listeners_endpoint(&client, "default", NAME)
                .await
                .expect("listeners Service"),
        ]);
        let load = MqttLoad::start(
            LoadConfig {
                clients: count,
                connect_rate: 100,
                publish_interval: Duration::from_secs(1),
                max_duration,
                ..LoadConfig::default()
            },
            service.clone(),
            service,
            self.cluster(),
        );
        assert!(
            load.wait_all_subscribed(Duration::from_secs(60)).await,
            "clients did not connect: {:?}",
            load.progress()
        );
        load
    }

    pub async fn stop(self) {
        self.sandbox.stop().await.expect("sandbox stops");
    }
}

/// A scale-down of a StatefulSet seen on the apiserver.
#[derive(Debug, Clone)]
pub struct ScaleDown {
    pub set: String,
    pub from: i32,
    pub to: i32,
    /// When the recorder saw it (after it happened).
    pub seen: Instant,
    pub seen_wall: SystemTime,
}

/// What the recorder saw on the apiserver.
#[derive(Debug, Default)]
pub struct Seen {
    pub scale_downs: Vec<ScaleDown>,
    /// Pods seen with a deletion timestamp, with when they were first seen so.
    pub deleted_pods: BTreeMap<String, Instant>,
    /// Every distinct (type, status, reason, message) of the object's conditions.
    pub conditions: BTreeSet<(String, String, String, String)>,
}

impl Seen {
    /// Whether some condition matched.
    pub fn any_condition(&self, f: impl Fn(&str, &str, &str, &str) -> bool) -> bool {
        self.conditions.iter().any(|(t, s, r, m)| f(t, s, r, m))
    }
}

/// Polls the apiserver every 150 ms until stopped.
pub struct Recorder {
    seen: Arc<Mutex<Seen>>,
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Recorder {
    pub fn start(stage: &Stage) -> Recorder {
        let client = stage.sandbox.client();
        let seen = Arc::new(Mutex::new(Seen::default()));
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let task = {
            let seen = seen.clone();
            tokio::spawn(async move {
                let sets: Api<StatefulSet> = Api::namespaced(client.clone(), "default");
                let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
                let objects: Api<EMQX> = Api::namespaced(client, "default");
                let mut replicas: BTreeMap<String, i32> = BTreeMap::new();
                loop {
                    if let Ok(list) = sets.list(&ListParams::default()).await {
                        let now = (Instant::now(), SystemTime::now());
                        let mut seen = seen.lock().unwrap();
                        for set in list.items {
                            let name = set.metadata.name.clone().unwrap_or_default();
                            let r = set.spec.and_then(|s| s.replicas).unwrap_or(0);
                            if let Some(before) = replicas.insert(name.clone(), r)
                                && r < before
                            {
                                seen.scale_downs.push(ScaleDown {
                                    set: name,
                                    from: before,
                                    to: r,
                                    seen: now.0,
                                    seen_wall: now.1,
                                });
                            }
                        }
                    }
                    if let Ok(list) = pods.list(&ListParams::default()).await {
                        let now = Instant::now();
                        let mut seen = seen.lock().unwrap();
                        for pod in list.items {
                            if pod.metadata.deletion_timestamp.is_some() {
                                let name = pod.metadata.name.unwrap_or_default();
                                seen.deleted_pods.entry(name).or_insert(now);
                            }
                        }
                    }
                    if let Ok(emqx) = objects.get(NAME).await {
                        let mut seen = seen.lock().unwrap();
                        for c in emqx.status.and_then(|s| s.conditions).into_iter().flatten() {
                            seen.conditions
                                .insert((c.type_, c.status, c.reason, c.message));
                        }
                    }
                    tokio::select! {
                        () = tokio::time::sleep(Duration::from_millis(150)) => {}
                        _ = stopped.changed() => return,
                    }
                }
            })
        };
        Recorder { seen, stop, task }
    }

    /// A snapshot of what was seen so far.
    pub fn with<T>(&self, f: impl FnOnce(&Seen) -> T) -> T {
        f(&self.seen.lock().unwrap())
    }

    pub async fn finish(self) -> Seen {
        let _ = self.stop.send(true);
        let _ = tokio::time::timeout(Duration::from_secs(5), self.task).await;
        std::mem::take(&mut *self.seen.lock().unwrap())
    }
}

/// The node of the pod a StatefulSet removes when scaled `from → from-1`.
pub fn victim(old_nodes: &BTreeMap<String, String>, set: &str, from: i32) -> Option<String> {
    old_nodes.get(&format!("{set}-{}", from - 1)).cloned()
}

/// The evidence of an orderly evacuation-driven upgrade: every old node was
/// evacuated exactly once (one start, never stopped) at no more than
/// `connEvictRate` per tick, reached `prohibiting` after `waitTakeover`, was
/// stopped only in `prohibiting`, and was scaled away only after
/// `prohibiting`; the old set ended at zero and its nodes were force-left.
pub fn assert_orderly(
    cluster: &BrokerCluster,
    old_set: &str,
    old_nodes: &BTreeMap<String, String>,
    pace: Pace,
    seen: &Seen,
) {
    let wait_takeover = Duration::from_secs(pace.wait_takeover_s.into());
    let stops: Vec<NodeStop> = cluster.stops();
    for (pod, node) in old_nodes {
        let history = cluster.evacuation_history(node);
        let states: Vec<&str> = history.iter().map(|e| e.state).collect();
        let starts = states
            .iter()
            .filter(|s| **s == "waiting_health_check")
            .count();
        assert_eq!(starts, 1, "{node} ({pod}) evacuation starts: {states:?}");
        assert!(
            !states.contains(&"disabled"),
            "{node} evacuation was stopped: {states:?}"
        );
        let ticks: Vec<u64> = history.iter().map(|e| e.evicted).collect();
        assert!(
            ticks.iter().all(|n| *n <= u64::from(pace.conn_evict_rate)),
            "{node} evicted more than {} in a tick: {ticks:?}",
            pace.conn_evict_rate
        );
        let at = |state: &str| history.iter().find(|e| e.state == state).map(|e| e.at);
        let prohibiting = at("prohibiting")
            .unwrap_or_else(|| panic!("{node} never reached prohibiting: {states:?}"));
        if let Some(takeover) = at("waiting_takeover") {
            assert!(
                prohibiting >= takeover + wait_takeover,
                "{node}: prohibiting {:?} after waiting_takeover, before waitTakeover {wait_takeover:?}",
                prohibiting - takeover
            );
        }
        let stop = stops
            .iter()
            .find(|s| &s.node == node)
            .unwrap_or_else(|| panic!("{node} never stopped: {stops:?}"));
        assert_eq!(
            stop.evacuation,
            Some("prohibiting"),
            "{node} stopped mid-evacuation"
        );
        assert!(stop.at >= prohibiting, "{node} stopped before prohibiting");
        if let Some(deleted) = seen.deleted_pods.get(pod) {
            assert!(
                *deleted >= prohibiting,
                "pod {pod} deleted before {node} reached prohibiting"
            );
        }
    }
    // One at a time: each evacuation started after the previous node stopped.
    let mut spans: Vec<(Instant, Instant, &String)> = old_nodes
        .values()
        .filter_map(|node| {
            let start = cluster.evacuation_history(node).first()?.at;
            let stop = stops.iter().find(|s| &s.node == node)?.at;
            Some((start, stop, node))
        })
        .collect();
    spans.sort();
    for pair in spans.windows(2) {
        assert!(
            pair[1].0 >= pair[0].1,
            "{} started evacuating before {} stopped",
            pair[1].2,
            pair[0].2
        );
    }
    let old_downs: Vec<&ScaleDown> = seen
        .scale_downs
        .iter()
        .filter(|s| s.set == old_set)
        .collect();
    assert_eq!(
        old_downs.len(),
        old_nodes.len(),
        "one scale-down per old node: {old_downs:?}"
    );
    for down in &old_downs {
        assert_eq!(down.to, down.from - 1, "scaled by more than one: {down:?}");
        let node = victim(old_nodes, old_set, down.from).expect("victim known");
        let prohibiting = cluster
            .evacuation_history(&node)
            .iter()
            .find(|e| e.state == "prohibiting")
            .map(|e| e.at)
            .unwrap_or_else(|| panic!("{node} scaled away without prohibiting"));
        assert!(
            down.seen >= prohibiting,
            "{old_set} scaled {} → {} before {node} reached prohibiting",
            down.from,
            down.to
        );
    }
    assert_force_left(cluster, old_nodes);
}

/// No old node is listed in the EMQX cluster any more, and every member runs.
pub fn assert_force_left(cluster: &BrokerCluster, old_nodes: &BTreeMap<String, String>) {
    let members = cluster.summaries();
    for node in old_nodes.values() {
        assert!(
            !members.iter().any(|m| &m.name == node),
            "{node} still listed: {members:?}"
        );
    }
    assert!(members.iter().all(|m| m.running), "{members:?}");
}

/// The old set is kept for history at zero replicas.
pub async fn assert_old_set_at_zero(stage: &Stage, old_set: &str) {
    let sets: Api<StatefulSet> = Api::namespaced(stage.sandbox.client(), "default");
    let old = sets.get(old_set).await.expect("old set kept for history");
    assert_eq!(old.spec.and_then(|s| s.replicas), Some(0), "{old_set}");
}

/// Prints what the simulator recorded, for the test log.
pub fn print_evidence(cluster: &BrokerCluster, old_nodes: &BTreeMap<String, String>, t0: Instant) {
    for node in old_nodes.values() {
        let steps: Vec<String> = cluster
            .evacuation_history(node)
            .iter()
            .map(|e| {
                format!(
                    "{:.1}s {}{}",
                    e.at.saturating_duration_since(t0).as_secs_f32(),
                    e.state,
                    if e.evicted > 0 {
                        format!(" -{}", e.evicted)
                    } else {
                        String::new()
                    }
                )
            })
            .collect();
        eprintln!("evidence: {node}: {}", steps.join(", "));
    }
    for stop in cluster.stops() {
        eprintln!(
            "evidence: stop {} at {:.1}s in {:?}",
            stop.node,
            stop.at.saturating_duration_since(t0).as_secs_f32(),
            stop.evacuation
        );
    }
}
