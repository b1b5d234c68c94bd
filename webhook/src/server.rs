//! The accept loop of one listener (the TLS review port or the plain-HTTP
//! health port): the connection table ([`crate::connections`]), a handshake
//! deadline, HTTP/1.1 or h2 as ALPN negotiated, an idle timeout that also
//! covers connections that never send a byte, and graceful shutdown.
//!
//! Why not hyper-util's auto (h1/h2) builder: it detects the version by
//! reading the first bytes without any timer, so a peer that completes the
//! handshake and sends nothing holds the connection (and its slot) forever.
//! Here the protocol comes from ALPN, hyper's h1 header timeout runs from
//! the first byte, and every connection has an idle timer of our own.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio_rustls::TlsAcceptor;

use crate::connections::{Activity, Joined, Table};
use crate::metrics::{HandshakeFailure, ListenerName, Metrics};

/// Connection-level limits of one listener.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// A TLS handshake not finished in this time is dropped.
    pub handshake_timeout: Duration,
    /// HTTP/1.1 request headers must arrive within this time of their first
    /// byte (slowloris).
    pub header_read_timeout: Duration,
    /// A connection with no request in flight for this long is closed: one
    /// that never sends a request, an h1 keep-alive or an h2 connection
    /// between requests (h2 gets a GOAWAY).
    pub idle_timeout: Duration,
    /// Most connections open at once; see [`crate::connections`] for who
    /// makes room when full.
    pub max_connections: usize,
    /// Most connections from one IP address.
    pub max_connections_per_peer: usize,
    /// How long in-flight requests may finish after SIGTERM.
    pub shutdown_grace: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            handshake_timeout: Duration::from_secs(2),
            header_read_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(15),
            max_connections: 1024,
            max_connections_per_peer: 256,
            shutdown_grace: Duration::from_secs(20),
        }
    }
}

impl ConnectionLimits {
    /// Limits for the health/metrics port: the kubelet and a scraper, with
    /// one short request each.
    pub fn health() -> Self {
        Self {
            handshake_timeout: Duration::from_secs(2),
            header_read_timeout: Duration::from_secs(2),
            idle_timeout: Duration::from_secs(5),
            max_connections: 64,
            max_connections_per_peer: 16,
            shutdown_grace: Duration::from_secs(2),
        }
    }
}

/// How bytes are carried on a listener.
#[derive(Clone)]
pub enum Transport {
    /// TLS; h2 when ALPN says so, else HTTP/1.1.
    Tls(Arc<rustls::ServerConfig>),
    /// Plain HTTP/1.1 (the health port).
    Plain,
}

/// One listener: its socket, what it serves and its limits.
pub struct Listener {
    /// The metric label.
    pub name: ListenerName,
    /// The bound socket.
    pub tcp: TcpListener,
    /// TLS or plain.
    pub transport: Transport,
    /// The routes.
    pub app: Router,
    /// The limits.
    pub limits: ConnectionLimits,
}

/// A closed connection stays closing at most this long after being asked to
/// close (GOAWAY, or h1 keep-alive off) before it is dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// Serves `listener` until `shutdown` resolves, then stops accepting, asks
/// every connection to close, and waits up to `limits.shutdown_grace` for
/// in-flight requests.
pub async fn serve(listener: Listener, metrics: Arc<Metrics>, shutdown: impl Future<Output = ()>) {
    let Listener {
        name,
        tcp,
        transport,
        app,
        limits,
    } = listener;
    let table = Arc::new(Table::new(
        limits.max_connections,
        limits.max_connections_per_peer,
    ));
    let mut h1 = auto::Builder::new(TokioExecutor::new()).http1_only();
    h1.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .keep_alive(true);
    let mut h2 = auto::Builder::new(TokioExecutor::new()).http2_only();
    h2.http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(64)
        // Detects a peer that went away without closing; the idle timer
        // closes one that is there but sends nothing.
        .keep_alive_interval(Duration::from_secs(20))
        .keep_alive_timeout(Duration::from_secs(10));
    let builders = Arc::new((h1, h2));
    let mut shutdown = pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = tcp.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(listener = name.as_str(), error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let (id, activity, close) = match table.join(peer.ip()) {
            Joined::Refused(reason) => {
                // Counted, not logged: a flood would otherwise flood the log.
                metrics.connection_refused(name, reason);
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
                    metrics.connection_evicted(name, reason);
                }
                (id, activity, close)
            }
        };
        metrics.connection_opened(name);
        let conn = Conn {
            name,
            peer,
            limits,
            activity,
            close,
            metrics: metrics.clone(),
        };
        let (table, transport, app, builders) = (
            table.clone(),
            transport.clone(),
            app.clone(),
            builders.clone(),
        );
        tokio::spawn(async move {
            conn.run(stream, transport, app, &builders).await;
            table.leave(id);
            conn.metrics.connection_closed(name);
        });
    }
    drop(tcp);
    tracing::info!(
        listener = name.as_str(),
        open = table.len(),
        "stopped accepting; draining connections"
    );
    // Closes every connection and waits for them to leave (the table
    // signals when the last one does), at most the grace period.
    if !table.close_all_and_wait(limits.shutdown_grace).await {
        tracing::warn!(
            listener = name.as_str(),
            "shutdown grace period over; closing remaining connections"
        );
    }
}

