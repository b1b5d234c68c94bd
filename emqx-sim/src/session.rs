//! MQTT sessions and the messages a connection task receives from the cluster.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc::UnboundedSender;
use tokio::time::Instant;

/// MQTT protocol generation of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MqttVersion {
    /// MQTT 3.1.1 (protocol level 4).
    V311,
    /// MQTT 5.
    V5,
}

/// A message held for a subscriber.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Topic it was published to.
    pub topic: String,
    /// Payload.
    pub payload: Bytes,
    /// Delivery QoS (0 or 1).
    pub qos: u8,
}

/// What the cluster tells a connection task.
#[derive(Debug, Clone)]
pub enum ToConnection {
    /// Deliver a message; `id` identifies it in the session's queue (QoS 1).
    Deliver {
        /// Queue id, acknowledged with [`super::cluster::BrokerCluster::ack`].
        id: u64,
        /// The message.
        message: Message,
    },
    /// Evacuation: MQTT 5 DISCONNECT 0x9C (with `Server-Reference` if set), MQTT 3 close.
    Evict {
        /// `Server-Reference` property, only when configured.
        server_reference: Option<String>,
    },
    /// Another connection took the session: MQTT 5 DISCONNECT 0x8E, MQTT 3 close.
    TakenOver,
    /// The node stops: close the socket without a packet.
    Close,
}

/// The live connection currently owning a session.
#[derive(Debug, Clone)]
pub struct Attachment {
    /// Unique connection id.
    pub conn_id: u64,
    /// Channel to the connection task.
    pub tx: UnboundedSender<ToConnection>,
    /// Protocol of the connection.
    pub version: MqttVersion,
}

/// EMQX's `mqtt.max_mqueue_len` default (`apps/emqx/src/emqx_schema.erl`,
/// v5.8.9; 4.4's `zone.external.max_mqueue_len` likewise 1,000).
pub const MAX_MQUEUE_LEN: usize = 1000;

/// Session state, owned by one node of the cluster. Like EMQX's
/// (`emqx_session_mem.erl`, v5.8.9): QoS 1 messages sent and not yet
/// acknowledged are *inflight*, at most `window` of them while a client is
/// connected; the rest wait in the *message queue*, at most
/// [`MAX_MQUEUE_LEN`], the oldest dropped when a new one would exceed it
/// (`emqx_mqueue.erl` `in/2`).
#[derive(Debug)]
pub struct Session {
    /// Node that owns the session (counted in its `connections`).
    pub node: String,
    /// Connected client, if any (counted in `live_connections`).
    pub attachment: Option<Attachment>,
    /// Topic filters and granted QoS.
    pub subscriptions: BTreeMap<String, u8>,
    /// QoS 1 messages not yet acknowledged, by queue id: the inflight ones
    /// and the message queue.
    pub queue: BTreeMap<u64, Message>,
    /// Ids in `queue` sent to a connection and not acknowledged.
    pub inflight: BTreeSet<u64>,
    /// The inflight window of the last connection (its `Receive-Maximum`
    /// and `max_inflight`, the smaller).
    pub window: u16,
    /// Session expiry after disconnect.
    pub expiry: Duration,
    /// When the client disconnected, for expiry.
    pub disconnected_at: Option<Instant>,
}

impl Session {
    /// Messages in the message queue (not inflight).
    pub fn mqueue_len(&self) -> usize {
        self.queue.len() - self.inflight.len()
    }

    /// The oldest queued message that is not inflight, to send next.
    pub fn next_queued(&self) -> Option<u64> {
        self.queue
            .keys()
            .find(|id| !self.inflight.contains(id))
            .copied()
    }

    /// Takes `id` into the window when a client is attached and the window
    /// has room: whether it is to be sent now.
    pub fn admit(&mut self, id: u64) -> bool {
        if self.attachment.is_some() && self.inflight.len() < usize::from(self.window) {
            self.inflight.insert(id);
            true
        } else {
            false
        }
    }

    /// Drops the oldest queued message while the message queue is over its
    /// limit; how many were dropped.
    pub fn drop_overflow(&mut self) -> u64 {
        let mut dropped = 0;
        while self.mqueue_len() > MAX_MQUEUE_LEN {
            let Some(id) = self.next_queued() else {
                break;
            };
            self.queue.remove(&id);
            dropped += 1;
        }
        dropped
    }

    /// Whether the session has expired at `now`.
    pub fn expired(&self, now: Instant) -> bool {
        match self.disconnected_at {
            Some(at) => self.attachment.is_none() && now.duration_since(at) >= self.expiry,
            None => false,
        }
    }
}

/// MQTT topic matching with `+` and `#` wildcards.
pub fn topic_matches(filter: &str, topic: &str) -> bool {
    let mut f = filter.split('/');
    let mut t = topic.split('/');
    loop {
        match (f.next(), t.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards() {
        assert!(topic_matches("a/+/c", "a/b/c"));
        assert!(topic_matches("a/#", "a/b/c"));
        assert!(topic_matches("#", "a"));
        assert!(!topic_matches("a/+", "a/b/c"));
        assert!(!topic_matches("a/b", "a/c"));
        assert!(topic_matches("load/c1", "load/c1"));
    }
}
