//! Seed 003's `EMQX` cluster in a sandbox: the one fixture of the
//! end-to-end tests and the demo. [`Seed003`] says what to run — cores,
//! replicants, the upgrade's pace, the image, who runs the operator (in
//! this process, through the Helm chart, or the caller) and MQTT clients —
//! and [`Stage`] is the running sandbox with it: the object, its sets,
//! pods, Events, and the simulated EMQX nodes behind it.
//!
//! ```text
//! let stage = Seed003::new().cores(3).clients(load, within).ready().await?;
//! stage.patch_image_pull_policy().await?;            // the seed's upgrade
//! stage.wait_ready(Some(&stage.revision), limit).await?;
//! ```

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use emqx_crd::v2beta1::EMQX;
use emqx_sim::cluster::{BrokerCluster, EvacuationEvent};
use k8s_openapi::api::apps::v1::{ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use mqtt_load::{Endpoints, LoadConfig, MqttLoad};
use serde_json::{Value, json};

use crate::operator::chart::{helm_upgrade_install, wait_operator_available};
use crate::operator::project_image::build_operator_images;
use crate::operator::{InProcessReconciler, install_crds};
use crate::{EmqxHook, Sandbox, SandboxOptions};

/// The object's name in seed 003.
pub const NAME: &str = "emqx-ee";
/// The namespace the seed is applied in.
pub const NAMESPACE: &str = "default";
/// How long the first rollout may take before [`Seed003::ready`] gives up.
pub const READY_LIMIT: Duration = Duration::from_secs(180);
/// How long the chart's Deployments may take to become available.
const OPERATOR_LIMIT: Duration = Duration::from_secs(180);

/// Seed 003's `EMQX` manifest (the v2beta1 page's `emqx-update.yaml`), as
/// the user applies it: no defaults yet.
///
/// The page elides its licence key (`key = "..."`), which EMQX 6 cannot
/// boot with; the fixture fills in a key the simulator reads as an official
/// licence (`emqx_sim::licence::test_key`), so its nodes may cluster.
pub fn seed_003_manifest() -> Result<Value> {
    let text = include_str!("../../shared/tests/seeds/seed003-emqx-v2beta1.yaml");
    let mut object: Value = serde_saphyr::from_str(text).context("seed 003 manifest")?;
    let data = &mut object["spec"]["config"]["data"];
    if let Some(text) = data.as_str() {
        let key = emqx_sim::licence::test_key(1);
        *data = Value::String(text.replace("key = \"...\"", &format!("key = \"{key}\"")));
    }
    Ok(object)
}

/// Seed 003 cut down to one core node named `name` in `namespace`, with a
/// one-second readiness probe, plus the JSON merge patch `extra`: the
/// cheap cluster of the tests with many clusters.
pub fn one_core_cluster(name: &str, namespace: &str, extra: &Value) -> Result<EMQX> {
    let mut object = seed_003_manifest()?;
    json_patch::merge(
        &mut object,
        &serde_json::json!({
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"coreTemplate": {"spec": {
                "replicas": 1,
                "readinessProbe": {"httpGet": {"path": "/status", "port": "dashboard"}, "periodSeconds": 1, "failureThreshold": 3}
            }}}
        }),
    );
    json_patch::merge(&mut object, extra);
    serde_json::from_value(object).context("an EMQX object")
}

/// How an upgrade is paced: the seed's `spec.updateStrategy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pace {
    /// `initialDelaySeconds`.
    pub initial_delay_s: u32,
    /// `evacuationStrategy.waitTakeover`.
    pub wait_takeover_s: u32,
    /// `evacuationStrategy.connEvictRate`.
    pub conn_evict_rate: u32,
    /// `evacuationStrategy.sessEvictRate`.
    pub sess_evict_rate: u32,
}

impl Pace {
    /// Delays of seconds and 50 evictions a second: a two-core upgrade with
    /// a hundred clients takes about a minute.
    pub const QUICK: Pace = Pace {
        initial_delay_s: 2,
        wait_takeover_s: 2,
        conn_evict_rate: 50,
        sess_evict_rate: 50,
    };
}

/// Who runs the operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operator {
    /// The reconciler's controller in this process; the CRDs applied directly.
    InProcess,
    /// `helm install` of the chart: the webhook and the reconciler as pods,
    /// played by this workspace's binaries.
    Chart,
    /// The CRDs applied; the reconciler is the caller's business (a real
    /// process it kills, say).
    Caller,
}

