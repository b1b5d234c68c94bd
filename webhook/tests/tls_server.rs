//! The real TLS server on loopback: protocols, hostile clients, certificate
//! swap, graceful shutdown, and SIGTERM of the binary.

mod support;

use std::time::{Duration, Instant};

use axum::http::Request;
use http_body_util::BodyExt;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::json;
use support::{
    TlsServer, admission_body, client_config, https_post, json_of, test_limits, tls_connect,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn start() -> TlsServer {
    let limits = emqx_webhook::routes::RequestLimits {
        request_timeout: Duration::from_millis(800),
        ..Default::default()
    };
    TlsServer::start(test_limits(), limits).await
}

/// Reads until EOF or error; returns what was read and whether it ended in time.
async fn read_until_closed(
    stream: &mut (impl AsyncReadExt + Unpin),
    within: Duration,
) -> (Vec<u8>, bool) {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Err(_) => return (out, false),
            Ok(Ok(0)) | Ok(Err(_)) => return (out, true),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
    }
}

#[tokio::test]
async fn answers_over_http1_and_h2_negotiated_by_alpn() {
    let server = start().await;
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}});
    let (status, body) = https_post(
        &server,
        "/validate",
        admission_body("h1", "CREATE", &pod, None, false),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(json_of(&body)["response"]["uid"], "h1");

    let tls = tls_connect(server.addr, client_config(&server.ca_pem, &[b"h2"]))
        .await
        .expect("tls");
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .expect("h2 handshake");
    tokio::spawn(conn);
    for i in 0..3 {
        let req = Request::post("https://emqx-webhook.test.svc/validate")
            .header("content-type", "application/json")
            .body(http_body_util::Full::new(bytes::Bytes::from(
                admission_body(&format!("h2-{i}"), "CREATE", &pod, None, false),
            )))
            .expect("request");
        let resp = sender.send_request(req).await.expect("h2 send");
        assert_eq!(resp.status(), 200);
        let body = resp.into_body().collect().await.expect("body").to_bytes();
        assert_eq!(json_of(&body)["response"]["uid"], format!("h2-{i}"));
    }
    assert!(server.stop().await);
}

#[tokio::test]
async fn tls12_and_tls13_are_both_served() {
    let server = start().await;
    for version in [&rustls::version::TLS12, &rustls::version::TLS13] {
        let mut roots = rustls::RootCertStore::empty();
        use rustls::pki_types::pem::PemObject;
        for c in rustls::pki_types::CertificateDer::pem_slice_iter(server.ca_pem.as_bytes()) {
            roots.add(c.expect("pem")).expect("root");
        }
        let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_protocol_versions(&[version])
        .expect("version")
        .with_root_certificates(roots)
        .with_no_client_auth();
        let tls = tls_connect(server.addr, std::sync::Arc::new(config))
            .await
            .expect("handshake");
        assert_eq!(tls.get_ref().1.protocol_version(), Some(version.version));
    }
}

