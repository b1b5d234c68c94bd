//! The cluster network on loopback: the address plan (control plane, node,
//! pod and Service addresses per sandbox slot) and the service proxy that
//! makes ClusterIPs reach ready pods.

pub mod addresses;
pub mod service_proxy;
