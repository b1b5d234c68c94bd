//! A core + replicant cluster (seed 003 with a replicant template) upgraded
//! blue-green with MQTT clients on the replicants: new cores come before new
//! replicants; old replicants are evacuated and removed one by one (the
//! ReplicaSet's scale-down takes exactly the evacuated pod, chosen by
//! `controller.kubernetes.io/pod-deletion-cost`) before any old core is
//! evacuated; the cluster ends Ready with both roles' revisions and counts
//! right, and the clients keep their sessions.

mod support;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mqtt_load::recorder::Summary;
use sandbox::EmqxHook;
use sandbox::seed_003::{NAME, Seed003, Stage, is_true, load};
use serde_json::json;
use tokio::time::Instant;

/// Which part of the cluster a pod belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    OldCore,
    OldReplicant,
    NewCore,
    NewReplicant,
}

/// Something the monitor saw, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seen {
    /// Every new core node runs as a cluster member.
    NewCoresRunning,
    /// A node of a new replicant pod started.
    NewReplicantStarted(String),
    /// An old node's evacuation began (its first recorded step).
    EvacuationBegan(Part, String),
    /// An old node stopped; `prohibited`: its evacuation had reached
    /// `prohibiting` before.
    Stopped(Part, String, bool),
}

struct Tracked {
    part: Part,
    node: String,
    evacuating: bool,
    prohibited: bool,
}

/// What the monitor saw, with when.
type Log = Arc<Mutex<Vec<(Instant, Seen)>>>;

