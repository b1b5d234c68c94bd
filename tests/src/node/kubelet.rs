//! The simulated kubelet (and scheduler): one Node, every pending pod bound to
//! it, each pod given its own loopback address, its containers played (a
//! project binary as a real process, a [`PodHook`], or an inert container),
//! readiness probed for real, status reported, deletions finished; its
//! HTTPS API ([`kubelet_server`](crate::node::kubelet_server)) serves the
//! containers' logs.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Binding, Container, Node, ObjectReference, Pod};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Api, ResourceExt};
use serde_json::json;
use tokio::sync::watch;

use crate::control_plane::kubeconfig::{self, Credentials};
use crate::control_plane::pki::CertPair;
use crate::network::addresses::{AddressPlan, PodIpPool};
use crate::node::capacity::{NODE_CPU, NODE_MEMORY_BYTES};
use crate::node::kubelet_server::{self, KUBELET_PORT, KubeletServer};
use crate::node::log_book::LogBook;
use crate::node::pod_container::{
    BindMount, ConfigError, ContainerRuntime, RunInput, RunningContainer, kubelet_env,
    run_arguments,
};
use crate::node::pod_env::{ObjectData, PodAddresses, image_repository, resolve_env};
use crate::node::pod_hook::{PodContext, PodHook, RunningPod};
use crate::node::pod_process::{
    ProcessContainer, ProcessSpec, arguments, log_path, rewrite_mount_paths,
};
use crate::node::pod_status::{ContainerPhase, ContainerView, StatusInput, desired_status};
use crate::node::pod_volumes::{
    REFRESH_INTERVAL, fetch_object_data, materialise, mounts, service_account_token,
};
use crate::node::readiness_probe::{self, ProbeState, ProbeTarget, ProbeTiming};

/// The field manager of the kubelet's status writes.
const MANAGER: &str = "sandbox-kubelet";

/// What the kubelet needs to know.
#[derive(Clone)]
pub struct KubeletConfig {
    /// The Node's name.
    pub node_name: String,
    /// The sandbox's addresses.
    pub plan: AddressPlan,
    /// Admin client.
    pub client: kube::Client,
    /// Where pod directories go.
    pub pods_dir: PathBuf,
    /// Where PersistentVolumeClaim directories go.
    pub claims_dir: PathBuf,
    /// apiserver URL for pod kubeconfigs.
    pub server: String,
    /// The cluster CA.
    pub ca_pem: String,
    /// The kubelet API's serving certificate (for the node's address).
    pub serving: CertPair,
    /// Image repository → binary.
    pub project_binaries: BTreeMap<String, PathBuf>,
    /// The project's images, run as podman containers (asked before
    /// `project_binaries`).
    pub containers: Option<Arc<ContainerRuntime>>,
    /// Hooks, asked in order.
    pub hooks: Vec<Arc<dyn PodHook>>,
}

/// The running kubelet; [`Kubelet::stop`] stops every pod's containers.
pub struct Kubelet {
    task: tokio::task::JoinHandle<()>,
    workers: Arc<Mutex<HashMap<String, PodWorker>>>,
    processes: Arc<Mutex<HashMap<String, u32>>>,
    _server: KubeletServer,
}

struct PodWorker {
    pod: watch::Sender<Option<Pod>>,
    task: tokio::task::JoinHandle<()>,
}

impl Kubelet {
    /// Starts the kubelet API, registers the Node and starts watching pods.
    pub async fn start(config: KubeletConfig) -> Result<Kubelet> {
        let book = LogBook::default();
        kubelet_server::grant_apiserver_access(&config.client).await?;
        let server = kubelet_server::start(kubelet_server::ServerConfig {
            addr: std::net::SocketAddr::from((config.plan.node(), KUBELET_PORT)),
            serving: config.serving.clone(),
            ca_pem: config.ca_pem.clone(),
            client: config.client.clone(),
            node_name: config.node_name.clone(),
            book: book.clone(),
        })
        .await?;
        register_node(&config).await?;
        let workers: Arc<Mutex<HashMap<String, PodWorker>>> = Arc::default();
        let processes: Arc<Mutex<HashMap<String, u32>>> = Arc::default();
        let pool = Arc::new(Mutex::new(PodIpPool::new(config.plan)));
        let task = tokio::spawn(run(config, workers.clone(), processes.clone(), pool, book));
        Ok(Kubelet {
            task,
            workers,
            processes,
            _server: server,
        })
    }

