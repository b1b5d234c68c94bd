//! The cluster's evidence outlives its nodes: evacuation histories survive
//! `force_leave` and restarts, and every stop records the evacuation state.

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use super::BrokerCluster;
use crate::config::{NodeConfig, Role};
use crate::evacuation::EvacuationOptions;
use crate::operator_pod::v2_pod;

fn config(cr: &str, idx: u8) -> NodeConfig {
    let pod = v2_pod(
        cr,
        "default",
        &format!("{cr}-core-{idx}"),
        Role::Core,
        Ipv4Addr::new(127, 30, 0, idx),
        "emqx/emqx-enterprise:5.8.9",
        "emqx-operator-controller:secret\n",
    );
    NodeConfig::from_pod(&pod).expect("valid pod")
}

fn quick() -> EvacuationOptions {
    EvacuationOptions {
        wait_health_check: Duration::ZERO,
        wait_takeover: Duration::ZERO,
        ..EvacuationOptions::default()
    }
}

#[test]
fn history_and_stops_survive_force_leave() {
    let (a, b) = (config("evidence-leave", 1), config("evidence-leave", 2));
    let cluster = BrokerCluster::discover(&a.discovery);
    cluster.join(&a, Arc::new(Notify::new())).expect("a joins");
    cluster.join(&b, Arc::new(Notify::new())).expect("b joins");
    cluster
        .start_evacuation(&a.node_name, quick())
        .expect("evacuation starts");
    // No clients: straight through to prohibiting.
    let now = Instant::now();
    for _ in 0..4 {
        cluster.tick(&a.node_name, now);
    }
    let states = |c: &BrokerCluster| -> Vec<&str> {
        c.evacuation_history(&a.node_name)
            .iter()
            .map(|e| e.state)
            .collect()
    };
    assert_eq!(states(&cluster).last(), Some(&"prohibiting"));
    cluster.stop_node(&a.node_name);
    cluster.stop_node(&a.node_name);
    let stops = cluster.stops();
    assert_eq!(stops.len(), 1, "a second stop of a stopped node is no stop");
    assert_eq!(stops[0].node, a.node_name);
    assert_eq!(stops[0].evacuation, Some("prohibiting"));
    cluster
        .force_leave(&b.node_name, &a.node_name)
        .expect("force_leave");
    assert_eq!(
        states(&cluster).first(),
        Some(&"waiting_health_check"),
        "history kept after force_leave"
    );
    assert_eq!(states(&cluster).last(), Some(&"prohibiting"));
}

#[test]
fn a_restart_appends_to_the_history_and_a_plain_stop_records_none() {
    let (a, b) = (config("evidence-restart", 1), config("evidence-restart", 2));
    let cluster = BrokerCluster::discover(&a.discovery);
    cluster.join(&a, Arc::new(Notify::new())).expect("a joins");
    cluster.join(&b, Arc::new(Notify::new())).expect("b joins");
    cluster
        .start_evacuation(&b.node_name, quick())
        .expect("evacuation starts");
    cluster.stop_node(&b.node_name);
    cluster
        .join(&b, Arc::new(Notify::new()))
        .expect("b restarts");
    cluster
        .start_evacuation(&b.node_name, quick())
        .expect("evacuation starts again");
    let starts = cluster
        .evacuation_history(&b.node_name)
        .iter()
        .filter(|e| e.state == "waiting_health_check")
        .count();
    assert_eq!(starts, 2, "both lives' evacuations are on record");
    cluster.stop_node(&a.node_name);
    let stops = cluster.stops();
    assert_eq!(stops.len(), 2);
    assert_eq!(stops[0].evacuation, Some("waiting_health_check"));
    assert_eq!(stops[1].node, a.node_name);
    assert_eq!(stops[1].evacuation, None);
}
