//! The object's status from one pass: conditions that say what the cluster
//! waits for, the per-role revision counts seed 002 prints, the nodes as EMQX
//! reports them, and the evacuation progress copied from `global_status`.
//! Pure; the shell writes the result with server-side apply.

use crate::decide::{Decision, Phase, WaitReason};
use crate::explain::Explained;
use crate::json_subset;
use crate::observed::{NodeSet, Role, Seconds, Spec};
use emqx_crd::evacuation::NodeEvacuationStatus;
use emqx_crd::hub::condition;
use emqx_crd::v2beta1::{EMQXNode, EMQXNodesStatus, EMQXStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// Condition types in the order the `Status` printer column should find them:
/// it shows the first `True` one, so the most telling comes first.
pub const CONDITION_ORDER: [&str; 12] = [
    "Paused",
    AWAITING_PROMOTION,
    ABORTED,
    condition::READY,
    "Progressing",
    condition::AVAILABLE,
    condition::REPLICANT_NODES_READY,
    condition::CORE_NODES_READY,
    condition::REPLICANT_NODES_PROGRESSING,
    condition::CORE_NODES_PROGRESSING,
    condition::INITIALIZED,
    "EvacuationUnsupported",
];

/// Condition type, True while an upgrade with `promotion: Manual` waits
/// to be promoted (so `kubectl get` shows it in the `Status` column).
pub const AWAITING_PROMOTION: &str = "AwaitingPromotion";
/// Condition type, True while the upgrade to the desired revision is
/// aborted by annotation.
pub const ABORTED: &str = "Aborted";

/// Everything the status is computed from.
#[derive(Debug)]
pub struct StatusInput<'a> {
    pub generation: i64,
    pub now: Seconds,
    pub spec: &'a Spec,
    pub sets: &'a [NodeSet],
    pub decision: &'a Decision,
    /// The wait as the conditions tell it ([`crate::explain::explain`]).
    pub wait: Option<&'a Explained>,
    /// Whether the Services point at the desired revision.
    pub traffic_on_desired: bool,
    /// Nodes as EMQX reports them, with pod and set UIDs filled in.
    pub nodes: Option<Vec<(Role, EMQXNode)>>,
    pub evacuations: Option<Vec<NodeEvacuationStatus>>,
    /// The broker has no evacuation API (the fallback drains).
    pub evacuation_unsupported: bool,
    pub previous: Option<&'a EMQXStatus>,
}

struct Want {
    type_: &'static str,
    true_: bool,
    reason: String,
    message: String,
}

fn want(type_: &'static str, true_: bool, reason: &str, message: impl Into<String>) -> Want {
    Want {
        type_,
        true_,
        reason: reason.to_owned(),
        message: message.into(),
    }
}

/// Whether the live status already says `new`, so that no write is due.
/// The status is server-side applied: a field someone else wrote stays
/// when ours leaves it out. The Go operator writes an empty
/// `replicantNodesStatus: {}` on a core-only cluster; after a takeover it
/// stays there, and an exact comparison would write the same status on
/// every pass, forever. So an empty map, list or `null` live where ours
/// has nothing is no difference; any other field ours leaves out is
/// (applying ours removes it if it was ours).
pub fn unchanged(live: Option<&EMQXStatus>, new: &EMQXStatus) -> bool {
    let (Some(live), Ok(new)) = (live, serde_json::to_value(new)) else {
        return false;
    };
    let Ok(live) = serde_json::to_value(live) else {
        return false;
    };
    json_subset::holds(
        &new,
        &live,
        json_subset::Rules {
            extra_live_key: |_, v| json_subset::is_empty(v),
            null_matches_anything: false,
        },
    )
}

