//! One EMQX cluster: its members, the cluster-wide client registry, sessions,
//! routing and evacuations. Nodes with the same [`DiscoveryKey`] in one process
//! share a `Cluster`; that models DNS discovery plus Erlang distribution.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard, Weak};
use std::time::{Duration, SystemTime};

use rand::seq::IndexedRandom;
use tokio::sync::Notify;
use tokio::sync::mpsc::UnboundedSender;
use tokio::time::Instant;

use super::config::{DiscoveryKey, NodeConfig, Role};
use super::evacuation::{Evacuation, EvacuationOptions, EvacuationState, Observed, Work};
use super::session::{Attachment, Message, MqttVersion, Session, ToConnection, topic_matches};
use super::version::{BrokerVersion, Edition};

static CLUSTERS: LazyLock<Mutex<HashMap<DiscoveryKey, Weak<Cluster>>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

/// Counters a node exposes as Prometheus counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// `client.connected`.
    pub client_connected: u64,
    /// `client.disconnected`.
    pub client_disconnected: u64,
    /// Sessions created.
    pub session_created: u64,
    /// Sessions resumed (`session_present=1`).
    pub session_resumed: u64,
    /// Sessions taken over from another connection.
    pub session_takenover: u64,
    /// Sessions discarded by `clean_start=true`.
    pub session_discarded: u64,
    /// Connections evicted by evacuation.
    pub evicted: u64,
    /// Sessions migrated away by evacuation.
    pub migrated: u64,
    /// CONNECTs refused because the node evacuates.
    pub connect_refused: u64,
    /// PUBLISH packets received from clients.
    pub messages_received: u64,
}

/// One step of an evacuation, for tests and the recorder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvacuationEvent {
    /// When it happened.
    pub at: Instant,
    /// State after the step (`disabled` after stop).
    pub state: &'static str,
    /// Connections evicted in this step.
    pub evicted: u64,
    /// Sessions migrated in this step.
    pub migrated: u64,
}

/// A cluster member as the cluster sees it.
#[derive(Debug)]
pub struct Member {
    /// Version it runs.
    pub version: BrokerVersion,
    /// Edition it runs.
    pub edition: Edition,
    /// Core or replicant.
    pub role: Role,
    /// False after the node stopped (until `force_leave`).
    pub running: bool,
    /// Start time, for `uptime`.
    pub started: SystemTime,
    /// Running evacuation, if any.
    pub evacuation: Option<Evacuation>,
    /// Every evacuation step and stop.
    pub history: Vec<EvacuationEvent>,
    /// Counters.
    pub counters: Counters,
    /// Maximum live connections seen (for `*.max`).
    pub max_live: u64,
    tick: Duration,
    retry: Duration,
    server_reference_from_rest: bool,
    wake: Arc<Notify>,
}

/// What the cluster answers a CONNECT.
#[derive(Debug)]
pub enum ConnectOutcome {
    /// Node evacuating (or gone): refuse with 0x9C / rc 3.
    Refused {
        /// `Server-Reference` to send, when configured.
        server_reference: Option<String>,
    },
    /// Accepted.
    Accepted {
        /// `session_present` flag of the CONNACK.
        session_present: bool,
        /// Queued QoS 1 messages to deliver at once.
        redeliver: Vec<(u64, Message)>,
    },
}

/// Why `migrate_to` is rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecipientError {
    /// Names never known to the cluster.
    Invalid(Vec<String>),
    /// Known but not running, or evacuating.
    Unavailable(Vec<String>),
}

/// Why an evacuation call failed on the state machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EvacuationCallError {
    /// `{node}` is not a running member.
    NodeNotFound,
    /// Start while running.
    AlreadyStarted,
    /// Stop while disabled.
    NotStarted,
}

/// Per-node numbers for `/nodes`, `/stats` and metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeSummary {
    /// Node name.
    pub name: String,
    /// Running or stopped.
    pub running: bool,
    /// Version.
    pub version: BrokerVersion,
    /// Edition.
    pub edition: Edition,
    /// Role.
    pub role: Role,
    /// Start time.
    pub started: SystemTime,
    /// Sessions owned, connected or not (`connections`).
    pub connections: u64,
    /// Connected clients (`live_connections`).
    pub live_connections: u64,
    /// Maximum live connections seen.
    pub max_live: u64,
    /// Subscriptions of the node's sessions.
    pub subscriptions: u64,
    /// Counters.
    pub counters: Counters,
}