    /// Pids of the project-binary processes currently running, by pod/container.
    pub fn process_pids(&self) -> Vec<(String, u32)> {
        self.processes
            .lock()
            .map(|p| p.iter().map(|(k, v)| (k.clone(), *v)).collect())
            .unwrap_or_default()
    }

    /// Stops watching and stops every pod's containers (SIGTERM, 5 s grace).
    pub async fn stop(self) {
        self.task.abort();
        let workers: Vec<PodWorker> = self
            .workers
            .lock()
            .map(|mut w| w.drain().map(|(_, v)| v).collect())
            .unwrap_or_default();
        for worker in &workers {
            worker.pod.send_replace(None);
        }
        for worker in workers {
            let _ = tokio::time::timeout(Duration::from_secs(15), worker.task).await;
        }
    }
}

impl Drop for Kubelet {
    fn drop(&mut self) {
        self.task.abort();
        if let Ok(mut workers) = self.workers.lock() {
            for (_, worker) in workers.drain() {
                // Aborting drops the worker's children, which are killed on drop.
                worker.task.abort();
            }
        }
    }
}

async fn register_node(config: &KubeletConfig) -> Result<()> {
    let nodes: Api<Node> = Api::all(config.client.clone());
    let ip = config.plan.node().to_string();
    let node: Node = serde_json::from_value(json!({
        "metadata": {"name": config.node_name, "labels": {
            "kubernetes.io/hostname": config.node_name,
            "kubernetes.io/os": "linux",
            "kubernetes.io/arch": "amd64",
            "node.kubernetes.io/instance-type": "sandbox",
            "topology.kubernetes.io/zone": "sandbox",
        }},
    }))?;
    nodes
        .create(&PostParams::default(), &node)
        .await
        .context("registering the simulated Node")?;
    let capacity = json!({"cpu": NODE_CPU.to_string(), "memory": NODE_MEMORY_BYTES.to_string(), "pods": "1000", "ephemeral-storage": "100Gi"});
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let status = json!({"status": {
        "capacity": capacity,
        "allocatable": capacity,
        "addresses": [{"type": "InternalIP", "address": ip}, {"type": "Hostname", "address": config.node_name}],
        "conditions": [
            {"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "simulated kubelet is posting ready status", "lastHeartbeatTime": now, "lastTransitionTime": now},
            {"type": "MemoryPressure", "status": "False", "reason": "KubeletHasSufficientMemory", "lastHeartbeatTime": now, "lastTransitionTime": now},
            {"type": "DiskPressure", "status": "False", "reason": "KubeletHasNoDiskPressure", "lastHeartbeatTime": now, "lastTransitionTime": now},
            {"type": "PIDPressure", "status": "False", "reason": "KubeletHasSufficientPID", "lastHeartbeatTime": now, "lastTransitionTime": now},
        ],
        "nodeInfo": {
            "machineID": "sandbox", "systemUUID": "sandbox", "bootID": "sandbox",
            "kernelVersion": "", "osImage": "sandbox", "containerRuntimeVersion": "sandbox://1",
            "kubeletVersion": "v1.35.4", "kubeProxyVersion": "", "operatingSystem": "linux", "architecture": "amd64",
        },
        "daemonEndpoints": {"kubeletEndpoint": {"Port": KUBELET_PORT}},
    }});
    nodes
        .patch_status(
            &config.node_name,
            &PatchParams {
                field_manager: Some(MANAGER.into()),
                ..PatchParams::default()
            },
            &Patch::Merge(&status),
        )
        .await
        .context("setting the simulated Node's status")?;
    Ok(())
}

async fn run(
    config: KubeletConfig,
    workers: Arc<Mutex<HashMap<String, PodWorker>>>,
    processes: Arc<Mutex<HashMap<String, u32>>>,
    pool: Arc<Mutex<PodIpPool>>,
    book: LogBook,
) {
    let pods: Api<Pod> = Api::all(config.client.clone());
    let mut stream = watcher::watcher(pods, watcher::Config::default())
        .default_backoff()
        .boxed();
    let mut seen: HashSet<String> = HashSet::new();
    while let Some(event) = stream.next().await {
        match event {
            Ok(Event::Init) => seen.clear(),
            Ok(Event::InitApply(pod) | Event::Apply(pod)) => {
                seen.insert(pod.uid().unwrap_or_default());
                on_pod(&config, &workers, &processes, &pool, &book, pod);
            }
            Ok(Event::Delete(pod)) => {
                if let Some(worker) = workers
                    .lock()
                    .ok()
                    .and_then(|mut w| w.remove(&pod.uid().unwrap_or_default()))
                {
                    worker.pod.send_replace(None);
                }
            }
            Ok(Event::InitDone) => {
                if let Ok(mut w) = workers.lock() {
                    let gone: Vec<String> =
                        w.keys().filter(|k| !seen.contains(*k)).cloned().collect();
                    for uid in gone {
                        if let Some(worker) = w.remove(&uid) {
                            worker.pod.send_replace(None);
                        }
                    }
                }
            }
            Err(e) => tracing::warn!("kubelet pod watch: {e}"),
        }
    }
}

fn on_pod(
    config: &KubeletConfig,
    workers: &Arc<Mutex<HashMap<String, PodWorker>>>,
    processes: &Arc<Mutex<HashMap<String, u32>>>,
    pool: &Arc<Mutex<PodIpPool>>,
    book: &LogBook,
    pod: Pod,
) {
    let uid = pod.uid().unwrap_or_default();
    let node = pod.spec.as_ref().and_then(|s| s.node_name.clone());
    match node {
        None if pod.metadata.deletion_timestamp.is_none() => {
            let client = config.client.clone();
            let node_name = config.node_name.clone();
            tokio::spawn(async move {
                if let Err(e) = bind(&client, &pod, &node_name).await {
                    tracing::debug!("binding {}: {e}", pod.name_any());
                }
            });
        }
        Some(node) if node == config.node_name => {
            let Ok(mut w) = workers.lock() else { return };
            if let Some(worker) = w.get(&uid) {
                worker.pod.send_replace(Some(pod));
                return;
            }
            let terminal = pod
                .status
                .as_ref()
                .and_then(|s| s.phase.as_deref())
                .is_some_and(|p| p == "Succeeded" || p == "Failed");
            if terminal && pod.metadata.deletion_timestamp.is_none() {
                return;
            }
            let (tx, rx) = watch::channel(Some(pod));
            let task = tokio::spawn(pod_worker(
                config.clone(),
                rx,
                processes.clone(),
                pool.clone(),
                workers.clone(),
                book.clone(),
                uid.clone(),
            ));
            w.insert(uid, PodWorker { pod: tx, task });
        }
        _ => {}
    }
}

async fn bind(client: &kube::Client, pod: &Pod, node: &str) -> Result<()> {
    let namespace = pod.namespace().unwrap_or_default();
    let binding = Binding {
        metadata: kube::api::ObjectMeta {
            name: pod.metadata.name.clone(),
            namespace: Some(namespace),
            uid: pod.metadata.uid.clone(),
            ..Default::default()
        },
        target: ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Node".into()),
            name: Some(node.into()),
            ..Default::default()
        },
    };
    // Raw request: the binding subresource answers with a Status, not a Pod.
    let request = http::Request::post(format!(
        "/api/v1/namespaces/{}/pods/{}/binding",
        binding.metadata.namespace.clone().unwrap_or_default(),
        pod.name_any()
    ))
    .header(http::header::CONTENT_TYPE, "application/json")
    .body(serde_json::to_vec(&binding)?)?;
    client.request_text(request).await?;
    Ok(())
}

