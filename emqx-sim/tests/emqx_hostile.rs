//! Hostile input to a simulated node: garbage bytes and absurd lengths on the
//! MQTT listener, malformed HTTP, bodies and headers on the REST API. Every
//! case must end in an error or a closed connection, never a panic or a hang,
//! and the node must keep serving.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use bytes::BytesMut;
use emqx_sim::evacuation_request::parse_evacuation_start;
use emqx_sim::mqtt::wire;
use emqx_sim::operator_pod::v2_pod;
use emqx_sim::session::MqttVersion;
use emqx_sim::{EmqxNode, NodeConfig, Role};
use rand::{Rng, RngCore};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn start(subnet: u8, idx: u8) -> EmqxNode {
    let ip = Ipv4Addr::new(127, 23, subnet, 10 + idx);
    let cr = format!("hostile{subnet}");
    let pod = v2_pod(
        &cr,
        "ns",
        &format!("{cr}-core-{idx}"),
        Role::Core,
        ip,
        "emqx/emqx-enterprise:5.8.9",
        "k:s\n",
    );
    EmqxNode::start(NodeConfig::from_pod(&pod).expect("valid pod"))
        .await
        .expect("starts")
}

/// Sends `bytes`, optionally half-closes, and returns what came back before the
/// server closed. Fails the test if the server neither answers nor closes in 5 s.
async fn exchange(addr: SocketAddr, bytes: &[u8], half_close: bool) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let _ = s.write_all(bytes).await;
    if half_close {
        let _ = s.shutdown().await;
    }
    let mut out = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    assert!(
        read.is_ok(),
        "server neither answered nor closed after {} bytes",
        bytes.len()
    );
    out
}

