//! Every REST case of the checklist in docs/emqx-api.md §11, against real
//! HTTP on simulated nodes.

use std::net::Ipv4Addr;
use std::time::Duration;

use emqx_sim::operator_pod::v2_pod;
use emqx_sim::{EmqxNode, NodeConfig, Role};
use reqwest::Method;
use serde_json::{Value, json};

const KEYS: &str = "emqx-operator-controller:s3cret\nview:vpass:viewer\n";

async fn start(cr: &str, subnet: u8, idx: u8, image: &str) -> EmqxNode {
    let ip = Ipv4Addr::new(127, 21, subnet, 10 + idx);
    // Open-source builds accept only administrator keys.
    let keys = if image.contains("enterprise") {
        KEYS
    } else {
        "emqx-operator-controller:s3cret\n"
    };
    let pod = v2_pod(
        cr,
        "ns",
        &format!("{cr}-core-{idx}"),
        Role::Core,
        ip,
        image,
        keys,
    );
    let mut config = NodeConfig::from_pod(&pod).expect("valid pod");
    config.tick = Duration::from_millis(200);
    EmqxNode::start(config).await.expect("starts")
}

struct Resp {
    status: u16,
    headers: reqwest::header::HeaderMap,
    text: String,
}

impl Resp {
    fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or(Value::Null)
    }
}

async fn call(
    node: &EmqxNode,
    method: Method,
    path: &str,
    auth: Option<(&str, &str)>,
    accept: Option<&str>,
    body: Option<&str>,
) -> Resp {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client");
    let mut req = http.request(method, format!("http://{}{path}", node.http_addr()));
    if let Some((k, s)) = auth {
        req = req.basic_auth(k, Some(s));
    }
    if let Some(a) = accept {
        req = req.header("accept", a);
    }
    if let Some(b) = body {
        req = req
            .header("content-type", "application/json")
            .body(b.to_string());
    }
    let r = req.send().await.expect("send");
    Resp {
        status: r.status().as_u16(),
        headers: r.headers().clone(),
        text: r.text().await.unwrap_or_default(),
    }
}

const OP: Option<(&str, &str)> = Some(("emqx-operator-controller", "s3cret"));
const JSON: Option<&str> = Some("application/json");