/// What to run: seed 003 with two cores, [`Pace::QUICK`] and the reconciler
/// in process unless told otherwise.
#[derive(Debug, Clone)]
pub struct Seed003 {
    cores: u32,
    replicants: Option<u32>,
    pace: Pace,
    image: Option<String>,
    patch: Option<Value>,
    operator: Operator,
    clients: Option<(LoadConfig, Duration)>,
}

impl Default for Seed003 {
    fn default() -> Self {
        Seed003 {
            cores: 2,
            replicants: None,
            pace: Pace::QUICK,
            image: None,
            patch: None,
            operator: Operator::InProcess,
            clients: None,
        }
    }
}

impl Seed003 {
    /// Two cores, quick pace, the reconciler in process, no clients.
    pub fn new() -> Seed003 {
        Seed003::default()
    }

    /// Core nodes (`coreTemplate.spec.replicas`).
    pub fn cores(mut self, cores: u32) -> Seed003 {
        self.cores = cores;
        self
    }

    /// Replicant nodes (a `replicantTemplate` with quick probes).
    pub fn replicants(mut self, replicants: u32) -> Seed003 {
        self.replicants = Some(replicants);
        self
    }

    /// The upgrade's pace.
    pub fn pace(mut self, pace: Pace) -> Seed003 {
        self.pace = pace;
        self
    }

    /// `spec.image` instead of the seed's.
    pub fn image(mut self, image: &str) -> Seed003 {
        self.image = Some(image.to_owned());
        self
    }

    /// A JSON merge patch applied to the manifest last (annotations,
    /// `revisionHistoryLimit`, ...).
    pub fn merge(mut self, patch: Value) -> Seed003 {
        self.patch = Some(patch);
        self
    }

    /// Who runs the operator.
    pub fn operator(mut self, operator: Operator) -> Seed003 {
        self.operator = operator;
        self
    }

    /// MQTT clients [`Seed003::ready`] connects through the listeners
    /// Service once the cluster is Ready, all subscribed within `within`.
    pub fn clients(mut self, config: LoadConfig, within: Duration) -> Seed003 {
        self.clients = Some((config, within));
        self
    }

    /// The manifest as the user applies it: seed 003 in [`NAMESPACE`] with
    /// these cores, replicants, pace and image, and readiness probes that
    /// answer within seconds.
    pub fn manifest(&self) -> Result<Value> {
        let mut object = seed_003_manifest()?;
        let pace = self.pace;
        json_patch::merge(
            &mut object,
            &json!({
                "metadata": {"namespace": NAMESPACE},
                "spec": {
                    "updateStrategy": {
                        "initialDelaySeconds": pace.initial_delay_s,
                        "evacuationStrategy": {
                            "waitTakeover": pace.wait_takeover_s,
                            "connEvictRate": pace.conn_evict_rate,
                            "sessEvictRate": pace.sess_evict_rate
                        }
                    },
                    "coreTemplate": {"spec": {"replicas": self.cores, "readinessProbe": quick_probe("/status")}}
                }
            }),
        );
        if let Some(replicas) = self.replicants {
            json_patch::merge(
                &mut object,
                &json!({"spec": {"replicantTemplate": {"spec": {
                    "replicas": replicas,
                    "readinessProbe": quick_probe("/status")
                }}}}),
            );
        }
        if let Some(image) = &self.image {
            object["spec"]["image"] = json!(image);
        }
        if let Some(patch) = &self.patch {
            json_patch::merge(&mut object, patch);
        }
        Ok(object)
    }

    /// The sandbox with the EMQX hook and the operator, the object not yet
    /// created.
    pub async fn stage(self) -> Result<Stage> {
        let manifest = self.manifest()?;
        let hook = EmqxHook::new();
        let mut options = SandboxOptions::default().hook(hook.clone());
        if self.operator == Operator::Chart {
            // The chart's path: the operator's pods run as podman
            // containers from images/build's images.
            let images = tokio::task::spawn_blocking(build_operator_images)
                .await
                .context("image build task")??;
            options = images.options(options);
        }
        let sandbox = Sandbox::start(options).await?;
        let client = sandbox.client();
        let mut reconciler = None;
        match self.operator {
            Operator::InProcess => {
                install_crds(&client).await?;
                reconciler = Some(InProcessReconciler::start(client.clone(), NAMESPACE));
            }
            Operator::Chart => {
                helm_upgrade_install(&sandbox, &[]).await?;
                wait_operator_available(&client, OPERATOR_LIMIT).await?;
            }
            Operator::Caller => install_crds(&client).await?,
        }
        Ok(Stage {
            api: Api::namespaced(client.clone(), NAMESPACE),
            sandbox,
            hook,
            client,
            manifest,
            revision: String::new(),
            load: None,
            reconciler,
        })
    }

