//! What the resilience tests of the blue-green upgrade share besides the
//! seed 003 fixture: an evidence recorder that watches the apiserver (every
//! scale-down of an old set, every condition the EMQX object showed) while
//! the simulator keeps its own record (evacuation steps, node stops). The assertions compare the
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
use kube::api::ListParams;
use sandbox::seed_003::{NAME, Pace, Stage};
use tokio::time::Instant;

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
