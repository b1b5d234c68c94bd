//! The cluster-wide client registry: CONNECT with takeover, subscriptions,
//! routing of PUBLISH to every matching session, acknowledgements, expiry.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use tokio::sync::mpsc::UnboundedSender;
use tokio::time::Instant;

use super::{BrokerCluster, ConnAckSent, ConnectOutcome, State, update_max};
use crate::session::{Attachment, Message, MqttVersion, Session, ToConnection, topic_matches};

impl BrokerCluster {
    /// A CONNECT arriving at `node`. Refused before any session work while the
    /// node evacuates (EMQX hooks `client.connect`, before authentication).
    #[allow(clippy::too_many_arguments)]
    pub fn connect(
        &self,
        node: &str,
        client_id: &str,
        clean_start: bool,
        expiry: Duration,
        version: MqttVersion,
        window: u16,
        conn_id: u64,
        tx: UnboundedSender<ToConnection>,
    ) -> ConnectOutcome {
        let mut s = self.state();
        let Some(member) = s.members.get_mut(node) else {
            return ConnectOutcome::Refused {
                server_reference: None,
            };
        };
        if !member.running {
            return ConnectOutcome::Refused {
                server_reference: None,
            };
        }
        if let Some(e) = &member.evacuation
            && e.state.refuses_connections()
        {
            member.counters.connect_refused += 1;
            let server_reference = if member.server_reference_from_rest {
                e.options.redirect_to.clone()
            } else {
                None
            };
            return ConnectOutcome::Refused { server_reference };
        }
        member.counters.client_connected += 1;
        let attachment = Attachment {
            conn_id,
            tx,
            version,
        };
        let existing = s.sessions.contains_key(client_id);
        if existing && !clean_start {
            let old_node;
            let redeliver;
            {
                let Some(sess) = s.sessions.get_mut(client_id) else {
                    return ConnectOutcome::Refused {
                        server_reference: None,
                    };
                };
                if let Some(old) = sess.attachment.take() {
                    let _ = old.tx.send(ToConnection::TakenOver);
                }
                old_node = std::mem::replace(&mut sess.node, node.to_string());
                sess.attachment = Some(attachment);
                sess.expiry = expiry;
                sess.disconnected_at = None;
                sess.window = window;
                redeliver = replay(sess);
            }
            if let Some(m) = s.members.get_mut(&old_node) {
                m.counters.session_takenover += 1;
            }
            if let Some(m) = s.members.get_mut(node) {
                m.counters.session_resumed += 1;
            }
            update_max(&mut s, node);
            return ConnectOutcome::Accepted {
                session_present: true,
                redeliver,
            };
        }
        if existing && let Some(old) = remove_session(&mut s, client_id) {
            if let Some(a) = old.attachment {
                let _ = a.tx.send(ToConnection::TakenOver);
            }
            if let Some(m) = s.members.get_mut(&old.node) {
                m.counters.session_discarded += 1;
            }
        }
        s.sessions.insert(
            client_id.to_string(),
            Session {
                node: node.to_string(),
                attachment: Some(attachment),
                subscriptions: BTreeMap::new(),
                queue: BTreeMap::new(),
                inflight: BTreeSet::new(),
                window,
                expiry,
                disconnected_at: None,
            },
        );
        if let Some(m) = s.members.get_mut(node) {
            m.counters.session_created += 1;
        }
        update_max(&mut s, node);
        ConnectOutcome::Accepted {
            session_present: false,
            redeliver: Vec::new(),
        }
    }

    /// Counts a CONNACK `node` sent ([`ConnAckSent`]).
    pub fn count_connack(&self, node: &str, connack: ConnAckSent) {
        let mut s = self.state();
        let Some(m) = s.members.get_mut(node) else {
            return;
        };
        let c = &mut m.counters;
        c.connack_sent += 1;
        match connack {
            ConnAckSent::Success => {}
            ConnAckSent::Refused => c.connack_error += 1,
            ConnAckSent::BadCredentials => {
                c.connack_error += 1;
                c.connack_auth_error += 1;
                c.authentication_failure += 1;
            }
        }
    }

    /// The connection `conn_id` of `client_id` ended. A session it no longer
    /// owns (taken over, evicted) is left alone.
    pub fn disconnected(&self, node: &str, client_id: &str, conn_id: u64) {
        let mut s = self.state();
        let owned = s
            .sessions
            .get(client_id)
            .and_then(|sess| sess.attachment.as_ref())
            .is_some_and(|a| a.conn_id == conn_id);
        if !owned {
            return;
        }
        if let Some(m) = s.members.get_mut(node) {
            m.counters.client_disconnected += 1;
        }
        detach(&mut s, client_id, Instant::now());
    }

    /// Adds subscriptions; returns granted QoS per filter (at most 1).
    pub fn subscribe(&self, client_id: &str, conn_id: u64, filters: &[(String, u8)]) -> Vec<u8> {
        let mut s = self.state();
        let owned = s
            .sessions
            .get(client_id)
            .and_then(|sess| sess.attachment.as_ref())
            .is_some_and(|a| a.conn_id == conn_id);
        let mut granted = Vec::with_capacity(filters.len());
        for (filter, qos) in filters {
            if !owned {
                granted.push(0x80);
                continue;
            }
            let g = (*qos).min(1);
            if let Some(sess) = s.sessions.get_mut(client_id) {
                sess.subscriptions.insert(filter.clone(), g);
            }
            add_route(&mut s, filter, client_id);
            granted.push(g);
        }
        granted
    }