/// How one container is played.
enum Runner {
    Process(ProcessContainer),
    Container(RunningContainer),
    Hook(Box<dyn RunningPod>),
    Inert,
}

struct ContainerSlot {
    spec: Container,
    view: ContainerView,
    runner: Option<Runner>,
    probe: Option<(ProbeTarget, ProbeTiming)>,
    probe_state: ProbeState,
    next_probe: Instant,
    restart_at: Option<Instant>,
    last_error: Option<String>,
}

fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Everything prepared once per pod before containers start.
struct Prepared {
    data: ObjectData,
    volumes: BTreeMap<String, PathBuf>,
    kubeconfig: PathBuf,
}

async fn prepare(
    config: &KubeletConfig,
    pod: &Pod,
    addresses: PodAddresses,
    pod_dir: &Path,
) -> Result<Prepared> {
    std::fs::create_dir_all(pod_dir)?;
    let data = fetch_object_data(&config.client, pod).await?;
    let volumes = materialise(
        &config.client,
        pod,
        &data,
        addresses,
        pod_dir,
        &config.claims_dir,
        &config.ca_pem,
    )
    .await?;
    let token = service_account_token(
        &config.client,
        pod,
        vec![crate::control_plane::ISSUER.to_string()],
        86_400,
    )
    .await?;
    let kubeconfig = pod_dir.join("kubeconfig");
    kubeconfig::write(
        &kubeconfig,
        &kubeconfig::document(
            &config.server,
            &config.ca_pem,
            "pod",
            &Credentials::Token(token),
            &pod.namespace().unwrap_or_default(),
        ),
    )?;
    Ok(Prepared {
        data,
        volumes,
        kubeconfig,
    })
}

