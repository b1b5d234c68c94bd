//! `sandbox`: a real Kubernetes control plane with a simulated node and
//! simulated EMQX brokers, for end-to-end tests and the demo.
//!
//! Part 1: [`Sandbox::start`] builds (once, cached) and runs etcd,
//! kube-apiserver and kube-controller-manager from pinned Go sources, a
//! simulated kubelet ([`kubelet`]) and a service proxy ([`service_proxy`]),
//! all on loopback addresses ([`addresses`]). Pods whose image is one of the
//! project's binaries run as real processes ([`pod_process`]); other images
//! can be played by a [`PodHook`].
//!
//! Part 2: simulated EMQX nodes ([`emqx`]), MQTT load through a Service
//! ([`mqtt_load`]) and the upgrade recorder ([`recorder`]).

pub mod control_plane;
pub mod network;
pub mod node;
pub mod operator;
pub mod sandbox;

pub use node::emqx_hook::EmqxHook;
pub use node::pod_hook::{PodContext, PodHook, RunningPod};
pub use sandbox::{Sandbox, SandboxOptions};
