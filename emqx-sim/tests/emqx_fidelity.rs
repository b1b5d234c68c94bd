//! What real EMQX does that the simulator used to let pass (issue #12):
//! the 5.9+/6.x single-node licence, the time `global_status` may take,
//! and `GET /api/v5/configs`. Each case names the EMQX source it follows
//! in the module that implements it (`licence.rs`, `rest/global_status.rs`,
//! `rest/configs.rs`).

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use emqx_sim::licence::{EMQX_CONF, test_key};
use emqx_sim::operator_pod::v2_pod;
use emqx_sim::{EmqxNode, NodeConfig, Role};
use serde_json::Value;

const OP: (&str, &str) = ("emqx-operator-controller", "s3cret");

fn config(cr: &str, subnet: u8, idx: u8, image: &str, emqx_conf: Option<&str>) -> NodeConfig {
    let ip = Ipv4Addr::new(127, 47, subnet, 10 + idx);
    let mut pod = v2_pod(
        cr,
        "ns",
        &format!("{cr}-core-{idx}"),
        Role::Core,
        ip,
        image,
        "emqx-operator-controller:s3cret\n",
    );
    if let Some(text) = emqx_conf {
        pod.files.insert(EMQX_CONF.into(), text.into());
    }
    NodeConfig::from_pod(&pod).expect("valid pod")
}

async fn start(cr: &str, subnet: u8, idx: u8, image: &str, conf: Option<&str>) -> EmqxNode {
    EmqxNode::start(config(cr, subnet, idx, image, conf))
        .await
        .expect("starts")
}

async fn get(node: &EmqxNode, path: &str, accept: Option<&str>) -> (u16, String) {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("client");
    let mut req = http
        .get(format!("http://{}{path}", node.http_addr()))
        .basic_auth(OP.0, Some(OP.1));
    if let Some(a) = accept {
        req = req.header("accept", a);
    }
    let r = req.send().await.expect("send");
    (r.status().as_u16(), r.text().await.unwrap_or_default())
}

fn node_status(nodes: &str, name: &str) -> Option<String> {
    let nodes: Value = serde_json::from_str(nodes).expect("json");
    nodes
        .as_array()?
        .iter()
        .find(|n| n["node"] == name)
        .and_then(|n| n["node_status"].as_str().map(str::to_owned))
}

#[tokio::test]
async fn a_second_6x_node_without_a_licence_shuts_down_and_stays_listed_stopped() {
    let first = start("lic-none", 1, 1, "emqx/emqx:6.0.1", None).await;
    assert_eq!(
        first.halted(),
        None,
        "a single node runs on the default licence"
    );
    let second = start("lic-none", 1, 2, "emqx/emqx:6.0.1", None).await;
    let reason = second.halted().expect("the joining node shuts down");
    assert!(reason.starts_with("SINGLE_NODE_LICENSE"), "{reason}");
    let (status, nodes) = get(&first, "/api/v5/nodes", Some("application/json")).await;
    assert_eq!(status, 200);
    assert_eq!(
        node_status(&nodes, first.name()).as_deref(),
        Some("running")
    );
    assert_eq!(
        node_status(&nodes, second.name()).as_deref(),
        Some("stopped"),
        "it joined before it died: {nodes}"
    );
    // Its listeners are closed: the container is gone.
    let refused = reqwest::Client::new()
        .get(format!("http://{}/status", second.http_addr()))
        .timeout(Duration::from_secs(2))
        .send()
        .await;
    assert!(refused.is_err(), "{refused:?}");
    // A community key is the same single-node licence as `default`.
    let conf = format!("license {{ key = \"{}\" }}", test_key(2));
    let third = start("lic-none", 1, 3, "emqx/emqx:6.2.2", Some(&conf)).await;
    assert!(third.halted().is_some());
}

#[tokio::test]
async fn a_licence_that_allows_clustering_keeps_every_node() {
    for (subnet, conf) in [
        (2, "license { key = evaluation }".to_owned()),
        (3, format!("license.key = \"{}\"", test_key(1))),
    ] {
        let cr = format!("lic-ok-{subnet}");
        let a = start(&cr, subnet, 1, "emqx/emqx:6.0.1", Some(&conf)).await;
        let b = start(&cr, subnet, 2, "emqx/emqx:6.0.1", Some(&conf)).await;
        assert_eq!((a.halted(), b.halted()), (None, None), "{conf}");
        assert_eq!(a.cluster().running_nodes().len(), 2);
    }
    // Only the joining node's licence is checked: an unlicensed first node
    // does not stop a licensed one from joining (old nodes of a blue-green).
    let a = start("lic-mixed", 4, 1, "emqx/emqx:6.0.1", None).await;
    let b = start(
        "lic-mixed",
        4,
        2,
        "emqx/emqx:6.0.1",
        Some("license.key = evaluation"),
    )
    .await;
    assert_eq!((a.halted(), b.halted()), (None, None));
    // Before 5.9 there is no single-node licence.
    let a = start("lic-old", 5, 1, "emqx/emqx-enterprise:5.8.9", None).await;
    let b = start("lic-old", 5, 2, "emqx/emqx-enterprise:5.8.9", None).await;
    assert_eq!((a.halted(), b.halted()), (None, None));
}

