//! The publisher: every interval, one QoS 1 message to each subscribed client's
//! topic; tracks which (client, sequence) the broker acknowledged.
//!
//! A PUBACK names only a packet id, so the publisher numbers its publishes
//! itself ([`InFlight`]) and hands them to rumqttc with that id: each PUBACK
//! then confirms exactly the message it answers, however often the
//! connection drops, resends and reconnects in between.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::protocol::{MqttClient, Polled, SessionSettings};
use super::record::{ClientEvent, ClientEventKind};
use super::{Shared, topic_of};

/// Client id of the publisher.
pub const PUBLISHER_ID: &str = "load-publisher";

/// Most publishes unacknowledged at once (and the highest packet id), unless
/// the broker's `Receive-Maximum` allows fewer.
const WINDOW: u16 = 1024;

/// One message for one subscriber: client number, sequence, topic.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Message {
    idx: usize,
    seq: u64,
    topic: String,
}

/// Publishes handed to the client and not yet acknowledged, by packet id.
#[derive(Debug)]
struct InFlight {
    by_pkid: HashMap<u16, Message>,
    last_pkid: u16,
    /// The broker's `Receive-Maximum`, at most [`WINDOW`].
    window: u16,
}

impl InFlight {
    fn new() -> InFlight {
        InFlight {
            by_pkid: HashMap::new(),
            last_pkid: 0,
            window: WINDOW,
        }
    }

    fn has_room(&self) -> bool {
        self.by_pkid.len() < usize::from(self.window)
    }

    /// A free packet id for `message`, or `None` when the window is full.
    fn assign(&mut self, message: Message) -> Option<u16> {
        if !self.has_room() {
            return None;
        }
        loop {
            self.last_pkid = self.last_pkid % WINDOW + 1;
            if let std::collections::hash_map::Entry::Vacant(slot) =
                self.by_pkid.entry(self.last_pkid)
            {
                slot.insert(message);
                return Some(self.last_pkid);
            }
        }
    }

    /// The message a PUBACK for `pkid` acknowledges, if one waits for it.
    fn acknowledge(&mut self, pkid: u16) -> Option<Message> {
        self.by_pkid.remove(&pkid)
    }

    /// Every message still unacknowledged, oldest packet first: a broker
    /// that answers `session_present=0` has none of them, and rumqttc drops
    /// what it held for the old session, so they must be sent again.
    fn take_all(&mut self) -> Vec<Message> {
        let mut all: Vec<(u16, Message)> = self.by_pkid.drain().collect();
        let last = self.last_pkid;
        // Ids were handed out cyclically after `last`: the oldest comes first.
        all.sort_by_key(|(pkid, _)| pkid.wrapping_sub(last).wrapping_sub(1) % WINDOW);
        all.into_iter().map(|(_, m)| m).collect()
    }
}

