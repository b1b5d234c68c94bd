//! What one node sees of the others through Erlang RPC: how late each
//! running node answers a status query, from its fault switches.

use std::sync::Arc;
use std::time::Duration;

use super::BrokerCluster;
use crate::faults::Faults;

impl BrokerCluster {
    /// Lets other nodes' RPCs see `node`'s faults (done when it starts).
    pub fn register_faults(&self, node: &str, faults: Arc<Faults>) {
        self.rpc_faults
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(node.to_owned(), faults);
    }

    /// Every running node with the delay of its evacuation-status answer.
    pub fn rebalance_status_delays(&self) -> Vec<(String, Duration)> {
        let faults = self.rpc_faults.lock().unwrap_or_else(|e| e.into_inner());
        self.running_nodes()
            .into_iter()
            .map(|node| {
                let delay = faults
                    .get(&node)
                    .map_or(Duration::ZERO, |f| f.rebalance_status_delay());
                (node, delay)
            })
            .collect()
    }
}
