//! The [`PodHook`] that plays EMQX containers: what the simulated kubelet
//! runs for a pod whose image is EMQX. It turns the pod into [`PodFacts`]
//! exactly as the real container would see itself (its resolved env, its
//! hostname, the files mounted into it) and starts an [`EmqxNode`] on the
//! pod's loopback address. Readiness probes then hit the node's `/status`.
//! The container's log is the node's console ([`emqx_console`]), which
//! `kubectl logs` shows.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use emqx_sim::cluster::BrokerCluster;
use emqx_sim::{EmqxNode, NodeConfig, PodFacts};
use std::sync::Mutex;

use crate::node::emqx_console::{self, Console};
use crate::node::pod_env::image_repository;
use crate::node::pod_hook::{PodContext, PodHook, RunningPod};
use crate::node::pod_process::log_path;

/// How often the console looks at the node for something to log.
const CONSOLE_POLL: Duration = Duration::from_millis(200);

/// Image repositories played as EMQX (Docker Hub's names, with or without a
/// registry in front).
const EMQX_REPOSITORIES: [&str; 3] = ["emqx/emqx", "emqx/emqx-ee", "emqx/emqx-enterprise"];

/// Mounted files larger than this are not read: EMQX's own files are a few
/// kilobytes, and a simulator must not buffer a mistake without end.
const MAX_FILE: u64 = 1 << 20;

/// Where EMQX keeps its data; a PVC there makes evacuation state persist.
const DATA_DIR: &str = "/opt/emqx/data";

/// Plays EMQX pods. Keeps a handle to every node it started, so tests can
/// inject faults into a node or read its evacuation history.
#[derive(Default)]
pub struct EmqxHook {
    nodes: Arc<Mutex<NodeTable>>,
}

type NodeTable = BTreeMap<String, NodeHandle>;

/// The table stays usable even if a holder panicked mid-update: entries are
/// whole values, so there is no torn state to protect.
fn lock(table: &Mutex<NodeTable>) -> std::sync::MutexGuard<'_, NodeTable> {
    table
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// What tests can reach of a running node, by pod name.
#[derive(Clone)]
pub struct NodeHandle {
    pub node_name: String,
    pub faults: Arc<emqx_sim::faults::Faults>,
    pub cluster: Arc<BrokerCluster>,
    /// The management API calls the node served (the operator's polling).
    pub api_calls: Arc<emqx_sim::rest::calls::ApiCalls>,
}

impl EmqxHook {
    /// A shareable hook.
    pub fn new() -> Arc<EmqxHook> {
        Arc::new(EmqxHook::default())
    }

    /// The node playing pod `pod` (`namespace/name`), if it runs.
    pub fn node(&self, pod: &str) -> Option<NodeHandle> {
        lock(&self.nodes).get(pod).cloned()
    }

    /// Every running node, by `namespace/pod`.
    pub fn nodes(&self) -> BTreeMap<String, NodeHandle> {
        lock(&self.nodes).clone()
    }

    /// The simulated EMQX cluster the running nodes form (the first node's),
    /// if a node runs.
    pub fn cluster(&self) -> Option<Arc<BrokerCluster>> {
        lock(&self.nodes).values().next().map(|n| n.cluster.clone())
    }
}

/// Whether `image` is one this hook plays.
pub fn is_emqx_image(image: &str) -> bool {
    let repo = image_repository(image);
    EMQX_REPOSITORIES
        .iter()
        .any(|r| repo == *r || repo.ends_with(&format!("/{r}")))
}

/// The files mounted into the container, by their path inside it. A mount
/// of a directory contributes the regular files directly in it.
fn mounted_files(volumes: &BTreeMap<String, std::path::PathBuf>) -> BTreeMap<String, String> {
    let mut files = BTreeMap::new();
    let mut read = |inside: String, host: &Path| {
        let small = std::fs::metadata(host).is_ok_and(|m| m.is_file() && m.len() <= MAX_FILE);
        if small && let Ok(text) = std::fs::read_to_string(host) {
            files.insert(inside, text);
        }
    };
    for (mount_path, host) in volumes {
        if host.is_dir() {
            for entry in std::fs::read_dir(host).into_iter().flatten().flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                // Kubernetes' atomic-writer bookkeeping (`..data`, `..2024_…`).
                if !name.starts_with("..") {
                    read(
                        format!("{}/{name}", mount_path.trim_end_matches('/')),
                        &entry.path(),
                    );
                }
            }
        } else {
            read(mount_path.clone(), host);
        }
    }
    files
}

/// Whether `/opt/emqx/data` is a PersistentVolumeClaim in this pod.
fn persistent_data(ctx: &PodContext) -> bool {
    let Some(mount) = ctx
        .container
        .volume_mounts
        .iter()
        .flatten()
        .find(|m| m.mount_path.trim_end_matches('/') == DATA_DIR)
    else {
        return false;
    };
    ctx.pod
        .spec
        .as_ref()
        .and_then(|s| s.volumes.as_ref())
        .into_iter()
        .flatten()
        .any(|v| v.name == mount.name && v.persistent_volume_claim.is_some())
}

