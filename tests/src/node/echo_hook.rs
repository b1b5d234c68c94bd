//! A [`PodHook`] for the sandbox's own tests and for anyone who needs a
//! trivial workload: containers whose image repository is [`ECHO_IMAGE`]
//! listen on each of their `containerPort`s on the pod's address and
//!
//! - answer an HTTP `GET` with `200` and the pod name (so `httpGet` readiness
//!   probes pass), or `503` while the file `not-ready` exists in the pod directory;
//! - otherwise answer every line `x` with `<pod name> x`, keeping the
//!   connection open (to see which pod a Service connection reached, and that
//!   it stays there).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

use crate::node::pod_env::image_repository;
use crate::node::pod_hook::{PodContext, PodHook, RunningPod};

/// The image repository this hook plays.
pub const ECHO_IMAGE: &str = "sandbox/echo";

/// The hook.
#[derive(Debug, Default)]
pub struct EchoHook;

struct RunningEcho {
    tasks: Vec<tokio::task::JoinHandle<()>>,
    // Dropping the sender ends every open connection, as a container's end would.
    _stop: tokio::sync::watch::Sender<()>,
}

#[async_trait::async_trait]
impl PodHook for EchoHook {
    fn handles(&self, image: &str) -> bool {
        image_repository(image) == ECHO_IMAGE
    }

    async fn start(&self, ctx: PodContext) -> Result<Box<dyn RunningPod>> {
        let name = ctx.pod.metadata.name.clone().unwrap_or_default();
        let mut tasks = Vec::new();
        let (stop, stopped) = tokio::sync::watch::channel(());
        for port in ctx.container.ports.iter().flatten() {
            let port = u16::try_from(port.container_port).context("containerPort out of range")?;
            let addr = SocketAddr::from((ctx.ip, port));
            let listener = TcpListener::bind(addr)
                .await
                .with_context(|| format!("echo: binding {addr}"))?;
            let name = name.clone();
            let not_ready = ctx.pod_dir.join("not-ready");
            let stopped = stopped.clone();
            tasks.push(tokio::spawn(async move {
                while let Ok((stream, _)) = listener.accept().await {
                    let mut stopped = stopped.clone();
                    let conversation = answer(stream, name.clone(), not_ready.clone());
                    tokio::spawn(async move {
                        tokio::select! {
                            () = conversation => {}
                            _ = stopped.changed() => {}
                        }
                    });
                }
            }));
        }
        Ok(Box::new(RunningEcho { tasks, _stop: stop }))
    }
}

async fn answer(stream: TcpStream, name: String, not_ready: PathBuf) {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    let Ok(Some(first)) = lines.next_line().await else {
        return;
    };
    if first.starts_with("GET ") && first.ends_with("HTTP/1.1") {
        let status = if not_ready.exists() {
            "503 Service Unavailable"
        } else {
            "200 OK"
        };
        let response = format!(
            "HTTP/1.1 {status}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{name}",
            name.len()
        );
        let _ = write.write_all(response.as_bytes()).await;
        return;
    }
    let mut line = first;
    loop {
        if write
            .write_all(format!("{name} {line}\n").as_bytes())
            .await
            .is_err()
        {
            return;
        }
        match tokio::time::timeout(Duration::from_secs(600), lines.next_line()).await {
            Ok(Ok(Some(next))) => line = next,
            _ => return,
        }
    }
}

#[async_trait::async_trait]
impl RunningPod for RunningEcho {
    async fn stop(self: Box<Self>, _grace: Duration) {
        for task in self.tasks {
            task.abort();
        }
    }
}
