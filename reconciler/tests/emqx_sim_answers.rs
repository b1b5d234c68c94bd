//! The reconciler's EMQX client against the simulator's real HTTP answers
//! (the simulator models EMQX's source; each case names where from).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::Ipv4Addr;
use std::time::Duration;

use emqx_reconciler::emqx_api::{ApiGeneration, EmqxError};
use emqx_reconciler::emqx_client::EmqxClient;
use emqx_sim::operator_pod::v1beta4_pod;
use emqx_sim::{EmqxNode, NodeConfig};
use serde_json::Value;

/// Loopback addresses of this file (the simulator's own tests use 127.21.x).
fn ip(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 23, 7, last)
}

async fn v4_node(cr: &str, last: u8, image: &str) -> (EmqxNode, EmqxClient) {
    let pod = v1beta4_pod(
        cr,
        "ns",
        &format!("{cr}-0"),
        ip(last),
        image,
        "emqx_operator_controller:opsecret\n",
    );
    let node = EmqxNode::start(NodeConfig::from_pod(&pod).expect("valid pod"))
        .await
        .expect("starts");
    let client = EmqxClient::new(
        format!("http://{}", node.http_addr()),
        ApiGeneration::V4,
        "emqx_operator_controller",
        "opsecret",
        Duration::from_secs(5),
    )
    .expect("client");
    (node, client)
}

/// EMQX 4.4 without node evacuation answers `global_status` with minirest
/// 0.3.12's `404 text/plain "Not found."`: that must read as "no evacuation
/// API" (the documented fallback), not as a failed observation.
#[tokio::test]
async fn a_4_4_broker_without_evacuation_reads_as_unsupported() {
    for (i, image) in ["emqx/emqx:4.4.19", "emqx/emqx-ee:4.4.11"]
        .into_iter()
        .enumerate()
    {
        let last = 10 + u8::try_from(i).expect("small");
        let (_node, client) = v4_node(&format!("noevac{i}"), last, image).await;
        assert_eq!(client.nodes().await.expect("nodes").len(), 1, "{image}");
        let answer = client.global_evacuations::<Value>().await;
        assert!(
            matches!(answer, Err(EmqxError::EvacuationUnsupported(_))),
            "{image}: {answer:?}"
        );
    }
    // An Enterprise 4.4 with evacuation still reads its (empty) list.
    let (_node, client) = v4_node("evac", 20, "emqx/emqx-ee:4.4.19").await;
    assert_eq!(client.global_evacuations::<Value>().await, Ok(Vec::new()));
}

/// `force_leave` of a node that already left answers 400
/// `node_not_in_cluster` (emqx_mgmt_api_cluster.erl at v5.8.9): done, so a
/// pass repeated after a crash does not stall on it.
#[tokio::test]
async fn force_leave_of_a_departed_node_is_done() {
    let start = |pod: &str, last: u8| {
        let facts = emqx_sim::operator_pod::v2_pod(
            "leave",
            "ns",
            pod,
            emqx_sim::Role::Core,
            ip(last),
            "emqx/emqx-enterprise:5.8.9",
            "emqx-operator-controller:s3cret\n",
        );
        EmqxNode::start(NodeConfig::from_pod(&facts).expect("valid pod"))
    };
    let a = start("leave-core-0", 30).await.expect("starts");
    let mut b = start("leave-core-1", 31).await.expect("starts");
    let client = EmqxClient::new(
        format!("http://{}", a.http_addr()),
        ApiGeneration::V5,
        "emqx-operator-controller",
        "s3cret",
        Duration::from_secs(5),
    )
    .expect("client");
    let b_name = b.name().to_owned();
    assert_eq!(client.nodes().await.expect("nodes").len(), 2);
    b.stop();
    assert_eq!(client.force_leave(&b_name).await, Ok(()), "first leave");
    assert_eq!(client.force_leave(&b_name).await, Ok(()), "already gone");
    assert_eq!(client.nodes().await.expect("nodes").len(), 1);
    // Leaving itself is refused, and stays an error.
    let own = client.force_leave(a.name()).await;
    assert!(
        matches!(&own, Err(EmqxError::Api { status: 400, message, .. }) if message.contains("Can't leave self")),
        "{own:?}"
    );
}

/// e5.0.x rejects `wait_health_check` (400, unknown field); the body the
/// reconciler builds for the node it talks to leaves it out, even when the
/// cluster also lists a newer node first.
#[tokio::test]
async fn an_e5_0_node_gets_no_wait_health_check() {
    use emqx_reconciler::emqx_api::{StartOutcome, knows_wait_health_check, version_of};
    use emqx_reconciler::observed::Strategy;
    let start = |pod: &str, last: u8, image: &str| {
        let facts = emqx_sim::operator_pod::v2_pod(
            "mixed",
            "ns",
            pod,
            emqx_sim::Role::Core,
            ip(last),
            image,
            "emqx-operator-controller:s3cret\n",
        );
        EmqxNode::start(NodeConfig::from_pod(&facts).expect("valid pod"))
    };
    let new = start("mixed-core-0", 40, "emqx/emqx-enterprise:5.8.9")
        .await
        .expect("starts");
    let old = start("mixed-core-1", 41, "emqx/emqx-enterprise:5.0.4")
        .await
        .expect("starts");
    let client = EmqxClient::new(
        format!("http://{}", old.http_addr()),
        ApiGeneration::V5,
        "emqx-operator-controller",
        "s3cret",
        Duration::from_secs(5),
    )
    .expect("client");
    let nodes = client.nodes().await.expect("nodes");
    assert_eq!(nodes.len(), 2);
    let strategy = Strategy {
        initial_delay_s: 0,
        wait_takeover_s: 5,
        conn_evict_rate: 10,
        sess_evict_rate: 10,
    };
    let to = [new.name().to_owned()];
    // What the old node says to the field it does not know.
    let refused = client
        .start_evacuation(old.name(), &strategy, &to, true)
        .await;
    assert!(
        matches!(&refused, Err(EmqxError::Api { status: 400, message, .. }) if message.contains("wait_health_check")),
        "{refused:?}"
    );
    // What the reconciler sends (act.rs decides from the serving version).
    let knows = version_of(&nodes, old.name()).is_some_and(|v| knows_wait_health_check(&v));
    assert!(!knows);
    assert_eq!(
        client
            .start_evacuation(old.name(), &strategy, &to, knows)
            .await,
        Ok(StartOutcome::Started)
    );
}