    /// [`Seed003::stage`], then the object created and Ready (its core
    /// revision in [`Stage::revision`]), then the clients, if any, connected
    /// (in [`Stage::load`]).
    pub async fn ready(self) -> Result<Stage> {
        let clients = self.clients.clone();
        let mut stage = self.stage().await?;
        stage.create().await?;
        let ready = stage.wait_ready(None, READY_LIMIT).await?;
        stage.revision = update_revision(&ready).context("Ready without a core revision")?;
        if let Some((config, within)) = clients {
            stage.load = Some(stage.clients(config, within).await?);
        }
        Ok(stage)
    }
}

/// A readiness probe of `path` on the dashboard port that answers quickly,
/// so pods become ready in seconds.
pub fn quick_probe(path: &str) -> Value {
    json!({"httpGet": {"path": path, "port": "dashboard"}, "periodSeconds": 1, "failureThreshold": 3})
}

/// `clients` subscribers (and a publisher) connecting at `connect_rate` a
/// second, each sent a QoS 1 message a second, all stopped after
/// `max_duration`.
pub fn load(clients: usize, connect_rate: u32, max_duration: Duration) -> LoadConfig {
    LoadConfig {
        clients,
        connect_rate,
        publish_interval: Duration::from_secs(1),
        max_duration,
        ..LoadConfig::default()
    }
}

/// A sandbox running seed 003's cluster.
pub struct Stage {
    /// The sandbox.
    pub sandbox: Sandbox,
    /// The hook playing the EMQX pods (faults, evacuation records).
    pub hook: Arc<EmqxHook>,
    /// An admin client.
    pub client: Client,
    /// The `EMQX` objects of [`NAMESPACE`].
    pub api: Api<EMQX>,
    /// The manifest [`Stage::create`] creates.
    pub manifest: Value,
    /// The core revision of the first rollout (set by [`Seed003::ready`]).
    pub revision: String,
    /// The clients [`Seed003::clients`] asked for, once connected.
    pub load: Option<MqttLoad>,
    reconciler: Option<InProcessReconciler>,
}

impl Stage {
    /// `kubectl create -f emqx.yaml` of [`Stage::manifest`].
    pub async fn create(&self) -> Result<()> {
        let object: EMQX = serde_json::from_value(self.manifest.clone()).context("EMQX")?;
        self.api
            .create(&PostParams::default(), &object)
            .await
            .context("creating the EMQX object")?;
        Ok(())
    }

    /// The object now.
    pub async fn get(&self) -> Result<EMQX> {
        self.api.get(NAME).await.context("reading the EMQX object")
    }

