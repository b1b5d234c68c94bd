//! Evacuations across the cluster: `migrate_to` checks, start/stop, status,
//! and the per-tick work (evicting connections, migrating sessions).

use rand::seq::IndexedRandom;
use tokio::time::Instant;

use super::clients::{detach, expire_sessions};
use super::{
    BrokerCluster, EvacuationCallError, EvacuationEvent, EvacuationStatus, RecipientError, State,
    node_counts,
};
use crate::evacuation::{Evacuation, EvacuationOptions, EvacuationState, Observed, Work};
use crate::session::ToConnection;

impl BrokerCluster {
    /// Checks `migrate_to` as EMQX does: unknown names first, then availability.
    pub fn validate_recipients(&self, names: &[String]) -> Result<(), RecipientError> {
        let s = self.state();
        let invalid: Vec<String> = names
            .iter()
            .filter(|n| !s.ever_known.contains(*n))
            .cloned()
            .collect();
        if !invalid.is_empty() {
            return Err(RecipientError::Invalid(invalid));
        }
        let unavailable: Vec<String> = names
            .iter()
            .filter(|n| !available(&s, n))
            .cloned()
            .collect();
        if !unavailable.is_empty() {
            return Err(RecipientError::Unavailable(unavailable));
        }
        Ok(())
    }

    /// Starts an evacuation of `node`.
    pub fn start_evacuation(
        &self,
        node: &str,
        options: EvacuationOptions,
    ) -> Result<(), EvacuationCallError> {
        let mut s = self.state();
        let (live, sessions, _) = node_counts(&s, node);
        let has_recipient = !recipients(&s, node, options.migrate_to.as_deref()).is_empty();
        let Some(m) = s.members.get_mut(node).filter(|m| m.running) else {
            return Err(EvacuationCallError::NodeNotFound);
        };
        if m.evacuation.is_some() {
            return Err(EvacuationCallError::AlreadyStarted);
        }
        let now = Instant::now();
        let observed = Observed {
            live_connections: live,
            sessions,
            has_recipient,
        };
        let e = Evacuation::start(options, observed, now);
        m.history.push(EvacuationEvent {
            at: now,
            state: e.state.as_str(),
            evicted: 0,
            migrated: 0,
        });
        let persisted = e.options.clone();
        m.evacuation = Some(e);
        m.wake.notify_one();
        s.persisted.insert(node.to_string(), persisted);
        Ok(())
    }

    /// Stops an evacuation of `node`.
    pub fn stop_evacuation(&self, node: &str) -> Result<(), EvacuationCallError> {
        let mut s = self.state();
        let Some(m) = s.members.get_mut(node).filter(|m| m.running) else {
            return Err(EvacuationCallError::NodeNotFound);
        };
        if m.evacuation.take().is_none() {
            return Err(EvacuationCallError::NotStarted);
        }
        s.persisted.remove(node);
        let Some(m) = s.members.get_mut(node) else {
            return Ok(());
        };
        m.history.push(EvacuationEvent {
            at: Instant::now(),
            state: "disabled",
            evicted: 0,
            migrated: 0,
        });
        m.wake.notify_one();
        Ok(())
    }

    /// Evacuation status of `node`, if one runs.
    pub fn evacuation_status(&self, node: &str) -> Option<EvacuationStatus> {
        let s = self.state();
        let m = s.members.get(node)?;
        let e = m.evacuation.clone()?;
        let recipients = recipients(&s, node, e.options.migrate_to.as_deref());
        Some(EvacuationStatus {
            node: node.to_string(),
            evacuation: e,
            recipients,
        })
    }

    /// Evacuation status of every running node.
    pub fn evacuation_statuses(&self) -> Vec<EvacuationStatus> {
        self.running_nodes()
            .iter()
            .filter_map(|n| self.evacuation_status(n))
            .collect()
    }

    /// When `node`'s evacuation next needs a step.
    pub fn next_due(&self, node: &str) -> Option<Instant> {
        let s = self.state();
        s.members
            .get(node)
            .and_then(|m| m.evacuation.as_ref())
            .and_then(Evacuation::next_due)
    }

