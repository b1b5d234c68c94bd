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
