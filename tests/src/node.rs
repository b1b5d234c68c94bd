//! The simulated node: the kubelet (and scheduler) and what it does for a
//! pod — environment, volumes, the project's images as podman containers, a
//! test binary as a real process, a
//! [`PodHook`](pod_hook::PodHook) for other images (EMQX, echo), readiness
//! probes, status — and the kubelet's HTTPS API that `kubectl logs` reaches
//! through the apiserver (the logs of every container it runs).

pub mod capacity;
pub mod container_logs;
pub mod echo_hook;
pub mod emqx_console;
pub mod emqx_hook;
pub mod kubelet;
pub mod kubelet_server;
pub mod log_book;
pub mod pod_container;
pub mod pod_env;
pub mod pod_hook;
pub mod pod_process;
pub mod pod_status;
pub mod pod_volumes;
pub mod readiness_probe;