/// Computes the status.
pub fn status(input: &StatusInput<'_>) -> EMQXStatus {
    let core = nodes_status(input, Role::Core);
    let replicant = input
        .spec
        .replicant
        .as_ref()
        .map(|_| nodes_status(input, Role::Replicant));
    let role_ready = |s: &EMQXNodesStatus| {
        s.update_replicas.unwrap_or(0) >= s.replicas.unwrap_or(0) && s.update_revision.is_some()
    };
    let upgrading = input.sets.iter().any(|s| s.is_old(input.spec));
    let d = input.decision;
    let wait_message = input.wait.map(|w| w.message.clone()).unwrap_or_default();
    let wait_reason = input.wait.map_or("Waiting", |w| w.reason);

    let mut wants = vec![want(
        condition::INITIALIZED,
        true,
        "Initialized",
        "owned objects created",
    )];
    let set_reason = |role: Role| match (role, upgrading) {
        (Role::Core, true) => "CreateNewStatefulSet",
        (Role::Core, false) => "CreateStatefulSet",
        (Role::Replicant, true) => "CreateNewReplicaSet",
        (Role::Replicant, false) => "CreateReplicaSet",
    };
    let core_ready = role_ready(&core);
    wants.push(want(
        condition::CORE_NODES_PROGRESSING,
        !core_ready,
        if core_ready {
            "CoreNodesReady"
        } else {
            set_reason(Role::Core)
        },
        summary("core", &core),
    ));
    wants.push(want(
        condition::CORE_NODES_READY,
        core_ready,
        if core_ready {
            "CoreNodesReady"
        } else {
            "CoreNodesNotReady"
        },
        summary("core", &core),
    ));
    if let Some(replicant) = &replicant {
        let ready = role_ready(replicant);
        wants.push(want(
            condition::REPLICANT_NODES_PROGRESSING,
            !ready,
            if ready {
                "ReplicantNodesReady"
            } else {
                set_reason(Role::Replicant)
            },
            summary("replicant", replicant),
        ));
        wants.push(want(
            condition::REPLICANT_NODES_READY,
            ready,
            if ready {
                "ReplicantNodesReady"
            } else {
                "ReplicantNodesNotReady"
            },
            summary("replicant", replicant),
        ));
    }
    let available =
        input.traffic_on_desired && core_ready && replicant.as_ref().is_none_or(role_ready);
    wants.push(want(
        condition::AVAILABLE,
        available,
        if available {
            "TrafficOnNewNodes"
        } else {
            "TrafficNotSwitched"
        },
        if available {
            "the listeners Service selects the desired revision".to_owned()
        } else {
            wait_message.clone()
        },
    ));
    let ready = d.phase == Phase::Ready;
    wants.push(want(
        condition::READY,
        ready,
        if ready { "ClusterReady" } else { wait_reason },
        if ready {
            "every node runs the desired revision".to_owned()
        } else {
            wait_message.clone()
        },
    ));
    let paused = d.phase == Phase::Paused;
    let progressing = !ready && !paused;
    wants.push(if paused {
        // Not "Idle": an upgrade may be held half-way (as a Deployment's
        // `DeploymentPaused`).
        want("Progressing", false, "Paused", wait_message.clone())
    } else if d.phase == Phase::AwaitingPromotion {
        // Held for the user, as a pause is: not progressing, not stalled.
        want(
            "Progressing",
            false,
            WaitReason::AwaitingPromotion.as_str(),
            wait_message.clone(),
        )
    } else if d.phase == Phase::Queued {
        // Waiting for an upgrade slot: held by the operator, not stalled.
        want(
            "Progressing",
            false,
            WaitReason::UpgradeQueued.as_str(),
            wait_message.clone(),
        )
    } else if d.phase == Phase::Aborted {
        // An abort stays until the spec changes or the user retries: the
        // reason says aborted even while the new nodes are still draining.
        let message = if d.stalled {
            format!(
                "{wait_message} (no progress for over {}s)",
                input.spec.progress_deadline_s
            )
        } else {
            wait_message.clone()
        };
        want(
            "Progressing",
            false,
            WaitReason::UpgradeAborted.as_str(),
            message,
        )
    } else if d.stalled {
        want(
            "Progressing",
            false,
            "ProgressDeadlineExceeded",
            format!(
                "no progress for over {}s: {wait_message}",
                input.spec.progress_deadline_s
            ),
        )
    } else {
        want(
            "Progressing",
            progressing,
            if progressing { wait_reason } else { "Idle" },
            if progressing {
                wait_message.clone()
            } else {
                String::new()
            },
        )
    });
    if d.phase == Phase::Paused {
        wants.push(want("Paused", true, "Paused", wait_message.clone()));
    }
    if d.phase == Phase::AwaitingPromotion {
        wants.push(want(
            AWAITING_PROMOTION,
            true,
            WaitReason::AwaitingPromotion.as_str(),
            wait_message.clone(),
        ));
    }
    if d.phase == Phase::Aborted {
        wants.push(want(
            ABORTED,
            true,
            WaitReason::UpgradeAborted.as_str(),
            wait_message.clone(),
        ));
    }
    if input.evacuation_unsupported {
        wants.push(want(
            "EvacuationUnsupported",
            true,
            "NoEvacuationApi",
            "the broker has no node-evacuation API: old nodes are removed waitTakeover seconds after traffic moved, and their clients reconnect without session migration",
        ));
    }

    EMQXStatus {
        conditions: Some(conditions(input, wants)),
        core_nodes: input.nodes.as_ref().map(|n| role_nodes(n, Role::Core)),
        core_nodes_status: Some(core),
        replicant_nodes: input
            .nodes
            .as_ref()
            .filter(|_| input.spec.replicant.is_some())
            .map(|n| role_nodes(n, Role::Replicant)),
        replicant_nodes_status: replicant,
        node_evacuations_status: input.evacuations.clone().or_else(|| {
            input
                .previous
                .and_then(|p| p.node_evacuations_status.clone())
        }),
    }
}

