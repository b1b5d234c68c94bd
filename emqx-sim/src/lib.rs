//! `emqx-sim`: simulated EMQX nodes, faithful to `docs/emqx-api.md`: the
//! REST API (v5 and v4), cluster membership, the evacuation state machine,
//! and MQTT 3.1.1/5. Nothing here knows Kubernetes: a node starts from the
//! facts of its pod ([`PodFacts`]; [`operator_pod`] builds them as the EMQX
//! operators' pods have them), and its tests and examples run without a
//! control plane. The sandbox's kubelet plays EMQX pods with these nodes
//! (`sandbox::node::emqx_hook`). The simulated cluster answers the MQTT load
//! generator's broker-side questions (`mqtt_load::ConnectionSampler`).
//!
//! Attaching a node to a pod (what the kubelet hook does):
//!
//! ```text
//! let facts = PodFacts { pod_name, namespace, hostname, pod_ip, image,
//!                        env /* resolved */, files /* mounted, by path */,
//!                        persistent_data /* /opt/emqx/data is a PVC */ };
//! let config = NodeConfig::from_pod(&facts)?;   // pure; errors name the field
//! let node = EmqxNode::start(config).await?;    // binds pod_ip:18083|8081 and :1883
//! // readiness: GET http://pod_ip:18083/status; drop(node) = pod gone
//! ```
//!
//! Nodes with the same headless DNS name and cookie in one process form one
//! cluster ([`cluster::BrokerCluster`]). A stopped node stays listed as
//! `stopped` until `force_leave`. Faults are switched at run time through
//! [`EmqxNode::faults`] (among them a node slow to report its evacuation
//! status, which `global_status` on any node waits for, as EMQX does); the
//! evacuation tick is [`NodeConfig::tick`] (1 s). From 5.9 the licence
//! applies ([`licence`]): a node on the default single-node licence that
//! joins a running node shuts down ([`EmqxNode::halted`]), as EMQX's does.
//!
//! Not simulated: rebalance (`/load_rebalance/{node}/start|stop` answer 404),
//! dashboard login/bearer tokens, `PUT /configs` (`GET /configs` describes
//! only `listeners` and `dashboard`), listeners other than MQTT/TCP,
//! will messages, QoS 2, retained messages, MQTT 3.1 (refused with rc 1).

pub mod api_key;
pub mod cluster;
pub mod config;
pub mod evacuation;
pub mod evacuation_request;
pub mod faults;
pub mod hocon_env;
pub mod hocon_paths;
pub mod licence;
mod load_sampler;
pub mod mqtt;
pub mod node;
pub mod operator_pod;
pub mod rest;
pub mod session;
pub mod version;

pub use config::{NodeConfig, PodFacts, Role};
pub use node::{EmqxNode, StartError};
pub use version::{BrokerVersion, Edition};
