//! Telling what a pass found and did, from the spec, the observation, the
//! decision and the outcome alone: Events, the memory annotation, the
//! metrics and the status. The writes of a pass that are not actions.

use crate::act::Outcome;
use crate::context::{Context, apply_params};
use crate::decide::{self, Decision};
use crate::error::Error;
use crate::events;
use crate::explain;
use crate::gather::Observation;
use crate::kind::ClusterKind;
use crate::memory;
use crate::metrics::{ClusterFigures, ClusterLabels, NodeFigures};
use crate::observed::{Memory, NodeSet, Role};
use crate::render::Cluster;
use crate::status;
use crate::upgrade_slots;
use crate::v1beta4_conditions;
use emqx_crd::v2beta1::EMQXNode;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::api::{Patch, PatchParams};
use kube::runtime::events::Event;
use kube::{Api, Client, ResourceExt};
use serde_json::json;

/// Publishes the pass's Events, then writes the memory and the status
/// where they changed, and sets the cluster's gauges.
pub async fn report<K: ClusterKind>(
    ctx: &Context,
    object: &K,
    cluster: &Cluster<'_>,
    obs: &Observation,
    decision: &Decision,
    outcome: &Outcome,
) -> Result<(), Error> {
    let reference = object.object_ref(&());
    for note in events::notes(cluster, &obs.observed.sets, outcome) {
        publish(ctx, &reference, note).await;
    }

    let mut memory = obs.observed.memory.clone();
    for (step, _) in &outcome.done {
        memory::record(&mut memory, step);
    }
    // The guard's trip writes the abort annotation with the memory, in one
    // patch: the next pass goes back as after any abort, and removing the
    // annotation retries.
    let tripped = outcome.done.iter().find_map(|(step, _)| match step {
        decide::Action::TripGuard { revision, .. } => Some(revision.clone()),
        _ => None,
    });
    write_memory(&ctx.client, object, &memory, tripped.as_deref()).await?;

    let spec = &obs.spec;
    let evacuations: Option<Vec<(String, u64)>> = obs.observed.emqx.as_ref().map(|e| {
        e.evacuations
            .iter()
            .map(|e| (e.node.clone(), e.remaining))
            .collect()
    });
    let labels = ClusterLabels {
        namespace: cluster.namespace.to_owned(),
        cluster: cluster.name.to_owned(),
    };
    let nodes: Option<Vec<NodeFigures>> = obs
        .nodes
        .as_ref()
        .map(|nodes| node_figures(&obs.observed.sets, nodes));
    ctx.metrics.record_cluster(
        &labels,
        ClusterFigures {
            upgrading: obs.observed.sets.iter().any(|s| s.is_old(spec)),
            phase: decision.phase.as_str(),
            stalled: decision.stalled,
            evacuations: evacuations.as_deref(),
            nodes: nodes.as_deref(),
        },
    );
    ctx.metrics.record_guard(&labels, decision.guard.as_ref());
    if tripped.is_some() {
        ctx.metrics.guard_trips.get_or_create(&labels).inc();
    }

    let wait = crate::licence::explain(
        explain::explain(
            decision.wait.as_ref(),
            obs.unavailable.as_ref(),
            outcome.failed.as_ref(),
        ),
        obs.licence.as_ref(),
    );
    let now = obs.observed.now;
    let key = upgrade_slots::key(cluster.kind, cluster.namespace, cluster.name);
    let uid = object.meta().uid.clone().unwrap_or_default();
    let written = ctx.sent_statuses.recent(&key, &uid, ctx.resync);
    let previous = written.as_ref().or(object.hub_status());
    let new_status = status::status(&status::StatusInput {
        generation: object.meta().generation.unwrap_or(0),
        now,
        spec,
        sets: &obs.observed.sets,
        decision,
        wait: wait.as_ref(),
        traffic_on_desired: decide::traffic_on_desired(spec, &obs.observed),
        nodes: obs.nodes.clone(),
        evacuations: obs.evacuations.clone(),
        evacuation_unsupported: obs
            .observed
            .emqx
            .as_ref()
            .is_some_and(|e| !e.evacuation_api),
        previous,
    });
    let new_status = if K::v1beta4_conditions() {
        v1beta4_conditions::with_v1beta4_conditions(new_status, previous, now)
    } else {
        new_status
    };
    if !status::unchanged(previous, &new_status) {
        let api: Api<K> = Api::namespaced(ctx.client.clone(), cluster.namespace);
        let patch = json!({
            "apiVersion": cluster.api_version,
            "kind": cluster.kind,
            "status": new_status,
        });
        let answer = api
            .patch_status(cluster.name, &apply_params(), &Patch::Apply(&patch))
            .await?;
        if let Some(stored) = answer.hub_status() {
            ctx.sent_statuses.record(&key, &uid, stored.clone());
        }
    }
    Ok(())
}

/// Each node EMQX lists, with the revision of the set whose pod runs it.
/// EMQX 5.x's `connections` counts sessions (connected or not) and
/// `live_connections` the connected clients; 4.4 lists only `connections`,
/// which then stands for both.
fn node_figures(sets: &[NodeSet], nodes: &[(Role, EMQXNode)]) -> Vec<NodeFigures> {
    nodes
        .iter()
        .filter_map(|(_, n)| {
            let node = n.node.clone()?;
            let revision = sets
                .iter()
                .find(|s| s.pods.iter().any(|p| p.node == node))
                .map(|s| s.revision.to_string())
                .unwrap_or_default();
            let sessions = n.connections.unwrap_or(0);
            Some(NodeFigures {
                node,
                revision,
                connections: n.live_connections.unwrap_or(sessions),
                sessions,
            })
        })
        .collect()
}

/// Records one Event about the object at `reference`; a failure is logged,
/// never fails the pass.
pub async fn publish(ctx: &Context, reference: &ObjectReference, note: events::Note) {
    let event = Event {
        type_: note.type_,
        reason: note.reason.to_owned(),
        note: Some(note.note.chars().take(1000).collect()),
        action: note.action,
        secondary: note.related,
    };
    if let Err(error) = ctx.recorder.publish(&event, reference).await {
        tracing::warn!(%error, "event not recorded");
    }
}

/// Writes the memory annotation when it changed ([`memory::needs_write`];
/// [`crate::memory`] says why an annotation).
async fn write_memory<K: ClusterKind>(
    client: &Client,
    object: &K,
    memory: &Memory,
    abort: Option<&str>,
) -> Result<(), Error> {
    if !memory::needs_write(object.meta().annotations.as_ref(), memory) && abort.is_none() {
        return Ok(());
    }
    let value = memory::store(memory);
    let namespace = object.namespace().unwrap_or_default();
    let mut annotations = serde_json::Map::new();
    annotations.insert(memory::ANNOTATION_PROGRESS.to_owned(), json!(value));
    if let Some(revision) = abort {
        annotations.insert(memory::ANNOTATION_ABORT.to_owned(), json!(revision));
    }
    let patch = json!({"metadata": {"annotations": annotations}});
    if let Some(version) = K::metadata_version() {
        let gvk = kube::api::GroupVersionKind::gvk(&K::group(&()), version, &K::kind(&()));
        let resource = kube::api::ApiResource::from_gvk_with_plural(&gvk, &K::plural(&()));
        let api: Api<kube::api::DynamicObject> =
            Api::namespaced_with(client.clone(), &namespace, &resource);
        api.patch(
            &object.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await?;
        return Ok(());
    }
    let api: Api<K> = Api::namespaced(client.clone(), &namespace);
    api.patch(
        &object.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await?;
    Ok(())
}
