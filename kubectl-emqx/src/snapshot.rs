//! What `kubectl emqx status` shows, read from the API in one go: the EMQX
//! object (spec revision, status, conditions), its StatefulSets and
//! ReplicaSets, their pods, and the Events about the object.

use anyhow::{Context as _, Result};
use emqx_crd::names::{LABEL_DB_ROLE, LABEL_INSTANCE};
use emqx_crd::v2beta1::EMQX;
use k8s_openapi::api::apps::v1::{ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::{Event, Pod};
use k8s_openapi::jiff::Timestamp;
use kube::api::ListParams;
use kube::{Api, Client, ResourceExt};

/// One StatefulSet (cores) or ReplicaSet (replicants) of the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetRow {
    pub name: String,
    pub role: String,
    /// The pod-template hash label: the revision.
    pub revision: String,
    pub replicas: i32,
    pub ready: i32,
}

/// One pod of the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodRow {
    pub name: String,
    pub revision: String,
    pub ready: bool,
    /// `Running`, `Pending`, … or `Terminating`.
    pub phase: String,
}

/// One Event about the cluster, newest last.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRow {
    /// Seconds since it last happened.
    pub age_s: i64,
    pub type_: String,
    pub reason: String,
    pub note: String,
}

/// Everything one status screen shows.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub object: EMQX,
    pub sets: Vec<SetRow>,
    pub pods: Vec<PodRow>,
    pub events: Vec<EventRow>,
}

/// Reads the cluster `name` in `namespace`.
pub async fn fetch(client: &Client, namespace: &str, name: &str) -> Result<Snapshot> {
    let object = Api::<EMQX>::namespaced(client.clone(), namespace)
        .get(name)
        .await
        .with_context(|| format!("reading EMQX {namespace}/{name}"))?;
    let owned = ListParams::default().labels(&format!("{LABEL_INSTANCE}={name}"));
    let revision_of = |labels: &std::collections::BTreeMap<String, String>| {
        labels
            .get(emqx_crd::names::LABEL_POD_TEMPLATE_HASH)
            .cloned()
            .unwrap_or_default()
    };
    let row = |name: String,
               labels: &std::collections::BTreeMap<String, String>,
               replicas: Option<i32>,
               ready: Option<i32>,
               role: &str| SetRow {
        name,
        role: labels.get(LABEL_DB_ROLE).cloned().unwrap_or(role.into()),
        revision: revision_of(labels),
        replicas: replicas.unwrap_or(0),
        ready: ready.unwrap_or(0),
    };
    let mut sets = Vec::new();
    for set in Api::<StatefulSet>::namespaced(client.clone(), namespace)
        .list(&owned)
        .await
        .context("listing StatefulSets")?
    {
        let replicas = set.spec.as_ref().and_then(|s| s.replicas);
        let ready = set.status.as_ref().and_then(|s| s.ready_replicas);
        sets.push(row(set.name_any(), set.labels(), replicas, ready, "core"));
    }
    for set in Api::<ReplicaSet>::namespaced(client.clone(), namespace)
        .list(&owned)
        .await
        .context("listing ReplicaSets")?
    {
        let replicas = set.spec.as_ref().and_then(|s| s.replicas);
        let ready = set.status.as_ref().and_then(|s| s.ready_replicas);
        sets.push(row(
            set.name_any(),
            set.labels(),
            replicas,
            ready,
            "replicant",
        ));
    }
    let pods = Api::<Pod>::namespaced(client.clone(), namespace)
        .list(&owned)
        .await
        .context("listing pods")?
        .into_iter()
        .map(|pod| {
            let ready = pod
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
            let phase = if pod.metadata.deletion_timestamp.is_some() {
                "Terminating".to_owned()
            } else {
                pod.status
                    .as_ref()
                    .and_then(|s| s.phase.clone())
                    .unwrap_or_default()
            };
            PodRow {
                name: pod.name_any(),
                revision: revision_of(pod.labels()),
                ready,
                phase,
            }
        })
        .collect();
    let now = Timestamp::now();
    let mut events: Vec<(Timestamp, EventRow)> =
        Api::<Event>::namespaced(client.clone(), namespace)
            .list(&ListParams::default().fields(&format!("involvedObject.name={name}")))
            .await
            .context("listing Events")?
            .into_iter()
            .filter(|e| e.involved_object.kind.as_deref() == Some("EMQX"))
            .map(|e| {
                let at = e
                    .last_timestamp
                    .as_ref()
                    .map(|t| t.0)
                    .or(e.event_time.as_ref().map(|t| t.0))
                    .or(e.metadata.creation_timestamp.as_ref().map(|t| t.0))
                    .unwrap_or(now);
                let row = EventRow {
                    age_s: now.as_second() - at.as_second(),
                    type_: e.type_.unwrap_or_default(),
                    reason: e.reason.unwrap_or_default(),
                    note: e.message.unwrap_or_default(),
                };
                (at, row)
            })
            .collect();
    events.sort_by_key(|(at, _)| *at);
    Ok(Snapshot {
        object,
        sets,
        pods,
        events: events.into_iter().map(|(_, e)| e).collect(),
    })
}
