//! What a load run records: per-second samples, per-client events and
//! messages, and the publisher's confirmations.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// Something that happened to one client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientEventKind {
    /// CONNACK accepted.
    Connected {
        /// `session_present` of the CONNACK.
        session_present: bool,
        /// Node the broker side says the client landed on, when known.
        node: Option<String>,
    },
    /// An established connection ended (eviction, takeover, network).
    Disconnected {
        /// Why, as the client library reports it.
        reason: String,
    },
    /// CONNACK refused (e.g. 0x9C / rc 3 from an evacuating node).
    Refused {
        /// Return code.
        reason: String,
    },
    /// TCP connect or handshake failed.
    ConnectFailed {
        /// Error.
        reason: String,
    },
}

/// A timestamped client event; `at` counts from the start of the run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientEvent {
    /// Time since the run started.
    pub at: Duration,
    /// What happened.
    pub kind: ClientEventKind,
}

/// Everything recorded for one client.
#[derive(Debug, Clone, Default)]
pub struct ClientLog {
    /// Client id.
    pub client_id: String,
    /// Events in order.
    pub events: Vec<ClientEvent>,
    /// Distinct message sequence numbers received.
    pub received: BTreeSet<u64>,
    /// Redeliveries of an already received sequence number.
    pub duplicates: u64,
}

impl ClientLog {
    /// Number of established connections that ended.
    pub fn disconnects(&self) -> usize {
        self.events
            .iter()
            .filter(|e| matches!(e.kind, ClientEventKind::Disconnected { .. }))
            .count()
    }

    /// `session_present` of every connection after the first.
    pub fn reconnect_session_flags(&self) -> Vec<bool> {
        self.events
            .iter()
            .filter_map(|e| match e.kind {
                ClientEventKind::Connected {
                    session_present, ..
                } => Some(session_present),
                _ => None,
            })
            .skip(1)
            .collect()
    }

    /// Whether the client's latest event is an accepted connection.
    pub fn is_connected(&self) -> bool {
        self.events
            .iter()
            .rev()
            .find(|e| {
                matches!(
                    e.kind,
                    ClientEventKind::Connected { .. } | ClientEventKind::Disconnected { .. }
                )
            })
            .is_some_and(|e| matches!(e.kind, ClientEventKind::Connected { .. }))
    }
}

/// One per-second sample.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    /// Time since the run started.
    pub at: Duration,
    /// Connected clients per node, as the broker side reports them.
    pub per_node: BTreeMap<String, u64>,
    /// Clients connected as the clients themselves see it.
    pub clients_connected: u64,
}

/// The result of a run.
#[derive(Debug, Clone, Default)]
pub struct LoadReport {
    /// Number of subscriber clients.
    pub clients: usize,
    /// Wall time of the run.
    pub duration: Duration,
    /// Per-second samples.
    pub samples: Vec<Sample>,
    /// Per-client logs, index = client number.
    pub client_logs: Vec<ClientLog>,
    /// Sequence numbers the broker acknowledged (PUBACK), per client.
    pub confirmed: Vec<BTreeSet<u64>>,
    /// Publish requests issued.
    pub published: u64,
    /// Publishes still unacknowledged when the run ended.
    pub unconfirmed: u64,
    /// The publisher's own connections: a publisher whose session the broker
    /// lost drops its unacknowledged publishes (MQTT 5, 4.1: a client with no
    /// session present discards the session state it kept).
    pub publisher: ClientLog,
}

impl LoadReport {
    /// Acknowledged messages that never reached their subscriber: (client, seq).
    pub fn lost(&self) -> Vec<(String, u64)> {
        let mut out = Vec::new();
        for (log, confirmed) in self.client_logs.iter().zip(&self.confirmed) {
            for seq in confirmed.difference(&log.received) {
                out.push((log.client_id.clone(), *seq));
            }
        }
        out
    }

    /// Acknowledged messages in total.
    pub fn confirmed_total(&self) -> u64 {
        self.confirmed.iter().map(|s| s.len() as u64).sum()
    }

    /// Distinct messages received in total.
    pub fn received_total(&self) -> u64 {
        self.client_logs
            .iter()
            .map(|l| l.received.len() as u64)
            .sum()
    }
}
