//! Containers whose image is one of this project's images
//! (`emqx-operator/emqx-webhook`, `emqx-operator/emqx-reconciler`, as
//! `images/build` makes them) run as real podman/runc containers, with the
//! pod spec applied the way the kubelet applies it:
//!
//! - the image's entrypoint; `command` replaces it and `args` the image's
//!   cmd, after `$(VAR)` expansion;
//! - exactly the resolved env, plus what the kubelet adds: `HOSTNAME` and the
//!   `kubernetes` Service's `KUBERNETES_SERVICE_*`/`KUBERNETES_PORT*`
//!   (its ClusterIP, served by the sandbox's service proxy). No `KUBECONFIG`:
//!   the binaries take kube's in-cluster configuration from the projected
//!   ServiceAccount volume at `/var/run/secrets/kubernetes.io/serviceaccount`;
//! - the securityContext (pod level, container level winning): user and
//!   group, `runAsNonRoot` checked as the kubelet checks it, a read-only root
//!   filesystem, capabilities, no privilege escalation;
//! - every volume bind-mounted at its `mountPath` (read-only when asked);
//! - the host network (the binaries bind the pod's own loopback address).
//!
//! stdout and stderr go to the container's log file, where the log book
//! (`kubectl logs`) reads them. Stopping is `podman stop --time GRACE`
//! (SIGTERM, then SIGKILL) and removal; Drop removes the container at once.
//! Every container carries the sandbox process's pid as a label, so the
//! leftovers of a killed test run are removed by the next sandbox
//! ([`ContainerRuntime::remove_leftovers`]).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use emqx_images::{Image, Podman};
use k8s_openapi::api::core::v1::{Container, Pod, PodSecurityContext, SecurityContext};

use crate::node::pod_env::expand;

/// The label naming the process (pid) that started a container.
pub const PID_LABEL: &str = "io.emqx-operator.sandbox.pid";
/// The label naming the sandbox slot that started a container.
pub const SLOT_LABEL: &str = "io.emqx-operator.sandbox.slot";

/// Where the projected ServiceAccount volume is mounted (the path kube's
/// in-cluster configuration reads).
pub const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// The images this process has loaded: digest → the image's `User`.
static LOADED: std::sync::LazyLock<Mutex<HashMap<String, String>>> =
    std::sync::LazyLock::new(Mutex::default);
/// Held while loading.
static LOADING: Mutex<()> = Mutex::new(());

/// A pod spec the kubelet refuses to turn into a container (the status
/// reason `CreateContainerConfigError`, as the kubelet reports it).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0}")]
pub struct ConfigError(pub String);

/// One bind mount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindMount {
    /// The host directory or file.
    pub host: PathBuf,
    /// The path in the container.
    pub path: String,
    /// Mounted read-only.
    pub read_only: bool,
}

/// Everything `podman run` is built from (pure input of [`run_arguments`]).
#[derive(Debug, Clone)]
pub struct RunInput<'a> {
    /// The pod.
    pub pod: &'a Pod,
    /// The container.
    pub container: &'a Container,
    /// The image reference to run.
    pub image: &'a str,
    /// The image's configured user (`Config.User`, e.g. `65532:65532`).
    pub image_user: &'a str,
    /// The environment, in order.
    pub env: &'a [(String, String)],
    /// The bind mounts.
    pub mounts: &'a [BindMount],
    /// The container's name in podman.
    pub name: &'a str,
    /// The pod's hostname.
    pub hostname: &'a str,
    /// Labels (e.g. [`PID_LABEL`]).
    pub labels: &'a [(String, String)],
}

/// The effective security context: the container's fields, else the pod's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Effective {
    /// runAsUser.
    pub run_as_user: Option<i64>,
    /// runAsGroup.
    pub run_as_group: Option<i64>,
    /// runAsNonRoot.
    pub run_as_non_root: Option<bool>,
}

/// Pod-level fields overridden by the container's, as the kubelet's
/// `DetermineEffectiveSecurityContext` does.
pub fn effective(
    pod: Option<&PodSecurityContext>,
    container: Option<&SecurityContext>,
) -> Effective {
    Effective {
        run_as_user: container
            .and_then(|c| c.run_as_user)
            .or(pod.and_then(|p| p.run_as_user)),
        run_as_group: container
            .and_then(|c| c.run_as_group)
            .or(pod.and_then(|p| p.run_as_group)),
        run_as_non_root: container
            .and_then(|c| c.run_as_non_root)
            .or(pod.and_then(|p| p.run_as_non_root)),
    }
}

