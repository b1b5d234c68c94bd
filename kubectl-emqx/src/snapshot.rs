//! What `kubectl emqx status` shows, read from the API in one go: the
//! cluster object (spec revision, status, conditions), its StatefulSets and
//! ReplicaSets, their pods, and the Events about the object. The object is
//! an `EMQX` (apps.emqx.io/v2beta1) or an `EmqxEnterprise` (stored as
//! apps.emqx.io/v1beta4), the latter read through its v2beta1 view, which
//! the conversion webhook serves with the same spec and the status the
//! reconciler writes; both render the same way.

use anyhow::{Context as _, Result, bail};
use emqx_crd::names::{LABEL_DB_ROLE, LABEL_INSTANCE};
use emqx_crd::v2beta1::{self, EMQX};
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

/// Which kind of object the cluster is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `EMQX` apps.emqx.io/v2beta1.
    Emqx,
    /// `EmqxEnterprise`, stored as apps.emqx.io/v1beta4.
    EmqxEnterprise,
}

impl Kind {
    /// The kind as Kubernetes names it (Events' `involvedObject.kind`).
    pub fn name(self) -> &'static str {
        match self {
            Kind::Emqx => "EMQX",
            Kind::EmqxEnterprise => "EmqxEnterprise",
        }
    }

    /// The API version users write the object in.
    pub fn api_version(self) -> &'static str {
        match self {
            Kind::Emqx => "apps.emqx.io/v2beta1",
            Kind::EmqxEnterprise => "apps.emqx.io/v1beta4",
        }
    }
}

/// The v2beta1 view of an `EmqxEnterprise` as the `EMQX` object it renders
/// as: the same metadata, spec and status (pure).
pub fn enterprise_as_emqx(e: v2beta1::EmqxEnterprise) -> EMQX {
    let mut object = EMQX::new(&e.metadata.name.clone().unwrap_or_default(), e.spec.emqx);
    object.metadata = e.metadata;
    object.status = e.status;
    object
}

/// The cluster `name` in `namespace`: an `EMQX` if there is one, else an
/// `EmqxEnterprise` (through its v2beta1 view).
pub async fn find(client: &Client, namespace: &str, name: &str) -> Result<(Kind, EMQX)> {
    match Api::<EMQX>::namespaced(client.clone(), namespace)
        .get_opt(name)
        .await
    {
        Ok(Some(object)) => return Ok((Kind::Emqx, object)),
        Ok(None) => {}
        // No EMQX CRD in this cluster: look for an EmqxEnterprise.
        Err(kube::Error::Api(e)) if e.code == 404 => {}
        Err(e) => return Err(e).with_context(|| format!("reading EMQX {namespace}/{name}")),
    }
    match Api::<v2beta1::EmqxEnterprise>::namespaced(client.clone(), namespace)
        .get_opt(name)
        .await
    {
        Ok(Some(e)) => Ok((Kind::EmqxEnterprise, enterprise_as_emqx(e))),
        Ok(None) => bail!("no EMQX or EmqxEnterprise named {namespace}/{name}"),
        Err(kube::Error::Api(e)) if e.code == 404 => {
            bail!("no EMQX or EmqxEnterprise named {namespace}/{name}")
        }
        Err(e) => Err(e).with_context(|| format!("reading EmqxEnterprise {namespace}/{name}")),
    }
}

/// Everything one status screen shows.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub kind: Kind,
    pub object: EMQX,
    pub sets: Vec<SetRow>,
    pub pods: Vec<PodRow>,
    pub events: Vec<EventRow>,
}

/// Reads the cluster `name` in `namespace`.
pub async fn fetch(client: &Client, namespace: &str, name: &str) -> Result<Snapshot> {
    let (kind, object) = find(client, namespace, name).await?;
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
            .filter(|e| e.involved_object.kind.as_deref() == Some(kind.name()))
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
        kind,
        object,
        sets,
        pods,
        events: events.into_iter().map(|(_, e)| e).collect(),
    })
}
