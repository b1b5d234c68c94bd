//! A tiny "project binary" for the sandbox's own tests: it makes one
//! Kubernetes API call with the kubeconfig in `KUBECONFIG` (the pod's
//! ServiceAccount token) and serves the HTTP status code it got on
//! `http://<--listen>/`, e.g. `403`.
//!
//! Usage: `sandbox-probe --listen 127.100.0.5:8080 --path /api/v1/namespaces/default/secrets`

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn argument(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

async fn call(path: &str) -> String {
    let client = match kube::Client::try_default().await {
        Ok(c) => c,
        Err(e) => return format!("no-client: {e}"),
    };
    let request = match http::Request::get(path).body(Vec::new()) {
        Ok(r) => r,
        Err(e) => return format!("bad-path: {e}"),
    };
    match client.request_text(request).await {
        Ok(_) => "200".into(),
        Err(kube::Error::Api(status)) => status.code.to_string(),
        Err(e) => format!("error: {e}"),
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let (Some(listen), Some(path)) = (argument(&args, "--listen"), argument(&args, "--path"))
    else {
        eprintln!("usage: sandbox-probe --listen IP:PORT --path /api/...");
        return std::process::ExitCode::from(2);
    };
    let listener = match tokio::net::TcpListener::bind(&listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("sandbox-probe: cannot listen on {listen}: {e}");
            return std::process::ExitCode::from(1);
        }
    };
    let result = call(&path).await;
    println!("sandbox-probe: GET {path} -> {result}");
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            continue;
        };
        let body = result.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 2048];
            let _ = tokio::time::timeout(Duration::from_secs(2), stream.read(&mut buf)).await;
            let response = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(response.as_bytes()).await;
        });
    }
}