/// The kubelet's `format.Pod`: `name_namespace(uid)`.
fn format_pod(pod: &Pod) -> String {
    format!(
        "{}_{}({})",
        pod.metadata.name.as_deref().unwrap_or_default(),
        pod.metadata.namespace.as_deref().unwrap_or_default(),
        pod.metadata.uid.as_deref().unwrap_or_default()
    )
}

/// The uid part of an image's `User` when numeric (`""` is root, as for the
/// kubelet: an image without a user runs as uid 0).
fn image_uid(image_user: &str) -> Option<i64> {
    let user = image_user.split(':').next().unwrap_or_default();
    if user.is_empty() {
        return Some(0);
    }
    user.parse().ok()
}

/// The kubelet's `verifyRunAsNonRoot` (kubernetes
/// pkg/kubelet/kuberuntime/security_context_others.go, v1.35), with its
/// messages.
pub fn verify_run_as_non_root(
    pod: &Pod,
    container: &Container,
    image_user: &str,
) -> Result<(), ConfigError> {
    let sc = effective(
        pod.spec.as_ref().and_then(|s| s.security_context.as_ref()),
        container.security_context.as_ref(),
    );
    if sc.run_as_non_root != Some(true) {
        return Ok(());
    }
    if let Some(uid) = sc.run_as_user {
        if uid == 0 {
            return Err(ConfigError(format!(
                "container's runAsUser breaks non-root policy (pod: {:?}, container: {})",
                format_pod(pod),
                container.name
            )));
        }
        return Ok(());
    }
    match image_uid(image_user) {
        Some(0) => Err(ConfigError(format!(
            "container has runAsNonRoot and image will run as root (pod: {:?}, container: {})",
            format_pod(pod),
            container.name
        ))),
        Some(_) => Ok(()),
        None => Err(ConfigError(format!(
            "container has runAsNonRoot and image has non-numeric user ({image_user}), cannot verify user is non-root (pod: {:?}, container: {})",
            format_pod(pod),
            container.name
        ))),
    }
}

/// The environment variables the kubelet adds for the `kubernetes` Service
/// (the master service's docker-links variables) and the hostname.
pub fn kubelet_env(kubernetes_ip: &str, port: u16, hostname: &str) -> Vec<(String, String)> {
    let url = format!("tcp://{kubernetes_ip}:{port}");
    let prefix = format!("KUBERNETES_PORT_{port}_TCP");
    vec![
        ("HOSTNAME".into(), hostname.into()),
        ("KUBERNETES_SERVICE_HOST".into(), kubernetes_ip.into()),
        ("KUBERNETES_SERVICE_PORT".into(), port.to_string()),
        ("KUBERNETES_SERVICE_PORT_HTTPS".into(), port.to_string()),
        ("KUBERNETES_PORT".into(), url.clone()),
        (prefix.clone(), url),
        (format!("{prefix}_PROTO"), "tcp".into()),
        (format!("{prefix}_PORT"), port.to_string()),
        (format!("{prefix}_ADDR"), kubernetes_ip.into()),
    ]
}

