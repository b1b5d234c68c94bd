//! The few facts `decide` cannot re-derive from the cluster (when the new
//! nodes were first all ready, which node a fallback drain started on, the
//! last progress marker), kept on the object so a restarted reconciler
//! resumes with them. Also the operator's own annotations.

use crate::observed::{Drain, Memory, Seconds};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Where [`Memory`] is kept on the object (JSON).
pub const ANNOTATION_PROGRESS: &str = "apps.emqx.io/blue-green-progress";
/// `"true"` pauses reconciliation: the operator observes and reports only.
pub const ANNOTATION_PAUSED: &str = "apps.emqx.io/reconcile-paused";
/// Seconds without progress after which an upgrade is reported stalled.
pub const ANNOTATION_PROGRESS_DEADLINE: &str = "apps.emqx.io/progress-deadline-seconds";
/// Default progress deadline, as a Deployment's.
pub const DEFAULT_PROGRESS_DEADLINE_S: Seconds = 600;

#[derive(Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
struct Stored {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    new_nodes_ready: Option<(String, Seconds)>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    drain: Option<(String, Seconds)>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    progress: Option<(String, Seconds)>,
}

/// Reads the memory from the object's annotations. A damaged value is
/// treated as empty: every field only delays (a wait restarts), never
/// skips a step.
pub fn load(annotations: Option<&BTreeMap<String, String>>) -> Memory {
    let stored: Stored = annotations
        .and_then(|a| a.get(ANNOTATION_PROGRESS))
        .and_then(|v| serde_json::from_str(v).ok())
        .unwrap_or_default();
    Memory {
        new_nodes_ready_at: stored.new_nodes_ready,
        drain: stored
            .drain
            .map(|(node, started_at)| Drain { node, started_at }),
        progress: stored.progress,
    }
}

/// The annotation value for `memory`.
pub fn store(memory: &Memory) -> String {
    let stored = Stored {
        new_nodes_ready: memory.new_nodes_ready_at.clone(),
        drain: memory
            .drain
            .as_ref()
            .map(|d| (d.node.clone(), d.started_at)),
        progress: memory.progress.clone(),
    };
    serde_json::to_string(&stored).unwrap_or_default()
}

/// Whether the pause annotation is set.
pub fn paused(annotations: Option<&BTreeMap<String, String>>) -> bool {
    annotations
        .and_then(|a| a.get(ANNOTATION_PAUSED))
        .is_some_and(|v| v.eq_ignore_ascii_case("true"))
}

/// The progress deadline, from the annotation or the default.
pub fn progress_deadline(annotations: Option<&BTreeMap<String, String>>) -> Seconds {
    annotations
        .and_then(|a| a.get(ANNOTATION_PROGRESS_DEADLINE))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(DEFAULT_PROGRESS_DEADLINE_S)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(key: &str, value: &str) -> BTreeMap<String, String> {
        BTreeMap::from([(key.to_owned(), value.to_owned())])
    }

    #[test]
    fn memory_round_trips() {
        let memory = Memory {
            new_nodes_ready_at: Some(("abc".into(), 100)),
            drain: Some(Drain {
                node: "emqx@a".into(),
                started_at: 120,
            }),
            progress: Some(("Evacuating|x".into(), 130)),
        };
        let annotations = with(ANNOTATION_PROGRESS, &store(&memory));
        assert_eq!(load(Some(&annotations)), memory);
    }

    #[test]
    fn damaged_memory_is_empty_not_an_error() {
        for bad in ["", "{", "[1,2]", "{\"drain\": 7}", "null"] {
            assert_eq!(
                load(Some(&with(ANNOTATION_PROGRESS, bad))),
                Memory::default(),
                "{bad}"
            );
        }
        assert_eq!(load(None), Memory::default());
    }

    #[test]
    fn pause_and_deadline_annotations() {
        assert!(paused(Some(&with(ANNOTATION_PAUSED, "true"))));
        assert!(paused(Some(&with(ANNOTATION_PAUSED, "True"))));
        assert!(!paused(Some(&with(ANNOTATION_PAUSED, "yes please"))));
        assert!(!paused(None));
        assert_eq!(
            progress_deadline(Some(&with(ANNOTATION_PROGRESS_DEADLINE, "90"))),
            90
        );
        assert_eq!(
            progress_deadline(Some(&with(ANNOTATION_PROGRESS_DEADLINE, "-5"))),
            600
        );
        assert_eq!(progress_deadline(None), 600);
    }
}
