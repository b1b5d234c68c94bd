//! Hostile connections against the real listeners on loopback: connections
//! that say nothing are closed (h1 and h2), a flood of idle connections —
//! from other addresses or from the client's own — does not keep a normal
//! request from being answered, the health port answers during a flood,
//! concurrent reviews beyond the limit wait instead of failing, and a
//! normal review does not wait behind large bodies.
//!
//! Timing: the limits are short (see `support::test_limits`), the bounds
//! here generous; what is asserted is that something happens, not how fast.

mod support;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::Request;
use emqx_webhook::metrics::ListenerName;
use emqx_webhook::routes::{RequestLimits, health_router};
use emqx_webhook::server::{self, ConnectionLimits, Listener, Transport};
use http_body_util::BodyExt;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::json;
use support::{TlsServer, admission_body, client_config, https_post, test_limits};
use tokio::io::AsyncReadExt;

async fn tls_from(
    source: Ipv4Addr,
    addr: SocketAddr,
    alpn: &[u8],
    ca_pem: &str,
) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(IpAddr::V4(source), 0))?;
    let tcp = socket.connect(addr).await?;
    let name = rustls::pki_types::ServerName::try_from("emqx-webhook.test.svc").expect("name");
    tokio_rustls::TlsConnector::from(client_config(ca_pem, &[alpn]))
        .connect(name, tcp)
        .await
}

/// True if the peer closes `stream` within `within`.
async fn closed_within(stream: &mut (impl AsyncReadExt + Unpin), within: Duration) -> bool {
    let mut buf = [0u8; 1024];
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

fn limits(max: usize, per_peer: usize) -> ConnectionLimits {
    ConnectionLimits {
        max_connections: max,
        max_connections_per_peer: per_peer,
        // Long enough that only eviction, not the idle timer, can make room
        // while the flood is held.
        idle_timeout: Duration::from_secs(30),
        ..test_limits()
    }
}

fn pod() -> serde_json::Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}})
}

