//! Seed 003's story on simulated nodes: 500 clients on one node, evacuated at
//! 50/s to two others while the "Service" already points at them.

use std::net::Ipv4Addr;
use std::time::Duration;

use emqx_sim::operator_pod::v2_pod;
use emqx_sim::{EmqxNode, NodeConfig, Role};
use mqtt_load::{
    Backoff, ClientEventKind, Endpoints, LoadConfig, MqttLoad, Protocol, SessionSettings,
};
use serde_json::{Value, json};

const KEYS: &str = "emqx-operator-controller:secret123\n";
const IMAGE: &str = "emqx/emqx-enterprise:5.8.9";

async fn node(cr: &str, idx: u8, subnet: u8, tick: Duration) -> EmqxNode {
    let ip = Ipv4Addr::new(127, 20, subnet, 10 + idx);
    let pod = v2_pod(
        cr,
        "default",
        &format!("{cr}-core-0{idx}"),
        Role::Core,
        ip,
        IMAGE,
        KEYS,
    );
    let mut config = NodeConfig::from_pod(&pod).expect("operator pod is valid");
    config.tick = tick;
    EmqxNode::start(config).await.expect("node starts")
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("http client")
}

async fn api(
    http: &reqwest::Client,
    via: &EmqxNode,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let url = format!("http://{}/api/v5{path}", via.http_addr());
    let mut req = http
        .request(method, url)
        .basic_auth("emqx-operator-controller", Some("secret123"))
        .header("accept", "application/json");
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.expect("request");
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// Tries one CONNECT to `addr` and returns how the broker answered.
async fn try_connect(addr: std::net::SocketAddr, protocol: Protocol, id: &str) -> String {
    use mqtt_load::protocol::{MqttClient, Polled};
    let settings = SessionSettings {
        protocol,
        keep_alive: Duration::from_secs(30),
        session_expiry: Duration::from_secs(60),
        clean_start: false,
    };
    let mut c = MqttClient::new(id, addr, settings, 4);
    match tokio::time::timeout(Duration::from_secs(5), c.poll()).await {
        Ok(Polled::ConnAck { .. }) => "accepted".into(),
        Ok(Polled::Refused(code)) => code,
        Ok(other) => format!("{other:?}"),
        Err(_) => "timeout".into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn five_hundred_clients_evacuated_at_fifty_per_tick() {
    let tick = Duration::from_secs(1);
    let a = node("evac", 1, 1, tick).await;
    let b = node("evac", 2, 1, tick).await;
    let c = node("evac", 3, 1, tick).await;
    let cluster = a.cluster().clone();
    assert_eq!(
        cluster.running_nodes().len(),
        3,
        "nodes discovered each other"
    );

    let service = Endpoints::new(vec![a.mqtt_addr()]);
    let config = LoadConfig {
        clients: 500,
        client_prefix: "seed003-".into(),
        session: SessionSettings {
            protocol: Protocol::V5,
            keep_alive: Duration::from_secs(30),
            session_expiry: Duration::from_secs(600),
            clean_start: false,
        },
        connect_rate: 500,
        backoff: Backoff {
            initial: Duration::from_millis(200),
            max: Duration::from_secs(2),
        },
        publish_interval: Duration::from_secs(1),
        max_duration: Duration::from_secs(120),
    };
    let load = MqttLoad::start(
        config,
        service.clone(),
        Endpoints::new(vec![b.mqtt_addr()]),
        cluster.clone(),
    );
    let ok = load.wait_all_subscribed(Duration::from_secs(30)).await;
    if !ok {
        for i in (0..500).filter(|i| !load.is_subscribed(*i)).take(3) {
            eprintln!("{:?}", load.client_log(i));
        }
    }
    assert!(
        ok,
        "all clients connected and subscribed: {:?}",
        load.progress()
    );
    assert_eq!(cluster.live_connections_by_node().get(a.name()), Some(&500));
    tokio::time::sleep(Duration::from_secs(2)).await;

    // The reconciler moves the Service first, then evacuates.
    service.set(vec![b.mqtt_addr(), c.mqtt_addr()]);
    let evacuation_started = load.progress().elapsed;
    let http = client();
    let start = json!({
        "conn_evict_rate": 50, "sess_evict_rate": 50, "wait_takeover": 2,
        "wait_health_check": "3s", "migrate_to": [b.name(), c.name()]
    });
    let path = format!("/load_rebalance/{}/evacuation/start", a.name());
    let (status, body) = api(&http, &b, reqwest::Method::POST, &path, Some(start.clone())).await;
    assert_eq!((status, body), (200, json!({})));
    let (status, body) = api(&http, &b, reqwest::Method::POST, &path, Some(start)).await;
    assert_eq!(status, 400);
    assert!(
        body["message"]
            .as_str()
            .unwrap_or("")
            .contains("already_started"),
        "{body}"
    );

    // While waiting for the health check, CONNECTs are still accepted.
    assert_eq!(
        try_connect(a.mqtt_addr(), Protocol::V5, "probe-hc").await,
        "accepted"
    );
    let avail = http
        .get(format!(
            "http://{}/api/v5/load_rebalance/availability_check",
            a.http_addr()
        ))
        .send()
        .await
        .expect("availability_check");
    assert_eq!(avail.status().as_u16(), 503);

    // Poll global_status like the operator does, until prohibiting.
    let mut seen_states: Vec<String> = Vec::new();
    let mut refused_checked = false;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "evacuation did not finish: {seen_states:?}"
        );
        let (status, global) = api(
            &http,
            &c,
            reqwest::Method::GET,
            "/load_rebalance/global_status",
            None,
        )
        .await;
        assert_eq!(status, 200);
        let evac = &global["evacuations"][0];
        let state = evac["state"].as_str().unwrap_or("").to_string();
        if seen_states.last() != Some(&state) {
            seen_states.push(state.clone());
        }
        assert_eq!(evac["node"], json!(a.name()));
        assert_eq!(evac["stats"]["initial_connected"], json!(500));
        assert_eq!(evac["stats"]["initial_sessions"], json!(500));
        if state == "evicting_conns" && !refused_checked {
            assert_eq!(
                try_connect(a.mqtt_addr(), Protocol::V5, "probe-v5").await,
                "UseAnotherServer"
            );
            assert_eq!(
                try_connect(a.mqtt_addr(), Protocol::V311, "probe-v3").await,
                "ServiceUnavailable"
            );
            refused_checked = true;
        }
        if state == "prohibiting" {
            assert_eq!(evac["stats"]["current_connected"], json!(0));
            assert_eq!(evac["stats"]["current_sessions"], json!(0));
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(refused_checked, "saw evicting_conns: {seen_states:?}");
    assert_eq!(
        seen_states.first().map(String::as_str),
        Some("waiting_health_check")
    );

    // Broker side: the exact state sequence, ≤ 50 per tick, ticks ≥ 1 s apart.
    let history = a.evacuation_history();
    let mut states: Vec<&str> = history.iter().map(|e| e.state).collect();
    states.dedup();
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
    let ticks: Vec<_> = history.iter().filter(|e| e.evicted > 0).collect();
    assert!(ticks.iter().all(|t| t.evicted <= 50), "{ticks:?}");
    // The health-check probe disconnected by itself; its session is migrated.
    assert_eq!(ticks.iter().map(|t| t.evicted).sum::<u64>(), 500);
    assert_eq!(ticks.len(), 10, "500 connections at 50 per tick");
    assert!(
        history.iter().map(|e| e.migrated).sum::<u64>() >= 1,
        "probe session migrated"
    );
    for w in ticks.windows(2) {
        let gap = w[1].at.duration_since(w[0].at);
        assert!(gap >= Duration::from_millis(990), "ticks {gap:?} apart");
    }

    // Connections refused on A until stop; availability 503 while prohibiting.
    assert_eq!(
        try_connect(a.mqtt_addr(), Protocol::V5, "probe-late").await,
        "UseAnotherServer"
    );

    assert!(
        load.wait_all_connected(Duration::from_secs(30)).await,
        "every client back: {:?}",
        load.progress()
    );
    let report = load.finish(Duration::from_secs(20)).await;
    assert_eq!(cluster.live_connections_by_node().get(a.name()), Some(&0));
    // The load stopped: the brokers see every socket close (asynchronously).
    let mut live = u64::MAX;
    for _ in 0..50 {
        live = cluster.live_connections_by_node().values().sum();
        if live == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(live, 0, "load stopped: all closed");

    // Client side: one disconnect each during the evacuation, session kept,
    // nothing lost. (Before it, a client on a loaded machine may time out its
    // first CONNECT and be taken over by its own late one; not counted.)
    for log in &report.client_logs {
        let during: Vec<_> = log
            .events
            .iter()
            .filter(|e| e.at >= evacuation_started)
            .collect();
        let downs = during
            .iter()
            .filter(|e| matches!(e.kind, ClientEventKind::Disconnected { .. }))
            .count();
        assert_eq!(downs, 1, "{}: {:?}", log.client_id, log.events);
        let reconnects: Vec<bool> = during
            .iter()
            .filter_map(|e| match e.kind {
                ClientEventKind::Connected {
                    session_present, ..
                } => Some(session_present),
                _ => None,
            })
            .collect();
        assert!(
            !reconnects.is_empty() && reconnects.iter().all(|p| *p),
            "{}: {:?}",
            log.client_id,
            log.events
        );
    }
    // Evicted with 0x9C, spread over the ticks (the per-tick bound is checked
    // on the broker side above, where tick boundaries are exact).
    let mut disconnect_times: Vec<Duration> = Vec::new();
    for log in &report.client_logs {
        for e in log.events.iter().filter(|e| e.at >= evacuation_started) {
            if let ClientEventKind::Disconnected { reason } = &e.kind {
                assert!(
                    reason.contains("UseAnotherServer"),
                    "{}: {reason}",
                    log.client_id
                );
                disconnect_times.push(e.at);
            }
        }
    }
    disconnect_times.sort();
    let span = disconnect_times[disconnect_times.len() - 1] - disconnect_times[0];
    assert!(
        span >= Duration::from_secs(8),
        "10 ticks of evictions spread over {span:?}"
    );
    assert!(
        report.confirmed_total() > 1000,
        "publisher ran: {}",
        report.confirmed_total()
    );
    assert_eq!(report.unconfirmed, 0);
    assert_eq!(
        report.lost(),
        Vec::<(String, u64)>::new(),
        "no QoS 1 message lost"
    );

    write_artifacts(&report);
    drop((a, b, c));
}

fn write_artifacts(report: &mqtt_load::LoadReport) {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("emqx-evacuation");
    let artifacts = mqtt_load::recorder::write_all(
        report,
        &dir,
        "Connections per node: 500 clients evacuated at 50/s",
    )
    .expect("recorder writes CSV, SVG and summary");
    let csv = std::fs::read_to_string(&artifacts.csv).expect("csv");
    assert!(csv.starts_with("seconds,"), "{csv}");
    assert!(csv.lines().count() > 10);
    let summary = mqtt_load::recorder::Summary::of(report);
    assert_eq!(summary.lost, 0);
    assert_eq!(summary.disconnect_histogram.iter().sum::<usize>(), 500);
    assert_eq!(
        summary.disconnect_histogram.first(),
        Some(&0),
        "every client was evacuated"
    );
    eprintln!("{summary}\nartifacts: {artifacts:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_3_clients_are_closed_and_resume_their_sessions() {
    let tick = Duration::from_secs(1);
    let a = node("evac3", 1, 2, tick).await;
    let b = node("evac3", 2, 2, tick).await;
    let cluster = a.cluster().clone();
    let service = Endpoints::new(vec![a.mqtt_addr()]);
    let config = LoadConfig {
        clients: 100,
        client_prefix: "v3-".into(),
        session: SessionSettings {
            protocol: Protocol::V311,
            keep_alive: Duration::from_secs(30),
            session_expiry: Duration::from_secs(600),
            clean_start: false,
        },
        connect_rate: 200,
        backoff: Backoff {
            initial: Duration::from_millis(200),
            max: Duration::from_secs(2),
        },
        publish_interval: Duration::from_millis(500),
        max_duration: Duration::from_secs(90),
    };
    let load = MqttLoad::start(
        config,
        service.clone(),
        Endpoints::new(vec![b.mqtt_addr()]),
        cluster.clone(),
    );
    assert!(
        load.wait_all_subscribed(Duration::from_secs(30)).await,
        "{:?}",
        load.progress()
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    service.set(vec![b.mqtt_addr()]);
    let evacuation_started = load.progress().elapsed;
    let http = client();
    let start = json!({"conn_evict_rate": 25, "sess_evict_rate": 25, "wait_takeover": 1, "wait_health_check": 0});
    let path = format!("/load_rebalance/{}/evacuation/start", a.name());
    assert_eq!(
        api(&http, &a, reqwest::Method::POST, &path, Some(start))
            .await
            .0,
        200
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(40);
    loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "evacuation did not finish"
        );
        let (_, st) = api(
            &http,
            &a,
            reqwest::Method::GET,
            "/load_rebalance/status",
            None,
        )
        .await;
        if st["state"] == "prohibiting" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let evicted: Vec<u64> = a
        .evacuation_history()
        .iter()
        .map(|e| e.evicted)
        .filter(|n| *n > 0)
        .collect();
    assert_eq!(evicted, vec![25, 25, 25, 25]);
    assert!(load.wait_all_connected(Duration::from_secs(20)).await);
    let report = load.finish(Duration::from_secs(15)).await;
    for log in &report.client_logs {
        let during: Vec<_> = log
            .events
            .iter()
            .filter(|e| e.at >= evacuation_started)
            .collect();
        let downs: Vec<&str> = during
            .iter()
            .filter_map(|e| match &e.kind {
                ClientEventKind::Disconnected { reason } => Some(reason.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(downs.len(), 1, "{}: {:?}", log.client_id, log.events);
        assert!(
            !downs[0].contains("Disconnect"),
            "MQTT 3 sees a bare close: {}",
            downs[0]
        );
        assert!(
            during.iter().any(|e| matches!(
                e.kind,
                ClientEventKind::Connected {
                    session_present: true,
                    ..
                }
            )),
            "{}: {:?}",
            log.client_id,
            log.events
        );
    }
    assert!(report.confirmed_total() > 100);
    assert_eq!(report.lost(), Vec::<(String, u64)>::new());
}
