//! What a node makes of its pod at boot, as EMQX does, over real HTTP:
//! the bootstrap API-key file (core nodes only; a bad line stops the file,
//! not the node), the replicant role that open-source 5.8 refuses, and the
//! Erlang cookie that decides which nodes form one cluster.

use std::net::Ipv4Addr;
use std::time::Duration;

use emqx_sim::config::EMQX_CONF;
use emqx_sim::operator_pod::v2_pod;
use emqx_sim::{EmqxNode, NodeConfig, PodFacts, Role};

const ENTERPRISE: &str = "emqx/emqx-enterprise:5.8.9";

fn pod(cr: &str, idx: u8, role: Role, image: &str, keys: &str) -> PodFacts {
    let ip = Ipv4Addr::new(127, 23, 1, 10 + idx);
    let name = format!("{cr}-{}-{idx}", role.as_str());
    v2_pod(cr, "ns", &name, role, ip, image, keys)
}

async fn boot(pod: &PodFacts) -> EmqxNode {
    let config = NodeConfig::from_pod(pod).expect("boots");
    EmqxNode::start(config).await.expect("starts")
}

/// Status of `GET /api/v5/nodes` with `key:secret`.
async fn status_as(node: &EmqxNode, key: &str, secret: &str) -> u16 {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client")
        .get(format!("http://{}/api/v5/nodes", node.http_addr()))
        .basic_auth(key, Some(secret))
        .send()
        .await
        .expect("send")
        .status()
        .as_u16()
}

async fn node_count(node: &EmqxNode, key: &str, secret: &str) -> usize {
    let body: serde_json::Value = reqwest::Client::new()
        .get(format!("http://{}/api/v5/nodes", node.http_addr()))
        .basic_auth(key, Some(secret))
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    body.as_array().map_or(0, Vec::len)
}

#[tokio::test]
async fn a_bad_line_stops_the_key_file_but_not_the_node() {
    // The Go operator's order: the user's key (a secret with a colon) first,
    // the operator's last. EMQX reads `pa:ss` as secret `pa`, role `ss`.
    let file = "early:e1\nuser:pa:ss\nemqx-operator-controller:op\n";
    let node = boot(&pod("badline", 1, Role::Core, ENTERPRISE, file)).await;
    assert_eq!(status_as(&node, "early", "e1").await, 200);
    assert_eq!(status_as(&node, "user", "pa:ss").await, 401);
    // The operator's key after the bad line never loaded: 401 for good.
    assert_eq!(
        status_as(&node, "emqx-operator-controller", "op").await,
        401
    );
    let problem = node.config().bootstrap_problem.clone().expect("logged");
    assert!(problem.contains("line 2"), "{problem}");
}

#[tokio::test]
async fn replicants_use_the_keys_their_cores_loaded() {
    let core = boot(&pod("rkeys", 2, Role::Core, ENTERPRISE, "op:from-core\n")).await;
    // The replicant's own file is never read.
    let replicant = boot(&pod("rkeys", 3, Role::Replicant, ENTERPRISE, "rep:own\n")).await;
    assert_eq!(status_as(&replicant, "op", "from-core").await, 200);
    assert_eq!(status_as(&replicant, "rep", "own").await, 401);
    assert_eq!(status_as(&core, "rep", "own").await, 401);
    assert_eq!(node_count(&replicant, "op", "from-core").await, 2);
}

#[tokio::test]
async fn open_source_5_8_does_not_boot_replicants() {
    for image in ["emqx/emqx:5.8.9", "emqx/emqx:5.8.0"] {
        let e = NodeConfig::from_pod(&pod("oss", 4, Role::Replicant, image, "op:s\n"))
            .expect_err("refused at boot");
        assert!(e.is_boot_failure(), "{e}");
        assert!(e.to_string().contains(image), "{e}");
    }
    // Its core boots; 5.7 and 5.9+ run replicants.
    let _core = boot(&pod("oss", 5, Role::Core, "emqx/emqx:5.8.9", "op:s\n")).await;
    for image in ["emqx/emqx:5.7.2", "emqx/emqx:5.9.0", "emqx/emqx:6.0.1"] {
        assert!(
            NodeConfig::from_pod(&pod("oss", 6, Role::Replicant, image, "")).is_ok(),
            "{image}"
        );
    }
}

#[tokio::test]
async fn node_cookie_in_emqx_conf_decides_who_clusters() {
    // Pods without EMQX_NODE__COOKIE take node.cookie from emqx.conf.
    let with_conf = |idx: u8, conf: &str| {
        let mut p = pod("cookie", idx, Role::Core, ENTERPRISE, "op:s\n");
        p.env.remove("EMQX_NODE__COOKIE");
        p.files.insert(EMQX_CONF.into(), conf.into());
        p
    };
    let a = boot(&with_conf(7, "node { cookie = \"alpha\" }")).await;
    let b = boot(&with_conf(8, "node.cookie = alpha")).await;
    let c = boot(&with_conf(9, "node { cookie = \"beta\" }")).await;
    assert_eq!(node_count(&a, "op", "s").await, 2);
    assert_eq!(node_count(&b, "op", "s").await, 2);
    // Same discovery name, other cookie: a cluster of its own.
    assert_eq!(node_count(&c, "op", "s").await, 1);
}