/// The `podman run` arguments (after `run`) for a container, or the
/// kubelet's refusal.
pub fn run_arguments(input: &RunInput<'_>) -> Result<Vec<String>, ConfigError> {
    let pod_sc = input
        .pod
        .spec
        .as_ref()
        .and_then(|s| s.security_context.as_ref());
    let container_sc = input.container.security_context.as_ref();
    verify_run_as_non_root(input.pod, input.container, input.image_user)?;
    let sc = effective(pod_sc, container_sc);
    let mut out: Vec<String> = vec![
        "--name".into(),
        input.name.into(),
        "--pull=never".into(),
        "--network=host".into(),
        format!("--hostname={}", input.hostname),
        // The kubelet's env is the whole environment: none of podman's own
        // (container=podman) and no host variables.
        "--env-host=false".into(),
        "--http-proxy=false".into(),
        "--rm".into(),
        "--sig-proxy=false".into(),
    ];
    for (key, value) in input.labels {
        out.push(format!("--label={key}={value}"));
    }
    match (sc.run_as_user, sc.run_as_group) {
        (Some(user), Some(group)) => out.push(format!("--user={user}:{group}")),
        (Some(user), None) => out.push(format!("--user={user}")),
        (None, Some(group)) => {
            // The image's user with the given group.
            let user = input.image_user.split(':').next().unwrap_or_default();
            let user = if user.is_empty() { "0" } else { user };
            out.push(format!("--user={user}:{group}"));
        }
        (None, None) => {}
    }
    // The kubelet adds fsGroup and supplementalGroups to the process's groups.
    for group in pod_sc.and_then(|p| p.fs_group).into_iter().chain(
        pod_sc
            .and_then(|p| p.supplemental_groups.clone())
            .into_iter()
            .flatten(),
    ) {
        out.push(format!("--group-add={group}"));
    }
    if let Some(sc) = container_sc {
        if sc.read_only_root_filesystem == Some(true) {
            // Kubernetes adds no writable /tmp or /run of its own.
            out.push("--read-only".into());
            out.push("--read-only-tmpfs=false".into());
        }
        if sc.allow_privilege_escalation == Some(false) {
            out.push("--security-opt=no-new-privileges".into());
        }
        if sc.privileged == Some(true) {
            out.push("--privileged".into());
        }
        for cap in sc.capabilities.iter().flat_map(|c| c.drop.iter().flatten()) {
            out.push(format!("--cap-drop={}", capability(cap)));
        }
        for cap in sc.capabilities.iter().flat_map(|c| c.add.iter().flatten()) {
            out.push(format!("--cap-add={}", capability(cap)));
        }
    }
    for (key, value) in input.env {
        out.push(format!("--env={key}={value}"));
    }
    for mount in input.mounts {
        out.push(format!(
            "--volume={}:{}:{}",
            mount.host.display(),
            mount.path,
            if mount.read_only { "ro" } else { "rw" }
        ));
    }
    if let Some(dir) = input
        .container
        .working_dir
        .as_deref()
        .filter(|d| !d.is_empty())
    {
        out.push(format!("--workdir={dir}"));
    }
    let vars: BTreeMap<String, String> = input.env.iter().cloned().collect();
    let expanded =
        |list: &[String]| -> Vec<String> { list.iter().map(|a| expand(a, &vars)).collect() };
    if let Some(command) = input.container.command.as_deref().filter(|c| !c.is_empty()) {
        // A JSON array: the command exactly, no shell.
        let json = serde_json::to_string(&expanded(command)).unwrap_or_default();
        out.push(format!("--entrypoint={json}"));
    }
    out.push(input.image.into());
    out.extend(expanded(
        input.container.args.as_deref().unwrap_or_default(),
    ));
    Ok(out)
}

/// `ALL` → `all`, `NET_BIND_SERVICE` → `CAP_NET_BIND_SERVICE`.
fn capability(name: &str) -> String {
    if name.eq_ignore_ascii_case("all") {
        "all".into()
    } else if name.to_ascii_uppercase().starts_with("CAP_") {
        name.to_ascii_uppercase()
    } else {
        format!("CAP_{}", name.to_ascii_uppercase())
    }
}

/// The project's images and the podman that runs them, shared by a
/// sandbox's pods.
#[derive(Debug)]
pub struct ContainerRuntime {
    podman: Podman,
    /// Repository (no tag) → image.
    images: BTreeMap<String, Image>,
    /// Digest → the image's `User`, once loaded (shared by the process).
    loaded: &'static Mutex<HashMap<String, String>>,
    /// The sandbox's slot, for names and labels.
    slot: u32,
}

impl ContainerRuntime {
    /// The runtime for `images` in the podman storage of `out`.
    pub fn new(out: &Path, images: &[Image], slot: u32) -> ContainerRuntime {
        ContainerRuntime {
            podman: Podman::new(out),
            images: images
                .iter()
                .map(|i| (repository(&i.reference).to_owned(), i.clone()))
                .collect(),
            loaded: &LOADED,
            slot,
        }
    }

    /// The image of a repository, if it is one of the project's.
    pub fn image(&self, repository: &str) -> Option<&Image> {
        self.images.get(repository)
    }