    /// A JSON merge patch of the object (as `kubectl patch --type=merge`).
    pub async fn patch(&self, patch: Value) -> Result<()> {
        self.api
            .patch(NAME, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .context("patching the EMQX object")?;
        Ok(())
    }

    /// `kubectl patch emqx emqx-ee --type=merge -p '{"spec":{"imagePullPolicy":"Never"}}'`:
    /// the seed's upgrade.
    pub async fn patch_image_pull_policy(&self) -> Result<()> {
        self.patch(json!({"spec": {"imagePullPolicy": "Never"}}))
            .await
    }

    /// Polls the object until `check` accepts it.
    pub async fn wait_object<T>(
        &self,
        what: &str,
        timeout: Duration,
        check: impl Fn(&EMQX) -> Result<T, String>,
    ) -> Result<T> {
        let check = &check;
        wait_for(what, timeout, || async move {
            let emqx = self.api.get(NAME).await.map_err(|e| e.to_string())?;
            check(&emqx)
        })
        .await
    }

    /// Waits until the object is Ready on a core revision other than
    /// `revision_not` (any, when `None`).
    pub async fn wait_ready(&self, revision_not: Option<&str>, timeout: Duration) -> Result<EMQX> {
        self.wait_object("EMQX Ready", timeout, |emqx| {
            ready_on(emqx, revision_not).map(|_| emqx.clone())
        })
        .await
    }

    /// The running EMQX nodes: pod name (without namespace) → node name.
    pub fn nodes(&self) -> BTreeMap<String, String> {
        self.hook
            .nodes()
            .into_iter()
            .map(|(key, n)| {
                let pod = key.rsplit('/').next().unwrap_or(&key).to_owned();
                (pod, n.node_name)
            })
            .collect()
    }

    /// The simulated EMQX cluster behind the pods.
    pub fn cluster(&self) -> Result<Arc<BrokerCluster>> {
        self.hook.cluster().context("no EMQX node runs")
    }

    /// MQTT clients (and a publisher) through the listeners Service, all
    /// connected and subscribed within `within`.
    pub async fn clients(&self, config: LoadConfig, within: Duration) -> Result<MqttLoad> {
        connect_clients(
            &self.client,
            NAMESPACE,
            NAME,
            self.cluster()?,
            config,
            within,
        )
        .await
    }

    /// The StatefulSets of [`NAMESPACE`].
    pub async fn stateful_sets(&self) -> Result<Vec<StatefulSet>> {
        Ok(
            Api::<StatefulSet>::namespaced(self.client.clone(), NAMESPACE)
                .list(&ListParams::default())
                .await
                .context("listing StatefulSets")?
                .items,
        )
    }

    /// The ReplicaSets of [`NAMESPACE`].
    pub async fn replica_sets(&self) -> Result<Vec<ReplicaSet>> {
        Ok(
            Api::<ReplicaSet>::namespaced(self.client.clone(), NAMESPACE)
                .list(&ListParams::default())
                .await
                .context("listing ReplicaSets")?
                .items,
        )
    }

    /// The pods of [`NAMESPACE`].
    pub async fn pods(&self) -> Result<Vec<Pod>> {
        Ok(Api::<Pod>::namespaced(self.client.clone(), NAMESPACE)
            .list(&ListParams::default())
            .await
            .context("listing pods")?
            .items)
    }

    /// Names of the StatefulSets of [`NAMESPACE`] (the core sets).
    pub async fn stateful_set_names(&self) -> Result<std::collections::BTreeSet<String>> {
        Ok(self
            .stateful_sets()
            .await?
            .into_iter()
            .filter_map(|s| s.metadata.name)
            .collect())
    }

    /// The pods of the core StatefulSet of `revision`.
    pub async fn core_pods(&self, revision: &str) -> Result<Vec<Pod>> {
        let prefix = format!("{NAME}-core-{revision}-");
        Ok(self
            .pods()
            .await?
            .into_iter()
            .filter(|p| {
                p.metadata
                    .name
                    .as_deref()
                    .is_some_and(|n| n.starts_with(&prefix))
            })
            .collect())
    }

    /// `spec.replicas` of the core StatefulSet of `revision`, if it exists.
    pub async fn core_set_replicas(&self, revision: &str) -> Result<Option<i32>> {
        let name = format!("{NAME}-core-{revision}");
        Ok(self
            .stateful_sets()
            .await?
            .into_iter()
            .find(|s| s.metadata.name.as_deref() == Some(name.as_str()))
            .map(|s| s.spec.and_then(|s| s.replicas).unwrap_or(0)))
    }

    /// `emqx.conf` in the cluster's ConfigMap.
    pub async fn config_data(&self) -> Result<String> {
        Ok(Api::<ConfigMap>::namespaced(self.client.clone(), NAMESPACE)
            .get(&format!("{NAME}-configs"))
            .await
            .context("reading the configs ConfigMap")?
            .data
            .and_then(|d| d.get("emqx.conf").cloned())
            .unwrap_or_default())
    }

    /// The revision label the listeners Service selects.
    pub async fn listeners_revision(&self) -> Option<String> {
        let svc = Api::<Service>::namespaced(self.client.clone(), NAMESPACE)
            .get(&format!("{NAME}-listeners"))
            .await
            .ok()?;
        svc.spec?
            .selector?
            .get("apps.emqx.io/pod-template-hash")
            .cloned()
    }

    /// Every Event recorded for the object, oldest first.
    pub async fn events(&self) -> Result<Vec<Seen>> {
        let api: Api<k8s_openapi::api::events::v1::Event> =
            Api::namespaced(self.client.clone(), NAMESPACE);
        let mut seen: Vec<Seen> = api
            .list(&ListParams::default())
            .await
            .context("listing Events")?
            .items
            .into_iter()
            .filter(|e| {
                e.regarding
                    .as_ref()
                    .is_some_and(|r| r.name.as_deref() == Some(NAME))
            })
            .filter_map(|e| {
                Some(Seen {
                    reason: e.reason?,
                    note: e.note.unwrap_or_default(),
                    at: e.event_time.map(|t| t.0)?,
                    count: e
                        .series
                        .map_or(1, |s| usize::try_from(s.count).unwrap_or(1)),
                })
            })
            .collect();
        seen.sort_by_key(|s| s.at);
        Ok(seen)
    }

    /// How many times an Event with `reason` was published.
    pub async fn count_events(&self, reason: &str) -> Result<usize> {
        Ok(self
            .events()
            .await?
            .iter()
            .filter(|e| e.reason == reason)
            .map(|e| e.count)
            .sum())
    }

    /// Nodes (by EMQX name) that ever started an evacuation, among those
    /// still members of the cluster.
    pub fn evacuated_nodes(&self) -> Vec<String> {
        let Some(cluster) = self.hook.cluster() else {
            return Vec::new();
        };
        cluster
            .summaries()
            .into_iter()
            .filter(|m| !cluster.evacuation_history(&m.name).is_empty())
            .map(|m| m.name)
            .collect()
    }

    /// The evacuation steps EMQX recorded for `node` (empty once it left
    /// the cluster).
    pub fn evacuation_history(&self, node: &str) -> Vec<EvacuationEvent> {
        self.hook
            .cluster()
            .map(|c| c.evacuation_history(node))
            .unwrap_or_default()
    }

    /// Stops the in-process reconciler (if it runs one) and the sandbox.
    pub async fn stop(mut self) -> Result<()> {
        if let Some(reconciler) = self.reconciler.take() {
            reconciler.stop().await;
        }
        self.sandbox.stop().await
    }
}

/// One Event of the object: reason, note, time.
#[derive(Debug, Clone)]
pub struct Seen {
    /// `reason`.
    pub reason: String,
    /// `note`.
    pub note: String,
    /// `eventTime`.
    pub at: k8s_openapi::jiff::Timestamp,
    /// Repeats folded into this Event by the recorder (an event series
    /// keeps the first note and counts the rest).
    pub count: usize,
}

/// `config`'s clients through the listeners Service of the cluster `name`
/// in `namespace`, all connected and subscribed within `within`;
/// `cluster` (the simulated EMQX behind it) tells where they are.
pub async fn connect_clients(
    client: &Client,
    namespace: &str,
    name: &str,
    cluster: Arc<BrokerCluster>,
    config: LoadConfig,
    within: Duration,
) -> Result<MqttLoad> {
    let service = Endpoints::new(vec![listeners_endpoint(client, namespace, name).await?]);
    let load = MqttLoad::start(config, service.clone(), service, cluster);
    if !load.wait_all_subscribed(within).await {
        bail!("clients did not connect: {:?}", load.progress());
    }
    Ok(load)
}

/// Where MQTT clients connect: the listeners Service's ClusterIP and its
/// MQTT-over-TCP port 1883, else its first port (the sandbox's proxy serves
/// it). The Go operator's Service lists `ssl-default` (8883) first.
pub async fn listeners_endpoint(
    client: &Client,
    namespace: &str,
    cluster: &str,
) -> Result<std::net::SocketAddr> {
    let services: Api<Service> = Api::namespaced(client.clone(), namespace);
    let svc = services.get(&format!("{cluster}-listeners")).await?;
    let spec = svc.spec.context("listeners Service without spec")?;
    let ip: std::net::Ipv4Addr = spec
        .cluster_ip
        .context("listeners Service without a ClusterIP")?
        .parse()?;
    let ports = spec.ports.unwrap_or_default();
    let port = ports
        .iter()
        .find(|p| p.port == 1883)
        .or(ports.first())
        .map(|p| p.port)
        .context("listeners Service without ports")?;
    Ok(std::net::SocketAddr::from((ip, u16::try_from(port)?)))
}

/// The core revision the object's status names as desired.
pub fn update_revision(emqx: &EMQX) -> Option<String> {
    emqx.status
        .as_ref()?
        .core_nodes_status
        .as_ref()?
        .update_revision
        .clone()
}

/// The condition `type_` of the object, if set.
pub fn condition(emqx: &EMQX, type_: &str) -> Option<Condition> {
    emqx.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)
        .cloned()
}

/// Whether condition `type_` is True.
pub fn is_true(emqx: &EMQX, type_: &str) -> bool {
    condition(emqx, type_).is_some_and(|c| c.status == "True")
}

/// The core revision the object is Ready on, if it is Ready on one other
/// than `revision_not`; else what it shows instead.
pub fn ready_on(emqx: &EMQX, revision_not: Option<&str>) -> Result<String, String> {
    let ready = condition(emqx, "Ready");
    let update = update_revision(emqx);
    match (&ready, &update) {
        (Some(c), Some(revision))
            if c.status == "True" && Some(revision.as_str()) != revision_not =>
        {
            Ok(revision.clone())
        }
        _ => Err(format!(
            "Ready={:?}, updateRevision={update:?}",
            ready.map(|c| (c.status, c.reason, c.message))
        )),
    }
}

/// Polls `check` every 200 ms until it returns `Ok`, or fails after
/// `timeout` naming `what` and the last observation.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        match check().await {
            Ok(value) => return Ok(value),
            Err(last) if Instant::now() > deadline => {
                bail!("timed out after {timeout:?} waiting for {what}; last: {last}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}
