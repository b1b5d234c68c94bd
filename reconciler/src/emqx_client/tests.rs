//! The shell against a scripted HTTP peer on loopback: what it sends, and
//! that slow, huge or cut answers become errors instead of hangs.

use super::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Serves one connection: captures the request head, then plays `answer`.
async fn peer(answer: Vec<u8>, delay: Duration) -> (String, tokio::task::JoinHandle<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let task = tokio::spawn(async move {
        let Ok((mut socket, _)) = listener.accept().await else {
            return String::new();
        };
        let mut request = vec![0u8; 8192];
        let n = socket.read(&mut request).await.unwrap_or(0);
        tokio::time::sleep(delay).await;
        let _ = socket.write_all(&answer).await;
        let _ = socket.shutdown().await;
        String::from_utf8_lossy(&request[..n]).into_owned()
    });
    (base, task)
}

fn http(status: &str, body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn client(base: &str, timeout: Duration) -> EmqxClient {
    EmqxClient::new(
        base,
        ApiGeneration::V5,
        "emqx-operator-controller",
        "s3cret",
        timeout,
    )
    .expect("client")
}

const STRATEGY: Strategy = Strategy {
    initial_delay_s: 0,
    wait_takeover_s: 10,
    conn_evict_rate: 50,
    sess_evict_rate: 50,
};

#[tokio::test]
async fn start_sends_auth_json_and_the_rates() {
    let (base, seen) = peer(http("200 OK", "{}"), Duration::ZERO).await;
    let outcome = client(&base, Duration::from_secs(5))
        .start_evacuation("emqx@a", &STRATEGY, &["emqx@b".into()], true)
        .await;
    assert_eq!(outcome, Ok(StartOutcome::Started));
    let request = seen.await.expect("peer");
    assert!(request.starts_with("POST /api/v5/load_rebalance/emqx@a/evacuation/start HTTP/1.1"));
    let lower = request.to_ascii_lowercase();
    // base64("emqx-operator-controller:s3cret")
    assert!(request.contains("Basic ZW1xeC1vcGVyYXRvci1jb250cm9sbGVyOnMzY3JldA=="));
    assert!(lower.contains("accept: application/json"));
    // 5.x answers 415 to a body of any other type (emqx_dashboard_swagger.erl).
    assert!(lower.contains("content-type: application/json"));
    assert!(request.contains(r#""conn_evict_rate":50"#));
    assert!(request.contains(r#""wait_takeover":10"#));
}

#[tokio::test]
async fn a_stalled_broker_times_out() {
    let (base, _seen) = peer(http("200 OK", "[]"), Duration::from_secs(30)).await;
    let started = std::time::Instant::now();
    let result = client(&base, Duration::from_millis(300)).nodes().await;
    assert!(
        matches!(&result, Err(EmqxError::Transport { detail, .. }) if detail.contains("timed out")),
        "a condition must be able to say it timed out: {result:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test]
async fn an_endless_answer_is_refused() {
    let body = "x".repeat(MAX_ANSWER + 1);
    let (base, _seen) = peer(http("200 OK", &body), Duration::ZERO).await;
    let result = client(&base, Duration::from_secs(10)).nodes().await;
    assert!(
        matches!(result, Err(EmqxError::Malformed { .. })),
        "{result:?}"
    );
}

#[tokio::test]
async fn a_cut_connection_is_a_transport_error() {
    let (base, _seen) = peer(
        b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n[".to_vec(),
        Duration::ZERO,
    )
    .await;
    let result = client(&base, Duration::from_secs(5)).nodes().await;
    assert!(
        matches!(result, Err(EmqxError::Transport { .. })),
        "{result:?}"
    );
}

#[tokio::test]
async fn nobody_listening_is_a_transport_error() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    drop(listener);
    let result = client(&base, Duration::from_secs(2))
        .force_leave("emqx@a")
        .await;
    // The cause (connection refused) sits in reqwest's source chain.
    assert!(
        matches!(&result, Err(EmqxError::Transport { detail, .. })
            if detail.to_ascii_lowercase().contains("refused")),
        "{result:?}"
    );
}

#[test]
fn debug_output_hides_the_secret() {
    let c = client("http://127.0.0.1:1", Duration::from_secs(1));
    assert!(!format!("{c:?}").contains("s3cret"));
}

#[tokio::test]
async fn a_redirect_is_an_error_naming_the_status_and_is_not_followed() {
    // The place the redirect points to: another loopback address.
    let elsewhere = TcpListener::bind("127.0.0.2:0").await.expect("bind");
    let target = elsewhere.local_addr().expect("addr");
    let redirect = format!(
        "HTTP/1.1 302 Found\r\nlocation: http://{target}/api/v5/nodes\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
    );
    let (base, seen) = peer(redirect.into_bytes(), Duration::ZERO).await;
    let result = client(&base, Duration::from_secs(2)).nodes().await;
    assert!(
        matches!(&result, Err(EmqxError::Malformed { detail, .. })
            if detail.contains("302") && detail.contains(&target.to_string())),
        "a 302 must be an error naming the status and the target: {result:?}"
    );
    assert!(seen.await.expect("peer").starts_with("GET /api/v5/nodes"));
    let followed = tokio::time::timeout(Duration::from_millis(500), elsewhere.accept()).await;
    assert!(
        followed.is_err(),
        "the client connected to the redirect's target"
    );
}