#[test]
fn a_key_emqx_cannot_read_keeps_the_node_from_booting() {
    let ip = Ipv4Addr::new(127, 47, 6, 1);
    let mut pod = v2_pod(
        "lic-bad",
        "ns",
        "lic-bad-core-0",
        Role::Core,
        ip,
        "emqx/emqx:6.0.1",
        "k:s\n",
    );
    pod.files
        .insert(EMQX_CONF.into(), "license { key = \"...\" }".into());
    let e = NodeConfig::from_pod(&pod).expect_err("bad key");
    assert!(e.to_string().contains("license.key"), "{e}");
}

#[tokio::test]
async fn global_status_waits_three_rpc_rounds_for_a_slow_node() {
    let a = start("slow-gs", 7, 1, "emqx/emqx-enterprise:5.8.9", None).await;
    let b = start("slow-gs", 7, 2, "emqx/emqx-enterprise:5.8.9", None).await;
    b.faults()
        .set_rebalance_status_delay(Duration::from_millis(1500));
    // Asked on the fast node, the answer still waits for the slow one,
    // once per cluster-wide call.
    let started = Instant::now();
    let (status, body) = get(
        &a,
        "/api/v5/load_rebalance/global_status",
        Some("application/json"),
    )
    .await;
    let took = started.elapsed();
    assert_eq!(status, 200, "{body}");
    assert!(took >= Duration::from_millis(4500), "took {took:?}");
    // The fast node's own status does not wait; the slow node's does.
    let started = Instant::now();
    assert_eq!(get(&a, "/api/v5/load_rebalance/status", None).await.0, 200);
    assert!(started.elapsed() < Duration::from_millis(1000));
    let started = Instant::now();
    assert_eq!(get(&b, "/api/v5/load_rebalance/status", None).await.0, 200);
    assert!(started.elapsed() >= Duration::from_millis(1500));
}

#[tokio::test]
async fn configs_describe_listeners_and_dashboard_as_emqx_does() {
    let n = start("configs", 8, 1, "emqx/emqx-enterprise:5.8.9", None).await;
    // The Go operator asks for text/plain and parses HOCON.
    let (status, text) = get(&n, "/api/v5/configs", Some("text/plain")).await;
    assert_eq!(status, 200, "{text}");
    let bind = emqx_sim::hocon_paths::lookup(&text, "listeners.tcp.default.bind").expect("hocon");
    assert_eq!(bind.as_deref(), Some("0.0.0.0:1883"));
    let dashboard =
        emqx_sim::hocon_paths::lookup(&text, "dashboard.listeners.http.bind").expect("hocon");
    assert_eq!(dashboard.as_deref(), Some("18083"));
    // No Accept header means */*, which EMQX answers with HOCON too.
    let (status, same) = get(&n, "/api/v5/configs", None).await;
    assert_eq!((status, same.as_str()), (200, text.as_str()));
    // One root, still wrapped in its name.
    let (status, only) = get(&n, "/api/v5/configs?key=listeners", Some("text/plain")).await;
    assert_eq!(status, 200);
    assert!(only.starts_with("listeners {"), "{only}");
    assert!(!only.contains("dashboard"), "{only}");
    // The deprecated JSON form.
    let (status, json) = get(&n, "/api/v5/configs", Some("application/json")).await;
    assert_eq!(status, 200);
    let json: Value = serde_json::from_str(&json).expect("json");
    assert_eq!(json["listeners"]["ssl"]["default"]["bind"], "0.0.0.0:8883");
    assert_eq!(json["dashboard"]["listeners"]["https"]["bind"], 0);
    // What EMQX refuses.
    let (status, body) = get(&n, "/api/v5/configs", Some("text/html")).await;
    assert_eq!(status, 400);
    assert!(body.contains("INVALID_ACCEPT"), "{body}");
    let (status, body) = get(&n, "/api/v5/configs?key=nonsense", Some("text/plain")).await;
    assert_eq!(status, 400);
    assert!(body.contains("BAD_REQUEST"), "{body}");
    let (status, body) = get(
        &n,
        "/api/v5/configs?node=emqx%4010.0.0.9",
        Some("application/json"),
    )
    .await;
    assert_eq!(status, 404);
    // `~p` of the node atom: quoted, as it has dots.
    assert!(
        body.contains("Bad node 'emqx@10.0.0.9', reason not found"),
        "{body}"
    );
    let unauthenticated = reqwest::get(format!("http://{}/api/v5/configs", n.http_addr()))
        .await
        .expect("send");
    assert_eq!(unauthenticated.status().as_u16(), 401);
    // 4.4 has no such route.
    let old = start("configs-44", 9, 1, "emqx/emqx-ee:4.4.19", None).await;
    let r = reqwest::Client::new()
        .get(format!("http://{}/api/v4/configs", old.http_addr()))
        .basic_auth("admin", Some("public"))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status().as_u16(), 404);
}
