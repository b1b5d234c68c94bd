//! `pause`, `resume`, `promote`, `abort`, `retry`: each is a merge patch of
//! the object's annotations, built here from its status alone (pure), so
//! what a command writes can be tested without a cluster.

use anyhow::{Result, bail};
use emqx_crd::names::{ANNOTATION_ABORT, ANNOTATION_PAUSED, ANNOTATION_PROMOTE};
use emqx_crd::v2beta1::EMQX;
use serde_json::{Value, json};

/// A command that steers an upgrade.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Steer {
    Pause,
    Resume,
    Promote,
    Abort,
    Retry,
}

/// The upgrade's revision as the promote and abort annotations name it:
/// the core update revision, or `core/replicant` with replicants (the
/// reconciler's `Spec::revision_key`).
pub fn revision_key(object: &EMQX) -> Result<String> {
    let status = object.status.clone().unwrap_or_default();
    let core = status
        .core_nodes_status
        .and_then(|s| s.update_revision)
        .filter(|r| !r.is_empty());
    let Some(core) = core else {
        bail!(
            "status.coreNodesStatus.updateRevision is not set yet: the operator has not reported this cluster"
        );
    };
    let replicants = object
        .spec
        .replicant_template
        .as_ref()
        .and_then(|t| t.spec.as_ref())
        .and_then(|s| s.replicas)
        .is_some_and(|r| r > 0);
    let replicant = status
        .replicant_nodes_status
        .and_then(|s| s.update_revision)
        .filter(|r| !r.is_empty());
    Ok(match (replicants, replicant) {
        (true, Some(r)) => format!("{core}/{r}"),
        (true, None) => bail!(
            "status.replicantNodesStatus.updateRevision is not set yet: the operator has not reported the replicants"
        ),
        (false, _) => core,
    })
}

/// The merge patch a command applies, and a line saying what it did.
pub fn patch(steer: Steer, object: &EMQX) -> Result<(Value, String)> {
    let name = object.metadata.name.as_deref().unwrap_or("?");
    let annotations = |pairs: Value| json!({"metadata": {"annotations": pairs}});
    Ok(match steer {
        Steer::Pause => (
            annotations(json!({ANNOTATION_PAUSED: "true"})),
            format!("{name}: paused (the operator observes and reports only)"),
        ),
        Steer::Resume => (
            annotations(json!({ANNOTATION_PAUSED: null})),
            format!("{name}: resumed"),
        ),
        Steer::Promote => {
            let revision = revision_key(object)?;
            (
                annotations(json!({ANNOTATION_PROMOTE: revision})),
                format!("{name}: revision {revision} promoted; clients move to it"),
            )
        }
        Steer::Abort => {
            let revision = revision_key(object)?;
            (
                annotations(json!({ANNOTATION_ABORT: revision})),
                format!("{name}: upgrade to {revision} aborted; the old revision serves"),
            )
        }
        Steer::Retry => {
            let aborted = object
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(ANNOTATION_ABORT));
            let Some(aborted) = aborted else {
                bail!("{name}: no aborted upgrade to retry ({ANNOTATION_ABORT} is not set)");
            };
            (
                annotations(json!({ANNOTATION_ABORT: null})),
                format!("{name}: upgrade to {aborted} retried"),
            )
        }
    })
}
