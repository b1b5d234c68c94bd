//! `sandbox`: a real Kubernetes control plane with a simulated node and
//! simulated EMQX brokers, for end-to-end tests and the demo.

pub mod emqx;
pub mod mqtt_load;
pub mod recorder;