    /// Loads the image's archive into podman's storage (once per process and
    /// digest: the sandboxes of one test binary share it) and returns the
    /// image's configured user.
    pub fn ensure_loaded(&self, image: &Image) -> Result<String> {
        let key = image.digest.clone();
        if let Some(user) = self.loaded.lock().ok().and_then(|l| l.get(&key).cloned()) {
            return Ok(user);
        }
        // One load at a time per process; the others then find it loaded.
        let _one = LOADING.lock();
        if let Some(user) = self.loaded.lock().ok().and_then(|l| l.get(&key).cloned()) {
            return Ok(user);
        }
        self.podman.load(image)?;
        let user = self.podman.run(&[
            "image",
            "inspect",
            "--format",
            "{{.Config.User}}",
            &image.reference,
        ])?;
        if let Ok(mut loaded) = self.loaded.lock() {
            loaded.insert(key, user.clone());
        }
        Ok(user)
    }

    /// Removes containers of this slot whose starting process is gone (a test
    /// run killed before its Drop ran). Containers of live processes, and
    /// containers without the label, are left alone.
    pub fn remove_leftovers(&self) {
        let filter = format!("--filter=label={SLOT_LABEL}={}", self.slot);
        let format = format!("{{{{.ID}}}} {{{{index .Labels \"{PID_LABEL}\"}}}}");
        let Ok(list) = self
            .podman
            .run(&["ps", "--all", &filter, "--format", &format])
        else {
            return;
        };
        let alive = |pid: u32| Path::new(&format!("/proc/{pid}")).exists();
        for (id, pid) in leftovers(&list, alive) {
            eprintln!("[sandbox] removing leftover container {id} of process {pid}");
            let _ = self.podman.output(&["rm", "--force", "--time", "0", &id]);
        }
    }

    /// The labels of this process's containers.
    pub fn labels(&self) -> Vec<(String, String)> {
        vec![
            (PID_LABEL.into(), std::process::id().to_string()),
            (SLOT_LABEL.into(), self.slot.to_string()),
        ]
    }

    /// A container name unique per sandbox slot, pod and container (and
    /// start: a restarted container is a new one).
    pub fn name(&self, pod: &Pod, container: &str, start: u32) -> String {
        let uid: String = pod
            .metadata
            .uid
            .as_deref()
            .unwrap_or_default()
            .chars()
            .take(8)
            .collect();
        format!(
            "sandbox{}-{}-{}-{container}-{uid}-{start}",
            self.slot,
            pod.metadata.namespace.as_deref().unwrap_or_default(),
            pod.metadata.name.as_deref().unwrap_or_default(),
        )
    }

    /// Starts `podman run ARGS` in the foreground, its output into `log`,
    /// and waits until the container runs (its pid) or has failed to start.
    pub async fn start(&self, name: &str, args: &[String], log: &Path) -> Result<RunningContainer> {
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("opening {}", log.display()))?;
        let mut command = tokio::process::Command::from(self.podman.command());
        command
            .arg("run")
            .args(args)
            .stdout(log_file.try_clone()?)
            .stderr(log_file)
            .kill_on_drop(true);
        let child = command.spawn().context("starting podman run")?;
        let mut running = RunningContainer {
            podman: self.podman.clone(),
            name: name.to_owned(),
            child,
            pid: None,
            removed: false,
            exit: None,
        };
        // Bounded: podman creates the container in about a second.
        for _ in 0..300 {
            if let Some(code) = running.exit_code() {
                running.removed = true;
                let tail = std::fs::read_to_string(log).unwrap_or_default();
                let last = tail.lines().last().unwrap_or_default().to_owned();
                if code == 125 || code == 126 || code == 127 {
                    bail!("podman run failed ({code}): {last}");
                }
                // It ran and exited before we saw it running: an exit like
                // any other, which the kubelet reports (and restarts).
                running.exit = Some(code);
                return Ok(running);
            }
            let podman = self.podman.clone();
            let n = name.to_owned();
            let pid = tokio::task::spawn_blocking(move || {
                podman.run(&["inspect", "--format", "{{.State.Pid}}", &n])
            })
            .await
            .ok()
            .and_then(Result::ok)
            .and_then(|p| p.parse::<u32>().ok())
            .filter(|p| *p != 0);
            if pid.is_some() {
                running.pid = pid;
                return Ok(running);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!("container {name} did not start within 30 s")
    }
}

/// From `podman ps` lines `ID PID`, the containers whose process is gone
/// (an unreadable pid is a container of nobody alive).
pub fn leftovers(list: &str, alive: impl Fn(u32) -> bool) -> Vec<(String, String)> {
    list.lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let id = fields.next()?;
            let pid = fields.next().unwrap_or_default();
            let running = pid.parse::<u32>().is_ok_and(&alive);
            (!running).then(|| (id.to_owned(), pid.to_owned()))
        })
        .collect()
}

