//! The cluster network on loopback: the address plan (control plane, node,
//! pod and Service addresses per sandbox slot) and the service proxy that
//! makes ClusterIPs reach the endpoints their EndpointSlices name.

pub mod addresses;
pub mod kubernetes_endpoints;
pub mod service_proxy;
