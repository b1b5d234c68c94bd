//! MQTT behaviour of simulated nodes (emqx-api.md §6): takeover anywhere in
//! the cluster, queued QoS 1 messages, eviction packets per protocol,
//! session migration, and the no-recipient retry.

#![allow(clippy::panic)] // a test helper that panics is how a test fails

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use emqx_sim::operator_pod::v2_pod;
use emqx_sim::{EmqxNode, NodeConfig, Role};
use mqtt_load::protocol::{MqttClient, Polled, Protocol, SessionSettings};
use serde_json::{Value, json};

const KEYS: &str = "k:s\n";

async fn start(cr: &str, subnet: u8, idx: u8) -> EmqxNode {
    let ip = Ipv4Addr::new(127, 22, subnet, 10 + idx);
    let pod = v2_pod(
        cr,
        "ns",
        &format!("{cr}-core-{idx}"),
        Role::Core,
        ip,
        "emqx/emqx-enterprise:5.8.9",
        KEYS,
    );
    let mut config = NodeConfig::from_pod(&pod).expect("valid pod");
    config.tick = Duration::from_millis(200);
    config.no_recipient_retry = Duration::from_secs(3);
    EmqxNode::start(config).await.expect("starts")
}

fn settings(protocol: Protocol, clean_start: bool) -> SessionSettings {
    SessionSettings {
        protocol,
        keep_alive: Duration::from_secs(30),
        session_expiry: Duration::from_secs(300),
        clean_start,
    }
}

/// A test client driven step by step.
struct Probe {
    client: MqttClient,
}

impl Probe {
    async fn connect(id: &str, addr: SocketAddr, s: SessionSettings) -> (Probe, bool) {
        let mut client = MqttClient::new(id, addr, s, 16);
        loop {
            match tokio::time::timeout(Duration::from_secs(5), client.poll()).await {
                Ok(Polled::ConnAck {
                    session_present, ..
                }) => {
                    return (Probe { client }, session_present);
                }
                Ok(Polled::Other) => continue,
                other => panic!("{id}: no CONNACK: {other:?}"),
            }
        }
    }

    async fn subscribe(&mut self, topic: &str) {
        self.client.subscribe(topic).expect("queue subscribe");
        loop {
            match tokio::time::timeout(Duration::from_secs(5), self.client.poll()).await {
                Ok(Polled::SubAck) => return,
                Ok(Polled::Other) => continue,
                other => panic!("no SUBACK: {other:?}"),
            }
        }
    }

    async fn publish(&mut self, topic: &str, payload: &str) {
        self.client
            .try_publish(topic, payload.as_bytes())
            .expect("queue publish");
        loop {
            match tokio::time::timeout(Duration::from_secs(5), self.client.poll()).await {
                Ok(Polled::Acked { .. }) => return,
                Ok(Polled::Sent { .. } | Polled::Other) => continue,
                other => panic!("no PUBACK: {other:?}"),
            }
        }
    }

    /// Next received payload, or the failure that ended the connection.
    async fn next(&mut self, wait: Duration) -> Result<String, String> {
        loop {
            match tokio::time::timeout(wait, self.client.poll()).await {
                Ok(Polled::Publish { payload }) => {
                    return Ok(String::from_utf8_lossy(&payload).into_owned());
                }
                Ok(Polled::Failed(reason) | Polled::Refused(reason)) => return Err(reason),
                Ok(_) => continue,
                Err(_) => return Err("timeout".into()),
            }
        }
    }
}

async fn api_get(node: &EmqxNode, path: &str) -> Value {
    let http = reqwest::Client::new();
    let r = http
        .get(format!("http://{}/api/v5{path}", node.http_addr()))
        .basic_auth("k", Some("s"))
        .header("accept", "application/json")
        .send()
        .await
        .expect("request");
    r.json().await.expect("json")
}