#[tokio::test]
async fn authentication_and_public_endpoints() {
    let n = start("auth", 1, 1, "emqx/emqx-enterprise:5.8.9").await;
    let r = call(&n, Method::GET, "/api/v5/nodes", None, JSON, None).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["code"], "AUTHORIZATION_HEADER_ERROR");
    let r = call(
        &n,
        Method::GET,
        "/api/v5/nodes",
        Some(("emqx-operator-controller", "wrong")),
        JSON,
        None,
    )
    .await;
    assert_eq!(r.status, 401);
    assert_eq!(
        r.json(),
        json!({"code":"BAD_API_KEY_OR_SECRET","message":"Check api_key/api_secret"})
    );
    assert_eq!(
        r.headers
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok()),
        Some("Basic Realm=\"emqx-dashboard\"")
    );
    let r = call(
        &n,
        Method::GET,
        "/api/v5/nodes",
        Some(("nobody", "s3cret")),
        JSON,
        None,
    )
    .await;
    assert_eq!(r.json()["code"], "BAD_API_KEY_OR_SECRET");
    // Viewer may read, not write.
    let r = call(
        &n,
        Method::GET,
        "/api/v5/nodes",
        Some(("view", "vpass")),
        JSON,
        None,
    )
    .await;
    assert_eq!(r.status, 200);
    let start_path = format!("/api/v5/load_rebalance/{}/evacuation/start", n.name());
    let r = call(
        &n,
        Method::POST,
        &start_path,
        Some(("view", "vpass")),
        JSON,
        Some("{}"),
    )
    .await;
    assert_eq!(
        (r.status, r.json()["code"].clone()),
        (403, json!("UNAUTHORIZED_ROLE"))
    );

    // Public: /status, availability_check (5.4+), prometheus; unknown paths 404 before auth.
    let r = call(&n, Method::GET, "/status", None, None, None).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.text,
        format!("Node {} is started\nemqx is running", n.name())
    );
    let r = call(
        &n,
        Method::GET,
        "/api/v5/status?format=json",
        None,
        None,
        None,
    )
    .await;
    assert_eq!(r.json()["broker_status"], "started");
    let r = call(
        &n,
        Method::GET,
        "/api/v5/load_rebalance/availability_check",
        None,
        JSON,
        None,
    )
    .await;
    assert_eq!((r.status, r.json()), (200, json!({})));
    let r = call(
        &n,
        Method::GET,
        "/api/v5/prometheus/stats",
        None,
        None,
        None,
    )
    .await;
    assert_eq!(r.status, 200);
    assert!(r.text.contains("emqx_connections_count 0"), "{}", r.text);
    assert!(r.text.contains("emqx_live_connections_count 0"));

    let r = call(&n, Method::GET, "/api/v5/no/such/path", None, JSON, None).await;
    assert_eq!(
        (r.status, r.json()),
        (
            404,
            json!({"code":"NOT_FOUND","message":"Request Path Not Found"})
        )
    );
    let r = call(
        &n,
        Method::GET,
        "/api/v5/no/such/path",
        None,
        Some("text/plain"),
        None,
    )
    .await;
    assert_eq!((r.status, r.text.as_str()), (404, "404 - NOT FOUND"));
    let r = call(&n, Method::GET, "/nope", None, Some("text/html"), None).await;
    assert_eq!(r.status, 404);
    assert!(r.text.contains("<h1>404 - NOT FOUND</h1>"));
    let r = call(
        &n,
        Method::GET,
        &format!("/api/v5/load_rebalance/{}/purge/start", n.name()),
        None,
        JSON,
        None,
    )
    .await;
    assert_eq!(r.status, 404, "purge is not routed");
    let r = call(&n, Method::DELETE, "/api/v5/nodes", OP, JSON, None).await;
    assert_eq!(r.status, 405);
}

