//! A running simulated EMQX node: its listeners, its evacuation ticker, and
//! the handle tests and the kubelet hold.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::cluster::{BrokerCluster, EvacuationEvent};
use super::config::NodeConfig;
use super::faults::Faults;
use super::mqtt::channel::Caps;
use super::mqtt::listener::accept_loop;
use super::rest::{self, api::ApiContext, calls::ApiCalls};

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A listener could not bind.
    #[error("bind {addr}: {source}")]
    Bind {
        /// Address.
        addr: SocketAddr,
        /// Cause.
        source: std::io::Error,
    },
    /// Another running node already has this name.
    #[error("{0}")]
    DuplicateName(String),
}

/// A running node. Dropping it stops the node (like killing the pod): it
/// stays in the cluster as `stopped` until another node `force_leave`s it.
#[derive(Debug)]
pub struct EmqxNode {
    config: Arc<NodeConfig>,
    cluster: Arc<BrokerCluster>,
    faults: Arc<Faults>,
    calls: Arc<ApiCalls>,
    http_addr: SocketAddr,
    mqtt_addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    halted: Option<String>,
}

impl EmqxNode {
    /// Binds the HTTP API and MQTT listeners on the node's IP, joins the
    /// cluster its discovery key names, and starts the evacuation ticker.
    pub async fn start(config: NodeConfig) -> Result<EmqxNode, StartError> {
        let http_addr = SocketAddr::from((config.ip, config.http_port));
        let mqtt_addr = SocketAddr::from((config.ip, config.mqtt_port));
        let http = TcpListener::bind(http_addr)
            .await
            .map_err(|source| StartError::Bind {
                addr: http_addr,
                source,
            })?;
        let mqtt = TcpListener::bind(mqtt_addr)
            .await
            .map_err(|source| StartError::Bind {
                addr: mqtt_addr,
                source,
            })?;
        let http_addr = http.local_addr().unwrap_or(http_addr);
        let mqtt_addr = mqtt.local_addr().unwrap_or(mqtt_addr);
        let config = Arc::new(config);
        let cluster = BrokerCluster::discover(&config.discovery);
        let wake = Arc::new(Notify::new());
        cluster
            .join(&config, wake.clone())
            .map_err(StartError::DuplicateName)?;
        let faults = Arc::new(Faults::default());
        cluster.register_faults(&config.node_name, faults.clone());
        let (shutdown, rx) = watch::channel(false);
        let calls = Arc::new(ApiCalls::default());
        let ctx = ApiContext {
            config: config.clone(),
            cluster: cluster.clone(),
            faults: faults.clone(),
            calls: calls.clone(),
        };
        let tasks = vec![
            tokio::spawn(rest::serve(http, ctx, rx.clone())),
            tokio::spawn(accept_loop(
                mqtt,
                config.node_name.clone(),
                cluster.clone(),
                faults.clone(),
                Caps::of(&config.version),
                rx.clone(),
            )),
            tokio::spawn(ticker(config.node_name.clone(), cluster.clone(), wake, rx)),
        ];
        let mut node = EmqxNode {
            config,
            cluster,
            faults,
            calls,
            http_addr,
            mqtt_addr,
            shutdown,
            tasks,
            halted: None,
        };
        // Joining restarts EMQX's apps; the licence app's check then fails
        // on a single-node licence beside another running node and the node
        // shuts down ([`crate::licence`]). It stays a member, listed stopped.
        let running = node.cluster.running_nodes().len();
        if let Some(reason) = crate::licence::join_violation(&node.config.licence, running) {
            eprintln!("{}: {reason}; shutting down", node.config.node_name);
            node.stop();
            node.halted = Some(reason);
        }
        Ok(node)
    }

    /// Why the node shut itself down after it started (the container
    /// exits): EMQX's own words, e.g. `SINGLE_NODE_LICENSE, …`.
    pub fn halted(&self) -> Option<&str> {
        self.halted.as_deref()
    }

    /// Erlang node name.
    pub fn name(&self) -> &str {
        &self.config.node_name
    }

    /// The configuration it runs with.
    pub fn config(&self) -> &NodeConfig {
        &self.config
    }

    /// Address of the HTTP API.
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// Address of the MQTT listener.
    pub fn mqtt_addr(&self) -> SocketAddr {
        self.mqtt_addr
    }

    /// Fault switches of this node.
    pub fn faults(&self) -> &Faults {
        &self.faults
    }

    /// The node's fault switches, shareable with whoever injects faults.
    pub fn faults_handle(&self) -> Arc<Faults> {
        self.faults.clone()
    }

    /// The count of management API calls this node served (not probes).
    pub fn api_calls(&self) -> Arc<ApiCalls> {
        self.calls.clone()
    }

    /// The cluster this node belongs to.
    pub fn cluster(&self) -> &Arc<BrokerCluster> {
        &self.cluster
    }

    /// Every evacuation step of this node so far.
    pub fn evacuation_history(&self) -> Vec<EvacuationEvent> {
        self.cluster.evacuation_history(self.name())
    }

    /// Live connections per running node of the cluster.
    pub fn live_connections_by_node(&self) -> BTreeMap<String, u64> {
        self.cluster.live_connections_by_node()
    }

    /// Stops the node and waits until its listeners are closed, so a new node
    /// can bind the same addresses at once (a pod recreated with its IP).
    pub async fn shutdown(mut self) {
        self.stop();
        for mut task in std::mem::take(&mut self.tasks) {
            if tokio::time::timeout(std::time::Duration::from_secs(2), &mut task)
                .await
                .is_err()
            {
                task.abort();
                let _ = task.await;
            }
        }
    }

    /// Stops the node: listeners close, connections drop, sessions are lost;
    /// the cluster lists it as `stopped`. Returns before the sockets are
    /// released; use [`EmqxNode::shutdown`] to wait for that.
    pub fn stop(&mut self) {
        if *self.shutdown.borrow() {
            return;
        }
        let _ = self.shutdown.send(true);
        self.cluster.stop_node(&self.config.node_name);
        // Every task watches the shutdown signal and ends by itself; the HTTP
        // server lets in-flight requests finish.
    }
}

impl Drop for EmqxNode {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Steps the node's evacuation whenever it is due or was just started/stopped.
async fn ticker(
    node: String,
    cluster: Arc<BrokerCluster>,
    wake: Arc<Notify>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let due = cluster.next_due(&node);
        // Without an evacuation, still wake once a second to expire sessions.
        let at = due.unwrap_or_else(|| Instant::now() + std::time::Duration::from_secs(1));
        let sleep = tokio::time::sleep_until(at);
        tokio::select! {
            _ = sleep => cluster.tick(&node, Instant::now()),
            _ = wake.notified() => cluster.tick(&node, Instant::now()),
            _ = shutdown.changed() => return,
        }
    }
}
