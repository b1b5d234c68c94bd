//! [`Sandbox`]: the control plane, the simulated node and the service proxy
//! together, started by one call and ended by [`Sandbox::stop`] or Drop.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::Api;

use crate::control_plane::ControlPlane;
use crate::control_plane::audit::{self, AuditedWrite};
use crate::control_plane::binaries::{Binaries, ensure_built_async};
use crate::control_plane::process::{end_leftovers, rss_kib};
use crate::network::addresses::{AddressPlan, SlotLock, acquire_slot};
use crate::network::kubernetes_endpoints;
use crate::network::service_proxy::ServiceProxy;
use crate::node::kubelet::{Kubelet, KubeletConfig};
use crate::node::pod_container::ContainerRuntime;
use crate::node::pod_hook::PodHook;

/// How to start a sandbox.
#[derive(Clone, Default)]
pub struct SandboxOptions {
    /// Image repository (no tag) → binary to run for containers of that image,
    /// e.g. `emqx-operator/emqx-webhook` → `target/debug/emqx-webhook`.
    pub project_binaries: BTreeMap<String, PathBuf>,
    /// The project's images (and the images' output folder, whose podman
    /// storage runs them): containers of these images run as podman
    /// containers (see [`crate::node::pod_container`]); asked before
    /// `project_binaries`.
    pub project_images: Option<(PathBuf, Vec<emqx_images::Image>)>,
    /// Hooks for other images (asked in order, before `project_binaries`).
    pub hooks: Vec<Arc<dyn PodHook>>,
    /// The apiserver logs every write ([`Sandbox::audited_writes`]).
    pub audit_writes: bool,
    /// Users whose every request (reads and watches too) the apiserver logs
    /// ([`Sandbox::audited_requests`]); writes of everyone are logged too.
    pub audit_readers: Vec<String>,
    /// More flags for kube-controller-manager (e.g. its client's
    /// `--kube-api-qps`), after the sandbox's own.
    pub controller_manager_args: Vec<String>,
}

impl SandboxOptions {
    /// Adds a project binary for an image repository.
    pub fn project_binary(mut self, image_repository: &str, binary: impl Into<PathBuf>) -> Self {
        self.project_binaries
            .insert(image_repository.to_string(), binary.into());
        self
    }

    /// Runs containers of `images` (made by `images/build` in `out`) as
    /// podman containers.
    pub fn project_images(mut self, out: &Path, images: Vec<emqx_images::Image>) -> Self {
        self.project_images = Some((out.to_path_buf(), images));
        self
    }

    /// Adds a hook.
    pub fn hook(mut self, hook: Arc<dyn PodHook>) -> Self {
        self.hooks.push(hook);
        self
    }

    /// Has the apiserver log every write, for [`Sandbox::audited_writes`].
    pub fn audit_writes(mut self) -> Self {
        self.audit_writes = true;
        self
    }

    /// Has the apiserver log every request of `user` (and every write), for
    /// [`Sandbox::audited_requests`]: e.g. `system:serviceaccount:ns:name`.
    pub fn audit_requests_of(mut self, user: impl Into<String>) -> Self {
        self.audit_readers.push(user.into());
        self
    }

    /// Adds flags to kube-controller-manager's command line.
    pub fn controller_manager_args(mut self, args: impl IntoIterator<Item = String>) -> Self {
        self.controller_manager_args.extend(args);
        self
    }
}

/// A running sandbox cluster.
pub struct Sandbox {
    client: kube::Client,
    kubeconfig: PathBuf,
    binaries: Binaries,
    plan: AddressPlan,
    state: Option<tempfile::TempDir>,
    proxy: Option<ServiceProxy>,
    kubelet: Option<Kubelet>,
    control_plane: Option<ControlPlane>,
    _slot: SlotLock,
}

/// The simulated node's name.
pub const NODE_NAME: &str = "sandbox-node";

