//! The Events a pass records about its cluster, from what it did: one per
//! carried-out action worth telling, and a warning for the step that failed.
//! Pure; [`crate::report`] publishes them.

use crate::act::{Effect, Outcome};
use crate::decide::Action;
use crate::explain;
use crate::observed::{NodeSet, Role};
use crate::render::Cluster;
use emqx_crd::names;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::EventType;

/// One Event about the cluster.
#[derive(Debug, Clone)]
pub struct Note {
    pub type_: EventType,
    pub reason: &'static str,
    /// The reason and what the step is about (a node, a set, a revision).
    /// kube's recorder folds Events of one type, action, reason and
    /// related object into a series that keeps the first note (kube-runtime
    /// 5 `events.rs`, `EventKey`; the note is not part of the key): naming
    /// the subject here keeps a force_leave of a second node, or the traffic
    /// switch of a second upgrade, its own Event.
    pub action: String,
    pub note: String,
    /// The set or pod the step concerns, when it is one we observed (a
    /// force-left node's pod is usually gone; its action names it).
    pub related: Option<ObjectReference>,
}

/// The API server's bound on `action` (events.k8s.io/v1).
const ACTION_MAX_CHARS: usize = 128;

fn action(reason: &str, subject: Option<String>) -> String {
    match subject {
        Some(subject) => format!("{reason} {subject}")
            .chars()
            .take(ACTION_MAX_CHARS)
            .collect(),
        None => reason.to_owned(),
    }
}

/// What a step is about, for its action: the node, set or revision.
fn subject(step: &Action) -> Option<String> {
    Some(match step {
        Action::CreateSet { role, revision, .. } => format!("{} {revision}", role.as_str()),
        Action::ScaleSet { name, .. } | Action::DeleteSet { name } => name.clone(),
        Action::PointServices { listeners, .. } => {
            format!("{} {}", listeners.0.as_str(), listeners.1)
        }
        Action::StartEvacuation { node, .. }
        | Action::StopEvacuation { node }
        | Action::RecordDrainStart { node, .. }
        | Action::ForceLeave { node } => node.clone(),
        Action::RemoveOldNode { set, node, .. } => node.clone().unwrap_or_else(|| set.clone()),
        Action::RecordNewNodesReady { revision, .. }
        | Action::RecordAbort { revision, .. }
        | Action::ArmGuard { revision, .. }
        | Action::TripGuard { revision, .. } => revision.clone(),
        Action::RecordEviction { node, .. } => node.clone(),
        Action::MarkForDeletion { pod } | Action::MarkServing { pod } => pod.clone(),
        Action::RecordProgress { .. }
        | Action::ClearAbort
        | Action::RecordFailureWindow { .. }
        | Action::RecordRecovery { .. } => {
            return None;
        }
    })
}

/// The warning for user keys that cannot go into the bootstrap file: the
/// user must fix the Secret or the spec, so it is said on the object, not
/// only in the operator's log.
pub fn bootstrap_key_refused(refused: &crate::bootstrap::KeyError) -> Note {
    Note {
        type_: EventType::Warning,
        reason: "InvalidBootstrapAPIKey",
        action: "CreateBootstrapSecret".to_owned(),
        note: refused.to_string(),
        related: None,
    }
}

/// The Events of a pass, in the order things happened. `sets` are the sets
/// observed before acting.
pub fn notes(cluster: &Cluster<'_>, sets: &[NodeSet], outcome: &Outcome) -> Vec<Note> {
    let mut out: Vec<Note> = outcome
        .done
        .iter()
        .filter_map(|(step, effect)| {
            let (reason, note) = done(step, effect, sets)?;
            Some(Note {
                type_: EventType::Normal,
                reason,
                action: action(reason, subject(step)),
                note,
                related: related_object(step, cluster, sets),
            })
        })
        .collect();
    if let Some(failed) = &outcome.failed {
        let reason = "ReconcilerFailed";
        out.push(Note {
            type_: EventType::Warning,
            reason,
            action: action(reason, subject(&failed.step)),
            note: format!(
                "{} failed: {}",
                explain::describe(&failed.step),
                failed.error
            ),
            related: related_object(&failed.step, cluster, sets),
        });
    }
    out
}