/// Evacuation status of one node, as `load_rebalance/status` prints it.
#[derive(Debug, Clone)]
pub struct EvacuationStatus {
    /// Node name.
    pub node: String,
    /// The evacuation.
    pub evacuation: Evacuation,
    /// Current recipients.
    pub recipients: Vec<String>,
}

#[derive(Debug, Default)]
struct State {
    members: BTreeMap<String, Member>,
    ever_known: BTreeSet<String>,
    sessions: HashMap<String, Session>,
    /// `<data_dir>/.evacuation` of nodes whose data dir persists, by node name.
    persisted: HashMap<String, EvacuationOptions>,
    exact_routes: HashMap<String, BTreeSet<String>>,
    wildcard_routes: BTreeMap<String, BTreeSet<String>>,
    next_id: u64,
}

/// A cluster shared by the nodes that discovered each other.
#[derive(Debug)]
pub struct Cluster {
    /// Cluster name (`emqxcl`).
    pub name: String,
    state: Mutex<State>,
}

impl Cluster {
    /// The cluster for `key`, created on first use.
    pub fn discover(key: &DiscoveryKey) -> Arc<Cluster> {
        let mut all = CLUSTERS.lock().unwrap_or_else(|e| e.into_inner());
        all.retain(|_, weak| weak.strong_count() > 0);
        if let Some(existing) = all.get(key).and_then(Weak::upgrade) {
            return existing;
        }
        let cluster = Arc::new(Cluster {
            name: "emqxcl".into(),
            state: Mutex::new(State::default()),
        });
        all.insert(key.clone(), Arc::downgrade(&cluster));
        cluster
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds (or restarts) a member. A running member of the same name is
    /// refused, as Erlang distribution refuses a duplicate node name.
    pub fn join(&self, config: &NodeConfig, wake: Arc<Notify>) -> Result<(), String> {
        let mut s = self.state();
        if s.members.get(&config.node_name).is_some_and(|m| m.running) {
            return Err(format!(
                "node name {} is already running in the cluster",
                config.node_name
            ));
        }
        s.ever_known.insert(config.node_name.clone());
        s.members.insert(
            config.node_name.clone(),
            Member {
                version: config.version,
                edition: config.edition,
                role: config.role,
                running: true,
                started: SystemTime::now(),
                evacuation: None,
                history: Vec::new(),
                counters: Counters::default(),
                max_live: 0,
                tick: config.tick,
                retry: config.no_recipient_retry,
                server_reference_from_rest: config.rest_redirect_sets_server_reference,
                wake,
            },
        );
        let resume = if config.persistent_data {
            s.persisted.get(&config.node_name).cloned()
        } else {
            s.persisted.remove(&config.node_name);
            None
        };
        if let Some(options) = resume {
            let (live, sessions, _) = node_counts(&s, &config.node_name);
            let now = Instant::now();
            let observed = Observed {
                live_connections: live,
                sessions,
                has_recipient: true,
            };
            let mut e = Evacuation::resume(&options, observed, now);
            if let Some(m) = s.members.get_mut(&config.node_name) {
                for state in e.take_entered() {
                    m.history.push(EvacuationEvent {
                        at: now,
                        state: state.as_str(),
                        evicted: 0,
                        migrated: 0,
                    });
                }
                m.evacuation = Some(e);
                m.wake.notify_one();
            }
            eprintln!(
                "{}: Node evacuation is enabled. The node will not receive connections.",
                config.node_name
            );
        }
        Ok(())
    }

    /// The node stopped: it stays a member, `stopped`, until `force_leave`; its
    /// connections close and its (non-durable) sessions are gone.
    pub fn stop_node(&self, node: &str) {
        let mut s = self.state();
        if let Some(m) = s.members.get_mut(node) {
            m.running = false;
            m.evacuation = None;
        }
        let owned: Vec<String> = s
            .sessions
            .iter()
            .filter(|(_, sess)| sess.node == node)
            .map(|(id, _)| id.clone())
            .collect();
        for id in owned {
            if let Some(sess) = remove_session(&mut s, &id)
                && let Some(a) = sess.attachment
            {
                let _ = a.tx.send(ToConnection::Close);
            }
        }
    }

    /// `DELETE /cluster/{node}/force_leave` from `self_node`.
    pub fn force_leave(&self, self_node: &str, node: &str) -> Result<(), &'static str> {
        if node == self_node {
            return Err("Can't leave self");
        }
        let mut s = self.state();
        if s.members.remove(node).is_none() {
            return Err("node_not_in_cluster");
        }
        Ok(())
    }

    /// Whether `node` is a running member.
    pub fn is_running(&self, node: &str) -> bool {
        self.state().members.get(node).is_some_and(|m| m.running)
    }