/// Re-reads Secrets and ConfigMaps and rewrites the volume files that changed.
async fn refresh_volumes(
    config: &KubeletConfig,
    pod: &Pod,
    addresses: PodAddresses,
    pod_dir: &Path,
) -> Result<()> {
    let data = fetch_object_data(&config.client, pod).await?;
    materialise(
        &config.client,
        pod,
        &data,
        addresses,
        pod_dir,
        &config.claims_dir,
        &config.ca_pem,
    )
    .await?;
    Ok(())
}

async fn start_container(
    config: &KubeletConfig,
    pod: &Pod,
    container: &Container,
    addresses: PodAddresses,
    prepared: &Prepared,
    pod_dir: &Path,
) -> Result<Runner> {
    let env_list = resolve_env(pod, container, addresses, &prepared.data)?;
    let container_mounts = mounts(container, &prepared.volumes)?;
    let image = container.image.clone().unwrap_or_default();
    let hostname = pod
        .spec
        .as_ref()
        .and_then(|s| s.hostname.clone())
        .unwrap_or_else(|| pod.name_any());
    if let Some(hook) = config.hooks.iter().find(|h| h.handles(&image)) {
        let ctx = PodContext {
            pod: pod.clone(),
            container: container.clone(),
            ip: addresses.pod_ip,
            hostname,
            subdomain: pod.spec.as_ref().and_then(|s| s.subdomain.clone()),
            env: env_list.into_iter().collect(),
            volumes: container_mounts,
            kubeconfig: prepared.kubeconfig.clone(),
            pod_dir: pod_dir.to_path_buf(),
            client: config.client.clone(),
        };
        return Ok(Runner::Hook(hook.start(ctx).await?));
    }
    if let Some(runtime) = &config.containers
        && let Some(project_image) = runtime.image(image_repository(&image)).cloned()
    {
        let loader = runtime.clone();
        let to_load = project_image.clone();
        let image_user = tokio::task::spawn_blocking(move || loader.ensure_loaded(&to_load))
            .await
            .context("image load task")??;
        let mut env = env_list;
        env.extend(kubelet_env(
            &config.plan.kubernetes_service().to_string(),
            443,
            &hostname,
        ));
        let mut binds = Vec::new();
        for mount in container.volume_mounts.iter().flatten() {
            let path = mount.mount_path.trim_end_matches('/').to_string();
            if let Some(host) = container_mounts.get(&path) {
                binds.push(BindMount {
                    host: host.clone(),
                    path,
                    read_only: mount.read_only == Some(true),
                });
            }
        }
        let start = START_SEQUENCE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = runtime.name(pod, &container.name, start);
        let labels = runtime.labels();
        let args = run_arguments(&RunInput {
            pod,
            container,
            image: &project_image.reference,
            image_user: &image_user,
            env: &env,
            mounts: &binds,
            name: &name,
            hostname: &hostname,
            labels: &labels,
        })?;
        let running = runtime
            .start(&name, &args, &log_path(pod_dir, &container.name))
            .await?;
        return Ok(Runner::Container(running));
    }
    if let Some(binary) = config.project_binaries.get(image_repository(&image)) {
        let env_map: BTreeMap<String, String> = env_list.iter().cloned().collect();
        let mut env: Vec<(String, String)> = env_list
            .into_iter()
            .map(|(k, v)| {
                let v = rewrite_mount_paths(&v, &container_mounts);
                (k, v)
            })
            .collect();
        env.push(("HOSTNAME".into(), hostname));
        env.push((
            "KUBECONFIG".into(),
            prepared.kubeconfig.display().to_string(),
        ));
        let spec = ProcessSpec {
            binary: binary.clone(),
            args: arguments(
                container.command.as_deref().unwrap_or_default(),
                container.args.as_deref().unwrap_or_default(),
                &env_map,
                &container_mounts,
            ),
            env,
            dir: pod_dir.to_path_buf(),
            log: log_path(pod_dir, &container.name),
        };
        return Ok(Runner::Process(ProcessContainer::start(&spec)?));
    }
    Ok(Runner::Inert)
}