#[tokio::test]
async fn a_truncated_or_silent_handshake_is_dropped_after_the_deadline() {
    let server = start().await;
    // The first bytes of a TLS ClientHello record, then nothing.
    let mut tcp = tokio::net::TcpStream::connect(server.addr)
        .await
        .expect("connect");
    tcp.write_all(&[
        0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03,
    ])
    .await
    .expect("write");
    let started = Instant::now();
    let (_, closed) = read_until_closed(&mut tcp, Duration::from_secs(5)).await;
    assert!(closed, "server kept a truncated handshake open");
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "closed before the deadline"
    );

    let mut silent = tokio::net::TcpStream::connect(server.addr)
        .await
        .expect("connect");
    let (_, closed) = read_until_closed(&mut silent, Duration::from_secs(5)).await;
    assert!(closed, "server kept a silent connection open");

    // Not TLS at all: plain HTTP to the TLS port.
    let mut plain = tokio::net::TcpStream::connect(server.addr)
        .await
        .expect("connect");
    plain
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    let (_, closed) = read_until_closed(&mut plain, Duration::from_secs(5)).await;
    assert!(closed);

    // The server still serves well-behaved clients afterwards.
    let (status, _) = https_post(&server, "/validate", b"{}".to_vec()).await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn slowloris_headers_and_bodies_are_cut_off() {
    let server = start().await;
    let config = client_config(&server.ca_pem, &[b"http/1.1"]);

    let mut tls = tls_connect(server.addr, config.clone()).await.expect("tls");
    tls.write_all(b"POST /validate HTTP/1.1\r\nHost: emqx-webhook.test.svc\r\nX-Slow: ")
        .await
        .expect("write");
    let (_, closed) = read_until_closed(&mut tls, Duration::from_secs(5)).await;
    assert!(closed, "partial headers kept the connection open");

    let mut tls = tls_connect(server.addr, config.clone()).await.expect("tls");
    tls.write_all(b"POST /validate HTTP/1.1\r\nHost: emqx-webhook.test.svc\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"apiVersion\":")
        .await
        .expect("write");
    let (answer, closed) = read_until_closed(&mut tls, Duration::from_secs(5)).await;
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(closed, "slow body kept the connection open");

    // An idle keep-alive connection is closed too.
    let mut tls = tls_connect(server.addr, config).await.expect("tls");
    tls.write_all(b"GET /healthz HTTP/1.1\r\nHost: emqx-webhook.test.svc\r\n\r\n")
        .await
        .expect("write");
    let (answer, closed) = read_until_closed(&mut tls, Duration::from_secs(5)).await;
    assert!(String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 200"));
    assert!(closed, "idle keep-alive connection never closed");
}

#[tokio::test]
async fn a_ten_megabyte_body_over_tls_gets_413() {
    let server = start().await;
    let mut tls = tls_connect(server.addr, client_config(&server.ca_pem, &[b"http/1.1"]))
        .await
        .expect("tls");
    tls.write_all(b"POST /mutate HTTP/1.1\r\nHost: emqx-webhook.test.svc\r\nContent-Type: application/json\r\nContent-Length: 10485760\r\n\r\n")
        .await
        .expect("write");
    tls.write_all(&[b' '; 64 * 1024])
        .await
        .expect("write some body");
    let (answer, _) = read_until_closed(&mut tls, Duration::from_secs(5)).await;
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
}

#[tokio::test]
async fn a_new_certificate_is_served_to_new_connections_without_restart() {
    let server = start().await;
    let next = support::bundle();
    let both = format!("{}{}", server.ca_pem, next.ca_pem);
    let config = client_config(&both, &[b"http/1.1"]);
    let leaf = |tls: &tokio_rustls::client::TlsStream<tokio::net::TcpStream>| {
        tls.get_ref()
            .1
            .peer_certificates()
            .and_then(|c| c.first())
            .map(|c| c.to_vec())
    };
    let old_conn = tls_connect(server.addr, config.clone()).await.expect("tls");
    let before = leaf(&old_conn);
    assert!(server.resolver.install(&next).expect("install"));
    let new_conn = tls_connect(server.addr, config).await.expect("tls");
    let after = leaf(&new_conn);
    assert_ne!(before, after);
    use rustls::pki_types::pem::PemObject;
    let expected =
        rustls::pki_types::CertificateDer::from_pem_slice(next.cert_pem.as_bytes()).expect("pem");
    assert_eq!(after, Some(expected.to_vec()));
    // The connection made before the swap still works.
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(old_conn))
        .await
        .expect("h1");
    tokio::spawn(conn);
    let resp = sender
        .send_request(
            Request::get("/healthz")
                .header("host", "x")
                .body(http_body_util::Empty::<bytes::Bytes>::new())
                .expect("req"),
        )
        .await
        .expect("send");
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn shutdown_finishes_and_refuses_new_connections() {
    let server = start().await;
    let addr = server.addr;
    let (status, _) = https_post(&server, "/validate", b"{}".to_vec()).await;
    assert_eq!(status, 400);
    assert!(server.stop().await, "serve did not return after shutdown");
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}
