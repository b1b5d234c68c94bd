//! The conditions a v1beta4 `EmqxEnterprise` user reads: `Running` and
//! `BlueGreenUpdating`, the two the Go operator sets for that API
//! (`docs/upstream-operator.md` §1.3, §1.7). They are derived from the hub
//! status of the same pass, so both views always agree, and they travel
//! through the conversion like every other condition.
//!
//! One deliberate difference: upstream never resets `BlueGreenUpdating`, so
//! `kubectl get emqxenterprise` kept printing it after the update. Here it
//! turns `False` (reason `BlueGreenUpdateFinished`) when the old set is
//! drained. It appears only once an update has started, as upstream's does.

use crate::observed::Seconds;
use emqx_crd::hub::condition;
use emqx_crd::v2beta1::{EMQXNodesStatus, EMQXStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// `Running`: the cluster is ready on its desired revision.
pub const RUNNING: &str = "Running";
/// `BlueGreenUpdating`: old nodes still run next to the new ones.
pub const BLUE_GREEN_UPDATING: &str = "BlueGreenUpdating";

fn updating(s: Option<&EMQXNodesStatus>) -> bool {
    s.is_some_and(|s| s.current_revision.is_some() && s.current_revision != s.update_revision)
}

/// Adds `Running` and `BlueGreenUpdating` to `status` (computed by
/// [`crate::status::status`] at `now`, Unix seconds, with `previous` as its
/// previous status). `lastTransitionTime` moves only when a condition's
/// status flips.
pub fn with_v1beta4_conditions(
    mut status: EMQXStatus,
    previous: Option<&EMQXStatus>,
    now: Seconds,
) -> EMQXStatus {
    let mut conditions = status.conditions.take().unwrap_or_default();
    let find = |t: &str| conditions.iter().find(|c| c.type_ == t).cloned();
    let ready = find(condition::READY);
    let progressing = find("Progressing");
    let generation = ready.as_ref().and_then(|c| c.observed_generation);
    let now = Time(
        k8s_openapi::jiff::Timestamp::from_second(i64::try_from(now).unwrap_or(0))
            .unwrap_or(k8s_openapi::jiff::Timestamp::UNIX_EPOCH),
    );
    let previous_conditions = previous
        .and_then(|p| p.conditions.as_ref())
        .cloned()
        .unwrap_or_default();
    let since = |type_: &str, status: &str| {
        previous_conditions
            .iter()
            .find(|c| c.type_ == type_ && c.status == status)
            .map_or_else(|| now.clone(), |c| c.last_transition_time.clone())
    };
    let make = |type_: &str, true_: bool, reason: String, message: String| {
        let s = if true_ { "True" } else { "False" };
        Condition {
            type_: type_.to_owned(),
            status: s.to_owned(),
            reason,
            message,
            observed_generation: generation,
            last_transition_time: since(type_, s),
        }
    };

    let mut added = Vec::new();
    let is_updating = updating(status.core_nodes_status.as_ref())
        || updating(status.replicant_nodes_status.as_ref());
    let had_update = previous_conditions
        .iter()
        .any(|c| c.type_ == BLUE_GREEN_UPDATING);
    if is_updating || had_update {
        added.push(if is_updating {
            make(
                BLUE_GREEN_UPDATING,
                true,
                "BlueGreenUpdating".into(),
                progressing
                    .as_ref()
                    .map(|c| c.message.clone())
                    .unwrap_or_default(),
            )
        } else {
            make(
                BLUE_GREEN_UPDATING,
                false,
                "BlueGreenUpdateFinished".into(),
                "every old node was evacuated and removed".into(),
            )
        });
    }
    let running = ready.as_ref().is_some_and(|c| c.status == "True");
    added.push(make(
        RUNNING,
        running,
        if running {
            "ClusterReady".into()
        } else {
            ready
                .as_ref()
                .map_or_else(|| "Waiting".into(), |c| c.reason.clone())
        },
        ready.map(|c| c.message).unwrap_or_default(),
    ));
    conditions.retain(|c| c.type_ != RUNNING && c.type_ != BLUE_GREEN_UPDATING);
    // Upstream lists the newest first; the update, while it runs, is newest.
    added.extend(conditions);
    status.conditions = Some(added);
    status
}

#[cfg(test)]
mod tests;
