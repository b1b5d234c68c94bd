//! One MQTT connection on a simulated node: CONNECT handling, keep-alive,
//! subscribe/publish/ack, and what the cluster tells it (deliveries,
//! eviction, takeover).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, timeout_at};

use super::wire::{self, Incoming, Outgoing, WireError};
use crate::cluster::{BrokerCluster, ConnAckSent, ConnectOutcome};
use crate::faults::Faults;
use crate::session::{Message, MqttVersion, ToConnection};
use crate::version::BrokerVersion;

/// Largest packet accepted (EMQX default `mqtt.max_packet_size` is 1 MB).
pub const MAX_PACKET: usize = 1024 * 1024;
/// Time a client has to send CONNECT (EMQX `idle_timeout`, 15 s).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

static NEXT_CONN: AtomicU64 = AtomicU64::new(1);

/// EMQX's `mqtt.max_inflight` default (`apps/emqx/src/emqx_schema.erl`,
/// v5.8.9; 4.4's `zone.external.max_inflight` likewise 32).
pub const MAX_INFLIGHT: u16 = 32;

/// What a node's MQTT channel offers clients, by broker version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caps {
    /// The inflight window's limit (`mqtt.max_inflight`).
    pub max_inflight: u16,
    /// Whether an MQTT 5 CONNACK says `Receive-Maximum`.
    pub receive_maximum_in_connack: bool,
}

impl Caps {
    /// The defaults of `version`.
    pub fn of(version: &BrokerVersion) -> Caps {
        Caps {
            max_inflight: MAX_INFLIGHT,
            receive_maximum_in_connack: version.sends_receive_maximum(),
        }
    }

    /// The session's inflight window for a client asking `asked` (MQTT 5
    /// `Receive-Maximum`): `receive_maximum/2` in `emqx_channel.erl`
    /// (v5.8.9, 4.4.19): the smaller of the two, `max_inflight` when the
    /// client names none. A client's 0 is a protocol error EMQX leaves to be
    /// caught later; here it gets a window of one rather than none.
    pub fn window(&self, asked: Option<u16>) -> u16 {
        asked
            .unwrap_or(self.max_inflight)
            .min(self.max_inflight)
            .max(1)
    }
}