/// Publishes until `stop_publishing` flips, then keeps the connection until
/// every publish is acknowledged, `stop` flips, or `deadline` passes.
pub async fn run(
    shared: Arc<Shared>,
    mut stop_publishing: watch::Receiver<bool>,
    mut stop: watch::Receiver<bool>,
    deadline: Instant,
) {
    let settings = SessionSettings {
        clean_start: false,
        ..shared.config.session
    };
    let (client_tx, mut client_rx) = mpsc::channel::<Message>(256);
    let loop_shared = shared.clone();
    let mut loop_stop = stop.clone();
    let event_loop = tokio::spawn(async move {
        let shared = loop_shared;
        let mut attempt = 0u32;
        let Some(addr) = shared.publisher_endpoints.pick() else {
            return;
        };
        let mut client = MqttClient::new(PUBLISHER_ID, addr, settings, usize::from(WINDOW));
        let mut in_flight = InFlight::new();
        // Messages not yet handed to the client, oldest first.
        let mut backlog: VecDeque<Message> = VecDeque::new();
        let mut publishing_done = false;
        let mut connected = false;
        loop {
            // Only a connected client is handed publishes: a reconnect
            // answered `session_present=0` discards what the client holds.
            while connected && in_flight.has_room() {
                let Some(message) = backlog.pop_front() else {
                    break;
                };
                let payload = message.seq.to_string();
                let topic = message.topic.clone();
                if let Some(pkid) = in_flight.assign(message) {
                    client.publish_with_pkid(&topic, payload.as_bytes(), pkid);
                }
            }
            tokio::select! {
                polled = client.poll() => match polled {
                    Polled::ConnAck { session_present, receive_maximum } => {
                        attempt = 0;
                        connected = true;
                        in_flight.window = receive_maximum.unwrap_or(WINDOW).clamp(1, WINDOW);
                        if !session_present {
                            for message in in_flight.take_all().into_iter().rev() {
                                backlog.push_front(message);
                            }
                        }
                        let node = shared.sampler.locate(PUBLISHER_ID);
                        shared.record_publisher(ClientEventKind::Connected { session_present, node });
                    }
                    Polled::Acked { pkid } => {
                        if let Some(m) = in_flight.acknowledge(pkid) {
                            shared.confirm(m.idx, m.seq);
                        }
                    }
                    Polled::Refused(reason) | Polled::Failed(reason) => {
                        shared.record_publisher(if connected {
                            ClientEventKind::Disconnected { reason }
                        } else {
                            ClientEventKind::ConnectFailed { reason }
                        });
                        connected = false;
                        let delay = shared.config.backoff.delay(attempt, &mut rand::rng());
                        attempt = attempt.saturating_add(1);
                        tokio::time::sleep(delay).await;
                        if let Some(addr) = shared.publisher_endpoints.pick() {
                            client.retarget(PUBLISHER_ID, addr, settings);
                        }
                    }
                    _ => {}
                },
                req = client_rx.recv(), if backlog.len() < usize::from(WINDOW) && !publishing_done => match req {
                    Some(m) => backlog.push_back(m),
                    None => publishing_done = true,
                },
                _ = loop_stop.changed() => return,
                _ = tokio::time::sleep_until(deadline) => return,
            }
            let unacknowledged = in_flight.by_pkid.len() + backlog.len();
            shared.set_publisher_drained(publishing_done && unacknowledged == 0);
            shared.set_unconfirmed(unacknowledged as u64);
        }
    });

    let mut seq: u64 = 0;
    let interval = shared.config.publish_interval;
    loop {
        if *stop_publishing.borrow() || *stop.borrow() || Instant::now() >= deadline {
            break;
        }
        seq += 1;
        for idx in 0..shared.config.clients {
            if !shared.is_subscribed(idx) {
                continue;
            }
            shared.count_published();
            let message = Message {
                idx,
                seq,
                topic: topic_of(&shared.client_id(idx)),
            };
            if client_tx.send(message).await.is_err() {
                return;
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = stop_publishing.changed() => {}
            _ = stop.changed() => {}
        }
    }
    drop(client_tx);
    let _ = event_loop.await;
}

impl Shared {
    fn record_publisher(&self, kind: ClientEventKind) {
        let at = self.started.elapsed();
        self.publisher_log
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .events
            .push(ClientEvent { at, kind });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(seq: u64) -> Message {
        Message {
            idx: 0,
            seq,
            topic: "load/load-0".into(),
        }
    }

    #[test]
    fn ids_are_never_reused_before_their_puback_and_stay_in_the_window() {
        let mut f = InFlight::new();
        f.window = 3;
        assert_eq!(f.assign(message(1)), Some(1));
        assert_eq!(f.assign(message(2)), Some(2));
        assert_eq!(f.assign(message(3)), Some(3));
        assert_eq!(f.assign(message(4)), None, "the broker's window is full");
        assert_eq!(f.acknowledge(2).map(|m| m.seq), Some(2));
        assert_eq!(f.acknowledge(2), None, "a second PUBACK confirms nothing");
        assert_eq!(f.assign(message(4)), Some(4));
        // Around the end of the id space, ids still in flight are skipped.
        f.window = WINDOW;
        f.last_pkid = WINDOW - 1;
        assert_eq!(f.assign(message(5)), Some(WINDOW));
        assert_eq!(f.assign(message(6)), Some(2), "1 and 3 are in flight");
        assert_eq!(f.acknowledge(1).map(|m| m.seq), Some(1));
        assert_eq!(f.acknowledge(2).map(|m| m.seq), Some(6));
    }

    #[test]
    fn a_lost_session_gives_back_every_message_oldest_first() {
        let mut f = InFlight::new();
        f.last_pkid = WINDOW - 2;
        for seq in 1..=4 {
            f.assign(message(seq));
        }
        assert_eq!(f.acknowledge(WINDOW).map(|m| m.seq), Some(2));
        let again: Vec<u64> = f.take_all().into_iter().map(|m| m.seq).collect();
        assert_eq!(again, vec![1, 3, 4]);
        assert!(f.by_pkid.is_empty());
        assert_eq!(
            f.assign(message(5)),
            Some(3),
            "ids continue, none reused early"
        );
    }
}