/// One accepted connection.
struct Conn {
    name: ListenerName,
    peer: SocketAddr,
    limits: ConnectionLimits,
    activity: Arc<Activity>,
    close: Arc<Notify>,
    metrics: Arc<Metrics>,
}

type Builders = (auto::Builder<TokioExecutor>, auto::Builder<TokioExecutor>);

impl Conn {
    async fn run(&self, stream: TcpStream, transport: Transport, app: Router, builders: &Builders) {
        // Without it a small response waits for the peer's delayed ACK (~40 ms).
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(peer = %self.peer, error = %e, "TCP_NODELAY not set");
        }
        match transport {
            Transport::Plain => self.serve_http(stream, false, app, builders).await,
            Transport::Tls(config) => {
                let handshake = tokio::time::timeout(
                    self.limits.handshake_timeout,
                    TlsAcceptor::from(config).accept(stream),
                );
                let tls = tokio::select! {
                    done = handshake => match done {
                        Ok(Ok(tls)) => tls,
                        Ok(Err(e)) => {
                            tracing::debug!(peer = %self.peer, error = %e, "TLS handshake failed");
                            self.metrics.handshake_failed(HandshakeFailure::Error);
                            return;
                        }
                        Err(_) => {
                            self.metrics.handshake_failed(HandshakeFailure::Timeout);
                            return;
                        }
                    },
                    // Evicted while still shaking hands.
                    _ = self.close.notified() => return,
                };
                let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
                self.serve_http(tls, h2, app, builders).await;
            }
        }
    }

    async fn serve_http<I>(&self, io: I, h2: bool, app: Router, builders: &Builders)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let activity = self.activity.clone();
        let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
            let request = activity.begin();
            let mut app = app.clone();
            async move {
                let response = tower::Service::call(&mut app, req).await;
                drop(request);
                Ok::<_, Infallible>(response.unwrap_or_else(|never| match never {}))
            }
        });
        let builder = if h2 { &builders.1 } else { &builders.0 };
        let mut conn = pin!(builder.serve_connection(TokioIo::new(io), service));
        loop {
            let idle_deadline = self
                .activity
                .idle_since()
                .map(|since| since + self.limits.idle_timeout);
            let check_again =
                idle_deadline.unwrap_or_else(|| Instant::now() + Duration::from_secs(1));
            tokio::select! {
                done = conn.as_mut() => {
                    if let Err(e) = done {
                        tracing::debug!(peer = %self.peer, error = %e, "connection ended with an error");
                    }
                    return;
                }
                _ = self.close.notified() => {
                    conn.as_mut().graceful_shutdown();
                    break;
                }
                _ = tokio::time::sleep_until(check_again.into()) => {
                    if idle_deadline.is_some_and(|d| Instant::now() >= d)
                        && self.activity.idle_since().is_some()
                    {
                        self.metrics.connection_idle_closed(self.name);
                        conn.as_mut().graceful_shutdown();
                        break;
                    }
                }
            }
        }
        // Asked to close: an h2 peer gets a GOAWAY and in-flight streams
        // finish; an idle h1 connection closes at once.
        if tokio::time::timeout(CLOSE_GRACE.max(self.busy_grace()), conn)
            .await
            .is_err()
        {
            tracing::debug!(peer = %self.peer, "connection did not close in time; dropped");
        }
    }

    /// A connection asked to close with a request in flight gets the
    /// shutdown grace for it; an idle one only [`CLOSE_GRACE`].
    fn busy_grace(&self) -> Duration {
        if self.activity.idle_since().is_none() {
            self.limits.shutdown_grace
        } else {
            CLOSE_GRACE
        }
    }
}