async fn still_serves(node: &EmqxNode) {
    let r = reqwest::get(format!("http://{}/status", node.http_addr()))
        .await
        .expect("status");
    assert_eq!(r.status().as_u16(), 200);
    // A well-formed MQTT 3.1.1 CONNECT still gets CONNACK accepted.
    let mut connect = BytesMut::new();
    rumqttc::Packet::Connect(rumqttc::Connect::new("after-abuse"))
        .write(&mut connect, 1024)
        .expect("encode");
    let mut s = TcpStream::connect(node.mqtt_addr()).await.expect("connect");
    s.write_all(&connect).await.expect("write");
    let mut ack = [0u8; 4];
    tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut ack))
        .await
        .expect("in time")
        .expect("read");
    assert_eq!(ack, [0x20, 0x02, 0x00, 0x00]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_listener_survives_garbage() {
    let node = start(1, 1).await;
    let addr = node.mqtt_addr();
    let mut rng = rand::rng();
    for _ in 0..150 {
        let len = rng.random_range(1..600);
        let mut bytes = vec![0u8; len];
        rng.fill_bytes(&mut bytes);
        if rng.random_bool(0.5) {
            bytes[0] = 0x10; // looks like CONNECT
        }
        exchange(addr, &bytes, true).await;
    }
    // Absurd remaining lengths are refused without waiting for the bytes.
    for header in [
        &[0x10u8, 0xff, 0xff, 0xff, 0x7f][..],
        &[0x10, 0xff, 0xff, 0xff, 0xff, 0x01],
        &[0x10, 0x80, 0x80, 0x80, 0x80],
    ] {
        let out = exchange(addr, header, false).await;
        assert!(out.is_empty(), "no CONNACK for {header:?}");
    }
    // Wrong first packet, HTTP on the MQTT port.
    assert!(exchange(addr, &[0xC0, 0x00], false).await.is_empty());
    assert!(
        exchange(addr, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", false)
            .await
            .is_empty()
    );
    // MQTT 3.1 (level 3) gets CONNACK "unacceptable protocol version".
    let out = exchange(
        addr,
        b"\x10\x0e\x00\x06MQIsdp\x03\x02\x00\x3c\x00\x00",
        false,
    )
    .await;
    assert_eq!(out, [0x20, 0x02, 0x00, 0x01]);
    // Garbage and an oversized PUBLISH after a valid CONNECT.
    let mut connect = BytesMut::new();
    rumqttc::Packet::Connect(rumqttc::Connect::new("then-garbage"))
        .write(&mut connect, 1024)
        .expect("encode");
    let mut then_garbage = connect.to_vec();
    then_garbage.extend_from_slice(&[0x30, 0xff, 0xff, 0xff, 0x7f, 1, 2, 3]);
    let out = exchange(addr, &then_garbage, false).await;
    assert_eq!(&out[..4], &[0x20, 0x02, 0x00, 0x00], "CONNACK, then closed");
    let mut bad_sub = connect.to_vec();
    bad_sub.extend_from_slice(&[0x82, 0x03, 0x00, 0x01, 0xff]);
    exchange(addr, &bad_sub, false).await;
    // Many at once.
    let mut tasks = Vec::new();
    for i in 0..200u32 {
        tasks.push(tokio::spawn(async move {
            let _ = exchange(addr, &[0x10, (i % 200) as u8, 0xde, 0xad], true).await;
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
    still_serves(&node).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_api_survives_malformed_requests() {
    let node = start(2, 1).await;
    let addr = node.http_addr();
    // Not HTTP at all, broken request lines, absurd headers.
    let mut rng = rand::rng();
    for _ in 0..50 {
        let mut bytes = vec![0u8; rng.random_range(1..400)];
        rng.fill_bytes(&mut bytes);
        exchange(addr, &bytes, true).await;
    }
    for raw in [
        &b"GET /status HTTP/9.9\r\n\r\n"[..],
        b"\r\n\r\n\r\n",
        b"POST /api/v5/nodes HTTP/1.1\r\nContent-Length: -5\r\n\r\n",
        b"POST /api/v5/nodes HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n",
        b"GET /api/v5/nodes HTTP/1.1\r\nAuthorization: Basic \xff\xfe\r\n\r\n",
    ] {
        exchange(addr, raw, true).await;
    }
    // No pooling: after an early 413 the server closes that connection, and a
    // reused one would fail on the client side, not the server's.
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");
    let url = |p: &str| format!("http://{addr}{p}");
    let start = format!("/api/v5/load_rebalance/{}/evacuation/start", node.name());
    // Bad Authorization headers.
    for value in [
        "Basic",
        "Basic !!!notbase64",
        "Basic Zm9v",
        "Digest x",
        &"Basic ".repeat(2000),
    ] {
        let r = http
            .get(url("/api/v5/nodes"))
            .header("authorization", value)
            .send()
            .await
            .expect("send");
        assert_eq!(
            r.status().as_u16(),
            401,
            "{}",
            &value[..value.len().min(30)]
        );
    }
    // Oversized and hostile bodies.
    let big = "x".repeat(2 * 1024 * 1024);
    let r = http
        .post(url(&start))
        .basic_auth("k", Some("s"))
        .body(big)
        .send()
        .await;
    if let Ok(r) = r {
        assert_eq!(r.status().as_u16(), 413);
    }
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    for body in [
        deep.as_str(),
        "{\"conn_evict_rate\":1e999}",
        "\u{0}",
        "{\"migrate_to\":[\"\"]}",
        "null",
        "{\"a\":1,\"a\":2}",
    ] {
        // Declared JSON, so the schema sees them (untyped bodies are 415).
        let r = http
            .post(url(&start))
            .basic_auth("k", Some("s"))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .expect("send");
        assert_eq!(r.status().as_u16(), 400, "{}", &body[..body.len().min(30)]);
    }
    // Odd paths and queries.
    for p in [
        "/api/v5/nodes/%00%ff",
        "/api/v5/load_rebalance/%/evacuation/stop",
        "/api/v5/prometheus/stats?mode=%%%",
    ] {
        let r = http
            .post(url(p))
            .basic_auth("k", Some("s"))
            .send()
            .await
            .expect("send");
        assert!(r.status().is_client_error(), "{p}: {}", r.status());
    }
    let long = format!("/api/v5/{}", "a/".repeat(5000));
    let r = http.get(url(&long)).send().await.expect("send");
    assert!(r.status().is_client_error());
    still_serves(&node).await;
}

#[test]
fn parsers_never_panic_on_random_input() {
    let mut rng = rand::rng();
    for _ in 0..20_000 {
        let mut bytes = vec![0u8; rng.random_range(0..64)];
        rng.fill_bytes(&mut bytes);
        if !bytes.is_empty() && rng.random_bool(0.5) {
            bytes[0] = 0x10;
        }
        let _ = wire::read_connect(&mut BytesMut::from(&bytes[..]), 1 << 20);
        let _ = wire::read(MqttVersion::V5, &mut BytesMut::from(&bytes[..]), 1 << 20);
        let _ = wire::read(MqttVersion::V311, &mut BytesMut::from(&bytes[..]), 1 << 20);
        let _ = parse_evacuation_start(&bytes);
    }
    // Structured but wrong JSON.
    for _ in 0..2_000 {
        let field = [
            "conn_evict_rate",
            "sess_evict_rate",
            "wait_takeover",
            "wait_health_check",
            "migrate_to",
            "redirect_to",
        ][rng.random_range(0..6)];
        let value = [
            "-1",
            "0",
            "1.5",
            "\"\"",
            "\"9999999999999999999999d\"",
            "[]",
            "[null]",
            "{}",
            "true",
            "18446744073709551616",
        ][rng.random_range(0..10)];
        let body = format!("{{\"{field}\":{value}}}");
        let _ = parse_evacuation_start(body.as_bytes());
    }
}
