//! A plain-HTTP/1.1 listener for an admin port (probes, `/metrics`) that a
//! hostile or broken peer on the pod network cannot take down:
//!
//! * the [`crate::connections`] table caps connections in total and per
//!   peer; when full, the oldest idle connection of the biggest peer makes
//!   room, so the kubelet's probe gets through a flood of idle connections,
//!   even one from its own address;
//! * a connection with no request in flight for `idle_timeout` is closed,
//!   which also covers one that never sends its first byte;
//! * request headers must be complete within `header_read_timeout` of their
//!   first byte (a half-sent request);
//! * on shutdown it stops accepting, closes idle connections at once and
//!   gives in-flight requests `shutdown_grace`, never more.

use std::convert::Infallible;
use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

use crate::connections::{Activity, EvictReason, Joined, RefuseReason, Table};

/// Limits of an admin listener.
#[derive(Debug, Clone, Copy)]
pub struct PlainLimits {
    /// Request headers must arrive within this time of their first byte.
    pub header_read_timeout: Duration,
    /// A connection with no request in flight for this long is closed
    /// (including one that never sends a byte).
    pub idle_timeout: Duration,
    /// Most connections open at once.
    pub max_connections: usize,
    /// Most connections from one IP address.
    pub max_connections_per_peer: usize,
    /// How long in-flight requests may finish after shutdown.
    pub shutdown_grace: Duration,
}

impl Default for PlainLimits {
    /// For the kubelet and a scraper, with one short request each (the
    /// webhook's health port has the same).
    fn default() -> Self {
        PlainLimits {
            header_read_timeout: Duration::from_secs(2),
            idle_timeout: Duration::from_secs(5),
            max_connections: 64,
            max_connections_per_peer: 16,
            shutdown_grace: Duration::from_secs(2),
        }
    }
}

/// What the listener reports about connections it dropped (metrics).
pub trait ConnectionEvents: Send + Sync + 'static {
    /// A new connection was closed at once.
    fn refused(&self, reason: RefuseReason);
    /// An idle connection was closed to make room.
    fn evicted(&self, reason: EvictReason);
    /// A connection was closed by the idle timeout.
    fn idle_closed(&self);
}

/// Serves `app` on `tcp` until `shutdown` resolves, then stops accepting,
/// asks every connection to close and returns within
/// `limits.shutdown_grace` (plus the close of idle connections).
pub async fn serve(
    tcp: TcpListener,
    app: Router,
    limits: PlainLimits,
    events: Arc<dyn ConnectionEvents>,
    shutdown: impl Future<Output = ()>,
) {
    let table = Arc::new(Table::new(
        limits.max_connections,
        limits.max_connections_per_peer,
    ));
    let mut shutdown = pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = tcp.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "admin listener: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let (id, activity, close) = match table.join(peer.ip()) {
            Joined::Refused(reason) => {
                events.refused(reason);
                drop(stream);
                continue;
            }
            Joined::Accepted {
                id,
                activity,
                close,
                evicted,
            } => {
                if let Some(reason) = evicted {
                    events.evicted(reason);
                }
                (id, activity, close)
            }
        };
        let (table, app, events) = (table.clone(), app.clone(), events.clone());
        tokio::spawn(async move {
            serve_connection(stream, app, limits, &activity, &close, &*events).await;
            table.leave(id);
        });
    }
    drop(tcp);
    if !table.close_all_and_wait(limits.shutdown_grace).await {
        tracing::warn!("admin listener: shutdown grace over; closing remaining connections");
    }
}

async fn serve_connection(
    stream: TcpStream,
    app: Router,
    limits: PlainLimits,
    activity: &Arc<Activity>,
    close: &Notify,
    events: &dyn ConnectionEvents,
) {
    let _ = stream.set_nodelay(true);
    let tracker = activity.clone();
    let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
        let request = tracker.begin();
        let mut app = app.clone();
        async move {
            let response = tower::Service::call(&mut app, req).await;
            drop(request);
            Ok::<_, Infallible>(response.unwrap_or_else(|never| match never {}))
        }
    });
    let mut conn = pin!(
        hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout)
            .keep_alive(true)
            .serve_connection(TokioIo::new(stream), service)
    );
    loop {
        let idle_deadline = activity
            .idle_since()
            .map(|since| since + limits.idle_timeout);
        let check_again = idle_deadline.unwrap_or_else(|| Instant::now() + Duration::from_secs(1));
        tokio::select! {
            done = conn.as_mut() => {
                if let Err(e) = done {
                    tracing::debug!(error = %e, "admin connection ended with an error");
                }
                return;
            }
            () = close.notified() => {
                conn.as_mut().graceful_shutdown();
                break;
            }
            () = tokio::time::sleep_until(check_again.into()) => {
                if idle_deadline.is_some_and(|d| Instant::now() >= d)
                    && activity.idle_since().is_some()
                {
                    events.idle_closed();
                    conn.as_mut().graceful_shutdown();
                    break;
                }
            }
        }
    }
    // An idle connection closes at once; one with a request in flight gets
    // the grace to answer it.
    let grace = if activity.idle_since().is_some() {
        Duration::from_secs(1)
    } else {
        limits.shutdown_grace
    };
    let _ = tokio::time::timeout(grace, conn).await;
}
