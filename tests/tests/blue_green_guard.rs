//! The upgrade guard end to end (`updateStrategy.guard`, issue #15 items 1
//! and 6), against the real control plane with simulated EMQX, the
//! reconciler in process and MQTT clients connected: an upgrade to a
//! revision whose nodes refuse CONNECT, or accept clients and then drop
//! them (simulator faults chosen by the new revision's container env, as a
//! bad configuration would come with it), is aborted by the guard after at
//! most the first old node's eviction, every client back on the old
//! revision with its session and no QoS 1 message lost; a good upgrade
//! with the guard on finishes as before.
//!
//! `GUARD_CLIENTS` changes the client count ([`CLIENTS`], issue #15's
//! figure, in CI too).

mod support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use emqx_sim::faults::MQTT_FAULT_ENV;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use mqtt_load::MqttLoad;
use sandbox::seed_003::{NAME, Seed003, Stage, condition, is_true, load, update_revision};
use serde_json::json;
use support::wait_for;

const ABORT: &str = "apps.emqx.io/abort";
/// Clients, as issue #15 item 6 asks (about 77 s for the three tests on
/// two cores, 53 s with 60); `GUARD_CLIENTS` overrides it.
const CLIENTS: usize = 1000;
/// The recovery window the tests give the guard (the default is 60 s).
const WINDOW_S: u64 = 20;

