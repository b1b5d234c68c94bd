//! A sandbox running the reconciler with one `EMQX` cluster, shared by the
//! operator-control and replicant end-to-end tests: start it Ready, patch
//! the object, read its conditions, sets, events and the simulated EMQX
//! nodes.

#![allow(dead_code, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use emqx_crd::v2beta1::EMQX;
use k8s_openapi::api::apps::v1::{ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use sandbox::operator::InProcessReconciler;
use sandbox::{EmqxHook, Sandbox, SandboxOptions};
use serde_json::{Value, json};

use crate::support::{self, wait_for};

/// The cluster's name, as in seed 003.
pub const NAME: &str = "emqx-ee";
pub const NAMESPACE: &str = "default";

/// A readiness probe that answers quickly, so pods become ready in seconds.
pub fn quick_probe(path: &str) -> Value {
    json!({"httpGet": {"path": path, "port": "dashboard"}, "periodSeconds": 1, "failureThreshold": 3})
}

/// Seed 003's manifest with `cores` core nodes (and `replicants` replicant
/// nodes when given), quick probes and small delays and rates.
pub fn seed_003_quick(cores: u32, replicants: Option<u32>) -> Value {
    let mut object = sandbox::operator::seed_003_manifest().expect("seed 003");
    json_patch::merge(
        &mut object,
        &json!({
            "metadata": {"namespace": NAMESPACE},
            "spec": {
                "updateStrategy": {
                    "initialDelaySeconds": 2,
                    "evacuationStrategy": {"waitTakeover": 2, "connEvictRate": 50, "sessEvictRate": 50}
                },
                "coreTemplate": {"spec": {"replicas": cores, "readinessProbe": quick_probe("/status")}}
            }
        }),
    );
    if let Some(replicas) = replicants {
        json_patch::merge(
            &mut object,
            &json!({"spec": {"replicantTemplate": {"spec": {
                "replicas": replicas,
                "readinessProbe": quick_probe("/status")
            }}}}),
        );
    }
    object
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

/// One Event of the cluster: reason, note, time.
#[derive(Debug, Clone)]
pub struct Seen {
    pub reason: String,
    pub note: String,
    pub at: k8s_openapi::jiff::Timestamp,
    /// Repeats folded into this Event by the recorder (an event series
    /// keeps the first note and counts the rest).
    pub count: usize,
}

/// A sandbox running the reconciler, with one cluster Ready.
pub struct Fixture {
    pub sandbox: Sandbox,
    pub hook: Arc<EmqxHook>,
    pub reconciler: InProcessReconciler,
    pub client: Client,
    pub api: Api<EMQX>,
    /// The core revision it first became Ready on.
    pub revision: String,
}

impl Fixture {
    /// Starts the sandbox and the reconciler, creates `manifest` and waits
    /// until it is Ready.
    pub async fn start(manifest: Value) -> Fixture {
        support::init_tracing();
        let hook = EmqxHook::new();
        let sandbox = Sandbox::start(SandboxOptions::default().hook(hook.clone()))
            .await
            .expect("sandbox starts");
        let client = sandbox.client();
        sandbox::operator::install_crds(&client)
            .await
            .expect("CRDs installed");
        let reconciler = InProcessReconciler::start(client.clone(), NAMESPACE);
        let api: Api<EMQX> = Api::namespaced(client.clone(), NAMESPACE);
        let object: EMQX = serde_json::from_value(manifest).expect("EMQX");
        api.create(&PostParams::default(), &object)
            .await
            .expect("create EMQX");
        let mut fixture = Fixture {
            sandbox,
            hook,
            reconciler,
            client,
            api,
            revision: String::new(),
        };
        let ready = fixture.wait_ready(None, Duration::from_secs(180)).await;
        fixture.revision = core_update_revision(&ready).expect("a revision");
        fixture
    }

    pub async fn get(&self) -> EMQX {
        self.api.get(NAME).await.expect("get EMQX")
    }

    /// A JSON merge patch of the object (as `kubectl patch --type=merge`).
    pub async fn patch(&self, patch: Value) {
        self.api
            .patch(NAME, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .expect("patch EMQX");
    }

    /// Polls the object until `check` accepts it.
    pub async fn wait_object<T>(
        &self,
        what: &str,
        timeout: Duration,
        check: impl Fn(&EMQX) -> Result<T, String>,
    ) -> T {
        let check = &check;
        wait_for(what, timeout, || async move {
            let emqx = self.api.get(NAME).await.map_err(|e| e.to_string())?;
            check(&emqx)
        })
        .await
    }

    /// Waits until the object is Ready with a core revision other than
    /// `revision_not` (any, when `None`).
    pub async fn wait_ready(&self, revision_not: Option<&str>, timeout: Duration) -> EMQX {
        self.wait_object("EMQX Ready", timeout, |emqx| {
            let ready = condition(emqx, "Ready");
            let update = core_update_revision(emqx);
            match &ready {
                Some(c)
                    if c.status == "True"
                        && update.is_some()
                        && update.as_deref() != revision_not =>
                {
                    Ok(emqx.clone())
                }
                _ => Err(format!(
                    "Ready={:?}, updateRevision={update:?}",
                    ready.map(|c| (c.status, c.reason, c.message))
                )),
            }
        })
        .await
    }

    pub async fn stateful_sets(&self) -> Vec<StatefulSet> {
        Api::<StatefulSet>::namespaced(self.client.clone(), NAMESPACE)
            .list(&ListParams::default())
            .await
            .expect("list StatefulSets")
            .items
    }

    pub async fn replica_sets(&self) -> Vec<ReplicaSet> {
        Api::<ReplicaSet>::namespaced(self.client.clone(), NAMESPACE)
            .list(&ListParams::default())
            .await
            .expect("list ReplicaSets")
            .items
    }

    pub async fn pods(&self) -> Vec<Pod> {
        Api::<Pod>::namespaced(self.client.clone(), NAMESPACE)
            .list(&ListParams::default())
            .await
            .expect("list pods")
            .items
    }

    /// `spec.replicas` of the core StatefulSet of `revision`, if it exists.
    pub async fn core_set_replicas(&self, revision: &str) -> Option<i32> {
        let name = format!("{NAME}-core-{revision}");
        self.stateful_sets()
            .await
            .into_iter()
            .find(|s| s.metadata.name.as_deref() == Some(name.as_str()))
            .map(|s| s.spec.and_then(|s| s.replicas).unwrap_or(0))
    }

    /// `clients` MQTT clients (and a publisher) through the listeners
    /// Service, all connected and subscribed; also the EMQX cluster they
    /// are on.
    pub async fn start_load(
        &self,
        clients: usize,
    ) -> (mqtt_load::MqttLoad, Arc<emqx_sim::cluster::BrokerCluster>) {
        use mqtt_load::{Endpoints, LoadConfig, MqttLoad};
        let service = Endpoints::new(vec![
            sandbox::operator::listeners_endpoint(&self.client, NAMESPACE, NAME)
                .await
                .expect("listeners Service"),
        ]);
        let cluster = self
            .hook
            .nodes()
            .into_values()
            .next()
            .expect("a node")
            .cluster;
        let load = MqttLoad::start(
            LoadConfig {
                clients,
                connect_rate: 200,
                publish_interval: Duration::from_secs(1),
                max_duration: Duration::from_secs(300),
                ..LoadConfig::default()
            },
            service.clone(),
            service,
            cluster.clone(),
        );
        assert!(
            load.wait_all_subscribed(Duration::from_secs(60)).await,
            "clients did not connect: {:?}",
            load.progress()
        );
        (load, cluster)
    }

    /// `emqx.conf` in the cluster's ConfigMap.
    pub async fn config_data(&self) -> String {
        Api::<k8s_openapi::api::core::v1::ConfigMap>::namespaced(self.client.clone(), NAMESPACE)
            .get(&format!("{NAME}-configs"))
            .await
            .expect("ConfigMap")
            .data
            .and_then(|d| d.get("emqx.conf").cloned())
            .unwrap_or_default()
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

    /// Every Event recorded for the cluster, oldest first.
    pub async fn events(&self) -> Vec<Seen> {
        let api: Api<k8s_openapi::api::events::v1::Event> =
            Api::namespaced(self.client.clone(), NAMESPACE);
        let mut seen: Vec<Seen> = api
            .list(&ListParams::default())
            .await
            .expect("events")
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
        seen
    }

    /// How many times an Event with `reason` was published.
    pub async fn count_events(&self, reason: &str) -> usize {
        self.events()
            .await
            .iter()
            .filter(|e| e.reason == reason)
            .map(|e| e.count)
            .sum()
    }

    /// Nodes (by EMQX name) that ever started an evacuation, among those
    /// still members of the cluster.
    pub fn evacuated_nodes(&self) -> Vec<String> {
        let Some(cluster) = self.hook.nodes().into_values().next().map(|n| n.cluster) else {
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
    pub fn evacuation_history(&self, node: &str) -> Vec<emqx_sim::cluster::EvacuationEvent> {
        self.hook
            .nodes()
            .into_values()
            .next()
            .map(|n| n.cluster.evacuation_history(node))
            .unwrap_or_default()
    }

    pub async fn stop(self) {
        self.reconciler.stop().await;
        self.sandbox.stop().await.expect("sandbox stops");
    }
}

/// `status.coreNodesStatus.updateRevision`.
pub fn core_update_revision(emqx: &EMQX) -> Option<String> {
    sandbox::operator::update_revision(emqx)
}