/// The repository of an image reference (`a/b:1.0` → `a/b`).
fn repository(reference: &str) -> &str {
    crate::node::pod_env::image_repository(reference)
}

/// A started container; removed at once on drop.
#[derive(Debug)]
pub struct RunningContainer {
    podman: Podman,
    name: String,
    child: tokio::process::Child,
    pid: Option<u32>,
    removed: bool,
    exit: Option<i32>,
}

impl RunningContainer {
    /// The container's main process as the host sees it.
    pub fn pid(&self) -> Option<u32> {
        self.pid
    }

    /// `Some(exit code)` once the container has exited (`podman run` exits
    /// with the container's code; a signal is 128+n).
    pub fn exit_code(&mut self) -> Option<i32> {
        use std::os::unix::process::ExitStatusExt;
        if self.exit.is_some() {
            return self.exit;
        }
        let code = match self.child.try_wait() {
            Ok(Some(status)) => Some(
                status
                    .code()
                    .unwrap_or_else(|| 128 + status.signal().unwrap_or(0)),
            ),
            Ok(None) => None,
            Err(_) => Some(-1),
        };
        if code.is_some() {
            self.exit = code;
        }
        code
    }

    /// SIGTERM, up to `grace`, then SIGKILL (`podman stop --time`), then
    /// removal.
    pub async fn stop(mut self, grace: Duration) {
        if self.exit_code().is_none() {
            let seconds = grace.as_secs().to_string();
            let mut stop = tokio::process::Command::from(self.podman.command());
            stop.args(["stop", "--ignore", "--time", &seconds, &self.name])
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            let _ = tokio::time::timeout(grace + Duration::from_secs(15), stop.status()).await;
            let _ = tokio::time::timeout(Duration::from_secs(15), self.child.wait()).await;
        }
        let mut rm = tokio::process::Command::from(self.podman.command());
        rm.args(["rm", "--force", "--ignore", "--time", "0", &self.name])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let _ = tokio::time::timeout(Duration::from_secs(15), rm.status()).await;
        self.removed = true;
    }
}