#[tokio::test]
async fn a_tls_connection_that_never_sends_a_request_is_closed_h1_and_h2() {
    let server = TlsServer::start(test_limits(), RequestLimits::default()).await;
    for alpn in [&b"http/1.1"[..], b"h2"] {
        let mut tls = tls_from(Ipv4Addr::LOCALHOST, server.addr, alpn, &server.ca_pem)
            .await
            .expect("handshake");
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(alpn));
        assert!(
            closed_within(&mut tls, Duration::from_secs(10)).await,
            "an idle {} connection was kept open",
            String::from_utf8_lossy(alpn)
        );
    }
    // At least the h2 one by the idle timer (h1 may also be cut by hyper's
    // header timeout, whichever fires first).
    let metrics = server.state.metrics.encode().expect("metrics");
    assert!(
        metrics.contains(r#"emqx_webhook_connections_idle_closed_total{listener="webhook"}"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn an_h2_connection_idle_between_requests_gets_a_goaway_and_closes() {
    let server = TlsServer::start(test_limits(), RequestLimits::default()).await;
    let tls = tls_from(Ipv4Addr::LOCALHOST, server.addr, b"h2", &server.ca_pem)
        .await
        .expect("handshake");
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .expect("h2 handshake");
    let conn = tokio::spawn(conn);
    let req = Request::post("https://emqx-webhook.test.svc/validate")
        .body(http_body_util::Full::new(bytes::Bytes::from(
            admission_body("h2", "CREATE", &pod(), None, false),
        )))
        .expect("request");
    let resp = sender.send_request(req).await.expect("send");
    assert_eq!(resp.status(), 200);
    resp.into_body().collect().await.expect("body");
    // No more requests: the server ends the connection (the client's
    // connection task returns) well before this bound.
    let ended = tokio::time::timeout(Duration::from_secs(10), conn).await;
    assert!(ended.is_ok(), "idle h2 connection still open");
}

#[tokio::test]
async fn a_flood_of_idle_connections_from_other_addresses_does_not_stop_a_request() {
    let server = TlsServer::start(limits(16, 8), RequestLimits::default()).await;
    // 40 idle TLS connections from two flooding addresses: more than the
    // table holds, each address over its quota.
    let mut flood = Vec::new();
    for i in 0..40u8 {
        let source = Ipv4Addr::new(127, 0, 0, 2 + i % 2);
        if let Ok(tls) = tls_from(source, server.addr, b"http/1.1", &server.ca_pem).await {
            flood.push(tls);
        }
    }
    for i in 0..5 {
        let (status, _) = https_post(
            &server,
            "/validate",
            admission_body(&format!("u{i}"), "CREATE", &pod(), None, false),
        )
        .await;
        assert_eq!(status, 200, "request {i} during the flood");
    }
    let metrics = server.state.metrics.encode().expect("metrics");
    assert!(
        metrics.contains(
            r#"emqx_webhook_connections_evicted_total{listener="webhook",reason="peer_quota"}"#
        ),
        "{metrics}"
    );
    drop(flood);
}

#[tokio::test]
async fn a_flood_from_the_clients_own_address_only_evicts_itself() {
    // Same address as the normal client (SNAT, a proxy): the flood's own
    // oldest idle connections make room; the new request is answered.
    let server = TlsServer::start(limits(16, 16), RequestLimits::default()).await;
    let mut flood = Vec::new();
    for _ in 0..40 {
        if let Ok(tls) = tls_from(Ipv4Addr::LOCALHOST, server.addr, b"h2", &server.ca_pem).await {
            flood.push(tls);
        }
    }
    let (status, _) = https_post(
        &server,
        "/validate",
        admission_body("own", "CREATE", &pod(), None, false),
    )
    .await;
    assert_eq!(status, 200);
    drop(flood);
}

#[tokio::test]
async fn the_health_port_answers_while_the_review_port_is_flooded() {
    let server = TlsServer::start(limits(8, 8), RequestLimits::default()).await;
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let health_addr = tcp.local_addr().expect("addr");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let health = tokio::spawn(server::serve(
        Listener {
            name: ListenerName::Health,
            tcp,
            transport: Transport::Plain,
            app: health_router(server.state.clone()),
            limits: ConnectionLimits::health(),
        },
        server.state.metrics.clone(),
        async {
            let _ = stopped.await;
        },
    ));
    // Idle TCP and TLS connections, from the prober's own address too.
    let mut flood_tcp = Vec::new();
    let mut flood_tls = Vec::new();
    for i in 0..50u8 {
        let source = Ipv4Addr::new(127, 0, 0, 1 + i % 3);
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket
            .bind(SocketAddr::new(IpAddr::V4(source), 0))
            .expect("bind");
        if let Ok(tcp) = socket.connect(server.addr).await {
            flood_tcp.push(tcp);
        }
        if let Ok(tls) = tls_from(source, server.addr, b"h2", &server.ca_pem).await {
            flood_tls.push(tls);
        }
    }
    for path in ["/readyz", "/healthz", "/metrics"] {
        let tcp = tokio::net::TcpStream::connect(health_addr)
            .await
            .expect("connect health");
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
            .await
            .expect("h1");
        tokio::spawn(conn);
        let req = Request::get(path)
            .header("host", "probe")
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .expect("request");
        let resp = tokio::time::timeout(Duration::from_secs(5), sender.send_request(req))
            .await
            .expect("answered in time")
            .expect("answered");
        assert_eq!(resp.status(), 200, "{path}");
    }
    drop((flood_tcp, flood_tls));
    let _ = stop.send(());
    assert!(
        tokio::time::timeout(Duration::from_secs(10), health)
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn reviews_beyond_the_concurrency_limit_wait_and_are_all_answered() {
    let request_limits = RequestLimits {
        max_concurrent_reviews: 1,
        ..RequestLimits::default()
    };
    let server = Arc::new(TlsServer::start(test_limits(), request_limits).await);
    let seed = support::fixture("emqx-v2beta1-seed003");
    let mut tasks = Vec::new();
    for i in 0..8 {
        let server = server.clone();
        let body = admission_body(&format!("c{i}"), "CREATE", &seed, None, false);
        tasks.push(tokio::spawn(async move {
            https_post(&server, "/mutate", body).await.0
        }));
    }
    for t in tasks {
        assert_eq!(t.await.expect("task"), 200);
    }
}

#[tokio::test]
async fn a_chunked_body_over_the_limit_is_refused_with_413() {
    let request_limits = RequestLimits {
        max_body_bytes: 64 * 1024,
        body_budget_bytes: 64 * 1024,
        ..RequestLimits::default()
    };
    let server = TlsServer::start(test_limits(), request_limits).await;
    let tls = tls_from(
        Ipv4Addr::LOCALHOST,
        server.addr,
        b"http/1.1",
        &server.ca_pem,
    )
    .await
    .expect("tls");
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .expect("h1");
    tokio::spawn(conn);
    // A streamed body has no Content-Length: the limit is enforced on the
    // bytes as they arrive.
    let chunks: Vec<Result<hyper::body::Frame<bytes::Bytes>, std::io::Error>> = (0..20)
        .map(|_| {
            Ok(hyper::body::Frame::data(bytes::Bytes::from(vec![
                b' ';
                8192
            ])))
        })
        .collect();
    let body = http_body_util::StreamBody::new(futures::stream::iter(chunks));
    let req = Request::post("/validate")
        .header("host", "emqx-webhook.test.svc")
        .body(body)
        .expect("request");
    let resp = sender.send_request(req).await.expect("send");
    assert_eq!(resp.status(), 413);
}

/// A review whose body the client stops sending: it declares `declared`
/// bytes, sends `sent` of them and holds the connection.
async fn stalled_review(
    server: &TlsServer,
    source: Ipv4Addr,
    declared: usize,
    sent: usize,
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    use tokio::io::AsyncWriteExt;
    let mut tls = tls_from(source, server.addr, b"http/1.1", &server.ca_pem)
        .await
        .expect("tls");
    let head = format!(
        "POST /validate HTTP/1.1\r\nHost: emqx-webhook.test.svc\r\nContent-Type: application/json\r\nContent-Length: {declared}\r\n\r\n"
    );
    tls.write_all(head.as_bytes()).await.expect("head");
    tls.write_all(&vec![b' '; sent])
        .await
        .expect("part of the body");
    tls.flush().await.expect("flush");
    tls
}

#[tokio::test]
async fn a_normal_review_is_answered_while_large_bodies_fill_their_budget() {
    // The large lane's budget is one 256 KiB body: one stalled body holds
    // it, a second waits for it.
    let request_limits = RequestLimits {
        max_body_bytes: 256 * 1024,
        body_budget_bytes: 256 * 1024,
        ..RequestLimits::default()
    };
    let server = TlsServer::start(limits(64, 16), request_limits).await;
    let mut stalled = Vec::new();
    for source in [Ipv4Addr::new(127, 0, 0, 2), Ipv4Addr::new(127, 0, 0, 3)] {
        stalled.push(stalled_review(&server, source, 256 * 1024, 200 * 1024).await);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    // A normal review (the seed, a few KB) does not wait behind them: with
    // one lane it waited until the request timeout (10 s) and got 408.
    let seed = support::fixture("emqx-v2beta1-seed003");
    let body = admission_body("normal", "UPDATE", &seed, Some(&seed), false);
    let answered = tokio::time::timeout(
        Duration::from_secs(5),
        https_post(&server, "/validate", body),
    )
    .await;
    assert!(
        matches!(answered, Ok((200, _))),
        "not answered while the large lane is full: {:?}",
        answered.map(|(s, _)| s)
    );
    drop(stalled);
}