/// Reason and note for a carried-out step; `None` for bookkeeping.
fn done(step: &Action, effect: &Effect, sets: &[NodeSet]) -> Option<(&'static str, String)> {
    Some(match step {
        Action::CreateSet { role, revision, .. } => (
            if sets.iter().any(|s| s.role == *role) {
                "CreateNewSet"
            } else {
                "CreateSet"
            },
            format!("created the {} set of revision {revision}", role.as_str()),
        ),
        Action::ScaleSet { name, from, to } => {
            ("ScaleSet", format!("scaled {name} from {from} to {to}"))
        }
        Action::PointServices { listeners, .. } => (
            "SwitchTraffic",
            format!(
                "the listeners Service now selects {} revision {}",
                listeners.0.as_str(),
                listeners.1
            ),
        ),
        Action::MarkServing { pod } => (
            "PodOnServing",
            format!("pod {pod} is ready and joined: condition apps.emqx.io/on-serving set True"),
        ),
        Action::RecordDrainStart { node, .. } => (
            "DrainWithoutEvacuation",
            format!("node {node} gets no new clients and is removed after waitTakeover"),
        ),
        Action::RecordNewNodesReady { .. }
        | Action::RecordProgress { .. }
        | Action::ClearAbort
        | Action::MarkForDeletion { .. }
        | Action::ArmGuard { .. }
        | Action::RecordEviction { .. }
        | Action::RecordFailureWindow { .. }
        | Action::RecordRecovery { .. }
        // Told by the abort it starts (one Event).
        | Action::TripGuard { .. } => return None,
        Action::RecordAbort {
            revision,
            back_to,
            why: None,
        } => (
            "UpgradeAborted",
            format!(
                "the upgrade to revision {revision} is aborted by annotation {}: traffic stays on revision {back_to} and the new nodes are scaled away",
                names::ANNOTATION_ABORT
            ),
        ),
        Action::RecordAbort {
            revision,
            back_to,
            why: Some(why),
        } => (
            "UpgradeAborted",
            format!(
                "the upgrade guard aborted the upgrade to revision {revision}: {why}; evacuation stopped, traffic goes back to revision {back_to} and the new nodes are scaled away; remove annotation {}={revision} to retry",
                names::ANNOTATION_ABORT
            ),
        ),
        Action::StartEvacuation {
            node,
            migrate_to,
            strategy,
        } => {
            let answer = match effect {
                Effect::EvacuationStarted(started) => format!(" ({started:?})"),
                _ => String::new(),
            };
            (
                "NodeEvacuation",
                format!(
                    "evacuating node {node} at {} connections/s and {} sessions/s to {} new nodes{answer}",
                    strategy.conn_evict_rate,
                    strategy.sess_evict_rate,
                    migrate_to.len()
                ),
            )
        }
        Action::StopEvacuation { node } => (
            "StopEvacuation",
            format!("stopped the evacuation of node {node}, which the desired revision keeps"),
        ),
        Action::RemoveOldNode { set, node, from } => (
            "RemoveOldNode",
            format!(
                "scaled {set} from {from} to {}, removing node {}",
                from.saturating_sub(1),
                node.as_deref().unwrap_or("(none)")
            ),
        ),
        Action::ForceLeave { node } => {
            if *effect == Effect::NotNeeded {
                return None;
            }
            (
                "ForceLeave",
                format!("removed stopped node {node} from the EMQX cluster"),
            )
        }
        Action::DeleteSet { name } => (
            "DeleteOldSet",
            format!(
                "deleted {name} beyond revisionHistoryLimit; its PersistentVolumeClaims are kept"
            ),
        ),
    })
}

