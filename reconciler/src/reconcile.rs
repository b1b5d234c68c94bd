//! One reconcile pass of one cluster, as a straight pipeline:
//!
//! 1. render the object once ([`Rendered`]);
//! 2. [`gather`] one [`crate::gather::Observation`], then apply the base
//!    objects ([`base`]) unless the cluster is a taken-over one;
//! 3. [`decide`] (pure);
//! 4. [`act`] on the decision;
//! 5. [`report`]: Events, memory, metrics and status, from the spec, the
//!    observation, the decision and the outcome.
//!
//! Nothing is remembered between passes except what [`crate::memory`] keeps
//! on the object.

use crate::context::Context;
use crate::decide::{Phase, decide};
use crate::error::Error;
use crate::kind::ClusterKind;
use crate::metrics::{ClusterLabels, Stage};
use crate::render::{Cluster, Rendered};
use crate::{act, base, gather, memory, report, upgrade_slots, v1beta4_template};
use kube::ResourceExt;
use kube::runtime::controller::Action;
use std::time::{Duration, Instant};

/// Runs one pass over `object`.
pub async fn reconcile_pass<K: ClusterKind>(object: &K, ctx: &Context) -> Result<Action, Error> {
    let namespace = object
        .namespace()
        .ok_or(Error::ObjectIncomplete("namespace"))?;
    let name = object.name_any();
    let slot_key = upgrade_slots::key(&K::kind(&()), &namespace, &name);
    if object.meta().deletion_timestamp.is_some() {
        // Owned objects go with it through the garbage collector.
        ctx.upgrade_slots.forget(&slot_key);
        ctx.created_secrets.forget(&slot_key);
        ctx.sent_statuses.forget(&slot_key);
        ctx.metrics.forget_cluster(&ClusterLabels {
            namespace,
            cluster: name,
        });
        return Ok(Action::await_change());
    }
    let uid = object.uid().ok_or(Error::ObjectIncomplete("uid"))?;
    let api_version = K::api_version(&()).to_string();
    let kind = K::kind(&()).to_string();
    let annotations = object.meta().annotations.as_ref();
    let hub_spec = v1beta4_template::with_template_fields(object.hub_spec(), annotations);
    let rendered = Rendered::new(Cluster {
        api_version: &api_version,
        kind: &kind,
        name: &name,
        namespace: &namespace,
        uid: &uid,
        spec: &hub_spec,
    });

    // Read first, write after: whether the base objects may be written
    // depends on what runs (a Go-created cluster taken over keeps its own,
    // see `base::ensure`). The Secret is read without writing; on a new
    // cluster it does not exist yet, and neither does a pod to call.
    let operator_secret =
        base::operator_secret(&ctx.client, &rendered.cluster, &ctx.secret_source).await?;
    let (observation, emqx) = gather::gather(ctx, &rendered, annotations, &operator_secret).await?;
    if !memory::paused(annotations) {
        // Paused: observe and report only; no owned object is written, so a
        // spec edited while paused takes effect on resume, not before.
        // Before `act`: the base objects serve the sets it creates.
        let started = Instant::now();
        if let Err(error) = base::ensure(
            &ctx.client,
            &rendered,
            observation.adopted,
            &ctx.secret_source,
            &ctx.created_secrets,
            observation.pods_waiting,
        )
        .await
        {
            if let Error::BootstrapKey(refused) = &error {
                let note = crate::events::bootstrap_key_refused(refused);
                crate::report::publish(ctx, &object.object_ref(&()), note).await;
            }
            return Err(error);
        }
        ctx.metrics.observe_stage(Stage::Base, started.elapsed());
    }
    match &observation.unavailable {
        // A node answered badly: worth a warning.
        Some(failure) if failure.node.is_some() => tracing::warn!(
            node = failure.node.as_deref().unwrap_or_default(),
            error = %failure.error,
            "EMQX unavailable"
        ),
        // No core ready yet, as while a cluster is being created.
        Some(failure) => tracing::debug!(error = %failure.error, "EMQX not reachable yet"),
        None => {}
    }

    // An upgrade starts only with a free slot (--max-concurrent-upgrades).
    let decision = ctx.upgrade_slots.admit(
        &slot_key,
        upgrade_slots::need(&observation.spec, &observation.observed),
        decide(&observation.spec, &observation.observed),
    );
    tracing::info!(
        cluster = %name,
        phase = ?decision.phase,
        wait = ?decision.wait.as_ref().map(|w| &w.message),
        actions = decision.actions.len(),
        "decided"
    );

    let started = Instant::now();
    let outcome = act::act(
        ctx,
        &rendered,
        &decision,
        &observation.observed.sets,
        emqx.as_ref(),
    )
    .await;
    ctx.metrics.observe_stage(Stage::Act, started.elapsed());

    let started = Instant::now();
    report::report(
        ctx,
        object,
        &rendered.cluster,
        &observation,
        &decision,
        &outcome,
    )
    .await?;
    ctx.metrics.observe_stage(Stage::Report, started.elapsed());
    if let Some(failed) = outcome.failed {
        return Err(failed.error);
    }
    Ok(
        match requeue_after(
            decision.phase,
            decision.requeue_after_s,
            decision.requeue_after_ms,
            ctx.resync,
        ) {
            Some(after) => Action::requeue(after),
            None => Action::await_change(),
        },
    )
}

/// When the next pass runs without a watched change. A Ready cluster is
/// looked at every `resync` (`--resync-seconds`): EMQX membership is not
/// watched, so this is the steady-state polling of EMQX's API (two calls
/// per pass) and of the cluster's objects. Every other phase keeps the
/// pause `decide` chose, which follows the upgrade's own timing; a pause
/// in milliseconds (an evacuation about to end) wins over whole seconds.
pub fn requeue_after(
    phase: Phase,
    decided_s: Option<u64>,
    decided_ms: Option<u64>,
    resync: Duration,
) -> Option<Duration> {
    match phase {
        Phase::Ready => Some(resync),
        _ => decided_ms
            .map(Duration::from_millis)
            .or(decided_s.map(Duration::from_secs)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_clusters_resync_at_the_configured_interval_others_as_decided() {
        let resync = Duration::from_secs(300);
        assert_eq!(
            requeue_after(Phase::Ready, Some(30), None, resync),
            Some(resync)
        );
        assert_eq!(
            requeue_after(Phase::Ready, None, None, resync),
            Some(resync)
        );
        assert_eq!(
            requeue_after(Phase::Evacuating, Some(1), None, resync),
            Some(Duration::from_secs(1))
        );
        assert_eq!(
            requeue_after(Phase::Evacuating, Some(1), Some(200), resync),
            Some(Duration::from_millis(200))
        );
        assert_eq!(requeue_after(Phase::Paused, None, None, resync), None);
    }
}