    /// Names of running members.
    pub fn running_nodes(&self) -> Vec<String> {
        let s = self.state();
        s.members
            .iter()
            .filter(|(_, m)| m.running)
            .map(|(n, _)| n.clone())
            .collect()
    }

    /// Summaries of every member, running or stopped.
    pub fn summaries(&self) -> Vec<NodeSummary> {
        let s = self.state();
        s.members
            .iter()
            .map(|(name, m)| {
                let (live, all, subs) = node_counts(&s, name);
                NodeSummary {
                    name: name.clone(),
                    running: m.running,
                    version: m.version,
                    edition: m.edition,
                    role: m.role,
                    started: m.started,
                    connections: all,
                    live_connections: live,
                    max_live: m.max_live.max(live),
                    subscriptions: subs,
                    counters: m.counters,
                }
            })
            .collect()
    }

    /// Live connections per running node (what a dashboard graphs).
    pub fn live_connections_by_node(&self) -> BTreeMap<String, u64> {
        let s = self.state();
        let mut out: BTreeMap<String, u64> = s
            .members
            .iter()
            .filter(|(_, m)| m.running)
            .map(|(n, _)| (n.clone(), 0))
            .collect();
        for sess in s.sessions.values() {
            if sess.attachment.is_some()
                && let Some(c) = out.get_mut(&sess.node)
            {
                *c += 1;
            }
        }
        out
    }

    /// Node a client's session lives on, and whether it is connected.
    pub fn client_location(&self, client_id: &str) -> Option<(String, bool)> {
        let s = self.state();
        s.sessions
            .get(client_id)
            .map(|sess| (sess.node.clone(), sess.attachment.is_some()))
    }

    /// Every evacuation step recorded for `node`.
    pub fn evacuation_history(&self, node: &str) -> Vec<EvacuationEvent> {
        let s = self.state();
        s.members
            .get(node)
            .map(|m| m.history.clone())
            .unwrap_or_default()
    }

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
                redeliver = sess.queue.iter().map(|(k, v)| (*k, v.clone())).collect();
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
            if delivered.qos == 1 {
                sess.queue.insert(id, delivered.clone());
            }
            if let Some(a) = &sess.attachment {
                let _ = a.tx.send(ToConnection::Deliver {
                    id,
                    message: delivered,
                });
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
        }
    }

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

    /// Total sessions in the cluster.
    pub fn cluster_sessions(&self) -> u64 {
        self.state().sessions.len() as u64
    }
}

fn update_max(s: &mut State, node: &str) {
    let (live, _, _) = node_counts(s, node);
    if let Some(m) = s.members.get_mut(node) {
        m.max_live = m.max_live.max(live);
    }
}

/// (live connections, sessions, subscriptions) of `node`.
fn node_counts(s: &State, node: &str) -> (u64, u64, u64) {
    let mut live = 0;
    let mut all = 0;
    let mut subs = 0;
    for sess in s.sessions.values().filter(|sess| sess.node == node) {
        all += 1;
        subs += sess.subscriptions.len() as u64;
        if sess.attachment.is_some() {
            live += 1;
        }
    }
    (live, all, subs)
}

fn available(s: &State, node: &str) -> bool {
    s.members
        .get(node)
        .is_some_and(|m| m.running && m.evacuation.is_none())
}

/// `migrate_to` filtered to available nodes, or every other available node;
/// the evacuated node itself is never a recipient.
fn recipients(s: &State, node: &str, migrate_to: Option<&[String]>) -> Vec<String> {
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

fn detach(s: &mut State, client_id: &str, now: Instant) {
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

fn evict(s: &mut State, node: &str, n: u64, server_reference: Option<String>, now: Instant) -> u64 {
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

fn migrate(s: &mut State, node: &str, n: u64, targets: &[String]) -> u64 {
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

fn expire_sessions(s: &mut State, now: Instant) {
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

fn is_wildcard(filter: &str) -> bool {
    filter.contains(['+', '#'])
}

fn add_route(s: &mut State, filter: &str, client: &str) {
    let table = if is_wildcard(filter) {
        s.wildcard_routes.entry(filter.to_string()).or_default()
    } else {
        s.exact_routes.entry(filter.to_string()).or_default()
    };
    table.insert(client.to_string());
}

fn remove_route(s: &mut State, filter: &str, client: &str) {
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

fn remove_session(s: &mut State, client_id: &str) -> Option<Session> {
    let sess = s.sessions.remove(client_id)?;
    for filter in sess.subscriptions.keys() {
        remove_route(s, filter, client_id);
    }
    Some(sess)
}