    /// Removes subscriptions.
    pub fn unsubscribe(&self, client_id: &str, filters: &[String]) {
        let mut s = self.state();
        for f in filters {
            if let Some(sess) = s.sessions.get_mut(client_id) {
                sess.subscriptions.remove(f);
            }
            remove_route(&mut s, f, client_id);
        }
    }

    /// Routes a PUBLISH received on `node` to every matching session in the cluster.
    pub fn publish(&self, node: &str, message: &Message) {
        let mut s = self.state();
        if let Some(m) = s.members.get_mut(node) {
            m.counters.messages_received += 1;
        }
        let mut targets: BTreeSet<String> = s
            .exact_routes
            .get(&message.topic)
            .cloned()
            .unwrap_or_default();
        for (filter, clients) in &s.wildcard_routes {
            if topic_matches(filter, &message.topic) {
                targets.extend(clients.iter().cloned());
            }
        }
        let mut dropped: Vec<String> = Vec::new();
        for client in targets {
            let id = s.next_id + 1;
            s.next_id = id;
            let Some(sess) = s.sessions.get_mut(&client) else {
                continue;
            };
            let sub_qos = sess
                .subscriptions
                .iter()
                .filter(|(f, _)| topic_matches(f, &message.topic))
                .map(|(_, q)| *q)
                .max()
                .unwrap_or(0);
            let delivered = Message {
                qos: message.qos.min(sub_qos),
                ..message.clone()
            };
            let send_now = if delivered.qos == 1 {
                sess.queue.insert(id, delivered.clone());
                let now = sess.admit(id);
                for _ in 0..sess.drop_overflow() {
                    dropped.push(sess.node.clone());
                }
                now
            } else {
                true
            };
            if send_now && let Some(a) = &sess.attachment {
                let _ = a.tx.send(ToConnection::Deliver {
                    id,
                    message: delivered,
                });
            }
        }
        for node in dropped {
            if let Some(m) = s.members.get_mut(&node) {
                m.counters.delivery_dropped_queue_full += 1;
            }
        }
    }

    /// PUBACK for queue id `id` on connection `conn_id`.
    pub fn ack(&self, client_id: &str, conn_id: u64, id: u64) {
        let mut s = self.state();
        if let Some(sess) = s.sessions.get_mut(client_id)
            && sess
                .attachment
                .as_ref()
                .is_some_and(|a| a.conn_id == conn_id)
        {
            sess.queue.remove(&id);
            sess.inflight.remove(&id);
            // The window's room goes to the oldest queued message.
            if let Some(next) = sess.next_queued()
                && sess.admit(next)
                && let (Some(a), Some(message)) = (&sess.attachment, sess.queue.get(&next))
            {
                let _ = a.tx.send(ToConnection::Deliver {
                    id: next,
                    message: message.clone(),
                });
            }
        }
    }
}

/// What a resumed session sends its new connection, as EMQX replays it
/// (`emqx_session_mem.erl` `replay/2`, v5.8.9): every inflight message again
/// with DUP set, then queued ones while the window has room.
fn replay(sess: &mut Session) -> Vec<(u64, Message, bool)> {
    let mut out: Vec<(u64, Message, bool)> = sess
        .inflight
        .iter()
        .filter_map(|id| sess.queue.get(id).map(|m| (*id, m.clone(), true)))
        .collect();
    while let Some(next) = sess.next_queued() {
        if !sess.admit(next) {
            break;
        }
        if let Some(m) = sess.queue.get(&next) {
            out.push((next, m.clone(), false));
        }
    }
    out
}

pub(super) fn detach(s: &mut State, client_id: &str, now: Instant) {
    let drop_it = match s.sessions.get_mut(client_id) {
        Some(sess) => {
            sess.attachment = None;
            sess.disconnected_at = Some(now);
            sess.expiry.is_zero()
        }
        None => false,
    };
    if drop_it {
        remove_session(s, client_id);
    }
}

pub(super) fn expire_sessions(s: &mut State, now: Instant) {
    let expired: Vec<String> = s
        .sessions
        .iter()
        .filter(|(_, sess)| sess.expired(now))
        .map(|(id, _)| id.clone())
        .collect();
    for id in expired {
        remove_session(s, &id);
    }
}

pub(super) fn is_wildcard(filter: &str) -> bool {
    filter.contains(['+', '#'])
}

pub(super) fn add_route(s: &mut State, filter: &str, client: &str) {
    let table = if is_wildcard(filter) {
        s.wildcard_routes.entry(filter.to_string()).or_default()
    } else {
        s.exact_routes.entry(filter.to_string()).or_default()
    };
    table.insert(client.to_string());
}

pub(super) fn remove_route(s: &mut State, filter: &str, client: &str) {
    if is_wildcard(filter) {
        if let Some(set) = s.wildcard_routes.get_mut(filter) {
            set.remove(client);
            if set.is_empty() {
                s.wildcard_routes.remove(filter);
            }
        }
    } else if let Some(set) = s.exact_routes.get_mut(filter) {
        set.remove(client);
        if set.is_empty() {
            s.exact_routes.remove(filter);
        }
    }
}

pub(super) fn remove_session(s: &mut State, client_id: &str) -> Option<Session> {
    let sess = s.sessions.remove(client_id)?;
    for filter in sess.subscriptions.keys() {
        remove_route(s, filter, client_id);
    }
    Some(sess)
}
