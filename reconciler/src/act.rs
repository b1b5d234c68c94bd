//! Carrying out a decision's actions, in order, stopping at the first
//! failure (the next pass re-derives what is still to do). Writes owned
//! objects and calls EMQX; tells nobody: [`crate::report`] turns the
//! [`Outcome`] into Events, the memory and the status.

use crate::context::{Context, apply_params};
use crate::decide::{Action, Decision};
use crate::emqx_api::{self, ApiGeneration, EmqxError, StartOutcome};
use crate::error::Error;
use crate::explain::StepFailure;
use crate::gather::EmqxEndpoint;
use crate::live::VICTIM_DELETION_COST;
use crate::observed::{NodeSet, Role};
use crate::render::Rendered;
use emqx_crd::names;
use k8s_openapi::api::apps::v1::{ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::{Api, Client};
use serde_json::json;

/// What a carried-out action did, beyond succeeding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Done as planned.
    Done,
    /// `evacuation/start` answered this (started, or already running).
    EvacuationStarted(StartOutcome),
    /// Nothing to do on this broker (`force_leave` on EMQX 4.4).
    NotNeeded,
}

/// What a pass's actions achieved.
#[derive(Debug, Default)]
pub struct Outcome {
    /// The actions carried out, in order.
    pub done: Vec<(Action, Effect)>,
    /// The action that failed; none after it was tried.
    pub failed: Option<StepFailure>,
}

/// Carries out `decision.actions` in order.
pub async fn act(
    ctx: &Context,
    rendered: &Rendered<'_>,
    decision: &Decision,
    sets: &[NodeSet],
    emqx: Option<&EmqxEndpoint>,
) -> Outcome {
    let mut outcome = Outcome::default();
    for step in &decision.actions {
        match act_one(ctx, rendered, step, sets, emqx).await {
            Ok(effect) => outcome.done.push((step.clone(), effect)),
            Err(error) => {
                outcome.failed = Some(StepFailure {
                    step: step.clone(),
                    error,
                });
                break;
            }
        }
    }
    outcome
}

/// The endpoint, for a step that must call EMQX.
fn reachable(emqx: Option<&EmqxEndpoint>) -> Result<&EmqxEndpoint, Error> {
    emqx.ok_or(Error::Emqx(EmqxError::Transport {
        call: "EMQX",
        detail: "no EMQX endpoint this pass".into(),
    }))
}

/// The kind of the set named `name`, as observed this pass.
fn role_of(sets: &[NodeSet], name: &str) -> Result<Role, Error> {
    sets.iter()
        .find(|s| s.name == name)
        .map(|s| s.role)
        .ok_or_else(|| Error::SetGone(name.to_owned()))
}

