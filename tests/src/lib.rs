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

pub mod addresses;
pub mod binaries;
pub mod chart;
pub mod control_plane;
pub mod echo_hook;
pub mod emqx;
pub mod emqx_hook;
pub mod kubeconfig;
pub mod kubelet;
pub mod mqtt_load;
pub mod operator;
pub mod pins;
pub mod pki;
pub mod pod_env;
pub mod pod_hook;
pub mod pod_process;
pub mod pod_status;
pub mod pod_volumes;
pub mod process;
pub mod project_binary;
pub mod readiness_probe;
pub mod recorder;
pub mod sandbox;
pub mod service_proxy;
pub mod webhook_process;

pub use emqx_hook::EmqxHook;
pub use pod_hook::{PodContext, PodHook, RunningPod};
pub use sandbox::{Sandbox, SandboxOptions};