/// The set or pod a step acts on, for its Event.
fn related_object(
    step: &Action,
    cluster: &Cluster<'_>,
    sets: &[NodeSet],
) -> Option<ObjectReference> {
    let object = |kind: &str, api_version: &str, name: &str| ObjectReference {
        api_version: Some(api_version.to_owned()),
        kind: Some(kind.to_owned()),
        name: Some(name.to_owned()),
        namespace: Some(cluster.namespace.to_owned()),
        ..ObjectReference::default()
    };
    let set = |name: &str| {
        sets.iter().find(|s| s.name == name).map(|s| match s.role {
            Role::Core => object("StatefulSet", "apps/v1", name),
            Role::Replicant => object("ReplicaSet", "apps/v1", name),
        })
    };
    let pod = |node: &str| {
        sets.iter()
            .flat_map(|s| &s.pods)
            .find(|p| p.node == node)
            .map(|p| object("Pod", "v1", &p.name))
    };
    match step {
        Action::CreateSet {
            role: Role::Core,
            revision,
            ..
        } => Some(object(
            "StatefulSet",
            "apps/v1",
            &names::core_set_name(cluster.name, revision),
        )),
        Action::CreateSet {
            role: Role::Replicant,
            revision,
            ..
        } => Some(object(
            "ReplicaSet",
            "apps/v1",
            &names::replicant_set_name(cluster.name, revision),
        )),
        Action::ScaleSet { name, .. } | Action::DeleteSet { name } => set(name),
        Action::RemoveOldNode {
            set: name, node, ..
        } => node.as_deref().and_then(pod).or_else(|| set(name)),
        Action::PointServices { listeners, .. } => Some(match listeners.0 {
            Role::Core => object(
                "StatefulSet",
                "apps/v1",
                &names::core_set_name(cluster.name, &listeners.1),
            ),
            Role::Replicant => object(
                "ReplicaSet",
                "apps/v1",
                &names::replicant_set_name(cluster.name, &listeners.1),
            ),
        }),
        Action::StartEvacuation { node, .. }
        | Action::StopEvacuation { node }
        | Action::RecordDrainStart { node, .. }
        | Action::ForceLeave { node } => pod(node),
        Action::MarkServing { pod } => Some(object("Pod", "v1", pod)),
        Action::RecordNewNodesReady { .. }
        | Action::MarkForDeletion { .. }
        | Action::RecordProgress { .. }
        | Action::RecordAbort { .. }
        | Action::ClearAbort
        | Action::ArmGuard { .. }
        | Action::RecordEviction { .. }
        | Action::RecordFailureWindow { .. }
        | Action::RecordRecovery { .. }
        | Action::TripGuard { .. } => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::emqx_api::{EmqxError, StartOutcome};
    use crate::error::Error;
    use crate::explain::StepFailure;
    use crate::observed::{Pod, Strategy};
    use emqx_crd::v2beta1::EMQXSpec;

    fn sets() -> Vec<NodeSet> {
        vec![NodeSet {
            name: "e-core-a".into(),
            role: Role::Core,
            revision: "a".into(),
            replicas: 1,
            created_at: 0,
            pods: vec![Pod {
                name: "e-core-a-0".into(),
                ordinal: Some(0),
                created_at: 0,
                ready: true,
                terminating: false,
                node: "emqx@a-0".into(),
                marked_for_deletion: false,
                containers_ready: true,
                serving_gate: None,
            }],
        }]
    }

    #[test]
    fn events_tell_what_was_done_and_what_failed() {
        let spec = EMQXSpec::default();
        let cluster = Cluster {
            api_version: "apps.emqx.io/v2beta1",
            kind: "EMQX",
            name: "e",
            namespace: "default",
            uid: "u",
            spec: &spec,
        };
        let evacuate = Action::StartEvacuation {
            node: "emqx@a-0".into(),
            migrate_to: vec!["emqx@b-0".into()],
            strategy: Strategy {
                initial_delay_s: 0,
                wait_takeover_s: 5,
                conn_evict_rate: 100,
                sess_evict_rate: 50,
            },
        };
        let outcome = Outcome {
            done: vec![
                (
                    Action::RecordProgress {
                        marker: "m".into(),
                        at: 1,
                    },
                    Effect::Done,
                ),
                (
                    Action::ForceLeave {
                        node: "emqx@old".into(),
                    },
                    Effect::NotNeeded,
                ),
                (
                    evacuate,
                    Effect::EvacuationStarted(StartOutcome::AlreadyRunning),
                ),
            ],
            failed: Some(StepFailure {
                step: Action::RemoveOldNode {
                    set: "e-core-a".into(),
                    node: Some("emqx@a-0".into()),
                    from: 1,
                },
                error: Error::Emqx(EmqxError::NodeNotFound("emqx@a-0".into())),
            }),
        };
        let notes = notes(&cluster, &sets(), &outcome);
        let reasons: Vec<&str> = notes.iter().map(|n| n.reason).collect();
        // Bookkeeping and a force_leave EMQX 4.4 does not need tell nothing.
        assert_eq!(reasons, ["NodeEvacuation", "ReconcilerFailed"]);
        assert!(
            notes[0].note.contains("100 connections/s"),
            "{}",
            notes[0].note
        );
        assert!(
            notes[0].note.contains("AlreadyRunning"),
            "{}",
            notes[0].note
        );
        assert_eq!(
            notes[0].related.as_ref().and_then(|r| r.name.as_deref()),
            Some("e-core-a-0")
        );
        assert_eq!(notes[1].type_, EventType::Warning);
        assert!(notes[1].note.contains("emqx@a-0"), "{}", notes[1].note);
    }

    /// What kube-runtime 5's `Recorder` folds Events by (`EventKey` in its
    /// `events.rs`), less the reporter and the regarding object, which are
    /// the same for every Event of one cluster: type, action, reason and the
    /// related object's apiVersion, kind, name, namespace and uid.
    type SeriesKey = (EventType, String, &'static str, Option<[Option<String>; 5]>);

    fn series_key(note: &Note) -> SeriesKey {
        (
            note.type_,
            note.action.clone(),
            note.reason,
            note.related.as_ref().map(|r| {
                [
                    r.api_version.clone(),
                    r.kind.clone(),
                    r.name.clone(),
                    r.namespace.clone(),
                    r.uid.clone(),
                ]
            }),
        )
    }

    #[test]
    fn events_about_different_nodes_or_revisions_are_not_folded() {
        let spec = EMQXSpec::default();
        let cluster = Cluster {
            api_version: "apps.emqx.io/v2beta1",
            kind: "EMQX",
            name: "e",
            namespace: "default",
            uid: "u",
            spec: &spec,
        };
        let one = |step: Action, effect: Effect| {
            let outcome = Outcome {
                done: vec![(step, effect)],
                failed: None,
            };
            let mut notes = notes(&cluster, &sets(), &outcome);
            assert_eq!(notes.len(), 1, "{notes:?}");
            notes.remove(0)
        };
        // Two stopped nodes whose pods are gone (so no related pod).
        let leave = |node: &str| one(Action::ForceLeave { node: node.into() }, Effect::Done);
        let (first, second) = (leave("emqx@e-core-a-1.h"), leave("emqx@e-core-a-2.h"));
        assert_eq!(first.reason, "ForceLeave");
        assert_ne!(series_key(&first), series_key(&second));
        assert!(
            second.action.contains("emqx@e-core-a-2.h"),
            "{}",
            second.action
        );
        // A node whose pod is still observed is related to it.
        let observed = leave("emqx@a-0");
        assert_eq!(
            observed.related.as_ref().and_then(|r| r.name.as_deref()),
            Some("e-core-a-0")
        );

        // The traffic switches of two upgrades: each names its target set.
        let switch = |revision: &str| {
            one(
                Action::PointServices {
                    listeners: (Role::Core, revision.into()),
                    dashboard: revision.into(),
                },
                Effect::Done,
            )
        };
        let (to_b, to_c) = (switch("b"), switch("c"));
        assert_eq!(to_b.reason, "SwitchTraffic");
        assert_ne!(series_key(&to_b), series_key(&to_c));
        assert_eq!(
            to_c.related.as_ref().and_then(|r| r.name.as_deref()),
            Some("e-core-c")
        );
        assert!(to_c.note.contains("revision c"), "{}", to_c.note);
        // The same step told twice is still one series.
        assert_eq!(series_key(&switch("c")), series_key(&to_c));

        // An abort is told once per revision, naming both; forgetting it
        // tells nothing.
        let abort = |revision: &str| {
            one(
                Action::RecordAbort {
                    revision: revision.into(),
                    back_to: "a".into(),
                    why: None,
                },
                Effect::Done,
            )
        };
        let (of_b, of_c) = (abort("b"), abort("c"));
        assert_eq!(of_b.reason, "UpgradeAborted");
        assert_ne!(series_key(&of_b), series_key(&of_c));
        assert!(
            of_c.note.contains("revision c") && of_c.note.contains("revision a"),
            "{}",
            of_c.note
        );
        let outcome = Outcome {
            done: vec![(Action::ClearAbort, Effect::Done)],
            failed: None,
        };
        assert!(notes(&cluster, &sets(), &outcome).is_empty());

        // Long node names stay within the API server's bound on action.
        let long = leave(&format!("emqx@{}", "n".repeat(200)));
        assert_eq!(long.action.chars().count(), ACTION_MAX_CHARS);
    }
}