async fn act_one(
    ctx: &Context,
    rendered: &Rendered<'_>,
    step: &Action,
    sets: &[NodeSet],
    emqx: Option<&EmqxEndpoint>,
) -> Result<Effect, Error> {
    let client = ctx.client.clone();
    let cluster = &rendered.cluster;
    let ns = cluster.namespace;
    let params = apply_params();
    match step {
        Action::CreateSet {
            role: Role::Core,
            revision,
            replicas,
        } => {
            let set = rendered.core_set(revision, *replicas);
            Api::<StatefulSet>::namespaced(client, ns)
                .patch(
                    &names::core_set_name(cluster.name, revision),
                    &params,
                    &Patch::Apply(&set),
                )
                .await?;
        }
        Action::CreateSet {
            role: Role::Replicant,
            revision,
            replicas,
        } => {
            // `decide` asks for replicants only when the spec has them.
            if let Some(set) = rendered.replicant_set(revision, *replicas) {
                Api::<ReplicaSet>::namespaced(client, ns)
                    .patch(
                        &names::replicant_set_name(cluster.name, revision),
                        &params,
                        &Patch::Apply(&set),
                    )
                    .await?;
            }
        }
        Action::ScaleSet { name, from, to } => {
            scale(&client, ns, sets, name, *from, *to).await?;
        }
        Action::PointServices {
            listeners,
            dashboard,
        } => {
            let api = Api::<Service>::namespaced(client, ns);
            if let Some(svc) = rendered.listeners_service(listeners.0, &listeners.1) {
                api.patch(
                    &names::listeners_service_name(cluster.name),
                    &params,
                    &Patch::Apply(&svc),
                )
                .await?;
            }
            if let Some(svc) = rendered.dashboard_service(dashboard) {
                api.patch(
                    &names::dashboard_service_name(cluster.name),
                    &params,
                    &Patch::Apply(&svc),
                )
                .await?;
            }
        }
        // Kept by the report, which writes the memory once per pass.
        Action::RecordNewNodesReady { .. }
        | Action::RecordDrainStart { .. }
        | Action::RecordProgress { .. }
        | Action::RecordAbort { .. }
        | Action::ClearAbort
        | Action::ArmGuard { .. }
        | Action::RecordEviction { .. }
        | Action::RecordFailureWindow { .. }
        | Action::RecordRecovery { .. }
        // The abort annotation is written with the memory (`report`), in
        // one patch.
        | Action::TripGuard { .. } => {}
        Action::MarkForDeletion { pod } => {
            let patch = json!({"metadata": {"annotations": {names::ANNOTATION_POD_DELETION_COST: VICTIM_DELETION_COST}}});
            Api::<Pod>::namespaced(client, ns)
                .patch(pod, &PatchParams::default(), &Patch::Merge(&patch))
                .await?;
        }
        Action::MarkServing { pod } => {
            // A strategic merge on `status.conditions` (merge key `type`)
            // sets this one condition and leaves the kubelet's alone.
            let now = k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                k8s_openapi::jiff::Timestamp::now(),
            );
            let patch = json!({"status": {"conditions": [{
                "type": names::READINESS_GATE_ON_SERVING,
                "status": "True",
                "lastTransitionTime": now,
            }]}});
            Api::<Pod>::namespaced(client, ns)
                .patch_status(pod, &PatchParams::default(), &Patch::Strategic(&patch))
                .await?;
        }
        Action::StartEvacuation {
            node,
            migrate_to,
            strategy,
        } => {
            let emqx = reachable(emqx)?;
            let knows = emqx
                .version
                .as_deref()
                .is_some_and(emqx_api::knows_wait_health_check);
            let started = emqx
                .client
                .start_evacuation(node, strategy, migrate_to, knows)
                .await?;
            return Ok(Effect::EvacuationStarted(started));
        }
        Action::StopEvacuation { node } => {
            reachable(emqx)?.client.stop_evacuation(node).await?;
        }
        Action::RemoveOldNode { set, from, .. } => {
            scale(&client, ns, sets, set, *from, from.saturating_sub(1)).await?;
        }
        Action::ForceLeave { node } => {
            let emqx = reachable(emqx)?;
            if emqx.client.api() != ApiGeneration::V5 {
                return Ok(Effect::NotNeeded);
            }
            emqx.client.force_leave(node).await?;
        }
        Action::DeleteSet { name } => {
            let dp = DeleteParams::background();
            match sets.iter().find(|s| &s.name == name).map(|s| s.role) {
                Some(Role::Core) => {
                    Api::<StatefulSet>::namespaced(client, ns)
                        .delete(name, &dp)
                        .await?;
                }
                Some(Role::Replicant) => {
                    Api::<ReplicaSet>::namespaced(client, ns)
                        .delete(name, &dp)
                        .await?;
                }
                None => {}
            }
        }
    }
    Ok(Effect::Done)
}

/// `spec.replicas: from → to`, only if it is still `from` (JSON Patch
/// `test`): a retried pass can never remove two nodes.
async fn scale(
    client: &Client,
    ns: &str,
    sets: &[NodeSet],
    name: &str,
    from: u32,
    to: u32,
) -> Result<(), Error> {
    let patch: json_patch::Patch = serde_json::from_value(json!([
        {"op": "test", "path": "/spec/replicas", "value": from},
        {"op": "replace", "path": "/spec/replicas", "value": to},
    ]))
    .map_err(|source| Error::Render {
        what: "a scale patch",
        source,
    })?;
    let pp = PatchParams::default();
    match role_of(sets, name)? {
        Role::Core => {
            Api::<StatefulSet>::namespaced(client.clone(), ns)
                .patch(name, &pp, &Patch::<()>::Json(patch))
                .await?;
        }
        Role::Replicant => {
            Api::<ReplicaSet>::namespaced(client.clone(), ns)
                .patch(name, &pp, &Patch::<()>::Json(patch))
                .await?;
        }
    }
    Ok(())
}