async fn api_post(node: &EmqxNode, path: &str, body: Value) -> u16 {
    let http = reqwest::Client::new();
    http.post(format!("http://{}/api/v5{path}", node.http_addr()))
        .basic_auth("k", Some("s"))
        .json(&body)
        .send()
        .await
        .expect("request")
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn takeover_across_nodes_keeps_subscriptions_and_queued_messages() {
    let a = start("tk", 1, 1).await;
    let b = start("tk", 1, 2).await;
    let c = start("tk", 1, 3).await;
    for protocol in [Protocol::V5, Protocol::V311] {
        let id = format!("tk-{protocol:?}");
        let topic = format!("t/{id}");
        let (mut first, present) =
            Probe::connect(&id, a.mqtt_addr(), settings(protocol, false)).await;
        assert!(!present);
        first.subscribe(&topic).await;
        let (mut publisher, _) = Probe::connect(
            &format!("pub-{id}"),
            b.mqtt_addr(),
            settings(Protocol::V5, true),
        )
        .await;
        publisher.publish(&topic, "m1").await;
        assert_eq!(
            first.next(Duration::from_secs(5)).await,
            Ok("m1".into()),
            "routed from B to A"
        );

        // Takeover while connected: old connection gets 0x8E (5) or a close (3).
        let (mut second, present) =
            Probe::connect(&id, c.mqtt_addr(), settings(protocol, false)).await;
        assert!(present, "session_present=1 on another node");
        let ended = first
            .next(Duration::from_secs(5))
            .await
            .expect_err("old connection ends");
        match protocol {
            Protocol::V5 => assert!(ended.contains("SessionTakenOver"), "{ended}"),
            Protocol::V311 => assert!(
                !ended.contains("Disconnect"),
                "MQTT 3 gets a bare close: {ended}"
            ),
        }
        // Offline: messages queue in the session.
        drop(second.client);
        tokio::time::sleep(Duration::from_millis(200)).await;
        publisher.publish(&topic, "m2").await;
        publisher.publish(&topic, "m3").await;
        let (mut third, present) =
            Probe::connect(&id, b.mqtt_addr(), settings(protocol, false)).await;
        assert!(present);
        // QoS 1 is at least once: when m1's PUBACK lost the race with the
        // takeover, the resumed session redelivers m1 first, as EMQX does.
        let mut next = third.next(Duration::from_secs(5)).await;
        if next == Ok("m1".into()) {
            next = third.next(Duration::from_secs(5)).await;
        }
        assert_eq!(next, Ok("m2".into()));
        assert_eq!(third.next(Duration::from_secs(5)).await, Ok("m3".into()));
        second = third;
        // clean_start=true discards the session.
        let (mut fresh, present) =
            Probe::connect(&id, a.mqtt_addr(), settings(protocol, true)).await;
        assert!(!present);
        assert!(
            second.next(Duration::from_secs(5)).await.is_err(),
            "old connection closed"
        );
        publisher.publish(&topic, "m4").await;
        assert_eq!(
            fresh.next(Duration::from_millis(500)).await,
            Err("timeout".into()),
            "subscription discarded"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eviction_packets_and_session_migration() {
    let a = start("mig", 2, 1).await;
    let b = start("mig", 2, 2).await;
    let (mut v5, _) = Probe::connect("ev-5", a.mqtt_addr(), settings(Protocol::V5, false)).await;
    let (mut v3, _) = Probe::connect("ev-3", a.mqtt_addr(), settings(Protocol::V311, false)).await;
    let (mut sleeper, _) =
        Probe::connect("sleeper", a.mqtt_addr(), settings(Protocol::V5, false)).await;
    sleeper.subscribe("t/sleeper").await;
    drop(sleeper);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let nodes = api_get(&a, &format!("/nodes/{}", a.name())).await;
    assert_eq!(
        (
            nodes["connections"].clone(),
            nodes["live_connections"].clone()
        ),
        (json!(3), json!(2))
    );

    let start_path = format!("/load_rebalance/{}/evacuation/start", a.name());
    let body = json!({"wait_health_check": 0, "wait_takeover": 1, "conn_evict_rate": 10, "sess_evict_rate": 10});
    assert_eq!(api_post(&b, &start_path, body).await, 200);
    let e5 = v5.next(Duration::from_secs(5)).await.expect_err("evicted");
    assert!(
        e5.contains("UseAnotherServer"),
        "MQTT 5 gets DISCONNECT 0x9C: {e5}"
    );
    let e3 = v3.next(Duration::from_secs(5)).await.expect_err("evicted");
    assert!(!e3.contains("Disconnect"), "MQTT 3 gets a bare close: {e3}");

    // The disconnected sessions wait for takeover, then migrate to B, where they
    // count in `connections` but not `live_connections`.
    let mut state = String::new();
    for _ in 0..60 {
        state = api_get(&b, "/load_rebalance/global_status").await["evacuations"][0]["state"]
            .as_str()
            .unwrap_or("")
            .to_string();
        if state == "prohibiting" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(state, "prohibiting");
    let on_b = api_get(&b, &format!("/nodes/{}", b.name())).await;
    assert_eq!(
        (
            on_b["connections"].clone(),
            on_b["live_connections"].clone()
        ),
        (json!(3), json!(0))
    );
    let on_a = api_get(&b, &format!("/nodes/{}", a.name())).await;
    assert_eq!(on_a["connections"], json!(0));

    // A message for the migrated sleeper is queued and delivered on reconnect.
    let (mut publisher, _) =
        Probe::connect("pub", b.mqtt_addr(), settings(Protocol::V5, true)).await;
    publisher.publish("t/sleeper", "while-away").await;
    let (mut back, present) =
        Probe::connect("sleeper", b.mqtt_addr(), settings(Protocol::V5, false)).await;
    assert!(present);
    assert_eq!(
        back.next(Duration::from_secs(5)).await,
        Ok("while-away".into())
    );
    let metrics = reqwest::get(format!("http://{}/api/v5/prometheus/stats", b.http_addr()))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains("emqx_live_connections_count 2"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_recipient_retries_until_one_appears() {
    let a = start("lone", 3, 1).await;
    let (s, _) = Probe::connect("lonely", a.mqtt_addr(), settings(Protocol::V5, false)).await;
    drop(s);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let body = json!({"wait_health_check": 0, "wait_takeover": 0});
    assert_eq!(
        api_post(
            &a,
            &format!("/load_rebalance/{}/evacuation/start", a.name()),
            body
        )
        .await,
        200
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let st = api_get(&a, "/load_rebalance/status").await;
    assert_eq!(st["state"], "evicting_sessions");
    assert_eq!(st["session_recipients"], json!([]));
    assert_eq!(st["stats"]["current_sessions"], json!(1));
    let b = start("lone", 3, 2).await;
    // Retry comes 3 s (configured; EMQX: 30 s) after the failed tick.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        api_get(&a, "/load_rebalance/status").await["state"],
        "evicting_sessions",
        "waits for the retry"
    );
    let mut state = Value::Null;
    for _ in 0..80 {
        state = api_get(&a, "/load_rebalance/status").await["state"].clone();
        if state == "prohibiting" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(state, "prohibiting");
    assert_eq!(
        b.cluster().client_location("lonely").map(|(n, _)| n),
        Some(b.name().to_string())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_and_session_expiry() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let a = start("ka", 4, 1).await;
    // Keep-alive 1 s and silence: the server closes after 1.5 × keep-alive.
    let mut connect = bytes::BytesMut::new();
    let mut c = rumqttc::Connect::new("silent");
    c.keep_alive = 1;
    rumqttc::Packet::Connect(c)
        .write(&mut connect, 1024)
        .expect("encode");
    let mut s = tokio::net::TcpStream::connect(a.mqtt_addr())
        .await
        .expect("connect");
    s.write_all(&connect).await.expect("write");
    let t = std::time::Instant::now();
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf))
        .await
        .expect("closed in time")
        .expect("read");
    assert_eq!(&buf[..4], &[0x20, 0x02, 0x00, 0x00]);
    assert!(
        t.elapsed() >= Duration::from_millis(1400),
        "not before 1.5 s: {:?}",
        t.elapsed()
    );

    // A session with expiry 1 s is gone after it expires.
    let short = SessionSettings {
        session_expiry: Duration::from_secs(1),
        ..settings(Protocol::V5, false)
    };
    let (p, _) = Probe::connect("brief", a.mqtt_addr(), short).await;
    drop(p);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (p, present) = Probe::connect("brief", a.mqtt_addr(), short).await;
    assert!(present, "within expiry");
    drop(p);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let (_p, present) = Probe::connect("brief", a.mqtt_addr(), short).await;
    assert!(!present, "expired");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evacuation_resumes_after_restart_only_with_persistent_data() {
    for persistent in [true, false] {
        let subnet = if persistent { 5 } else { 6 };
        let cr = format!("resume{subnet}");
        let ip = Ipv4Addr::new(127, 22, subnet, 11);
        let mut pod = v2_pod(
            &cr,
            "ns",
            &format!("{cr}-core-1"),
            Role::Core,
            ip,
            "emqx/emqx-enterprise:5.8.9",
            KEYS,
        );
        pod.persistent_data = persistent;
        let mut config = NodeConfig::from_pod(&pod).expect("valid pod");
        config.tick = Duration::from_millis(200);
        let a = EmqxNode::start(config.clone()).await.expect("starts");
        let b = start(&cr, subnet, 2).await;
        let body = json!({"wait_health_check": 600, "conn_evict_rate": 7});
        assert_eq!(
            api_post(
                &b,
                &format!("/load_rebalance/{}/evacuation/start", a.name()),
                body
            )
            .await,
            200
        );
        assert_eq!(
            api_get(&b, "/load_rebalance/global_status").await["evacuations"][0]["state"],
            "waiting_health_check"
        );
        a.shutdown().await;
        let a = EmqxNode::start(config).await.expect("restarts");
        let status = api_get(&a, "/load_rebalance/status").await;
        if persistent {
            // Resumed straight into eviction, connections refused, rate kept.
            assert!(
                matches!(
                    status["state"].as_str(),
                    Some("evicting_conns" | "waiting_takeover")
                ),
                "{status}"
            );
            assert_eq!(status["connection_eviction_rate"], 7);
            let s = settings(Protocol::V5, false);
            let mut c = MqttClient::new("late", a.mqtt_addr(), s, 4);
            let refused = tokio::time::timeout(Duration::from_secs(5), c.poll()).await;
            assert!(
                matches!(refused, Ok(Polled::Refused(ref r)) if r.contains("UseAnotherServer")),
                "{refused:?}"
            );
            assert_eq!(
                api_post(
                    &b,
                    &format!("/load_rebalance/{}/evacuation/stop", a.name()),
                    json!({})
                )
                .await,
                200
            );
        } else {
            assert_eq!(
                status,
                json!({"status": "disabled"}),
                "emptyDir data: nothing to resume"
            );
        }
    }
}

/// Raw MQTT 5 CONNECT, returning the socket after CONNACK.
async fn raw_v5(addr: SocketAddr, id: &str) -> tokio::net::TcpStream {
    use rumqttc::v5::mqttbytes::v5::{Connect, Packet};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = bytes::BytesMut::new();
    let c = Connect {
        keep_alive: 0,
        client_id: id.into(),
        clean_start: true,
        properties: None,
    };
    Packet::Connect(c, None, None)
        .write(&mut buf, None)
        .expect("encode");
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.write_all(&buf).await.expect("write");
    let mut header = [0u8; 2];
    s.read_exact(&mut header).await.expect("connack");
    assert_eq!(header[0], 0x20, "CONNACK");
    let mut body = vec![0u8; usize::from(header[1])];
    s.read_exact(&mut body).await.expect("connack body");
    assert_eq!(body[1], 0, "accepted");
    // 5.8.9 sends its inflight window: properties of length 3, 0x21
    // Receive-Maximum = 32 (`emqx_channel.erl` `enrich_connack_caps/2`).
    assert_eq!(&body[2..], &[0x03, 0x21, 0x00, 0x20], "{body:?}");
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_reference_only_when_switched_on_and_mqtt_drop_fault() {
    use tokio::io::AsyncReadExt;
    for switch in [false, true] {
        let subnet = if switch { 7 } else { 8 };
        let cr = format!("ref{subnet}");
        let ip = Ipv4Addr::new(127, 22, subnet, 11);
        let pod = v2_pod(
            &cr,
            "ns",
            &format!("{cr}-core-1"),
            Role::Core,
            ip,
            "emqx/emqx-enterprise:5.8.9",
            KEYS,
        );
        let mut config = NodeConfig::from_pod(&pod).expect("valid pod");
        config.tick = Duration::from_millis(200);
        config.rest_redirect_sets_server_reference = switch;
        let a = EmqxNode::start(config).await.expect("starts");
        let _b = start(&cr, subnet, 2).await;
        let mut s = raw_v5(a.mqtt_addr(), "ref-client").await;
        let body = json!({"wait_health_check": 0, "redirect_to": "other:1883"});
        assert_eq!(
            api_post(
                &a,
                &format!("/load_rebalance/{}/evacuation/start", a.name()),
                body
            )
            .await,
            200
        );
        let mut got = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut got))
            .await
            .expect("closed in time")
            .expect("read");
        if switch {
            // E0, length, 0x9C, property length, 0x1C Server Reference "other:1883".
            assert_eq!(&got[..2], &[0xE0, 0x0F]);
            assert_eq!(&got[2..4], &[0x9C, 0x0D], "reason, property length 13");
            assert_eq!(&got[4..7], &[0x1C, 0x00, 0x0A]);
            assert_eq!(&got[7..], b"other:1883");
        } else {
            assert_eq!(
                got,
                [0xE0, 0x02, 0x9C, 0x00],
                "no Server-Reference over REST"
            );
        }
    }

    // Fault: MQTT connections dropped without CONNACK, then served again.
    let n = start("dropf", 9, 1).await;
    n.faults().set_drop_mqtt(true);
    let mut c = MqttClient::new("dropped", n.mqtt_addr(), settings(Protocol::V5, true), 4);
    let r = tokio::time::timeout(Duration::from_secs(5), c.poll()).await;
    assert!(matches!(r, Ok(Polled::Failed(_))), "{r:?}");
    n.faults().set_drop_mqtt(false);
    let (_p, _) = Probe::connect("served", n.mqtt_addr(), settings(Protocol::V5, true)).await;
}

/// Counters of `GET /api/v5/metrics` for `node`, as EMQX lists them per node.
async fn metrics_of(n: &EmqxNode) -> Value {
    let list = api_get(n, "/metrics").await;
    list.as_array()
        .and_then(|l| l.iter().find(|m| m["node"] == n.name()))
        .cloned()
        .unwrap_or_else(|| panic!("no entry for {} in {list}", n.name()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_and_dropped_connections_are_counted_as_emqx_counts_them() {
    let n = start("guardf", 10, 1).await;
    // A good CONNECT: one CONNACK, no error.
    let (_ok, _) = Probe::connect("fine", n.mqtt_addr(), settings(Protocol::V5, true)).await;
    let m = metrics_of(&n).await;
    assert_eq!(m["packets.connack.sent"], 1, "{m}");
    assert_eq!(m["packets.connack.error"], 0, "{m}");
    assert_eq!(m["client.connected"], 1, "{m}");

    // Refuse CONNECT: bad credentials in both protocols, counted as EMQX
    // counts an authentication failure.
    n.faults().set_refuse_connect(true);
    for (i, protocol) in [Protocol::V5, Protocol::V311].into_iter().enumerate() {
        let mut c = MqttClient::new(
            &format!("bad-{i}"),
            n.mqtt_addr(),
            settings(protocol, true),
            4,
        );
        let r = tokio::time::timeout(Duration::from_secs(5), c.poll()).await;
        match r {
            Ok(Polled::Refused(code)) => {
                assert!(code.contains("BadUserNamePassword"), "{protocol:?}: {code}")
            }
            other => panic!("{protocol:?}: expected a refusal, got {other:?}"),
        }
    }
    let m = metrics_of(&n).await;
    assert_eq!(m["packets.connack.sent"], 3, "{m}");
    assert_eq!(m["packets.connack.error"], 2, "{m}");
    assert_eq!(m["packets.connack.auth_error"], 2, "{m}");
    assert_eq!(m["authentication.failure"], 2, "{m}");
    assert_eq!(m["client.connected"], 1, "no session opened: {m}");
    let sum = api_get(&n, "/metrics?aggregate=true").await;
    assert_eq!(sum["packets.connack.error"], 2, "{sum}");
    assert!(sum.get("node").is_none(), "{sum}");
    n.faults().set_refuse_connect(false);

    // Accept, then drop 200 ms after CONNACK: the session stays.
    n.faults()
        .set_drop_after_connack(Some(Duration::from_millis(200)));
    let s = settings(Protocol::V5, false);
    let (mut dropped, _) = Probe::connect("dropped", n.mqtt_addr(), s).await;
    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match dropped.client.poll().await {
                Polled::Failed(_) => return,
                _ => continue,
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the connection must be dropped");
    n.faults().set_drop_after_connack(None);
    let (_back, session_present) = Probe::connect("dropped", n.mqtt_addr(), s).await;
    assert!(session_present, "the dropped client's session survives");
    let m = metrics_of(&n).await;
    assert_eq!(
        m["packets.connack.error"], 2,
        "drops are no CONNACK errors: {m}"
    );
}

/// Writes one MQTT 5 packet.
async fn raw_send(s: &mut tokio::net::TcpStream, p: rumqttc::v5::mqttbytes::v5::Packet) {
    use tokio::io::AsyncWriteExt;
    let mut buf = bytes::BytesMut::new();
    p.write(&mut buf, None).expect("encode");
    s.write_all(&buf).await.expect("write");
}

/// MQTT 5 packets read within `wait`.
async fn raw_read(
    s: &mut tokio::net::TcpStream,
    buf: &mut bytes::BytesMut,
    wait: Duration,
) -> Vec<rumqttc::v5::mqttbytes::v5::Packet> {
    use tokio::io::AsyncReadExt;
    let mut out = Vec::new();
    let until = tokio::time::Instant::now() + wait;
    loop {
        while let Ok(p) = rumqttc::v5::mqttbytes::v5::Packet::read(buf, None) {
            out.push(p);
        }
        match tokio::time::timeout_at(until, s.read_buf(buf)).await {
            Ok(Ok(n)) if n > 0 => {}
            _ => return out,
        }
    }
}

/// EMQX's inflight window: a client that takes 2 unacknowledged QoS 1
/// deliveries (`Receive-Maximum` 2) gets 2, then one more per PUBACK; the
/// rest wait in the session, in order (`emqx_session_mem.erl`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_stop_at_the_clients_receive_maximum_until_acknowledged() {
    use rumqttc::v5::mqttbytes::QoS;
    use rumqttc::v5::mqttbytes::v5::{ConnectProperties, Filter, Packet, PubAck, Subscribe};

    let n = start("window", 11, 1).await;
    let mut props = ConnectProperties::new();
    props.receive_maximum = Some(2);
    let connect = rumqttc::v5::mqttbytes::v5::Connect {
        keep_alive: 0,
        client_id: "slow".into(),
        clean_start: true,
        properties: Some(props),
    };
    let mut s = tokio::net::TcpStream::connect(n.mqtt_addr())
        .await
        .expect("connect");
    let mut buf = bytes::BytesMut::new();
    raw_send(&mut s, Packet::Connect(connect, None, None)).await;
    let got = raw_read(&mut s, &mut buf, Duration::from_millis(300)).await;
    match got.as_slice() {
        [Packet::ConnAck(a)] => assert_eq!(
            a.properties.as_ref().and_then(|p| p.receive_max),
            Some(2),
            "the smaller of the client's 2 and max_inflight 32"
        ),
        other => panic!("expected a CONNACK: {other:?}"),
    }
    let filter = Filter::new("w/slow", QoS::AtLeastOnce);
    raw_send(&mut s, Packet::Subscribe(Subscribe::new(filter, None))).await;
    let got = raw_read(&mut s, &mut buf, Duration::from_millis(300)).await;
    assert!(matches!(got.as_slice(), [Packet::SubAck(_)]), "{got:?}");

    let (mut publisher, _) =
        Probe::connect("w-pub", n.mqtt_addr(), settings(Protocol::V5, true)).await;
    for i in 1..=5 {
        publisher.publish("w/slow", &format!("m{i}")).await;
    }
    let payloads = |packets: &[Packet]| -> Vec<(u16, String)> {
        packets
            .iter()
            .filter_map(|p| match p {
                Packet::Publish(p) => {
                    Some((p.pkid, String::from_utf8_lossy(&p.payload).into_owned()))
                }
                _ => None,
            })
            .collect()
    };
    let first = payloads(&raw_read(&mut s, &mut buf, Duration::from_millis(500)).await);
    assert_eq!(
        first.iter().map(|(_, m)| m.as_str()).collect::<Vec<_>>(),
        ["m1", "m2"],
        "two in flight, three waiting"
    );
    raw_send(&mut s, Packet::PubAck(PubAck::new(first[0].0, None))).await;
    let next = payloads(&raw_read(&mut s, &mut buf, Duration::from_millis(500)).await);
    assert_eq!(
        next.iter().map(|(_, m)| m.as_str()).collect::<Vec<_>>(),
        ["m3"],
        "one PUBACK, one more delivery"
    );
    raw_send(&mut s, Packet::PubAck(PubAck::new(first[1].0, None))).await;
    raw_send(&mut s, Packet::PubAck(PubAck::new(next[0].0, None))).await;
    let rest = payloads(&raw_read(&mut s, &mut buf, Duration::from_millis(500)).await);
    assert_eq!(
        rest.iter().map(|(_, m)| m.as_str()).collect::<Vec<_>>(),
        ["m4", "m5"]
    );
}

/// EMQX's message queue: a disconnected session keeps at most 1,000 queued
/// QoS 1 messages and drops the oldest for each one more
/// (`emqx_mqueue.erl` `in/2`, counted as `delivery.dropped.queue_full`);
/// the client gets the newest 1,000 when it comes back, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offline_session_keeps_the_newest_thousand_messages() {
    let n = start("mqueue", 12, 1).await;
    let s = settings(Protocol::V5, false);
    let (mut away, present) = Probe::connect("away", n.mqtt_addr(), s).await;
    assert!(!present);
    away.subscribe("q/away").await;
    drop(away);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (mut publisher, _) =
        Probe::connect("q-pub", n.mqtt_addr(), settings(Protocol::V5, true)).await;
    for i in 1..=1010 {
        publisher.publish("q/away", &format!("m{i}")).await;
    }
    let m = metrics_of(&n).await;
    assert_eq!(m["delivery.dropped.queue_full"], 10, "{m}");
    assert_eq!(m["delivery.dropped"], 10, "{m}");

    let (mut back, present) = Probe::connect("away", n.mqtt_addr(), s).await;
    assert!(present);
    let mut got = Vec::new();
    while let Ok(p) = back.next(Duration::from_secs(2)).await {
        got.push(p);
    }
    let want: Vec<String> = (11..=1010).map(|i| format!("m{i}")).collect();
    assert_eq!(got.len(), want.len(), "first {:?}", got.first());
    assert_eq!(got, want);
}

/// A resumed session sends its inflight messages again, DUP set, before the
/// queued ones (`emqx_session_mem.erl` `replay/2`): two deliveries a client
/// never acknowledged are not lost when its connection drops.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unacknowledged_deliveries_are_sent_again_first_on_resume() {
    use rumqttc::v5::mqttbytes::QoS;
    use rumqttc::v5::mqttbytes::v5::{Connect, ConnectProperties, Filter, Packet, Subscribe};

    let n = start("replay", 13, 1).await;
    let mut props = ConnectProperties::new();
    props.receive_maximum = Some(2);
    props.session_expiry_interval = Some(300);
    let connect = Connect {
        keep_alive: 0,
        client_id: "replayed".into(),
        clean_start: true,
        properties: Some(props),
    };
    let mut s = tokio::net::TcpStream::connect(n.mqtt_addr())
        .await
        .expect("connect");
    let mut buf = bytes::BytesMut::new();
    raw_send(&mut s, Packet::Connect(connect, None, None)).await;
    let filter = Filter::new("r/replayed", QoS::AtLeastOnce);
    raw_send(&mut s, Packet::Subscribe(Subscribe::new(filter, None))).await;
    let got = raw_read(&mut s, &mut buf, Duration::from_millis(300)).await;
    assert_eq!(got.len(), 2, "CONNACK, SUBACK: {got:?}");
    let (mut publisher, _) =
        Probe::connect("r-pub", n.mqtt_addr(), settings(Protocol::V5, true)).await;
    for i in 1..=4 {
        publisher.publish("r/replayed", &format!("m{i}")).await;
    }
    let sent = raw_read(&mut s, &mut buf, Duration::from_millis(500)).await;
    assert_eq!(sent.len(), 2, "the window of two: {sent:?}");
    drop(s); // no PUBACK

    tokio::time::sleep(Duration::from_millis(200)).await;
    let (mut back, present) =
        Probe::connect("replayed", n.mqtt_addr(), settings(Protocol::V5, false)).await;
    assert!(present);
    let mut got = Vec::new();
    while let Ok(p) = back.next(Duration::from_secs(1)).await {
        got.push(p);
    }
    assert_eq!(got, ["m1", "m2", "m3", "m4"]);
}