#[tokio::test]
async fn nodes_cluster_and_force_leave() {
    let a = start("clu", 2, 1, "emqx/emqx-enterprise:5.8.9").await;
    let mut b = start("clu", 2, 2, "emqx/emqx-enterprise:5.8.9").await;
    let r = call(&a, Method::GET, "/api/v5/nodes", OP, JSON, None).await;
    let nodes = r.json();
    let list = nodes.as_array().expect("bare array");
    assert_eq!(list.len(), 2);
    for key in [
        "node",
        "node_status",
        "version",
        "edition",
        "role",
        "otp_release",
        "uptime",
        "connections",
        "live_connections",
        "cluster_sessions",
        "load1",
        "max_fds",
        "memory_total",
        "sys_path",
    ] {
        assert!(list[0].get(key).is_some(), "missing {key}");
    }
    assert_eq!(list[0]["node_status"], "running");
    assert_eq!(list[0]["edition"], "Enterprise");
    assert_eq!(list[0]["version"], "5.8.9");
    let r = call(
        &a,
        Method::GET,
        &format!("/api/v5/nodes/{}", b.name()),
        OP,
        JSON,
        None,
    )
    .await;
    assert_eq!(r.json()["node"], json!(b.name()));
    let r = call(
        &a,
        Method::GET,
        "/api/v5/nodes/emqx@nowhere",
        OP,
        JSON,
        None,
    )
    .await;
    assert_eq!(
        (r.status, r.json()),
        (
            404,
            json!({"code":"NOT_FOUND","message":"Node not found: emqx@nowhere"})
        )
    );
    let r = call(&a, Method::GET, "/api/v5/cluster", OP, JSON, None).await;
    assert_eq!(
        r.json(),
        json!({"name":"emqxcl","nodes":[a.name(), b.name()],"self":a.name()})
    );

    // A stopped core stays listed, minimal, until force_leave.
    let b_name = b.name().to_string();
    b.stop();
    let r = call(&a, Method::GET, "/api/v5/nodes", OP, JSON, None).await;
    assert!(
        r.json()
            .as_array()
            .expect("array")
            .contains(&json!({"node": b_name, "node_status":"stopped","role":"core"})),
        "{}",
        r.text
    );
    let r = call(
        &a,
        Method::GET,
        &format!("/api/v5/nodes/{b_name}"),
        OP,
        JSON,
        None,
    )
    .await;
    assert_eq!(r.status, 404, "stopped node: 404");
    let r = call(
        &a,
        Method::DELETE,
        &format!("/api/v5/cluster/{}/force_leave", a.name()),
        OP,
        JSON,
        None,
    )
    .await;
    assert_eq!(
        (r.status, r.json()["code"].clone()),
        (400, json!("BAD_REQUEST"))
    );
    assert!(
        r.json()["message"]
            .as_str()
            .unwrap_or("")
            .contains("Can't leave self")
    );
    let r = call(
        &a,
        Method::DELETE,
        &format!("/api/v5/cluster/{b_name}/force_leave"),
        OP,
        JSON,
        None,
    )
    .await;
    assert_eq!(r.status, 204);
    let r = call(&a, Method::GET, "/api/v5/nodes", OP, JSON, None).await;
    assert_eq!(r.json().as_array().map(Vec::len), Some(1));
    // A node that is no longer (or never was) a member: mria's
    // `{error, node_not_in_cluster}` printed with ~p, as a 400.
    for gone in [b_name.as_str(), "emqx@never.seen"] {
        let r = call(
            &a,
            Method::DELETE,
            &format!("/api/v5/cluster/{gone}/force_leave"),
            OP,
            JSON,
            None,
        )
        .await;
        assert_eq!(
            (r.status, r.json()),
            (
                400,
                json!({"code": "BAD_REQUEST", "message": "node_not_in_cluster"})
            ),
            "{gone}"
        );
    }

    let r = call(&a, Method::GET, "/api/v5/stats", OP, JSON, None).await;
    assert_eq!(r.json()[0]["connections.count"], 0);
    assert_eq!(r.json()[0]["node"], json!(a.name()));
    let r = call(
        &a,
        Method::GET,
        "/api/v5/stats?aggregate=true",
        OP,
        JSON,
        None,
    )
    .await;
    assert!(r.json().get("node").is_none());
    assert_eq!(r.json()["live_connections.count"], 0);
}

