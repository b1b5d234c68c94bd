//! What the conditions say the cluster waits for. `decide` gives a typed
//! [`WaitReason`] from what it can see; the shell knows more: which node's
//! EMQX API it asked and what went wrong, and which step of the pass failed.
//! [`explain`] puts both into the reason and message, so `kubectl get emqx
//! -o yaml` tells the user why no old node moves (a 500, a timeout) instead
//! of a generic line. Pure; it reads the decision and never changes it.

use crate::decide::{Action, Wait, WaitReason};
use crate::error::Error;

/// The reason when an EMQX call of a step failed.
pub const EMQX_API_ERROR: &str = "EmqxApiError";
/// The reason when a Kubernetes write of a step failed.
pub const KUBERNETES_API_ERROR: &str = "KubernetesApiError";

/// Why EMQX could not be observed this pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmqxUnavailable {
    /// The EMQX node whose API was asked; `None` when no node could be asked.
    pub node: Option<String>,
    /// What went wrong, as the client reported it.
    pub error: String,
    /// Nodes found too slow to report their evacuation status
    /// ([`crate::slow_nodes`]); the reason is then [`EMQX_NODE_SLOW`].
    pub slow_nodes: Vec<String>,
}

/// The reason when `global_status` could not be trusted because nodes are
/// slow to answer EMQX's status RPCs; the message names them.
pub const EMQX_NODE_SLOW: &str = "EmqxNodeSlow";

/// The step of a pass that failed, and how.
#[derive(Debug)]
pub struct StepFailure {
    pub step: Action,
    pub error: Error,
}

/// The wait as the conditions tell it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Explained {
    /// CamelCase condition reason.
    pub reason: &'static str,
    pub message: String,
}

/// The wait to report: a failed step replaces the planned wait (the pass
/// stopped there, so "starting evacuation of node X" is not what happens; a
/// retry is); a wait because EMQX could not be read names the node and the
/// error; any other wait (or none: a Ready cluster needs no EMQX call) is
/// told as `decide` gave it.
pub fn explain(
    wait: Option<&Wait>,
    unavailable: Option<&EmqxUnavailable>,
    failed: Option<&StepFailure>,
) -> Option<Explained> {
    if let Some(failed) = failed {
        let reason = if matches!(failed.error, Error::Emqx(_)) {
            EMQX_API_ERROR
        } else {
            KUBERNETES_API_ERROR
        };
        return Some(Explained {
            reason,
            message: format!(
                "{} failed: {}; retrying",
                describe(&failed.step),
                failed.error
            ),
        });
    }
    let wait = wait?;
    let message = match (wait.reason, unavailable) {
        (WaitReason::EmqxApiUnavailable, Some(failure)) => match &failure.node {
            Some(node) => format!(
                "the EMQX API of node {node} failed: {}; no old node is touched until it answers",
                failure.error
            ),
            None => format!(
                "no EMQX node can be asked: {}; no old node is touched until one answers",
                failure.error
            ),
        },
        _ => wait.message.clone(),
    };
    let reason = match unavailable {
        Some(failure)
            if matches!(wait.reason, WaitReason::EmqxApiUnavailable)
                && !failure.slow_nodes.is_empty() =>
        {
            EMQX_NODE_SLOW
        }
        _ => wait.reason.as_str(),
    };
    Some(Explained { reason, message })
}

