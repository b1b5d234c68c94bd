//! The node's HTTP management API (18083 `/api/v5` or 8081 `/api/v4`), served by axum.

pub mod api;
pub mod auth;
pub mod calls;
pub mod configs;
pub mod global_status;
pub mod payload;
pub mod reply;
pub mod route;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::serve::Listener;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use super::faults::Faults;
use api::{ApiContext, handle};

/// A TCP listener that drops new connections while the fault is on.
pub struct FaultyListener {
    inner: TcpListener,
    faults: Arc<Faults>,
}

impl Listener for FaultyListener {
    type Io = TcpStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (TcpStream, SocketAddr) {
        loop {
            match self.inner.accept().await {
                Ok((stream, addr)) => {
                    if self.faults.drop_http() {
                        drop(stream);
                        continue;
                    }
                    let _ = stream.set_nodelay(true);
                    return (stream, addr);
                }
                // Out of descriptors and the like: back off instead of spinning.
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

/// Serves the API until `shutdown` flips; open connections then close gracefully.
pub async fn serve(listener: TcpListener, ctx: ApiContext, mut shutdown: watch::Receiver<bool>) {
    let faults = ctx.faults.clone();
    let app = Router::new().fallback(handle).with_state(ctx);
    let listener = FaultyListener {
        inner: listener,
        faults,
    };
    let result = axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let _ = shutdown.changed().await;
        })
        .await;
    if let Err(e) = result {
        tracing::warn!(error = %e, "EMQX API server ended");
    }
}