impl Drop for RunningContainer {
    fn drop(&mut self) {
        if !self.removed {
            // Synchronous: Drop of a sandbox must leave nothing running. Only
            // the container this runner started, by its name.
            let _ = self
                .podman
                .output(&["rm", "--force", "--ignore", "--time", "0", &self.name]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A pod as the chart's webhook Deployment makes it (security contexts
    /// from charts/emqx-operator/values.yaml).
    fn chart_pod(pod_sc: serde_json::Value, container_sc: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "w-1", "namespace": "ops", "uid": "0123456789"},
            "spec": {
                "securityContext": pod_sc,
                "containers": [{
                    "name": "webhook",
                    "image": "emqx-operator/emqx-webhook:0.1.0",
                    "command": ["/emqx-webhook"],
                    "args": ["--listen=$(POD_IP):9443", "--literal=$$(POD_IP)"],
                    "securityContext": container_sc,
                }],
            },
        }))
        .expect("pod")
    }

    fn arguments_of(pod: &Pod, image_user: &str) -> Result<Vec<String>, ConfigError> {
        let container = &pod.spec.as_ref().expect("spec").containers[0];
        let env = vec![("POD_IP".to_string(), "127.100.0.3".to_string())];
        let mounts = vec![
            BindMount {
                host: PathBuf::from("/s/pods/p/volumes/kube-api-access-x"),
                path: SERVICE_ACCOUNT_DIR.into(),
                read_only: true,
            },
            BindMount {
                host: PathBuf::from("/s/pods/p/volumes/scratch"),
                path: "/scratch".into(),
                read_only: false,
            },
        ];
        run_arguments(&RunInput {
            pod,
            container,
            image: "emqx-operator/emqx-webhook:0.1.0",
            image_user,
            env: &env,
            mounts: &mounts,
            name: "sandbox0-ops-w-1-webhook-01234567-0",
            hostname: "w-1",
            labels: &[(PID_LABEL.to_string(), "42".to_string())],
        })
    }

    #[test]
    fn the_chart_s_security_context_becomes_podman_flags() {
        let pod = chart_pod(
            json!({"runAsNonRoot": true, "runAsUser": 65532, "runAsGroup": 65532, "fsGroup": 2000}),
            json!({"allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true,
                   "capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]}}),
        );
        let args = arguments_of(&pod, "65532:65532").expect("runs");
        for flag in [
            "--user=65532:65532",
            "--group-add=2000",
            "--read-only",
            "--read-only-tmpfs=false",
            "--security-opt=no-new-privileges",
            "--cap-drop=all",
            "--cap-add=CAP_NET_BIND_SERVICE",
            "--network=host",
            "--pull=never",
            "--env-host=false",
            "--env=POD_IP=127.100.0.3",
            "--label=io.emqx-operator.sandbox.pid=42",
            "--volume=/s/pods/p/volumes/kube-api-access-x:/var/run/secrets/kubernetes.io/serviceaccount:ro",
            "--volume=/s/pods/p/volumes/scratch:/scratch:rw",
            "--entrypoint=[\"/emqx-webhook\"]",
        ] {
            assert!(args.iter().any(|a| a == flag), "{flag} missing in {args:?}");
        }
        // The image, then the args ($(VAR) expanded, $$ a literal $).
        let image = args
            .iter()
            .position(|a| a == "emqx-operator/emqx-webhook:0.1.0")
            .expect("image");
        assert_eq!(
            args[image + 1..],
            ["--listen=127.100.0.3:9443", "--literal=$(POD_IP)"]
        );
        assert!(!args.iter().any(|a| a.contains("KUBECONFIG")), "{args:?}");
    }

    #[test]
    fn the_container_s_fields_win_over_the_pod_s() {
        let pod = chart_pod(
            json!({"runAsUser": 1000, "runAsGroup": 1000}),
            json!({"runAsUser": 65532}),
        );
        let args = arguments_of(&pod, "").expect("runs");
        assert!(args.iter().any(|a| a == "--user=65532:1000"), "{args:?}");
        // Without a readOnlyRootFilesystem the root is writable.
        assert!(!args.iter().any(|a| a == "--read-only"), "{args:?}");
    }

    #[test]
    fn run_as_non_root_is_checked_as_the_kubelet_checks_it() {
        // runAsUser 0 with runAsNonRoot: refused, whatever the image.
        let pod = chart_pod(json!({"runAsNonRoot": true, "runAsUser": 0}), json!({}));
        let err = arguments_of(&pod, "65532:65532").expect_err("refused");
        assert_eq!(
            err.0,
            "container's runAsUser breaks non-root policy (pod: \"w-1_ops(0123456789)\", container: webhook)"
        );
        // No runAsUser: the image's user decides; root (or none) is refused.
        let pod = chart_pod(json!({}), json!({"runAsNonRoot": true}));
        for root in ["", "0", "0:0"] {
            let err = arguments_of(&pod, root).expect_err("refused");
            assert!(
                err.0
                    .starts_with("container has runAsNonRoot and image will run as root"),
                "{root:?}: {err}"
            );
        }
        let err = arguments_of(&pod, "nonroot").expect_err("refused");
        assert!(err.0.contains("non-numeric user (nonroot)"), "{err}");
        assert!(arguments_of(&pod, "65532:65532").is_ok());
        // The container's runAsNonRoot=false wins over the pod's true.
        let pod = chart_pod(
            json!({"runAsNonRoot": true}),
            json!({"runAsNonRoot": false}),
        );
        assert!(arguments_of(&pod, "0").is_ok());
    }

    #[test]
    fn only_containers_of_gone_processes_are_leftovers() {
        let list = "aaa 100\nbbb 200\nccc <no value>\n";
        let gone = leftovers(list, |pid| pid == 100);
        assert_eq!(
            gone,
            [
                ("bbb".to_string(), "200".to_string()),
                ("ccc".to_string(), "<no".to_string())
            ]
        );
        assert!(leftovers("", |_| false).is_empty());
    }

    #[test]
    fn the_kubernetes_service_variables_are_the_kubelet_s() {
        let env: BTreeMap<String, String> =
            kubelet_env("127.164.0.1", 443, "w-1").into_iter().collect();
        assert_eq!(env["KUBERNETES_SERVICE_HOST"], "127.164.0.1");
        assert_eq!(env["KUBERNETES_SERVICE_PORT"], "443");
        assert_eq!(env["KUBERNETES_PORT"], "tcp://127.164.0.1:443");
        assert_eq!(env["KUBERNETES_PORT_443_TCP_ADDR"], "127.164.0.1");
        assert_eq!(env["HOSTNAME"], "w-1");
    }
}
