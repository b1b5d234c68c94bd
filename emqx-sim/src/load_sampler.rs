//! The simulated cluster answers the MQTT load generator's broker-side
//! question (connections per node, where a client is), so the load crate
//! does not depend on the simulator.

use std::collections::BTreeMap;

use mqtt_load::ConnectionSampler;

use crate::cluster::BrokerCluster;

impl ConnectionSampler for BrokerCluster {
    fn per_node(&self) -> BTreeMap<String, u64> {
        self.live_connections_by_node()
    }

    fn locate(&self, client_id: &str) -> Option<String> {
        self.client_location(client_id).map(|(node, _)| node)
    }
}
