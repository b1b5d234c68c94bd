//! `global_status` against the simulator with a slow node: EMQX waits for
//! the slowest node once per cluster-wide RPC (up to 3 × 15 s,
//! `emqx_node_rebalance_status_proto_v2.erl`), so an answer slower than
//! the usual 5 s call timeout is still an answer; and the slow node is
//! found by asking each node its own status.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::Ipv4Addr;
use std::time::Duration;

use emqx_reconciler::emqx_api::ApiGeneration;
use emqx_reconciler::emqx_client::EmqxClient;
use emqx_reconciler::slow_nodes::{self, Credentials, Target};
use emqx_sim::operator_pod::v2_pod;
use emqx_sim::{EmqxNode, NodeConfig, Role};
use serde_json::Value;

const SECRET: &str = "s3cret";

async fn node(cr: &str, subnet: u8, idx: u8) -> EmqxNode {
    let pod = v2_pod(
        cr,
        "ns",
        &format!("{cr}-core-{idx}"),
        Role::Core,
        Ipv4Addr::new(127, 48, subnet, 10 + idx),
        "emqx/emqx-enterprise:5.8.9",
        "emqx-operator-controller:s3cret\n",
    );
    EmqxNode::start(NodeConfig::from_pod(&pod).expect("valid pod"))
        .await
        .expect("starts")
}

fn client(node: &EmqxNode, timeout: Duration) -> EmqxClient {
    EmqxClient::new(
        format!("http://{}", node.http_addr()),
        ApiGeneration::V5,
        "emqx-operator-controller",
        SECRET,
        timeout,
    )
    .expect("client")
}

/// One node 2 s slow: three RPC rounds make `global_status` take 6 s,
/// longer than the 5 s call timeout, and that is an honest answer.
#[tokio::test]
async fn a_slow_but_honest_global_status_is_read() {
    let a = node("slowgs", 1, 1).await;
    let b = node("slowgs", 1, 2).await;
    b.faults()
        .set_rebalance_status_delay(Duration::from_secs(2));
    let (answer, took) = client(&a, Duration::from_secs(5))
        .global_evacuations_timed::<Value>()
        .await;
    assert_eq!(answer, Ok(Vec::new()), "took {took:?}");
    assert!(took >= Duration::from_secs(6), "took {took:?}");
    // Complete: shorter than EMQX's 15 s RPC timeout, no node was dropped.
    assert!(!slow_nodes::untrusted(Ok(()), took));
}

#[tokio::test]
async fn the_slow_node_is_named_by_its_own_status() {
    let a = node("probe", 2, 1).await;
    let b = node("probe", 2, 2).await;
    b.faults()
        .set_rebalance_status_delay(Duration::from_secs(3));
    let targets = [&a, &b]
        .iter()
        .map(|n| Target {
            node: n.name().to_owned(),
            base: format!("http://{}", n.http_addr()),
        })
        .collect();
    let auth = Credentials {
        api: ApiGeneration::V5,
        key: "emqx-operator-controller",
        secret: SECRET,
    };
    let slow = slow_nodes::probe(targets, auth, Duration::from_secs(1)).await;
    assert_eq!(slow, [b.name().to_owned()]);
}

/// A node slower than EMQX's 15 s status RPC timeout: `global_status`
/// takes three timeouts (45 s) and answers without that node's evacuation,
/// as if it had none. Such an answer is not trusted, and the node is named.
#[tokio::test]
async fn a_node_past_the_rpc_timeout_is_left_out_and_the_answer_is_not_trusted() {
    let a = node("dropped", 3, 1).await;
    let b = node("dropped", 3, 2).await;
    let strategy = emqx_reconciler::observed::Strategy {
        initial_delay_s: 0,
        wait_takeover_s: 60,
        conn_evict_rate: 1,
        sess_evict_rate: 1,
    };
    let started = client(&a, Duration::from_secs(5))
        .start_evacuation(b.name(), &strategy, &[a.name().to_owned()], true)
        .await;
    assert!(started.is_ok(), "{started:?}");
    let before = client(&a, Duration::from_secs(5))
        .global_evacuations::<Value>()
        .await
        .expect("answer");
    assert_eq!(before.len(), 1, "{before:?}");

    b.faults()
        .set_rebalance_status_delay(Duration::from_secs(16));
    let (answer, took) = client(&a, Duration::from_secs(5))
        .global_evacuations_timed::<Value>()
        .await;
    assert_eq!(answer, Ok(Vec::new()), "EMQX drops the slow node silently");
    assert!(took >= Duration::from_secs(45), "took {took:?}");
    assert!(slow_nodes::untrusted(Ok(()), took));
    let targets = vec![Target {
        node: b.name().to_owned(),
        base: format!("http://{}", b.http_addr()),
    }];
    let auth = Credentials {
        api: ApiGeneration::V5,
        key: "emqx-operator-controller",
        secret: SECRET,
    };
    let slow = slow_nodes::probe(targets, auth, Duration::from_secs(2)).await;
    assert_eq!(slow, [b.name().to_owned()]);
}