#[tokio::test]
async fn evacuation_errors_in_check_order() {
    let a = start("err", 3, 1, "emqx/emqx-enterprise:5.8.9").await;
    let b = start("err", 3, 2, "emqx/emqx-enterprise:5.8.9").await;
    let mut c = start("err", 3, 3, "emqx/emqx-enterprise:5.8.9").await;
    let c_name = c.name().to_string();
    c.stop();
    let start_path = |n: &str| format!("/api/v5/load_rebalance/{n}/evacuation/start");
    let stop_path = |n: &str| format!("/api/v5/load_rebalance/{n}/evacuation/stop");

    // Schema first: even for an unknown node, a bad body is 400.
    for body in [
        r#"{"conn_evict_rate":0}"#,
        r#"{"sess_evict_rate":-1}"#,
        r#"{"conn_evict_rate":"fast"}"#,
        r#"{"wait_takeover":"soon"}"#,
        r#"{"migrate_to":[]}"#,
        r#"{"migrate_to":"emqx@a"}"#,
        r#"{"unknown_field":1}"#,
        r#"[1]"#,
        r#"{"#,
    ] {
        let r = call(
            &a,
            Method::POST,
            &start_path("emqx@ghost"),
            OP,
            JSON,
            Some(body),
        )
        .await;
        assert_eq!(
            (r.status, r.json()["code"].clone()),
            (400, json!("BAD_REQUEST")),
            "{body}: {}",
            r.text
        );
    }
    // Node lookup next.
    let r = call(
        &a,
        Method::POST,
        &start_path("emqx@ghost"),
        OP,
        JSON,
        Some("{}"),
    )
    .await;
    assert_eq!(
        (r.status, r.json()),
        (
            404,
            json!({"code":"NOT_FOUND","message":"Node not found: emqx@ghost"})
        )
    );
    let r = call(&a, Method::POST, &start_path(&c_name), OP, JSON, Some("{}")).await;
    assert_eq!(r.status, 404, "stopped node is not running");
    // migrate_to: never-known names, then unavailable ones.
    let body = json!({"migrate_to": ["bad_node", b.name()]}).to_string();
    let r = call(
        &a,
        Method::POST,
        &start_path(a.name()),
        OP,
        JSON,
        Some(&body),
    )
    .await;
    assert_eq!(
        (r.status, r.json()),
        (
            400,
            json!({"code":"BAD_REQUEST","message":"Invalid nodes: [<<\"bad_node\">>]"})
        )
    );
    let body = json!({"migrate_to": [c_name.clone()]}).to_string();
    let r = call(
        &a,
        Method::POST,
        &start_path(a.name()),
        OP,
        JSON,
        Some(&body),
    )
    .await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json(),
        json!({"code":"NOT_FOUND","message": format!("Nodes unavailable: ['{c_name}']")})
    );
    // Integer and string durations both accepted; success is {}.
    let body = json!({"conn_evict_rate": 10, "sess_evict_rate": 10, "wait_takeover": 1, "wait_health_check": "1m", "migrate_to": [b.name()]}).to_string();
    let r = call(
        &a,
        Method::POST,
        &start_path(a.name()),
        OP,
        JSON,
        Some(&body),
    )
    .await;
    assert_eq!((r.status, r.json()), (200, json!({})));
    // A node that evacuates is not an available recipient.
    let body = json!({"migrate_to": [a.name()]}).to_string();
    let r = call(
        &b,
        Method::POST,
        &start_path(b.name()),
        OP,
        JSON,
        Some(&body),
    )
    .await;
    assert_eq!(r.json()["code"], "NOT_FOUND");
    assert_eq!(r.status, 400);
    let r = call(
        &b,
        Method::POST,
        &start_path(a.name()),
        OP,
        JSON,
        Some("{}"),
    )
    .await;
    assert_eq!(
        (r.status, r.json()),
        (
            400,
            json!({"code":"BAD_REQUEST","message": format!("error on node '{}': already_started", a.name())})
        )
    );

    // Status payloads.
    let r = call(
        &a,
        Method::GET,
        "/api/v5/load_rebalance/status",
        OP,
        JSON,
        None,
    )
    .await;
    assert_eq!(
        r.json(),
        json!({
            "status":"enabled","process":"evacuation","state":"waiting_health_check",
            "connection_eviction_rate":10,"session_eviction_rate":10,
            "connection_goal":0,"session_goal":0,"session_recipients":[b.name()],
            "stats":{"initial_connected":0,"current_connected":0,"initial_sessions":0,"current_sessions":0}
        })
    );
    let r = call(
        &b,
        Method::GET,
        "/api/v5/load_rebalance/status",
        OP,
        JSON,
        None,
    )
    .await;
    assert_eq!(
        r.json(),
        json!({"status":"disabled"}),
        "status is the serving node's"
    );
    let r = call(
        &b,
        Method::GET,
        "/api/v5/load_rebalance/global_status",
        OP,
        JSON,
        None,
    )
    .await;
    let g = r.json();
    assert_eq!(g["purges"], json!([]));
    assert_eq!(g["rebalances"], json!([]));
    assert_eq!(g["evacuations"][0]["node"], json!(a.name()));
    assert!(g["evacuations"][0].get("status").is_none());
    let r = call(
        &a,
        Method::GET,
        "/api/v5/load_rebalance/availability_check",
        None,
        JSON,
        None,
    )
    .await;
    assert_eq!(
        (r.status, r.json()),
        (
            503,
            json!({"code":"NODE_EVACUATING","message":"Node Evacuating"})
        )
    );
    let r = call(&a, Method::GET, "/status", None, None, None).await;
    assert_eq!(r.status, 200, "/status is not evacuation-aware");
    let r = call(
        &a,
        Method::GET,
        "/api/v5/node_eviction/status",
        OP,
        JSON,
        None,
    )
    .await;
    assert_eq!(r.json()["status"], "enabled");

    // Stop: 200 {}, then not_started; entry gone.
    let r = call(&b, Method::POST, &stop_path(a.name()), OP, JSON, None).await;
    assert_eq!((r.status, r.json()), (200, json!({})));
    let r = call(&b, Method::POST, &stop_path(a.name()), OP, JSON, None).await;
    assert_eq!(
        (r.status, r.json()),
        (
            400,
            json!({"code":"BAD_REQUEST","message": format!("error on node '{}': not_started", a.name())})
        )
    );
    let r = call(&b, Method::POST, &stop_path("emqx@ghost"), OP, JSON, None).await;
    assert_eq!(r.status, 404);
    let r = call(
        &b,
        Method::GET,
        "/api/v5/load_rebalance/global_status",
        OP,
        JSON,
        None,
    )
    .await;
    assert_eq!(r.json()["evacuations"], json!([]));
    let r = call(
        &a,
        Method::GET,
        "/api/v5/load_rebalance/availability_check",
        None,
        JSON,
        None,
    )
    .await;
    assert_eq!(r.status, 200);
}