fn clients_wanted() -> usize {
    std::env::var("GUARD_CLIENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(CLIENTS)
}

/// Seed 003 (two cores) with the guard's window shortened, Ready, its
/// clients connected.
async fn guarded_with_clients() -> (Stage, MqttLoad, usize) {
    let n = clients_wanted();
    let mut f = support::ready(
        Seed003::new()
            .merge(json!({"spec": {"updateStrategy": {"guard": {
                "connectionRecovery": {"windowSeconds": WINDOW_S}
            }}}}))
            .clients(
                load(n, 200, Duration::from_secs(600)),
                Duration::from_secs(120),
            ),
    )
    .await;
    let clients = f.load.take().expect("clients");
    (f, clients, n)
}

/// The live connections on nodes of `revision`, and on all nodes.
fn connections_on(f: &Stage, revision: &str) -> (u64, u64) {
    let prefix = format!("{NAME}-core-{revision}-");
    let members = f.cluster().expect("a running EMQX node").summaries();
    let on = members
        .iter()
        .filter(|m| m.running && m.name.contains(&prefix))
        .map(|m| m.live_connections)
        .sum();
    let all = members
        .iter()
        .filter(|m| m.running)
        .map(|m| m.live_connections)
        .sum();
    (on, all)
}

/// Each of `nodes`' evacuation steps, seconds after `since`: what a failure
/// of the one-node bound needs to be understood.
fn evacuation_story(f: &Stage, nodes: &[String], since: Instant) -> String {
    let since = tokio::time::Instant::from_std(since);
    nodes
        .iter()
        .map(|node| {
            let steps: Vec<String> = f
                .evacuation_history(node)
                .iter()
                .map(|e| {
                    format!(
                        "{:.1}s {} (evicted {}, migrated {})",
                        e.at.saturating_duration_since(since).as_secs_f64(),
                        e.state,
                        e.evicted,
                        e.migrated
                    )
                })
                .collect();
            format!("{node}: [{}]", steps.join(", "))
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Upgrades to a revision whose nodes carry `fault` and checks the guard's
/// abort; `figures` is what the condition's message must name.
async fn a_faulty_revision_is_aborted_by_the_guard(fault: &str, figures: &str) {
    let (f, clients, n) = guarded_with_clients().await;
    let old = f.revision.clone();
    let old_prefix = format!("{NAME}-core-{old}-");
    let started = Instant::now();
    f.patch(json!({"spec": {"coreTemplate": {"spec": {"env": [
        {"name": MQTT_FAULT_ENV, "value": fault}
    ]}}}}))
    .await
    .expect("patch EMQX");

    let aborted: Condition = f
        .wait_object(
            "Progressing=False, UpgradeAborted",
            Duration::from_secs(240),
            |e| {
                condition(e, "Progressing")
                    .filter(|c| c.status == "False" && c.reason == "UpgradeAborted")
                    .ok_or_else(|| format!("Progressing={:?}", condition(e, "Progressing")))
            },
        )
        .await
        .expect("wait");
    let tripped_after = started.elapsed();
    let emqx = f.get().await.expect("get EMQX");
    let new = update_revision(&emqx).expect("update revision");
    assert_ne!(new, old);
    assert!(
        aborted.message.contains("upgrade guard") && aborted.message.contains(figures),
        "{}",
        aborted.message
    );
    // The guard wrote the abort annotation: removing it is the retry.
    let annotations = emqx.metadata.annotations.clone().unwrap_or_default();
    assert_eq!(annotations.get(ABORT), Some(&new), "{annotations:?}");
    // At most one old node's clients were moved. An old node the Service
    // gave no client (clients connect before both are endpoints, say) is
    // evacuated without moving anyone, its "recovery" is immediate and the
    // guard rightly lets the next node go: count nodes whose eviction
    // moved clients, not evacuations.
    let evacuated: Vec<String> = f
        .evacuated_nodes()
        .into_iter()
        .filter(|n| n.contains(&old_prefix))
        .collect();
    let moved_clients: Vec<&String> = evacuated
        .iter()
        .filter(|n| f.evacuation_history(n).iter().any(|e| e.evicted > 0))
        .collect();
    assert!(
        moved_clients.len() <= 1,
        "old nodes evacuated: {}; the reconciler's memory: {:?}",
        evacuation_story(&f, &evacuated, started),
        annotations.get(emqx_reconciler::memory::ANNOTATION_PROGRESS)
    );

    // The Services go back, the new set is scaled away, the old one was
    // never scaled down, no third set, one Event.
    wait_for(
        "the new set scaled away",
        Duration::from_secs(180),
        || async {
            let replicas = f.core_set_replicas(&new).await.expect("list StatefulSets");
            let pods = f.core_pods(&new).await.expect("list pods").len();
            if replicas == Some(0) && pods == 0 {
                Ok(())
            } else {
                Err(format!("replicas {replicas:?}, pods {pods}"))
            }
        },
    )
    .await;
    assert_eq!(f.listeners_revision().await.as_deref(), Some(old.as_str()));
    assert_eq!(
        f.core_set_replicas(&old).await.expect("list StatefulSets"),
        Some(2)
    );
    assert_eq!(
        f.stateful_set_names().await.expect("list StatefulSets"),
        BTreeSet::from([format!("{NAME}-core-{old}"), format!("{NAME}-core-{new}")]),
        "no third set"
    );
    let emqx = f.get().await.expect("get EMQX");
    assert!(is_true(&emqx, "Aborted"));
    assert!(!is_true(&emqx, "Ready") || update_revision(&emqx).as_deref() == Some(&new));
    assert_eq!(f.count_events("UpgradeAborted").await.expect("events"), 1);

    // Every client back on the old revision, with its session, no QoS 1
    // message lost.
    assert!(
        clients.wait_all_connected(Duration::from_secs(120)).await,
        "clients did not all come back: {:?}",
        clients.progress()
    );
    let on_old = wait_for(
        "every client on the old nodes",
        Duration::from_secs(60),
        || async {
            // The load's publisher is one more connection.
            let (on_old, all) = connections_on(&f, &old);
            if on_old == all && on_old >= n as u64 {
                Ok(on_old)
            } else {
                Err(format!("{on_old} of {all} on {old}, {n} clients"))
            }
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let report = clients.finish(Duration::from_secs(30)).await;
    let summary = mqtt_load::recorder::Summary::of(&report);
    println!(
        "guard ({fault}, {n} clients): tripped {:.1} s after the patch ({}); evacuated {evacuated:?}; {on_old} connections on {old}; {summary}",
        tripped_after.as_secs_f64(),
        aborted.message
    );
    assert_eq!(summary.sessions_lost, 0, "{summary}");
    // The publisher is one more client whose session must survive.
    assert_eq!(
        summary.publisher_sessions_lost, 0,
        "{summary}; the publisher's connections: {:?}",
        report.publisher.events
    );
    let lost = report.lost();
    let first_loser = lost
        .first()
        .and_then(|(id, _)| report.client_logs.iter().find(|l| &l.client_id == id));
    assert!(
        lost.is_empty(),
        "lost QoS 1 messages: {lost:?}; the publisher's connections: {:?}; the first loser's: {:?}",
        report.publisher.events,
        first_loser.map(|l| &l.events)
    );
    f.stop().await.expect("sandbox stops");
}

/// The new nodes refuse every CONNECT (an authentication that fails): the
/// refused CONNECTs trip the guard.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nodes_that_refuse_connect_are_aborted_after_the_first_eviction_at_most() {
    a_faulty_revision_is_aborted_by_the_guard("refuse-connect", "refused").await;
}

/// The new nodes accept clients and drop them 20 ms later: no refusal, but
/// the connections do not come back within the window.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nodes_that_drop_clients_are_aborted_after_the_first_eviction_at_most() {
    a_faulty_revision_is_aborted_by_the_guard("drop-after-connack=20", "before the upgrade").await;
}

/// A good upgrade with the guard on finishes as before: each client moved
/// at most once, sessions and messages kept, nothing aborted.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_good_upgrade_with_the_guard_on_finishes() {
    let (f, clients, n) = guarded_with_clients().await;
    let started = Instant::now();
    f.patch_image_pull_policy().await.expect("patch EMQX");
    let done = f
        .wait_ready(Some(&f.revision), Duration::from_secs(240))
        .await
        .expect("EMQX Ready");
    let took = started.elapsed();
    let new = update_revision(&done).expect("update revision");
    assert_eq!(f.listeners_revision().await.as_deref(), Some(new.as_str()));
    assert_eq!(
        f.core_set_replicas(&f.revision)
            .await
            .expect("list StatefulSets"),
        Some(0)
    );
    assert_eq!(f.count_events("UpgradeAborted").await.expect("events"), 0);
    let annotations = done.metadata.annotations.clone().unwrap_or_default();
    assert!(!annotations.contains_key(ABORT), "{annotations:?}");
    assert!(
        clients.wait_all_connected(Duration::from_secs(60)).await,
        "clients did not all come back: {:?}",
        clients.progress()
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let report = clients.finish(Duration::from_secs(30)).await;
    let summary = mqtt_load::recorder::Summary::of(&report);
    println!(
        "guard on, good upgrade ({n} clients): Ready {:.1} s after the patch; {summary}",
        took.as_secs_f64()
    );
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
    f.stop().await.expect("sandbox stops");
}