impl Sandbox {
    /// Builds the binaries if needed, starts etcd, kube-apiserver,
    /// kube-controller-manager, the simulated kubelet and the service proxy,
    /// and waits until pods can be created (the `default` ServiceAccount exists).
    /// Prints the startup time on stderr.
    pub async fn start(options: SandboxOptions) -> Result<Sandbox> {
        let binaries = ensure_built_async().await?;
        let started = Instant::now();
        let slot = tokio::task::spawn_blocking(acquire_slot).await??;
        end_leftovers(&slot.dir);
        let plan = slot.plan;
        let state = tempfile::Builder::new()
            .prefix(&format!("emqx-operator-sandbox-{}-", plan.slot))
            .tempdir()
            .context("creating the sandbox state directory")?;
        // The pods' volumes live under it, and a container's user (65532)
        // must reach them: traversable and readable like /var/lib/kubelet,
        // where the files' own modes (0644 by default) decide.
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(state.path(), std::fs::Permissions::from_mode(0o755))
                .context("opening the sandbox state directory to containers' users")?;
        }
        let containers = match options.project_images {
            Some((out, images)) => {
                let runtime = Arc::new(ContainerRuntime::new(&out, &images, u32::from(plan.slot)));
                let sweeper = runtime.clone();
                tokio::task::spawn_blocking(move || sweeper.remove_leftovers()).await?;
                Some(runtime)
            }
            None => None,
        };
        let control_plane = ControlPlane::start(
            &binaries,
            plan,
            state.path(),
            &slot.dir,
            options.audit_writes,
            &options.audit_readers,
            &options.controller_manager_args,
        )
        .await?;
        let client = control_plane.client.clone();
        kubernetes_endpoints::publish(
            &client,
            plan.control_plane(),
            crate::control_plane::APISERVER_PORT,
        )
        .await?;
        let kubelet = Kubelet::start(KubeletConfig {
            node_name: NODE_NAME.into(),
            plan,
            client: client.clone(),
            pods_dir: state.path().join("pods"),
            claims_dir: state.path().join("claims"),
            server: control_plane.server.clone(),
            ca_pem: control_plane.pki.ca_pem.clone(),
            serving: control_plane.pki.kubelet.clone(),
            project_binaries: options.project_binaries,
            containers,
            hooks: options.hooks,
        })
        .await?;
        let proxy = ServiceProxy::start(client.clone(), plan);
        let mut sandbox = Sandbox {
            client,
            kubeconfig: control_plane.admin_kubeconfig.clone(),
            binaries,
            plan,
            state: Some(state),
            proxy: Some(proxy),
            kubelet: Some(kubelet),
            control_plane: Some(control_plane),
            _slot: slot,
        };
        sandbox
            .wait_for_default_service_account(Duration::from_secs(60))
            .await?;
        eprintln!(
            "[sandbox] cluster ready in {:.1}s (slot {}, apiserver {}, kubeconfig {})",
            started.elapsed().as_secs_f64(),
            plan.slot,
            sandbox.server(),
            sandbox.kubeconfig.display()
        );
        Ok(sandbox)
    }

    async fn wait_for_default_service_account(&mut self, timeout: Duration) -> Result<()> {
        let accounts: Api<ServiceAccount> = Api::namespaced(self.client.clone(), "default");
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(cp) = self.control_plane.as_mut() {
                cp.check_alive()?;
            }
            if accounts.get_opt("default").await?.is_some() {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "the default ServiceAccount did not appear within {timeout:?}: is kube-controller-manager running?"
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// An admin client.
    pub fn client(&self) -> kube::Client {
        self.client.clone()
    }

    /// The admin kubeconfig file (for kubectl and helm).
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// The cluster CA (PEM), for kubeconfigs of other users.
    pub fn ca_pem(&self) -> String {
        self.control_plane
            .as_ref()
            .map(|c| c.pki.ca_pem.clone())
            .unwrap_or_default()
    }

    /// The apiserver URL.
    pub fn server(&self) -> String {
        self.control_plane
            .as_ref()
            .map(|c| c.server.clone())
            .unwrap_or_default()
    }

    /// The pinned binaries (kubectl and helm paths among them).
    pub fn binaries(&self) -> &Binaries {
        &self.binaries
    }

    /// The sandbox's addresses.
    pub fn addresses(&self) -> AddressPlan {
        self.plan
    }

    /// The state directory (logs in `logs/`, pods in `pods/`).
    pub fn state_dir(&self) -> Option<&Path> {
        self.state.as_ref().map(|s| s.path())
    }

    /// Every write the apiserver completed so far, oldest first; empty
    /// unless the sandbox was started with [`SandboxOptions::audit_writes`].
    pub fn audited_writes(&self) -> Result<Vec<AuditedWrite>> {
        match self.state_dir() {
            Some(state) => audit::read_writes(&audit::log_path(&state.join("logs"))),
            None => Ok(Vec::new()),
        }
    }

    /// The apiserver's audit log, if the sandbox keeps its state (read it
    /// in pieces with [`audit::read_requests_from`]).
    pub fn audit_log(&self) -> Option<PathBuf> {
        self.state_dir()
            .map(|state| audit::log_path(&state.join("logs")))
    }

    /// Every logged request so far, oldest first: the writes, and every
    /// request of the users named by [`SandboxOptions::audit_requests_of`].
    pub fn audited_requests(&self) -> Result<Vec<AuditedWrite>> {
        match self.state_dir() {
            Some(state) => audit::read_requests(&audit::log_path(&state.join("logs"))),
            None => Ok(Vec::new()),
        }
    }

    /// What a pod's container wrote (stdout and stderr), as `kubectl logs`
    /// shows it: the current (or last) instance's; the log stays after the
    /// pod is gone. (A restarted container's earlier instance is what
    /// `kubectl logs --previous` shows.)
    pub fn container_log(&self, namespace: &str, pod: &str, container: &str) -> Option<String> {
        let prefix = format!("{namespace}_{pod}_");
        let pods = self.state_dir()?.join("pods");
        // A pod re-created under the same name (a StatefulSet's) has one
        // directory per instance: the newest is the current (or last) one.
        let dir = std::fs::read_dir(pods)
            .ok()?
            .filter_map(Result::ok)
            .filter(|entry| entry.file_name().to_string_lossy().starts_with(&prefix))
            .max_by_key(|entry| entry.metadata().and_then(|m| m.modified()).ok())?;
        std::fs::read_to_string(crate::node::pod_process::log_path(&dir.path(), container)).ok()
    }

    /// A `kubectl` command bound to this sandbox.
    pub fn kubectl(&self) -> tokio::process::Command {
        let mut command = tokio::process::Command::new(&self.binaries.kubectl);
        command
            .env("KUBECONFIG", &self.kubeconfig)
            .kill_on_drop(true);
        command
    }

    /// A `helm` command bound to this sandbox (its caches and config under the
    /// state directory, not the user's home).
    pub fn helm(&self) -> tokio::process::Command {
        let mut command = tokio::process::Command::new(&self.binaries.helm);
        command
            .env("KUBECONFIG", &self.kubeconfig)
            .kill_on_drop(true);
        if let Some(state) = self.state_dir() {
            let helm = state.join("helm");
            command
                .env("HELM_CACHE_HOME", helm.join("cache"))
                .env("HELM_CONFIG_HOME", helm.join("config"))
                .env("HELM_DATA_HOME", helm.join("data"));
        }
        command
    }

    /// `(name, pid)` of every process the sandbox runs: control plane and pods.
    pub fn pids(&self) -> Vec<(String, u32)> {
        let mut pids = self
            .control_plane
            .as_ref()
            .map(|c| c.pids())
            .unwrap_or_default();
        if let Some(kubelet) = &self.kubelet {
            pids.extend(kubelet.process_pids());
        }
        pids
    }

    /// Resident memory (KiB) of etcd, kube-apiserver and kube-controller-manager.
    pub fn control_plane_rss_kib(&self) -> Vec<(String, u64)> {
        self.control_plane
            .as_ref()
            .map(|c| c.pids())
            .unwrap_or_default()
            .into_iter()
            .filter_map(|(name, pid)| rss_kib(pid).map(|rss| (name, rss)))
            .collect()
    }

    /// Stops the pods' containers, the proxy and the control plane, and removes
    /// the state directory (set `SANDBOX_KEEP_STATE=1` to keep it for debugging).
    pub async fn stop(mut self) -> Result<()> {
        self.shutdown().await;
        Ok(())
    }

    async fn shutdown(&mut self) {
        if let Some(proxy) = self.proxy.take() {
            proxy.stop();
        }
        if let Some(kubelet) = self.kubelet.take() {
            kubelet.stop().await;
        }
        if let Some(mut control_plane) = self.control_plane.take() {
            tokio::task::spawn_blocking(move || control_plane.stop())
                .await
                .ok();
        }
        self.remove_state();
    }

    fn remove_state(&mut self) {
        if let Some(state) = self.state.take() {
            if std::env::var_os("SANDBOX_KEEP_STATE").is_some() {
                eprintln!("[sandbox] state kept in {}", state.keep().display());
            } else {
                let _ = state.close();
            }
        }
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        // Synchronous: the kubelet's children are killed when its tasks drop,
        // the control plane gets SIGTERM then SIGKILL.
        self.proxy.take();
        self.kubelet.take();
        self.control_plane.take();
        self.remove_state();
    }
}
