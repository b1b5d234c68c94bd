//! Simulated EMQX nodes, faithful to `docs/emqx-api.md`: the REST API (v5 and
//! v4), cluster membership, the evacuation state machine, and MQTT 3.1.1/5.

pub mod api_key;
pub mod cluster;
pub mod config;
pub mod evacuation;
pub mod evacuation_request;
pub mod faults;
pub mod mqtt;
pub mod node;
pub mod operator_pod;
pub mod rest;
pub mod session;
pub mod version;

pub use config::{NodeConfig, PodFacts, Role};
pub use node::{EmqxNode, StartError};
pub use version::{BrokerVersion, Edition};
