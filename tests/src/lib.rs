//! `sandbox`: a real Kubernetes control plane with a simulated node, for
//! end-to-end tests and the demo. The folders are the parts of a cluster:
//!
//! - [`control_plane`]: etcd, kube-apiserver and kube-controller-manager
//!   built (once, cached) from pinned Go sources ([`control_plane::pins`],
//!   [`control_plane::binaries`]) and run as supervised processes
//!   ([`control_plane::process`]) with their PKI and kubeconfigs.
//! - [`network`]: every address on loopback ([`network::addresses`]) and the
//!   service proxy that makes ClusterIPs reach the ready endpoints of their
//!   EndpointSlices, as kube-proxy does.
//! - [`node`]: the simulated kubelet and what it does for a pod: environment,
//!   volumes, a project binary as a real process ([`node::pod_process`]),
//!   other images played by a [`PodHook`] — EMQX by [`EmqxHook`], which
//!   starts `emqx-sim` nodes on the pod's address — readiness probes, status.
//! - [`operator`]: the operator in the sandbox: CRDs and the reconciler in
//!   process, the Helm chart with helm ([`operator::chart`]), the project's
//!   binaries ([`operator::project_binary`]), the webhook as a host process.
//!
//! [`Sandbox::start`] runs them together. [`seed_003`] is the one fixture of
//! the end-to-end tests and the demo: seed 003's cluster with a number of
//! cores and replicants, the operator in process or through the chart, and
//! MQTT clients (crate `mqtt-load`) through its listeners Service.
//!
//! Dependencies point one way: `network` ← `control_plane` ← `node` ←
//! [`sandbox`] ← `operator` ← [`seed_003`].

pub mod bench_cluster;
pub mod condition_history;
pub mod control_plane;
pub mod metrics_page;
pub mod network;
pub mod node;
pub mod operator;
pub mod sandbox;
pub mod seed_003;
pub mod upgrade_breakdown;
pub mod upgrade_timeline;
pub mod watch_task;

pub use node::emqx_hook::EmqxHook;
pub use node::pod_hook::{PodContext, PodHook, RunningPod};
pub use sandbox::{Sandbox, SandboxOptions};
