//! The simulated node: the kubelet (and scheduler) and what it does for a
//! pod — environment, volumes, a project binary as a real process, a
//! [`PodHook`](pod_hook::PodHook) for other images (EMQX, echo), readiness
//! probes, status.

pub mod capacity;
pub mod echo_hook;
pub mod emqx_hook;
pub mod kubelet;
pub mod pod_env;
pub mod pod_hook;
pub mod pod_process;
pub mod pod_status;
pub mod pod_volumes;
pub mod readiness_probe;