/// A step in words, naming the node or object it touches.
pub fn describe(step: &Action) -> String {
    match step {
        Action::CreateSet { role, revision, .. } => {
            format!("creating the {} set of revision {revision}", role.as_str())
        }
        Action::ScaleSet { name, from, to } => format!("scaling {name} from {from} to {to}"),
        Action::PointServices { listeners, .. } => format!(
            "pointing the Services at {} revision {}",
            listeners.0.as_str(),
            listeners.1
        ),
        Action::RecordNewNodesReady { .. }
        | Action::RecordDrainStart { .. }
        | Action::RecordProgress { .. }
        | Action::RecordAbort { .. }
        | Action::ClearAbort
        | Action::ArmGuard { .. }
        | Action::RecordEviction { .. }
        | Action::RecordFailureWindow { .. }
        | Action::RecordRecovery { .. }
        | Action::TripGuard { .. } => "recording progress".to_owned(),
        Action::MarkForDeletion { pod } => format!("marking pod {pod} for deletion"),
        Action::MarkServing { pod } => format!("setting pod {pod} on-serving"),
        Action::StartEvacuation { node, .. } => format!("starting the evacuation of node {node}"),
        Action::StopEvacuation { node } => format!("stopping the evacuation of node {node}"),
        Action::RemoveOldNode { set, node, from } => format!(
            "removing node {} (scaling {set} from {from})",
            node.as_deref().unwrap_or("(none)")
        ),
        Action::ForceLeave { node } => format!("force_leave of node {node}"),
        Action::DeleteSet { name } => format!("deleting {name}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decide::{Decision, Phase, decide};
    use crate::emqx_api::EmqxError;
    use crate::observed::{
        Memory, NodeSet, Observed, Pod, Role, RoleSpec, Services, Spec, Strategy,
    };

    fn pod(set: &str, ordinal: u32) -> Pod {
        Pod {
            name: format!("{set}-{ordinal}"),
            ordinal: Some(ordinal),
            created_at: 0,
            ready: true,
            terminating: false,
            node: format!("emqx@{set}-{ordinal}"),
            marked_for_deletion: false,
            containers_ready: true,
            serving_gate: None,
        }
    }

    fn set(revision: &str, replicas: u32) -> NodeSet {
        let name = format!("c-core-{revision}");
        NodeSet {
            pods: (0..replicas).map(|i| pod(&name, i)).collect(),
            name,
            role: Role::Core,
            revision: revision.into(),
            replicas,
            created_at: 0,
        }
    }

    fn spec() -> Spec {
        Spec {
            core: RoleSpec {
                revision: "b".into(),
                replicas: 2,
            },
            replicant: None,
            strategy: Strategy {
                initial_delay_s: 0,
                wait_takeover_s: 1,
                conn_evict_rate: 10,
                sess_evict_rate: 10,
            },
            paused: false,
            progress_deadline_s: 600,
            revision_history_limit: 1,
            listeners_service: true,
            dashboard_service: true,
            manual_promotion: false,
            promote: None,
            abort: None,
            guard: None,
        }
    }

    /// Mid-upgrade with EMQX unreadable: `decide` itself gives the reason
    /// this module refines.
    fn upgrade_without_emqx() -> Decision {
        let obs = Observed {
            now: 100,
            now_ms: 100_000,
            sets: vec![set("a", 2), set("b", 2)],
            emqx: None,
            services: Services {
                listeners: Some((Role::Core, "b".into())),
                dashboard: Some("b".into()),
                listeners_role_wide: None,
                dashboard_role_wide: false,
            },
            memory: Memory::default(),
        };
        decide(&spec(), &obs)
    }

    #[test]
    fn an_unreadable_emqx_names_the_node_and_the_error() {
        let d = upgrade_without_emqx();
        assert_eq!(
            d.wait.as_ref().map(|w| w.reason),
            Some(WaitReason::EmqxApiUnavailable)
        );
        assert!(d.actions.iter().all(|a| !matches!(
            a,
            Action::RemoveOldNode { .. } | Action::StartEvacuation { .. }
        )));
        let failure = EmqxUnavailable {
            node: Some("emqx@c-core-b-0".into()),
            error: "GET nodes: HTTP 500: INTERNAL_ERROR injected fault".into(),
            slow_nodes: Vec::new(),
        };
        let wait = explain(d.wait.as_ref(), Some(&failure), None).expect("a wait");
        assert_eq!(wait.reason, "EmqxApiUnavailable");
        assert!(wait.message.contains("emqx@c-core-b-0"), "{}", wait.message);
        assert!(wait.message.contains("HTTP 500"), "{}", wait.message);
        assert!(!d.wait.expect("a wait").timed);
    }

    #[test]
    fn slow_nodes_get_their_own_reason() {
        let d = upgrade_without_emqx();
        let failure = EmqxUnavailable {
            node: Some("emqx@c-core-b-0".into()),
            error: "load_rebalance/global_status took 45s; …: emqx@c-core-a-1".into(),
            slow_nodes: vec!["emqx@c-core-a-1".into()],
        };
        let wait = explain(d.wait.as_ref(), Some(&failure), None).expect("a wait");
        assert_eq!(wait.reason, EMQX_NODE_SLOW);
        assert!(wait.message.contains("emqx@c-core-a-1"), "{}", wait.message);
    }

    #[test]
    fn no_node_to_ask_is_said_too() {
        let d = upgrade_without_emqx();
        let failure = EmqxUnavailable {
            node: None,
            error: "no ready core pod".into(),
            slow_nodes: Vec::new(),
        };
        let message = explain(d.wait.as_ref(), Some(&failure), None)
            .expect("a wait")
            .message;
        assert!(message.contains("no ready core pod"), "{message}");
    }

    #[test]
    fn other_waits_and_a_ready_cluster_are_left_alone() {
        let ready = Decision {
            phase: Phase::Ready,
            actions: Vec::new(),
            wait: None,
            stalled: false,
            requeue_after_s: Some(30),
            requeue_after_ms: None,
            guard: None,
        };
        let failure = EmqxUnavailable {
            node: Some("emqx@x".into()),
            error: "timed out".into(),
            slow_nodes: Vec::new(),
        };
        assert_eq!(explain(ready.wait.as_ref(), Some(&failure), None), None);
        let delayed = Wait {
            reason: WaitReason::InitialDelay,
            message: "traffic moves in 3s".into(),
            timed: true,
        };
        assert_eq!(
            explain(Some(&delayed), Some(&failure), None).map(|w| w.message),
            Some("traffic moves in 3s".to_owned())
        );
    }

    #[test]
    fn a_failed_step_replaces_the_planned_wait() {
        let d = upgrade_without_emqx();
        let step = Action::StartEvacuation {
            node: "emqx@c-core-a-1".into(),
            migrate_to: vec!["emqx@c-core-b-0".into()],
            strategy: spec().strategy,
        };
        let failed = StepFailure {
            step,
            error: Error::Emqx(EmqxError::Transport {
                call: "evacuation/start",
                detail: "HTTP 500: INTERNAL_ERROR".into(),
            }),
        };
        let wait = explain(d.wait.as_ref(), None, Some(&failed)).expect("a wait");
        assert_eq!(wait.reason, EMQX_API_ERROR);
        assert!(wait.message.contains("emqx@c-core-a-1"), "{}", wait.message);
        assert!(wait.message.contains("HTTP 500"), "{}", wait.message);
        let scale = StepFailure {
            step: Action::RemoveOldNode {
                set: "c-core-a".into(),
                node: Some("emqx@c-core-a-1".into()),
                from: 2,
            },
            error: Error::SetGone("c-core-a".into()),
        };
        let wait = explain(d.wait.as_ref(), None, Some(&scale)).expect("a wait");
        assert_eq!(wait.reason, KUBERNETES_API_ERROR);
        assert!(wait.message.contains("c-core-a"), "{}", wait.message);
    }
}