/// Numbers container starts, so a restarted container gets a new name.
static START_SEQUENCE: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

fn pod_key(pod: &Pod) -> String {
    format!("{}/{}", pod.namespace().unwrap_or_default(), pod.name_any())
}

async fn pod_worker(
    config: KubeletConfig,
    mut rx: watch::Receiver<Option<Pod>>,
    processes: Arc<Mutex<HashMap<String, u32>>>,
    pool: Arc<Mutex<PodIpPool>>,
    workers: Arc<Mutex<HashMap<String, PodWorker>>>,
    book: LogBook,
    uid: String,
) {
    let Some(first) = rx.borrow().clone() else {
        return;
    };
    let Some(pod_ip) = pool.lock().ok().and_then(|mut p| p.allocate()) else {
        tracing::error!("no pod IP left for {}", pod_key(&first));
        return;
    };
    let addresses = PodAddresses {
        pod_ip,
        host_ip: config.plan.node(),
    };
    let pod_dir = config.pods_dir.join(format!(
        "{}_{}_{}",
        first.namespace().unwrap_or_default(),
        first.name_any(),
        uid.chars().take(8).collect::<String>()
    ));
    let namespace = first.namespace().unwrap_or_default();
    book.add_pod(
        &namespace,
        &first.name_any(),
        &uid,
        &pod_dir,
        first
            .spec
            .iter()
            .flat_map(|s| s.containers.iter())
            .map(|c| c.name.as_str()),
    );
    let start_time = now_rfc3339();
    let mut slots: Vec<ContainerSlot> = first
        .spec
        .iter()
        .flat_map(|s| s.containers.iter())
        .map(|c| ContainerSlot {
            spec: c.clone(),
            view: ContainerView {
                name: c.name.clone(),
                image: c.image.clone().unwrap_or_default(),
                phase: ContainerPhase::Waiting("ContainerCreating".into(), String::new()),
                ready: false,
                restart_count: 0,
                last_terminated: None,
            },
            runner: None,
            probe: c
                .readiness_probe
                .as_ref()
                .map(|p| (readiness_probe::target(p, c, pod_ip), ProbeTiming::of(p))),
            probe_state: ProbeState::default(),
            next_probe: Instant::now(),
            restart_at: Some(Instant::now()),
            last_error: None,
        })
        .collect();
    let restart_policy = first
        .spec
        .as_ref()
        .and_then(|s| s.restart_policy.clone())
        .unwrap_or_else(|| "Always".into());
    let mut prepared: Option<Prepared> = None;
    let mut refreshed = Instant::now();
    let mut last_patch = serde_json::Value::Null;
    let api: Api<Pod> = Api::namespaced(
        config.client.clone(),
        &first.namespace().unwrap_or_default(),
    );
    let name = first.name_any();
    let key = pod_key(&first);
    let mut backoff = Duration::from_secs(1);
    let deleted_from_api;
    loop {
        let current = rx.borrow_and_update().clone();
        let Some(pod) = current else {
            deleted_from_api = true;
            break;
        };
        if pod.metadata.deletion_timestamp.is_some() {
            deleted_from_api = false;
            break;
        }
        // Prepare volumes and credentials once; retry while they fail.
        if prepared.is_none() {
            match prepare(&config, &pod, addresses, &pod_dir).await {
                Ok(p) => prepared = Some(p),
                Err(e) => {
                    for slot in &mut slots {
                        slot.view.phase = ContainerPhase::Waiting(
                            "CreateContainerConfigError".into(),
                            format!("{e:#}"),
                        );
                    }
                }
            }
        }
        if prepared.is_some() && refreshed.elapsed() >= REFRESH_INTERVAL {
            refreshed = Instant::now();
            if let Err(e) = refresh_volumes(&config, &pod, addresses, &pod_dir).await {
                tracing::debug!("refreshing volumes of {key}: {e:#}");
            }
        }
        let now = Instant::now();
        for slot in &mut slots {
            // Exits.
            let exit = match &mut slot.runner {
                Some(Runner::Process(p)) => p.exit_code(),
                Some(Runner::Container(c)) => c.exit_code(),
                Some(Runner::Hook(h)) => h.exit_code(),
                _ => None,
            };
            if let Some(code) = exit {
                book.stopped(&namespace, &name, &uid, &slot.spec.name);
                match slot.runner.take() {
                    Some(Runner::Process(p)) => p.stop(Duration::ZERO).await,
                    Some(Runner::Container(c)) => c.stop(Duration::ZERO).await,
                    _ => {}
                }
                if let Ok(mut p) = processes.lock() {
                    p.remove(&format!("{key}/{}", slot.spec.name));
                }
                let started = match &slot.view.phase {
                    ContainerPhase::Running(t) => t.clone(),
                    _ => now_rfc3339(),
                };
                let terminated = ContainerPhase::Terminated(code, started, now_rfc3339());
                slot.probe_state = ProbeState::default();
                slot.view.ready = false;
                let restart =
                    restart_policy == "Always" || (restart_policy == "OnFailure" && code != 0);
                if restart {
                    slot.view.last_terminated = Some(terminated);
                    slot.view.phase = ContainerPhase::Waiting(
                        "CrashLoopBackOff".into(),
                        format!("exited with {code}"),
                    );
                    slot.restart_at = Some(now + backoff);
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                } else {
                    slot.view.phase = terminated;
                }
            }
            // Starts.
            if slot.runner.is_none()
                && slot.restart_at.is_some_and(|t| t <= now)
                && let Some(prep) = &mut prepared
            {
                {
                    // After a failed start, read the Secrets and ConfigMaps
                    // again, as the kubelet's secret and config map managers
                    // do: one created since (a Secret the operator brings
                    // back) lets the container start.
                    if slot.last_error.is_some()
                        && let Ok(data) = fetch_object_data(&config.client, &pod).await
                    {
                        prep.data = data;
                    }
                    book.starting(&namespace, &name, &uid, &slot.spec.name);
                    match start_container(&config, &pod, &slot.spec, addresses, prep, &pod_dir)
                        .await
                    {
                        Ok(runner) => {
                            let pid = match &runner {
                                Runner::Process(p) => p.pid(),
                                Runner::Container(c) => c.pid(),
                                _ => None,
                            };
                            if let (Some(pid), Ok(mut map)) = (pid, processes.lock()) {
                                map.insert(format!("{key}/{}", slot.spec.name), pid);
                            }
                            if slot.view.last_terminated.is_some() {
                                slot.view.restart_count += 1;
                            }
                            slot.runner = Some(runner);
                            slot.restart_at = None;
                            slot.last_error = None;
                            slot.view.phase = ContainerPhase::Running(now_rfc3339());
                            slot.next_probe = Instant::now()
                                + slot
                                    .probe
                                    .as_ref()
                                    .map(|(_, t)| t.initial_delay)
                                    .unwrap_or_default();
                            slot.view.ready = slot.probe.is_none();
                        }
                        Err(e) => {
                            book.stopped(&namespace, &name, &uid, &slot.spec.name);
                            // A spec the kubelet refuses (runAsNonRoot) is a
                            // configuration error, not a runtime one.
                            let reason = if e.downcast_ref::<ConfigError>().is_some() {
                                "CreateContainerConfigError"
                            } else {
                                "CreateContainerError"
                            };
                            slot.view.phase =
                                ContainerPhase::Waiting(reason.into(), format!("{e:#}"));
                            slot.restart_at = Some(now + Duration::from_secs(2));
                            slot.last_error = Some(format!("{e:#}"));
                        }
                    }
                }
            }
            // Probes.
            if slot.runner.is_some()
                && let Some((target, timing)) = &slot.probe
                && slot.next_probe <= now
            {
                let result = readiness_probe::run(target, timing.timeout).await;
                slot.probe_state = slot.probe_state.observe(result.is_ok(), timing);
                slot.view.ready = slot.probe_state.ready;
                slot.next_probe = Instant::now() + timing.period;
            }
        }
        // Status.
        let views: Vec<ContainerView> = slots.iter().map(|s| s.view.clone()).collect();
        let status = desired_status(&StatusInput {
            pod: &pod,
            pod_ip,
            host_ip: addresses.host_ip,
            start_time: &start_time,
            containers: &views,
            now: &now_rfc3339(),
            last_sent: &last_patch,
        });
        if status != last_patch {
            let patch = json!({"status": status});
            match api
                .patch_status(
                    &name,
                    &PatchParams {
                        field_manager: Some(MANAGER.into()),
                        ..PatchParams::default()
                    },
                    &Patch::Strategic(&patch),
                )
                .await
            {
                Ok(_) => last_patch = status,
                Err(e) => tracing::debug!("status of {key}: {e}"),
            }
        }
        // Sleep until the next probe, restart, or a change of the pod.
        let next = slots
            .iter()
            .filter_map(|s| {
                let probe = s
                    .runner
                    .as_ref()
                    .and(s.probe.as_ref())
                    .map(|_| s.next_probe);
                [probe, s.restart_at].into_iter().flatten().min()
            })
            .min()
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(1))
            .min(Instant::now() + Duration::from_millis(500));
        let wait = next.saturating_duration_since(Instant::now());
        tokio::select! {
            changed = rx.changed() => if changed.is_err() { deleted_from_api = true; break; },
            () = tokio::time::sleep(wait) => {}
        }
    }
    // Graceful termination: stop what was started, then finish the deletion.
    let grace = rx
        .borrow()
        .as_ref()
        .and_then(|p| p.metadata.deletion_grace_period_seconds)
        .map(|s| Duration::from_secs(u64::try_from(s.clamp(0, 30)).unwrap_or(0)))
        .unwrap_or(Duration::from_secs(5));
    for slot in slots {
        if let Ok(mut p) = processes.lock() {
            p.remove(&format!("{key}/{}", slot.spec.name));
        }
        match slot.runner {
            Some(Runner::Process(p)) => p.stop(grace).await,
            Some(Runner::Container(c)) => c.stop(grace).await,
            Some(Runner::Hook(h)) => h.stop(grace).await,
            _ => {}
        }
        // A followed log ends once its container is stopped.
        book.stopped(&namespace, &name, &uid, &slot.spec.name);
    }
    if !deleted_from_api {
        let params = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: Some(uid.clone()),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        if let Err(e) = api.delete(&name, &params).await {
            tracing::debug!("finishing deletion of {key}: {e}");
        }
    }
    book.remove_pod(&namespace, &name, &uid);
    if let Ok(mut p) = pool.lock() {
        p.release(pod_ip);
    }
    if let Ok(mut w) = workers.lock() {
        w.remove(&uid);
    }
}
