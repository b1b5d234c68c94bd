//! The load generator's own bookkeeping against a node that misbehaves: a
//! message counts as lost only when the broker acknowledged *that* message
//! and its subscriber never got it, so the end-to-end tests' "0 QoS 1 lost"
//! depends on the publisher pairing every PUBACK with the right message even
//! when its connection drops again and again.

#![allow(clippy::panic)] // a test helper that panics is how a test fails

use std::net::Ipv4Addr;
use std::time::Duration;

use emqx_sim::operator_pod::v2_pod;
use emqx_sim::{EmqxNode, NodeConfig, Role};
use mqtt_load::protocol::{MqttClient, Polled};
use mqtt_load::{Backoff, Endpoints, LoadConfig, MqttLoad, Protocol, SessionSettings};

async fn node(idx: u8) -> EmqxNode {
    let ip = Ipv4Addr::new(127, 26, 1, 10 + idx);
    let pod = v2_pod(
        "acct",
        "default",
        &format!("acct-core-{idx}"),
        Role::Core,
        ip,
        "emqx/emqx-enterprise:5.8.9",
        "k:s\n",
    );
    let config = NodeConfig::from_pod(&pod).expect("operator pod is valid");
    EmqxNode::start(config).await.expect("node starts")
}

/// The publisher is pushed onto a node that drops every connection 20 ms
/// after its CONNACK (the guard tests' fault) while it keeps publishing to
/// 1,000 subscribers on a healthy node: each reconnect resends what is
/// unacknowledged and queues new publishes behind. Then that node stops with
/// the publisher's session on it, so the publisher reconnects elsewhere
/// without a session and holds publishes the broker never acknowledged.
/// Every acknowledged publish must reach its subscriber, and every publish
/// must in the end be acknowledged: what a lost session dropped is sent
/// again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_publisher_bouncing_off_a_faulty_node_then_losing_its_session_loses_nothing() {
    let mut faulty = node(1).await;
    let healthy = node(2).await;
    let cluster = healthy.cluster().clone();
    assert_eq!(cluster.running_nodes().len(), 2, "one cluster");
    let settings = SessionSettings {
        protocol: Protocol::V5,
        keep_alive: Duration::from_secs(30),
        session_expiry: Duration::from_secs(600),
        clean_start: false,
    };
    let config = LoadConfig {
        clients: 1000,
        client_prefix: "acct-".into(),
        session: settings,
        connect_rate: 1000,
        backoff: Backoff::default(),
        publish_interval: Duration::from_secs(1),
        max_duration: Duration::from_secs(90),
    };
    let publisher_endpoints = Endpoints::new(vec![healthy.mqtt_addr()]);
    let load = MqttLoad::start(
        config,
        Endpoints::new(vec![healthy.mqtt_addr()]),
        publisher_endpoints.clone(),
        cluster.clone(),
    );
    assert!(
        load.wait_all_subscribed(Duration::from_secs(30)).await,
        "subscribed: {:?}",
        load.progress()
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    // A takeover of its session ends the publisher's connection (0x8E), as
    // an eviction does in the guard tests; it comes back on the faulty node.
    faulty
        .faults()
        .set_drop_after_connack(Some(Duration::from_millis(20)));
    publisher_endpoints.set(vec![faulty.mqtt_addr()]);
    let mut kicker = MqttClient::new(
        mqtt_load::publisher::PUBLISHER_ID,
        healthy.mqtt_addr(),
        settings,
        4,
    );
    match tokio::time::timeout(Duration::from_secs(5), kicker.poll()).await {
        Ok(Polled::ConnAck {
            session_present, ..
        }) => assert!(session_present),
        other => panic!("the takeover must be accepted: {other:?}"),
    }
    drop(kicker);
    tokio::time::sleep(Duration::from_secs(10)).await;
    // The faulty node stops with the publisher's session: it is there, and
    // the publisher can reach no other node until the stop.
    let owner = cluster.client_location(mqtt_load::publisher::PUBLISHER_ID);
    assert_eq!(owner.map(|(node, _)| node).as_deref(), Some(faulty.name()));
    faulty.stop();
    publisher_endpoints.set(vec![healthy.mqtt_addr()]);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let report = load.finish(Duration::from_secs(30)).await;
    let summary = mqtt_load::recorder::Summary::of(&report);
    println!("{summary}");
    assert!(
        summary.publisher_disconnects >= 20,
        "the fault must bounce the publisher: {summary}"
    );
    assert_eq!(
        summary.publisher_sessions_lost, 1,
        "the stop must take the publisher's session: {:?}",
        report.publisher.events
    );
    let lost = report.lost();
    assert!(lost.is_empty(), "{} lost: {lost:?}", lost.len());
    assert_eq!(report.unconfirmed, 0, "{summary}");
    assert_eq!(summary.confirmed, summary.published, "{summary}");
}