/// The facts the real container would derive its identity from.
pub fn pod_facts(ctx: &PodContext) -> PodFacts {
    PodFacts {
        pod_name: ctx.pod.metadata.name.clone().unwrap_or_default(),
        namespace: ctx.pod.metadata.namespace.clone().unwrap_or_default(),
        hostname: ctx.hostname.clone(),
        pod_ip: ctx.ip,
        image: ctx.container.image.clone().unwrap_or_default(),
        env: ctx.env.clone(),
        files: mounted_files(&ctx.volumes),
        persistent_data: persistent_data(ctx),
    }
}

/// An EMQX container whose boot failed: it has exited with status 1.
struct ExitedAtBoot;

#[async_trait::async_trait]
impl RunningPod for ExitedAtBoot {
    fn exit_code(&mut self) -> Option<i32> {
        Some(1)
    }

    async fn stop(self: Box<Self>, _grace: Duration) {}
}

struct RunningEmqx {
    key: String,
    node: EmqxNode,
    table: Arc<Mutex<NodeTable>>,
    console: ConsoleTask,
}

/// The task writing the node's console to the container's log.
struct ConsoleTask {
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for ConsoleTask {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Writes the boot lines, then what changes in the cluster and in the node's
/// evacuation, until told to stop; then the stopping line.
fn start_console(node: &EmqxNode, log: std::path::PathBuf) -> ConsoleTask {
    let name = node.name().to_owned();
    let cluster = node.cluster().clone();
    let config = node.config();
    let boot = emqx_console::boot_lines(
        config.edition == emqx_sim::version::Edition::Enterprise,
        &config.version.to_string(),
        node.mqtt_addr(),
        node.http_addr(),
    );
    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(async move {
        let mut console = Console::default();
        let write = |lines: Vec<String>| {
            if lines.is_empty() {
                return;
            }
            let appended = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log)
                .and_then(|mut f| std::io::Write::write_all(&mut f, lines.concat().as_bytes()));
            if let Err(e) = appended {
                tracing::debug!("writing the console of {name} to {}: {e}", log.display());
            }
        };
        write(boot);
        loop {
            let lines = console.observe(
                &name,
                &cluster.running_nodes(),
                &cluster.evacuation_history(&name),
                chrono::Utc::now(),
            );
            write(lines);
            if *stopped.borrow() {
                write(vec![emqx_console::stopping_line(chrono::Utc::now())]);
                return;
            }
            tokio::select! {
                _ = stopped.changed() => {}
                () = tokio::time::sleep(CONSOLE_POLL) => {}
            }
        }
    });
    ConsoleTask { stop, task }
}

#[async_trait::async_trait]
impl RunningPod for RunningEmqx {
    /// A node that shut itself down (EMQX's licence check on joining) is a
    /// container that exited with 1, so the pod restarts and crash-loops as
    /// the real one does.
    fn exit_code(&mut self) -> Option<i32> {
        self.node.halted().map(|_| 1)
    }

    async fn stop(self: Box<Self>, grace: Duration) {
        let RunningEmqx {
            key,
            node,
            table,
            mut console,
        } = *self;
        // EMQX logs that it stops before its listeners close.
        let _ = console.stop.send(true);
        let _ = tokio::time::timeout(Duration::from_secs(1), &mut console.task).await;
        lock(&table).remove(&key);
        // A stopping EMQX closes its listeners at once; the grace period only
        // bounds how long we wait for the sockets to be released.
        let _ = tokio::time::timeout(grace.max(Duration::from_secs(1)), node.shutdown()).await;
    }
}

#[async_trait::async_trait]
impl PodHook for EmqxHook {
    fn handles(&self, image: &str) -> bool {
        is_emqx_image(image)
    }

    async fn start(&self, ctx: PodContext) -> Result<Box<dyn RunningPod>> {
        let facts = pod_facts(&ctx);
        let key = format!("{}/{}", facts.namespace, facts.pod_name);
        let config = match NodeConfig::from_pod(&facts) {
            Ok(config) => config,
            // EMQX starts, fails its boot checks and exits 1: the kubelet
            // shows a crash loop (restarts, last state terminated, Error).
            Err(e) if e.is_boot_failure() => {
                tracing::warn!(pod = %key, error = %e, "EMQX exits at boot");
                return Ok(Box::new(ExitedAtBoot));
            }
            Err(e) => {
                return Err(e).with_context(|| format!("pod {key} is not a valid EMQX container"));
            }
        };
        if let Some(problem) = &config.bootstrap_problem {
            // EMQX logs this and boots with the keys it got.
            tracing::warn!(pod = %key, %problem, "bootstrap API keys not fully loaded");
        }
        let node = EmqxNode::start(config)
            .await
            .with_context(|| format!("starting the EMQX node of pod {key}"))?;
        // An MQTT fault the pod's spec selects (`SIM_MQTT_FAULT`), as a bad
        // configuration would arrive with a revision.
        node.faults()
            .apply_pod_env(&facts.env)
            .with_context(|| format!("pod {key}"))?;
        // A node that halted at boot (the licence) still printed its boot,
        // but is no running node of the table.
        let console = start_console(&node, log_path(&ctx.pod_dir, &ctx.container.name));
        if node.halted().is_none() {
            lock(&self.nodes).insert(
                key.clone(),
                NodeHandle {
                    node_name: node.name().to_owned(),
                    faults: node.faults_handle(),
                    cluster: node.cluster().clone(),
                    api_calls: node.api_calls(),
                },
            );
        }
        Ok(Box::new(RunningEmqx {
            key,
            node,
            table: self.nodes.clone(),
            console,
        }))
    }
}
