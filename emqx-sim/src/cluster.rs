//! One EMQX cluster: its members, the cluster-wide client registry, sessions,
//! routing and evacuations. Nodes with the same [`DiscoveryKey`] in one process
//! share a `BrokerCluster`; that models DNS discovery plus Erlang distribution.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard, Weak};
use std::time::{Duration, SystemTime};

use tokio::sync::Notify;
use tokio::time::Instant;

use super::api_key::ApiKey;
use super::config::{DiscoveryKey, NodeConfig, Role};
use super::evacuation::{Evacuation, EvacuationOptions, Observed};
use super::session::{Message, Session, ToConnection};
use super::version::{BrokerVersion, Edition};

mod clients;
mod evacuations;
mod rpc;
#[cfg(test)]
mod tests;

use clients::remove_session;

static CLUSTERS: LazyLock<Mutex<HashMap<DiscoveryKey, Weak<BrokerCluster>>>> =
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
    /// `packets.connack.sent`: every CONNACK.
    pub connack_sent: u64,
    /// `packets.connack.error`: CONNACKs with a reason code other than
    /// success (an evacuating node's refusal included).
    pub connack_error: u64,
    /// `packets.connack.auth_error`: CONNACKs saying bad credentials or
    /// not authorised (also counted in `connack_error`).
    pub connack_auth_error: u64,
    /// `authentication.failure`: CONNECTs whose authentication failed.
    pub authentication_failure: u64,
    /// `delivery.dropped.queue_full`: messages dropped from a full message
    /// queue (also all of `delivery.dropped` here).
    pub delivery_dropped_queue_full: u64,
}

/// A CONNACK a node sent, as EMQX's counters tell them apart
/// (`do_inc_sent/1` in `apps/emqx/src/emqx_metrics.erl`, v5.8.9; the same
/// in `src/emqx_metrics.erl` of v4.4.19).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnAckSent {
    /// Reason code 0: `packets.connack.sent`.
    Success,
    /// Any refusal other than bad credentials or not authorised (an
    /// evacuating node's, an unsupported protocol level):
    /// `packets.connack.sent` and `packets.connack.error`.
    Refused,
    /// Authentication failed (`bad_username_or_password`):
    /// `authentication.failure` (`emqx_access_control.erl`
    /// `inc_authn_metrics/1`), `packets.connack.sent`, `.error` and
    /// `.auth_error`.
    BadCredentials,
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

/// A node stopping (its pod went away), with the evacuation state it was in:
/// the evidence that no node is removed before its evacuation finished.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeStop {
    /// Node name.
    pub node: String,
    /// When it stopped.
    pub at: Instant,
    /// Its evacuation state at that moment; `None` when none ran.
    pub evacuation: Option<&'static str>,
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
        /// QoS 1 messages to send at once (queue id, message, DUP): the
        /// resumed session's inflight ones, then queued ones the window takes.
        redeliver: Vec<(u64, Message, bool)>,
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
    /// Evacuation histories of members that left (`force_leave`) or were
    /// replaced by a restart, by node name, so evidence outlives the node.
    departed_history: HashMap<String, Vec<EvacuationEvent>>,
    /// Every node stop, in order.
    stops: Vec<NodeStop>,
    /// `<data_dir>/.evacuation` of nodes whose data dir persists, by node name.
    persisted: HashMap<String, EvacuationOptions>,
    /// The API-key table (`?APP`, a replicated Mria table): what any member
    /// authenticates against, by key; a later boot's line for the same key wins.
    api_keys: BTreeMap<String, ApiKey>,
    exact_routes: HashMap<String, BTreeSet<String>>,
    wildcard_routes: BTreeMap<String, BTreeSet<String>>,
    next_id: u64,
}

/// A cluster shared by the nodes that discovered each other.
#[derive(Debug)]
pub struct BrokerCluster {
    /// Cluster name (`emqxcl`).
    pub name: String,
    state: Mutex<State>,
    /// Each node's fault switches, for what other nodes ask it by RPC.
    rpc_faults: Mutex<BTreeMap<String, Arc<crate::faults::Faults>>>,
}

impl BrokerCluster {
    /// The cluster for `key`, created on first use.
    pub fn discover(key: &DiscoveryKey) -> Arc<BrokerCluster> {
        let mut all = CLUSTERS.lock().unwrap_or_else(|e| e.into_inner());
        all.retain(|_, weak| weak.strong_count() > 0);
        if let Some(existing) = all.get(key).and_then(Weak::upgrade) {
            return existing;
        }
        let cluster = Arc::new(BrokerCluster {
            name: "emqxcl".into(),
            state: Mutex::new(State::default()),
            rpc_faults: Mutex::new(BTreeMap::new()),
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
        for key in &config.api_keys {
            s.api_keys.insert(key.key.clone(), key.clone());
        }
        if let Some(previous) = s.members.remove(&config.node_name) {
            s.departed_history
                .entry(config.node_name.clone())
                .or_default()
                .extend(previous.history);
        }
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

    /// The cluster's API keys: those every member loaded at boot, including
    /// members that stopped since (the table outlives them).
    pub fn api_keys(&self) -> Vec<ApiKey> {
        self.state().api_keys.values().cloned().collect()
    }

    /// The node stopped: it stays a member, `stopped`, until `force_leave`; its
    /// connections close and its (non-durable) sessions are gone.
    pub fn stop_node(&self, node: &str) {
        let mut s = self.state();
        if let Some(m) = s.members.get_mut(node) {
            let evacuation = m.evacuation.take().map(|e| e.state.as_str());
            if m.running {
                s.stops.push(NodeStop {
                    node: node.to_owned(),
                    at: Instant::now(),
                    evacuation,
                });
            }
            if let Some(m) = s.members.get_mut(node) {
                m.running = false;
            }
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
        let Some(member) = s.members.remove(node) else {
            return Err("node_not_in_cluster");
        };
        s.departed_history
            .entry(node.to_owned())
            .or_default()
            .extend(member.history);
        Ok(())
    }

    /// Whether `node` is a running member.
    pub fn is_running(&self, node: &str) -> bool {
        self.state().members.get(node).is_some_and(|m| m.running)
    }

    /// Every member by name and whether it runs: what `GET /nodes` lists
    /// (a stopped node stays until `force_leave`), without the per-node
    /// counts of [`BrokerCluster::summaries`], so a benchmark can sample it
    /// every few milliseconds.
    pub fn membership(&self) -> Vec<(String, bool)> {
        let s = self.state();
        s.members
            .iter()
            .map(|(n, m)| (n.clone(), m.running))
            .collect()
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

    /// Every evacuation step recorded for `node`, including those of its
    /// earlier lives (before a restart or a `force_leave`), oldest first.
    pub fn evacuation_history(&self, node: &str) -> Vec<EvacuationEvent> {
        let s = self.state();
        let mut history = s.departed_history.get(node).cloned().unwrap_or_default();
        if let Some(m) = s.members.get(node) {
            history.extend(m.history.iter().cloned());
        }
        history
    }

    /// Every node stop so far, with the evacuation state the node was in.
    pub fn stops(&self) -> Vec<NodeStop> {
        self.state().stops.clone()
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