    /// Runs a due evacuation step of `node` and does its work; also expires
    /// disconnected sessions.
    pub fn tick(&self, node: &str, now: Instant) {
        let mut s = self.state();
        expire_sessions(&mut s, now);
        let (live, sessions, _) = node_counts(&s, node);
        let migrate_to = s
            .members
            .get(node)
            .and_then(|m| m.evacuation.as_ref())
            .and_then(|e| e.options.migrate_to.clone());
        let targets = recipients(&s, node, migrate_to.as_deref());
        let Some(m) = s.members.get_mut(node) else {
            return;
        };
        let (tick, retry) = (m.tick, m.retry);
        let server_ref_switch = m.server_reference_from_rest;
        let Some(e) = m.evacuation.as_mut() else {
            return;
        };
        let observed = Observed {
            live_connections: live,
            sessions,
            has_recipient: !targets.is_empty(),
        };
        let work = e.step(now, observed, tick, retry);
        let entered = e.take_entered();
        let server_reference = if server_ref_switch {
            e.options.redirect_to.clone()
        } else {
            None
        };
        let (evicted, migrated) = match work {
            Work::Idle => (0, 0),
            Work::EvictConnections(n) => (evict(&mut s, node, n, server_reference, now), 0),
            Work::MigrateSessions(n) => (0, migrate(&mut s, node, n, &targets)),
        };
        let Some(m) = s.members.get_mut(node) else {
            return;
        };
        m.counters.evicted += evicted;
        m.counters.migrated += migrated;
        // One event per state entered; the work of a tick belongs to the last.
        let last = entered.len();
        for (i, state) in entered.iter().enumerate() {
            let work_here = i + 1 == last;
            m.history.push(EvacuationEvent {
                at: now,
                state: state.as_str(),
                evicted: if work_here { evicted } else { 0 },
                migrated: if work_here { migrated } else { 0 },
            });
        }
        if entered.is_empty() && work != Work::Idle {
            let state = m
                .evacuation
                .as_ref()
                .map_or("disabled", |e| e.state.as_str());
            m.history.push(EvacuationEvent {
                at: now,
                state,
                evicted,
                migrated,
            });
        }
    }

    /// Whether `node` evacuates (any state): `availability_check` answers 503.
    pub fn is_evacuating(&self, node: &str) -> bool {
        let s = self.state();
        s.members.get(node).is_some_and(|m| m.evacuation.is_some())
    }

    /// Current evacuation state of `node`.
    pub fn evacuation_state(&self, node: &str) -> Option<EvacuationState> {
        let s = self.state();
        s.members
            .get(node)
            .and_then(|m| m.evacuation.as_ref())
            .map(|e| e.state)
    }
}

pub(super) fn available(s: &State, node: &str) -> bool {
    s.members
        .get(node)
        .is_some_and(|m| m.running && m.evacuation.is_none())
}

/// `migrate_to` filtered to available nodes, or every other available node;
/// the evacuated node itself is never a recipient.
pub(super) fn recipients(s: &State, node: &str, migrate_to: Option<&[String]>) -> Vec<String> {
    match migrate_to {
        Some(list) => list
            .iter()
            .filter(|n| n.as_str() != node && available(s, n))
            .cloned()
            .collect(),
        None => s
            .members
            .keys()
            .filter(|n| n.as_str() != node && available(s, n))
            .cloned()
            .collect(),
    }
}

pub(super) fn evict(
    s: &mut State,
    node: &str,
    n: u64,
    server_reference: Option<String>,
    now: Instant,
) -> u64 {
    let victims: Vec<String> = s
        .sessions
        .iter()
        .filter(|(_, sess)| sess.node == node && sess.attachment.is_some())
        .map(|(id, _)| id.clone())
        .take(usize::try_from(n).unwrap_or(usize::MAX))
        .collect();
    for id in &victims {
        if let Some(a) = s.sessions.get(id).and_then(|sess| sess.attachment.as_ref()) {
            let _ = a.tx.send(ToConnection::Evict {
                server_reference: server_reference.clone(),
            });
        }
        detach(s, id, now);
    }
    if let Some(m) = s.members.get_mut(node) {
        m.counters.client_disconnected += victims.len() as u64;
    }
    victims.len() as u64
}

pub(super) fn migrate(s: &mut State, node: &str, n: u64, targets: &[String]) -> u64 {
    let movers: Vec<String> = s
        .sessions
        .iter()
        .filter(|(_, sess)| sess.node == node && sess.attachment.is_none())
        .map(|(id, _)| id.clone())
        .take(usize::try_from(n).unwrap_or(usize::MAX))
        .collect();
    let mut rng = rand::rng();
    let mut moved = 0;
    for id in movers {
        let Some(target) = targets.choose(&mut rng) else {
            break;
        };
        if let Some(sess) = s.sessions.get_mut(&id) {
            sess.node = target.clone();
            moved += 1;
        }
    }
    moved
}