/// Watches the simulated nodes every 100 ms (bounded in time) and records
/// the order of the upgrade's steps as EMQX and the kubelet see them.
fn monitor(
    hook: Arc<EmqxHook>,
    old_core: String,
    old_replicant: String,
    cores: usize,
    stop: tokio::sync::watch::Receiver<bool>,
) -> (Log, tokio::task::JoinHandle<()>) {
    let seen: Log = Arc::default();
    let out = seen.clone();
    let task = tokio::spawn(async move {
        let mut tracked: BTreeMap<String, Tracked> = BTreeMap::new();
        let mut cores_running = false;
        let started = Instant::now();
        let push = |s: Seen| out.lock().expect("monitor log").push((Instant::now(), s));
        while !*stop.borrow() && started.elapsed() < Duration::from_secs(400) {
            let nodes = hook.nodes();
            let cluster = nodes.values().next().map(|n| n.cluster.clone());
            let mut fresh_replicants = Vec::new();
            for (key, handle) in &nodes {
                let pod = key.rsplit('/').next().unwrap_or_default();
                let part = if pod.starts_with(&format!("{NAME}-core-")) {
                    if pod.starts_with(&format!("{NAME}-core-{old_core}-")) {
                        Part::OldCore
                    } else {
                        Part::NewCore
                    }
                } else if pod.starts_with(&format!("{NAME}-replicant-{old_replicant}-")) {
                    Part::OldReplicant
                } else {
                    Part::NewReplicant
                };
                if !tracked.contains_key(key) {
                    if part == Part::NewReplicant {
                        fresh_replicants.push(handle.node_name.clone());
                    }
                    tracked.insert(
                        key.clone(),
                        Tracked {
                            part,
                            node: handle.node_name.clone(),
                            evacuating: false,
                            prohibited: false,
                        },
                    );
                }
            }
            let Some(cluster) = &cluster else {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            // What one look finds is logged in causal order: a stop ends
            // the step before the next evacuation; cores run before the
            // replicants that need them start.
            let gone: Vec<String> = tracked
                .keys()
                .filter(|k| !nodes.contains_key(*k))
                .cloned()
                .collect();
            for key in gone {
                if let Some(t) = tracked.remove(&key) {
                    let prohibited = t.prohibited
                        || cluster
                            .evacuation_history(&t.node)
                            .iter()
                            .any(|h| h.state == "prohibiting");
                    push(Seen::Stopped(t.part, t.node, prohibited));
                }
            }
            if !cores_running {
                let running = tracked
                    .values()
                    .filter(|t| t.part == Part::NewCore && cluster.is_running(&t.node))
                    .count();
                if running == cores {
                    cores_running = true;
                    push(Seen::NewCoresRunning);
                }
            }
            for node in fresh_replicants {
                push(Seen::NewReplicantStarted(node));
            }
            for t in tracked.values_mut() {
                let history = cluster.evacuation_history(&t.node);
                if !t.evacuating && !history.is_empty() {
                    t.evacuating = true;
                    push(Seen::EvacuationBegan(t.part, t.node.clone()));
                }
                t.prohibited |= history.iter().any(|h| h.state == "prohibiting");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    (seen, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicants_are_upgraded_after_new_cores_and_drained_before_old_cores() {
    const CORES: usize = 2;
    const REPLICANTS: usize = 2;
    const CLIENTS: usize = 100;
    let mut f = support::ready(
        Seed003::new()
            .cores(CORES as u32)
            .replicants(REPLICANTS as u32)
            .clients(
                load(CLIENTS, 200, Duration::from_secs(300)),
                Duration::from_secs(60),
            ),
    )
    .await;
    let old = f.revision.clone();
    let old_nodes: Vec<String> = f.hook.nodes().into_values().map(|n| n.node_name).collect();
    assert_eq!(old_nodes.len(), CORES + REPLICANTS);
    let old_replicant = f
        .get()
        .await
        .expect("get EMQX")
        .status
        .and_then(|s| s.replicant_nodes_status)
        .and_then(|s| s.update_revision)
        .expect("replicant revision");
    // The listeners Service selects the replicants.
    assert_eq!(f.listeners_revision().await, Some(old_replicant.clone()));

    let cluster = f.cluster().expect("a running EMQX node");
    let load = f.load.take().expect("clients");
    // Every client is on a replicant.
    let replicant_nodes: Vec<String> = f
        .hook
        .nodes()
        .into_iter()
        .filter(|(k, _)| k.contains("-replicant-"))
        .map(|(_, n)| n.node_name)
        .collect();
    assert_eq!(replicant_nodes.len(), REPLICANTS);
    let per_node = cluster.live_connections_by_node();
    let on_replicants: u64 = replicant_nodes
        .iter()
        .map(|n| per_node.get(n).copied().unwrap_or(0))
        .sum();
    // (The publisher holds one more connection.)
    let total: u64 = per_node.values().sum();
    assert!(on_replicants >= CLIENTS as u64, "{per_node:?}");
    assert_eq!(on_replicants, total, "no client on a core: {per_node:?}");

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let (seen, task) = monitor(
        f.hook.clone(),
        old.clone(),
        old_replicant.clone(),
        CORES,
        stop_rx,
    );
    f.patch(json!({"spec": {"imagePullPolicy": "Never"}}))
        .await
        .expect("patch EMQX");
    let done = f
        .wait_ready(Some(&old), Duration::from_secs(240))
        .await
        .expect("EMQX Ready");
    assert!(
        load.wait_all_connected(Duration::from_secs(60)).await,
        "clients did not all come back: {:?}",
        load.progress()
    );
    // Let the monitor see the last pods stop.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let _ = stop_tx.send(true);
    let _ = task.await;

    // Status: both roles on the new revision, counts right.
    let status = done.status.as_ref().expect("status");
    for (role, s) in [
        ("core", status.core_nodes_status.as_ref()),
        ("replicant", status.replicant_nodes_status.as_ref()),
    ] {
        let s = s.unwrap_or_else(|| panic!("{role} status"));
        let want = if role == "core" { CORES } else { REPLICANTS } as i32;
        assert!(s.update_revision.is_some(), "{role}: {s:?}");
        assert_eq!(s.current_revision, s.update_revision, "{role}: {s:?}");
        assert_eq!(s.replicas, Some(want), "{role}: {s:?}");
        assert_eq!(s.ready_replicas, Some(want), "{role}: {s:?}");
        assert_eq!(s.current_replicas, Some(want), "{role}: {s:?}");
        assert_eq!(s.update_replicas, Some(want), "{role}: {s:?}");
    }
    let new_replicant = status
        .replicant_nodes_status
        .as_ref()
        .and_then(|s| s.update_revision.clone())
        .expect("new replicant revision");
    assert_ne!(new_replicant, old_replicant);
    assert_eq!(f.listeners_revision().await, Some(new_replicant.clone()));
    assert_eq!(
        status.replicant_nodes.as_ref().map(Vec::len),
        Some(REPLICANTS),
        "{:?}",
        status.replicant_nodes
    );

    // Order of the upgrade, as the nodes saw it.
    let log: Vec<(Instant, Seen)> = seen.lock().expect("log").clone();
    let first = |log: &[(Instant, Seen)], f: &dyn Fn(&Seen) -> bool| {
        log.iter().filter(|(_, s)| f(s)).map(|(t, _)| *t).min()
    };
    let last = |log: &[(Instant, Seen)], f: &dyn Fn(&Seen) -> bool| {
        log.iter().filter(|(_, s)| f(s)).map(|(t, _)| *t).max()
    };
    let cores_running = first(&log, &|s| *s == Seen::NewCoresRunning).expect("new cores ran");
    let replicants_started = first(&log, &|s| matches!(s, Seen::NewReplicantStarted(_)))
        .expect("new replicants started");
    assert!(
        cores_running <= replicants_started,
        "a new replicant started before the new cores ran: {log:?}"
    );
    let old_replicant_stops: Vec<(String, bool)> = log
        .iter()
        .filter_map(|(_, s)| match s {
            Seen::Stopped(Part::OldReplicant, node, prohibited) => {
                Some((node.clone(), *prohibited))
            }
            _ => None,
        })
        .collect();
    assert_eq!(old_replicant_stops.len(), REPLICANTS, "{log:?}");
    for (node, prohibited) in &old_replicant_stops {
        assert!(
            prohibited,
            "old replicant {node} stopped before its evacuation reached prohibiting: \
             the ReplicaSet removed a pod other than the evacuated one; {log:?}"
        );
    }
    let replicants_gone = last(&log, &|s| {
        matches!(s, Seen::Stopped(Part::OldReplicant, ..))
    })
    .expect("old replicants stopped");
    let core_evacuated = first(&log, &|s| {
        matches!(s, Seen::EvacuationBegan(Part::OldCore, _))
    })
    .expect("old cores evacuated");
    assert!(
        replicants_gone < core_evacuated,
        "an old core was evacuated before the old replicants were gone: {log:?}"
    );
    let old_core_stops: Vec<(String, bool)> = log
        .iter()
        .filter_map(|(_, s)| match s {
            Seen::Stopped(Part::OldCore, node, prohibited) => Some((node.clone(), *prohibited)),
            _ => None,
        })
        .collect();
    assert_eq!(old_core_stops.len(), CORES, "{log:?}");
    assert!(old_core_stops.iter().all(|(_, p)| *p), "{log:?}");

    // An Event names each step's node and set: one evacuation per old
    // node, one new set per role, each with its own note.
    let events = f.events().await.expect("events");
    let notes = |reason: &str| -> Vec<String> {
        events
            .iter()
            .filter(|e| e.reason == reason)
            .map(|e| e.note.clone())
            .collect()
    };
    let evacuations = notes("NodeEvacuation");
    for node in &old_nodes {
        assert_eq!(
            evacuations
                .iter()
                .filter(|n| n.contains(&format!("node {node} ")))
                .count(),
            1,
            "{node}: {evacuations:?}"
        );
    }
    let created = notes("CreateNewSet");
    assert_eq!(created.len(), 2, "{created:?}");
    assert!(created[0].contains("core"), "cores first: {created:?}");
    assert!(created[1].contains("replicant"), "{created:?}");

    // The clients: moved once each, sessions kept, nothing lost, all on the
    // new replicants.
    let per_node = cluster.live_connections_by_node();
    let new_replicant_nodes: Vec<String> = f
        .hook
        .nodes()
        .into_iter()
        .filter(|(k, _)| k.contains(&format!("-replicant-{new_replicant}-")))
        .map(|(_, n)| n.node_name)
        .collect();
    let on_new: u64 = new_replicant_nodes
        .iter()
        .map(|n| per_node.get(n).copied().unwrap_or(0))
        .sum();
    let total: u64 = per_node.values().sum();
    assert!(on_new >= CLIENTS as u64, "{per_node:?}");
    assert_eq!(
        on_new, total,
        "every client on a new replicant: {per_node:?}"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let report = load.finish(Duration::from_secs(20)).await;
    let summary = Summary::of(&report);
    assert!(
        summary.disconnect_histogram.len() <= 2,
        "a client was disconnected more than once: {summary}"
    );
    assert_eq!(
        summary.disconnect_histogram.get(1).copied(),
        Some(CLIENTS),
        "every client moved exactly once: {summary}"
    );
    assert_eq!(summary.sessions_lost, 0, "{summary}");
    assert!(
        report.lost().is_empty(),
        "lost QoS 1 messages: {:?}",
        report.lost()
    );
    assert!(summary.confirmed > 0, "{summary}");
    f.stop().await.expect("sandbox stops");
}

/// `spec.replicas` of each ReplicaSet, by name.
async fn replicant_sets(f: &Stage) -> BTreeMap<String, i32> {
    f.replica_sets()
        .await
        .expect("list ReplicaSets")
        .into_iter()
        .filter_map(|s| {
            let replicas = s.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0);
            Some((s.metadata.name?, replicas))
        })
        .collect()
}

/// Revert a core + replicant upgrade after one old replicant was evacuated
/// and removed: the old ReplicaSet is scaled up again, the new replicants
/// and cores drain back, no third set of either kind appears, and the
/// clients come back with their sessions.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reverting_a_replicant_upgrade_returns_to_the_old_sets() {
    const CLIENTS: usize = 40;
    let mut f = support::ready(Seed003::new().replicants(2).clients(
        load(CLIENTS, 200, Duration::from_secs(300)),
        Duration::from_secs(60),
    ))
    .await;
    let old_core = f.revision.clone();
    let old_replicant = f
        .get()
        .await
        .expect("get EMQX")
        .status
        .and_then(|s| s.replicant_nodes_status)
        .and_then(|s| s.update_revision)
        .expect("replicant revision");
    let old_rs = format!("{NAME}-replicant-{old_replicant}");
    let load = f.load.take().expect("clients");
    let original = f
        .get()
        .await
        .expect("get EMQX")
        .spec
        .image_pull_policy
        .clone();
    f.patch(json!({"spec": {"imagePullPolicy": "Never"}}))
        .await
        .expect("patch EMQX");
    support::wait_for(
        "one old replicant removed",
        Duration::from_secs(120),
        || async {
            let sets = replicant_sets(&f).await;
            match sets.get(&old_rs) {
                Some(1) => Ok(()),
                _ => Err(format!("{sets:?}")),
            }
        },
    )
    .await;
    f.patch(json!({"spec": {"imagePullPolicy": original}}))
        .await
        .expect("patch EMQX");
    let done = f
        .wait_object(
            "Ready on the original revisions",
            Duration::from_secs(150),
            |e| {
                let status = e.status.as_ref();
                let core = status
                    .and_then(|s| s.core_nodes_status.as_ref())
                    .and_then(|s| s.update_revision.clone());
                let replicant = status
                    .and_then(|s| s.replicant_nodes_status.as_ref())
                    .and_then(|s| s.update_revision.clone());
                let back = core.as_deref() == Some(old_core.as_str())
                    && replicant.as_deref() == Some(old_replicant.as_str());
                if back && is_true(e, "Ready") {
                    Ok(e.clone())
                } else {
                    Err(format!("core {core:?}, replicant {replicant:?}"))
                }
            },
        )
        .await
        .expect("wait");
    let status = done.status.as_ref().expect("status");
    let replicant = status.replicant_nodes_status.as_ref().expect("replicants");
    assert_eq!(
        replicant.current_revision.as_deref(),
        Some(old_replicant.as_str())
    );
    assert_eq!(replicant.ready_replicas, Some(2));
    let sets = replicant_sets(&f).await;
    assert_eq!(sets.len(), 2, "no third ReplicaSet: {sets:?}");
    assert_eq!(sets.get(&old_rs), Some(&2), "{sets:?}");
    assert!(
        sets.iter().all(|(name, r)| name == &old_rs || *r == 0),
        "{sets:?}"
    );
    let cores = f.stateful_sets().await.expect("list StatefulSets");
    assert_eq!(cores.len(), 2, "no third StatefulSet");
    assert_eq!(
        f.core_set_replicas(&old_core)
            .await
            .expect("list StatefulSets"),
        Some(2)
    );
    assert_eq!(f.listeners_revision().await, Some(old_replicant.clone()));

    assert!(
        load.wait_all_connected(Duration::from_secs(60)).await,
        "clients did not all come back: {:?}",
        load.progress()
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let report = load.finish(Duration::from_secs(20)).await;
    let summary = Summary::of(&report);
    assert!(
        summary.disconnect_histogram.len() <= 3,
        "a client was disconnected more than twice: {summary}"
    );
    assert_eq!(summary.sessions_lost, 0, "{summary}");
    assert!(
        report.lost().is_empty(),
        "lost QoS 1 messages: {:?}",
        report.lost()
    );
    f.stop().await.expect("sandbox stops");
}