#[tokio::test]
async fn prohibiting_is_terminal_and_empty_evacuation_runs_through() {
    let a = start("term", 4, 1, "emqx/emqx-enterprise:5.8.9").await;
    let _b = start("term", 4, 2, "emqx/emqx-enterprise:5.8.9").await;
    let body = json!({"wait_health_check": 0, "wait_takeover": 0}).to_string();
    let path = format!("/api/v5/load_rebalance/{}/evacuation/start", a.name());
    let r = call(&a, Method::POST, &path, OP, JSON, Some(&body)).await;
    assert_eq!(r.status, 200);
    let mut state = String::new();
    for _ in 0..50 {
        let r = call(
            &a,
            Method::GET,
            "/api/v5/load_rebalance/status",
            OP,
            JSON,
            None,
        )
        .await;
        state = r.json()["state"].as_str().unwrap_or("").to_string();
        if state == "prohibiting" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(state, "prohibiting");
    tokio::time::sleep(Duration::from_millis(600)).await;
    let r = call(
        &a,
        Method::GET,
        "/api/v5/load_rebalance/status",
        OP,
        JSON,
        None,
    )
    .await;
    assert_eq!(r.json()["state"], "prohibiting", "stays until stop");
    let states: Vec<&str> = a.evacuation_history().iter().map(|e| e.state).collect();
    assert_eq!(
        states,
        [
            "waiting_health_check",
            "evicting_conns",
            "waiting_takeover",
            "evicting_sessions",
            "prohibiting"
        ]
    );
}

#[tokio::test]
async fn editions_and_versions() {
    // Open source ≤ 5.8: the whole load_rebalance path is 404, edition Opensource.
    let oss = start("oss", 5, 1, "emqx/emqx:5.8.9").await;
    for (m, p) in [
        (Method::GET, "/api/v5/load_rebalance/status".to_string()),
        (
            Method::GET,
            "/api/v5/load_rebalance/global_status".to_string(),
        ),
        (
            Method::GET,
            "/api/v5/load_rebalance/availability_check".to_string(),
        ),
        (
            Method::POST,
            format!("/api/v5/load_rebalance/{}/evacuation/start", oss.name()),
        ),
    ] {
        let r = call(&oss, m, &p, OP, JSON, Some("{}")).await;
        assert_eq!(
            (r.status, r.json()),
            (
                404,
                json!({"code":"NOT_FOUND","message":"Request Path Not Found"})
            ),
            "{p}"
        );
    }
    let r = call(
        &oss,
        Method::GET,
        &format!("/api/v5/nodes/{}", oss.name()),
        OP,
        JSON,
        None,
    )
    .await;
    assert_eq!(r.json()["edition"], "Opensource");

    // 5.0.x: API_NOT_EXIST under /api/v5, dashboard HTML elsewhere.
    let old = start("old", 5, 2, "emqx/emqx-enterprise:5.0.4").await;
    let r = call(&old, Method::GET, "/api/v5/nope", None, JSON, None).await;
    assert_eq!(
        (r.status, r.json()["code"].clone()),
        (404, json!("API_NOT_EXIST"))
    );
    let r = call(&old, Method::GET, "/some/page", None, JSON, None).await;
    assert_eq!(r.status, 200);
    // Before 5.4 availability_check needs auth.
    let r = call(
        &old,
        Method::GET,
        "/api/v5/load_rebalance/availability_check",
        None,
        JSON,
        None,
    )
    .await;
    assert_eq!(r.status, 401);

    // 4.4: /api/v4 on 8081 with the envelope.
    let ip = Ipv4Addr::new(127, 21, 5, 30);
    let pod = emqx_sim::operator_pod::v1beta4_pod(
        "ee4",
        "ns",
        "ee4-0",
        ip,
        "emqx/emqx-ee:4.4.19",
        "emqx_operator_controller:opsecret\n",
    );
    let v4 = EmqxNode::start(NodeConfig::from_pod(&pod).expect("valid"))
        .await
        .expect("starts");
    assert_eq!(v4.http_addr().port(), 8081);
    let admin = Some(("admin", "public"));
    let r = call(&v4, Method::GET, "/api/v4/nodes", admin, JSON, None).await;
    let j = r.json();
    assert_eq!(j["code"], 0);
    assert_eq!(
        j["data"][0]["node"],
        "ee4@ee4-0.ee4-headless.ns.svc.cluster.local"
    );
    assert_eq!(j["data"][0]["node_status"], "Running");
    // 4.4.19 lists the connected clients in `/nodes` too.
    assert_eq!(j["data"][0]["live_connections"], 0);
    // `/stats`: `[#{node, stats}]`, 4.4's keys only; `live_connections.count`
    // (connected clients) beside `connections.count` (sessions too).
    let r = call(&v4, Method::GET, "/api/v4/stats", admin, JSON, None).await;
    let j = r.json();
    assert_eq!(j["code"], 0);
    assert_eq!(j["data"][0]["node"], json!(v4.name()));
    let stats = &j["data"][0]["stats"];
    assert_eq!(stats["live_connections.count"], 0);
    assert_eq!(stats["connections.count"], 0);
    assert!(stats.get("cluster_sessions.count").is_none(), "{stats}");
    // `/metrics`: `[#{node, metrics}]`.
    let r = call(&v4, Method::GET, "/api/v4/metrics", admin, JSON, None).await;
    let j = r.json();
    assert_eq!(j["data"][0]["node"], json!(v4.name()));
    assert_eq!(j["data"][0]["metrics"]["packets.connack.error"], 0);
    let r = call(
        &v4,
        Method::POST,
        &format!("/api/v4/load_rebalance/{}/evacuation/start", v4.name()),
        admin,
        JSON,
        Some(r#"{"conn_evict_rate":5,"sess_evict_rate":5,"wait_takeover":1}"#),
    )
    .await;
    assert_eq!((r.status, r.json()), (200, json!({"code":0,"data":[]})));
    let r = call(
        &v4,
        Method::GET,
        "/api/v4/load_rebalance/global_status",
        admin,
        JSON,
        None,
    )
    .await;
    assert_eq!(r.json()["evacuations"][0]["node"], json!(v4.name()));
    assert!(r.json().get("purges").is_none());
    let r = call(&v4, Method::GET, "/api/v4/listeners", admin, JSON, None).await;
    assert_eq!(r.json()["data"][0]["listeners"][0]["protocol"], "mqtt:tcp");
    let op = Some(("emqx_operator_controller", "opsecret"));
    let r = call(&v4, Method::GET, "/api/v4/nodes", op, JSON, None).await;
    assert_eq!(r.status, 200, "bootstrap app from the mounted file");
    let wrong = Some(("emqx_operator_controller", "x"));
    let r = call(&v4, Method::GET, "/api/v4/nodes", wrong, JSON, None).await;
    assert_eq!(r.status, 401);
    let r = call(&v4, Method::GET, "/api/v5/nodes", admin, JSON, None).await;
    assert_eq!(r.status, 404);
}

#[tokio::test]
async fn faults_switch_at_runtime() {
    let n = start("fault", 6, 1, "emqx/emqx-enterprise:5.8.9").await;
    n.faults().set_http_500(true);
    let r = call(&n, Method::GET, "/api/v5/nodes", OP, JSON, None).await;
    assert_eq!(
        (r.status, r.json()["code"].clone()),
        (500, json!("INTERNAL_ERROR"))
    );
    n.faults().set_http_500(false);
    n.faults().set_http_500_on_writes(true);
    let r = call(&n, Method::GET, "/api/v5/nodes", OP, JSON, None).await;
    assert_eq!(r.status, 200, "reads still answer");
    let leave = format!("/api/v5/cluster/{}/force_leave", "emqx@elsewhere");
    let r = call(&n, Method::DELETE, &leave, OP, JSON, None).await;
    assert_eq!(
        (r.status, r.json()["code"].clone()),
        (500, json!("INTERNAL_ERROR"))
    );
    n.faults().set_http_500_on_writes(false);
    n.faults().set_http_delay(Duration::from_millis(700));
    let t = std::time::Instant::now();
    let r = call(&n, Method::GET, "/api/v5/nodes", OP, JSON, None).await;
    assert_eq!(r.status, 200);
    assert!(
        t.elapsed() >= Duration::from_millis(700),
        "answer was delayed"
    );
    n.faults().set_http_delay(Duration::ZERO);
    n.faults().set_drop_http(true);
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .expect("client");
    let e = http
        .get(format!("http://{}/status", n.http_addr()))
        .send()
        .await;
    assert!(e.is_err(), "connection dropped");
    n.faults().set_drop_http(false);
    let r = call(&n, Method::GET, "/status", None, None, None).await;
    assert_eq!(r.status, 200);
}

/// EMQX 4.4 without node evacuation (open source, or Enterprise before
/// 4.4.12) answers `…/load_rebalance/…` as minirest 0.3.12 answers any
/// unknown path: `404 text/plain "Not found."`, after the AppID check.
#[tokio::test]
async fn v4_unknown_paths_answer_like_minirest_0_3_12() {
    let mut nodes = Vec::new();
    for (i, image) in [
        "emqx/emqx:4.4.19",
        "emqx/emqx-ee:4.4.11",
        "emqx/emqx-ee:4.4.19",
    ]
    .into_iter()
    .enumerate()
    {
        let ip = Ipv4Addr::new(127, 21, 5, 40 + u8::try_from(i).expect("small"));
        let cr = format!("nf{i}");
        let pod = emqx_sim::operator_pod::v1beta4_pod(
            &cr,
            "ns",
            &format!("{cr}-0"),
            ip,
            image,
            "emqx_operator_controller:opsecret\n",
        );
        let node = EmqxNode::start(NodeConfig::from_pod(&pod).expect("valid"))
            .await
            .expect("starts");
        nodes.push((image, node));
    }
    let admin = Some(("admin", "public"));
    for (image, node) in &nodes {
        let evacuates = *image == "emqx/emqx-ee:4.4.19";
        let r = call(
            node,
            Method::GET,
            "/api/v4/load_rebalance/global_status",
            admin,
            JSON,
            None,
        )
        .await;
        if evacuates {
            assert_eq!(r.status, 200, "{image}");
        } else {
            assert_eq!((r.status, r.text.as_str()), (404, "Not found."), "{image}");
            assert_eq!(r.headers["content-type"], "text/plain", "{image}");
        }
        // Unknown everywhere; a known path with another method is unknown too.
        for (method, path) in [
            (Method::GET, "/api/v4/no/such/thing"),
            (Method::POST, "/api/v4/nodes"),
        ] {
            let r = call(node, method, path, admin, JSON, None).await;
            assert_eq!((r.status, r.text.as_str()), (404, "Not found."), "{image}");
        }
        // The AppID is checked before the route: no JSON either way.
        let r = call(
            node,
            Method::GET,
            "/api/v4/no/such/thing",
            Some(("admin", "x")),
            JSON,
            None,
        )
        .await;
        assert_eq!(
            (r.status, r.text.as_str()),
            (401, "UNAUTHORIZED"),
            "{image}"
        );
        assert_eq!(
            r.headers["www-authenticate"],
            "Basic Realm=\"minirest-server\""
        );
        // Outside /status and /api/v4 the listener has no route at all.
        let r = call(node, Method::GET, "/api/v5/nodes", admin, JSON, None).await;
        assert_eq!((r.status, r.text.as_str()), (404, ""), "{image}");
    }
}

/// A JSON body under another content type is 415 on 5.x (minirest leaves it
/// a binary, emqx_dashboard_swagger refuses it); no body is not checked.
/// `wait_health_check` is unknown to e5.0.x (400), known from e5.1.0.
#[tokio::test]
async fn media_type_and_wait_health_check_by_version() {
    let n = start("media", 8, 1, "emqx/emqx-enterprise:5.8.9").await;
    let old = start("media50", 8, 2, "emqx/emqx-enterprise:5.0.4").await;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client");
    let body = r#"{"conn_evict_rate":5,"sess_evict_rate":5}"#;
    for content_type in [
        None,
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
    ] {
        let mut req = http
            .post(format!(
                "http://{}/api/v5/load_rebalance/{}/evacuation/start",
                n.http_addr(),
                n.name()
            ))
            .basic_auth("emqx-operator-controller", Some("s3cret"))
            .body(body);
        if let Some(t) = content_type {
            req = req.header("content-type", t);
        }
        let r = req.send().await.expect("send");
        assert_eq!(r.status().as_u16(), 415, "{content_type:?}");
        let j: Value = r.json().await.expect("json");
        assert_eq!(
            j,
            json!({"code":"UNSUPPORTED_MEDIA_TYPE","message":"content-type:application/json Required"})
        );
    }
    assert_eq!(
        n.cluster().evacuation_state(n.name()),
        None,
        "nothing started"
    );
    // A parameter on the JSON type is fine.
    let r = http
        .post(format!(
            "http://{}/api/v5/load_rebalance/{}/evacuation/start",
            n.http_addr(),
            n.name()
        ))
        .basic_auth("emqx-operator-controller", Some("s3cret"))
        .header("content-type", "application/json; charset=utf-8")
        .body(body)
        .send()
        .await
        .expect("send");
    assert_eq!(r.status().as_u16(), 200);
    // stop has no body: no content type needed.
    let stop = format!("/api/v5/load_rebalance/{}/evacuation/stop", n.name());
    let r = http
        .post(format!("http://{}{stop}", n.http_addr()))
        .basic_auth("emqx-operator-controller", Some("s3cret"))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status().as_u16(), 200);

    let with_hc = r#"{"conn_evict_rate":5,"wait_health_check":0}"#;
    let start_path =
        |node: &EmqxNode| format!("/api/v5/load_rebalance/{}/evacuation/start", node.name());
    let r = call(
        &old,
        Method::POST,
        &start_path(&old),
        OP,
        JSON,
        Some(with_hc),
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(r.json()["code"], "BAD_REQUEST");
    assert!(r.text.contains("wait_health_check"), "{}", r.text);
    let r = call(&n, Method::POST, &start_path(&n), OP, JSON, Some(with_hc)).await;
    assert_eq!(r.status, 200, "{}", r.text);
}