fn summary(role: &str, s: &EMQXNodesStatus) -> String {
    format!(
        "{role}: {}/{} of revision {} ready",
        s.update_replicas.unwrap_or(0),
        s.replicas.unwrap_or(0),
        s.update_revision.as_deref().unwrap_or("-")
    )
}

fn count(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

/// `replicas` is the desired count; `readyReplicas` counts every revision
/// (seed 002 shows 4 ready of 2 mid-upgrade); `current*` is the oldest set
/// still running, the one being drained, or the desired one when done.
fn nodes_status(input: &StatusInput<'_>, role: Role) -> EMQXNodesStatus {
    let desired = input.spec.role(role);
    let sets: Vec<&NodeSet> = input.sets.iter().filter(|s| s.role == role).collect();
    let ready = |s: &NodeSet| count(s.pods.iter().filter(|p| p.ready && !p.terminating).count());
    let update = sets.iter().find(|s| s.is_desired(input.spec));
    let current = sets
        .iter()
        .filter(|s| s.is_old(input.spec))
        .min_by_key(|s| (s.created_at, s.name.clone()))
        .or(update);
    EMQXNodesStatus {
        replicas: desired.map(|r| i32::try_from(r.replicas).unwrap_or(i32::MAX)),
        ready_replicas: Some(sets.iter().map(|s| ready(s)).sum()),
        current_revision: current.map(|s| s.revision.clone()),
        current_replicas: current.map(|s| ready(s)),
        update_revision: desired.map(|r| r.revision.clone()),
        update_replicas: Some(update.map_or(0, |s| ready(s))),
        collision_count: input
            .previous
            .and_then(|p| match role {
                Role::Core => p.core_nodes_status.as_ref(),
                Role::Replicant => p.replicant_nodes_status.as_ref(),
            })
            .and_then(|s| s.collision_count),
    }
}

/// Sorted by node name: EMQX lists members in no fixed order, and a status
/// that reshuffles would be rewritten on every pass of an idle cluster.
fn role_nodes(nodes: &[(Role, EMQXNode)], role: Role) -> Vec<EMQXNode> {
    let mut out: Vec<EMQXNode> = nodes
        .iter()
        .filter(|(r, _)| *r == role)
        .map(|(_, n)| n.clone())
        .collect();
    out.sort_by(|a, b| a.node.cmp(&b.node));
    out
}

/// `lastTransitionTime` moves only when a condition's status flips (upstream
/// reset it on every write, and measured delays from it).
fn conditions(input: &StatusInput<'_>, wants: Vec<Want>) -> Vec<Condition> {
    let previous = input
        .previous
        .and_then(|p| p.conditions.as_ref())
        .cloned()
        .unwrap_or_default();
    let now = Time(
        k8s_openapi::jiff::Timestamp::from_second(i64::try_from(input.now).unwrap_or(0))
            .unwrap_or(k8s_openapi::jiff::Timestamp::UNIX_EPOCH),
    );
    let mut out: Vec<Condition> = wants
        .into_iter()
        .map(|w| {
            let status = if w.true_ { "True" } else { "False" };
            let since = previous
                .iter()
                .find(|c| c.type_ == w.type_ && c.status == status)
                .map_or_else(|| now.clone(), |c| c.last_transition_time.clone());
            Condition {
                type_: w.type_.to_owned(),
                status: status.to_owned(),
                reason: w.reason,
                message: w.message,
                observed_generation: Some(input.generation),
                last_transition_time: since,
            }
        })
        .collect();
    out.sort_by_key(|c| {
        CONDITION_ORDER
            .iter()
            .position(|t| *t == c.type_)
            .unwrap_or(CONDITION_ORDER.len())
    });
    out
}

#[cfg(test)]
mod tests;