/// Why a connection ended.
#[derive(Debug, thiserror::Error)]
pub enum ChannelEnd {
    /// Socket error.
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    /// Bad bytes.
    #[error(transparent)]
    Wire(#[from] WireError),
    /// No CONNECT in time or keep-alive expired.
    #[error("timeout")]
    Timeout,
    /// Peer closed, or the node closed it on purpose.
    #[error("closed")]
    Closed,
}

struct Conn {
    stream: TcpStream,
    version: MqttVersion,
    inbuf: BytesMut,
    outbuf: BytesMut,
}

impl Conn {
    async fn send(&mut self, packet: Outgoing) -> Result<(), ChannelEnd> {
        self.outbuf.clear();
        wire::write(self.version, packet, &mut self.outbuf)?;
        if !self.outbuf.is_empty() {
            self.stream.write_all(&self.outbuf).await?;
        }
        Ok(())
    }
}

/// Serves one accepted TCP connection until it ends.
pub async fn serve(
    stream: TcpStream,
    node: String,
    cluster: Arc<BrokerCluster>,
    faults: Arc<Faults>,
    caps: Caps,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), ChannelEnd> {
    let mut stream = stream;
    let _ = stream.set_nodelay(true);
    let mut inbuf = BytesMut::with_capacity(512);
    let deadline = Instant::now() + CONNECT_TIMEOUT;
    let (version, connect) = loop {
        match wire::read_connect(&mut inbuf, MAX_PACKET) {
            Ok(Some(found)) => break found,
            Ok(None) => {}
            Err(WireError::ProtocolLevel(_)) => {
                let mut out = BytesMut::new();
                wire::write(MqttVersion::V311, Outgoing::ConnAckBadProtocol, &mut out)?;
                cluster.count_connack(&node, ConnAckSent::Refused);
                stream.write_all(&out).await?;
                return Err(ChannelEnd::Closed);
            }
            Err(e) => return Err(e.into()),
        }
        let n = timeout_at(deadline, stream.read_buf(&mut inbuf))
            .await
            .map_err(|_| ChannelEnd::Timeout)??;
        if n == 0 {
            return Err(ChannelEnd::Closed);
        }
    };
    let Incoming::Connect {
        client_id,
        clean_start,
        keep_alive,
        expiry,
        receive_maximum,
    } = connect
    else {
        return Err(WireError::NotConnect.into());
    };
    let mut conn = Conn {
        stream,
        version,
        inbuf,
        outbuf: BytesMut::with_capacity(256),
    };
    // EMQX assigns an id to an empty client id with clean start; the load never
    // does that, so an empty id is simply named after the connection.
    let conn_id = NEXT_CONN.fetch_add(1, Ordering::Relaxed);
    let client_id = if client_id.is_empty() {
        format!("sim-assigned-{conn_id}")
    } else {
        client_id
    };
    if faults.refuse_connect() {
        // Authentication runs before any session is opened
        // (`emqx_channel.erl` `process_connect/2` after `authenticate/2`).
        cluster.count_connack(&node, ConnAckSent::BadCredentials);
        conn.send(Outgoing::ConnAckBadCredentials).await?;
        let _ = conn.stream.shutdown().await;
        return Err(ChannelEnd::Closed);
    }
    let window = caps.window(receive_maximum);
    let (tx, mut rx) = mpsc::unbounded_channel();
    let outcome = cluster.connect(
        &node,
        &client_id,
        clean_start,
        expiry,
        version,
        window,
        conn_id,
        tx,
    );
    let redeliver = match outcome {
        ConnectOutcome::Refused { server_reference } => {
            cluster.count_connack(&node, ConnAckSent::Refused);
            conn.send(Outgoing::ConnAckUseAnotherServer { server_reference })
                .await?;
            let _ = conn.stream.shutdown().await;
            return Err(ChannelEnd::Closed);
        }
        ConnectOutcome::Accepted {
            session_present,
            redeliver,
        } => {
            let connack = Outgoing::ConnAckAccepted {
                session_present,
                receive_maximum: caps.receive_maximum_in_connack.then_some(window),
            };
            if let Err(e) = conn.send(connack).await {
                cluster.disconnected(&node, &client_id, conn_id);
                return Err(e);
            }
            cluster.count_connack(&node, ConnAckSent::Success);
            redeliver
        }
    };
    let drop_at = faults
        .drop_after_connack()
        .map(|after| Instant::now() + after);
    let result = run(
        &mut conn,
        &node,
        &cluster,
        &client_id,
        conn_id,
        keep_alive,
        redeliver,
        drop_at,
        &mut rx,
        &mut shutdown,
    )
    .await;
    cluster.disconnected(&node, &client_id, conn_id);
    result
}

/// Packet ids of the QoS 1 deliveries this connection sent, to the session's
/// queue ids. The session keeps the window (`Session::admit`): the cluster
/// sends a connection no more than it takes.
struct Inflight {
    next_pkid: u16,
    by_pkid: HashMap<u16, u64>,
}

impl Inflight {
    fn assign(&mut self, id: u64) -> u16 {
        loop {
            self.next_pkid = self.next_pkid.wrapping_add(1).max(1);
            if !self.by_pkid.contains_key(&self.next_pkid) {
                self.by_pkid.insert(self.next_pkid, id);
                return self.next_pkid;
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn run(
    conn: &mut Conn,
    node: &str,
    cluster: &BrokerCluster,
    client_id: &str,
    conn_id: u64,
    keep_alive: u16,
    redeliver: Vec<(u64, Message, bool)>,
    drop_at: Option<Instant>,
    rx: &mut mpsc::UnboundedReceiver<ToConnection>,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<(), ChannelEnd> {
    let mut inflight = Inflight {
        next_pkid: 0,
        by_pkid: HashMap::new(),
    };
    for (id, m, dup) in redeliver {
        deliver(conn, &mut inflight, id, m, dup).await?;
    }
    // MQTT: the server closes after 1.5 × keep-alive without a packet.
    let idle = (keep_alive > 0).then(|| Duration::from_millis(u64::from(keep_alive) * 1500));
    let mut last_seen = Instant::now();
    loop {
        // Handle every complete packet already buffered.
        while let Some(packet) = wire::read(conn.version, &mut conn.inbuf, MAX_PACKET)? {
            last_seen = Instant::now();
            match packet {
                Incoming::Publish {
                    topic,
                    payload,
                    qos,
                    pkid,
                } => {
                    if qos > 1 {
                        return refuse(conn, 0x9B).await;
                    }
                    cluster.publish(
                        node,
                        &Message {
                            topic,
                            payload,
                            qos,
                        },
                    );
                    if qos == 1 {
                        conn.send(Outgoing::PubAck { pkid }).await?;
                    }
                }
                Incoming::PubAck { pkid } => {
                    if let Some(id) = inflight.by_pkid.remove(&pkid) {
                        cluster.ack(client_id, conn_id, id);
                    }
                }
                Incoming::Subscribe { pkid, filters } => {
                    let codes = cluster.subscribe(client_id, conn_id, &filters);
                    conn.send(Outgoing::SubAck { pkid, codes }).await?;
                }
                Incoming::Unsubscribe { pkid, filters } => {
                    cluster.unsubscribe(client_id, &filters);
                    let count = filters.len();
                    conn.send(Outgoing::UnsubAck { pkid, count }).await?;
                }
                Incoming::PingReq => conn.send(Outgoing::PingResp).await?,
                Incoming::Disconnect => return Ok(()),
                Incoming::Connect { .. } | Incoming::Unsupported(_) => {
                    return refuse(conn, 0x82).await;
                }
            }
        }
        let idle_deadline = idle.map(|d| last_seen + d);
        tokio::select! {
            read = conn.stream.read_buf(&mut conn.inbuf) => {
                if read? == 0 {
                    return Err(ChannelEnd::Closed);
                }
            }
            msg = rx.recv() => match msg {
                Some(ToConnection::Deliver { id, message }) => {
                    deliver(conn, &mut inflight, id, message, false).await?;
                }
                Some(ToConnection::Evict { server_reference }) => {
                    conn.send(Outgoing::Disconnect { reason: 0x9C, server_reference }).await?;
                    let _ = conn.stream.shutdown().await;
                    return Err(ChannelEnd::Closed);
                }
                Some(ToConnection::TakenOver) => {
                    conn.send(Outgoing::Disconnect { reason: 0x8E, server_reference: None }).await?;
                    let _ = conn.stream.shutdown().await;
                    return Err(ChannelEnd::Closed);
                }
                Some(ToConnection::Close) | None => return Err(ChannelEnd::Closed),
            },
            _ = sleep_until_opt(idle_deadline) => return Err(ChannelEnd::Timeout),
            // The fault: the socket closes without a DISCONNECT.
            _ = sleep_until_opt(drop_at) => {
                let _ = conn.stream.shutdown().await;
                return Err(ChannelEnd::Closed);
            }
            _ = shutdown.changed() => return Err(ChannelEnd::Closed),
        }
    }
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

async fn refuse(conn: &mut Conn, reason: u8) -> Result<(), ChannelEnd> {
    conn.send(Outgoing::Disconnect {
        reason,
        server_reference: None,
    })
    .await?;
    let _ = conn.stream.shutdown().await;
    Err(ChannelEnd::Closed)
}

async fn deliver(
    conn: &mut Conn,
    inflight: &mut Inflight,
    id: u64,
    message: Message,
    dup: bool,
) -> Result<(), ChannelEnd> {
    let pkid = if message.qos == 1 {
        inflight.assign(id)
    } else {
        0
    };
    conn.send(Outgoing::Publish {
        topic: message.topic,
        payload: message.payload,
        qos: message.qos,
        pkid,
        dup,
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_is_the_smaller_of_the_clients_and_max_inflight() {
        let caps = Caps::of(&BrokerVersion::parse("5.8.9").expect("valid"));
        assert!(caps.receive_maximum_in_connack);
        assert_eq!(caps.window(None), 32);
        assert_eq!(caps.window(Some(2)), 2);
        assert_eq!(caps.window(Some(1000)), 32);
        assert_eq!(caps.window(Some(0)), 1, "a protocol error, not a stall");
        let old = Caps::of(&BrokerVersion::parse("4.4.19").expect("valid"));
        assert!(!old.receive_maximum_in_connack);
        assert_eq!(old.window(None), 32, "4.4 has the same window, unsaid");
    }
}
