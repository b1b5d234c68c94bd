//! The extension point for containers that are neither inert nor one of the
//! project's binaries: a [`PodHook`] claims images (e.g. EMQX) and starts
//! something that plays the container, bound to the pod's own loopback
//! address. Readiness probes run against it like against any container.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Pod};

/// Everything a hook gets about the container it plays.
#[derive(Clone)]
pub struct PodContext {
    /// The Pod as bound to the node (spec complete, status not yet written).
    pub pod: Pod,
    /// The container this hook plays (a pod may have several).
    pub container: Container,
    /// The pod's own address; bind listeners here, never on 0.0.0.0.
    pub ip: Ipv4Addr,
    /// The pod's hostname (`spec.hostname`, else the pod name).
    pub hostname: String,
    /// `spec.subdomain` (the headless Service of a StatefulSet), if any.
    pub subdomain: Option<String>,
    /// The container's resolved environment, name → value.
    pub env: BTreeMap<String, String>,
    /// The container's volume mounts: `mountPath` → directory on this machine.
    pub volumes: BTreeMap<String, PathBuf>,
    /// A kubeconfig carrying a token of the pod's ServiceAccount.
    pub kubeconfig: PathBuf,
    /// The pod's scratch directory (logs may go here).
    pub pod_dir: PathBuf,
    /// A client with the sandbox's admin rights (for simulation bookkeeping,
    /// not for what the real container would do with its ServiceAccount).
    pub client: kube::Client,
}

impl std::fmt::Debug for PodContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PodContext")
            .field("pod", &self.pod.metadata.name)
            .field("container", &self.container.name)
            .field("ip", &self.ip)
            .field("hostname", &self.hostname)
            .finish_non_exhaustive()
    }
}

/// Plays containers of some images.
#[async_trait::async_trait]
pub trait PodHook: Send + Sync + 'static {
    /// Whether this hook plays a container with `image` (the full image reference).
    fn handles(&self, image: &str) -> bool;
    /// Starts playing the container. An error is reported in the container's
    /// status (waiting, reason `HookStartError`) and retried.
    async fn start(&self, ctx: PodContext) -> anyhow::Result<Box<dyn RunningPod>>;
}

/// A container played by a hook.
#[async_trait::async_trait]
pub trait RunningPod: Send + 'static {
    /// `Some(exit code)` once the container has stopped by itself.
    fn exit_code(&mut self) -> Option<i32> {
        None
    }
    /// Stops the container within `grace` (the pod's termination grace
    /// period) and releases everything it holds (ports, tasks).
    async fn stop(self: Box<Self>, grace: Duration);
}
