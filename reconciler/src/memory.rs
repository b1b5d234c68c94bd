//! The few facts `decide` cannot re-derive from the cluster (when the new
//! nodes were first all ready, which node a fallback drain started on, the
//! last progress marker), kept on the object so a restarted reconciler
//! resumes with them. Also the operator's own annotations.
//!
//! Why an annotation and not the status: `EmqxEnterprise` is stored as
//! v1beta4 and written as v2beta1 through the conversion webhook. A status
//! field v1beta4 cannot express travels in the `apps.emqx.io/conversion-data`
//! annotation, and a write to the `/status` subresource drops metadata
//! changes, so such a field would be lost on every status write of an
//! `EmqxEnterprise` and its upgrade would restart its initial delay
//! forever. Keeping it in the status would need a non-upstream field in the
//! v1beta4 schema that users of the Go operator's API read. The annotation
//! is written through the storage version
//! ([`crate::kind::ClusterKind::metadata_version`]) and only when the memory
//! changed (a few times per upgrade step, never on an idle cluster).

use crate::decide::Action;
use crate::observed::{Drain, GuardMemory, Memory, Seconds};
pub use emqx_crd::names::{ANNOTATION_ABORT, ANNOTATION_PAUSED, ANNOTATION_PROMOTE};
use std::collections::BTreeMap;

/// Where [`Memory`] is kept on the object (JSON).
pub const ANNOTATION_PROGRESS: &str = "apps.emqx.io/blue-green-progress";
/// Seconds without progress after which an upgrade is reported stalled.
pub const ANNOTATION_PROGRESS_DEADLINE: &str = "apps.emqx.io/progress-deadline-seconds";
/// Default progress deadline, as a Deployment's.
pub const DEFAULT_PROGRESS_DEADLINE_S: Seconds = 600;

/// Reads the memory from the object's annotations. A damaged value is
/// treated as empty: every field only delays (a wait restarts), never
/// skips a step.
pub fn load(annotations: Option<&BTreeMap<String, String>>) -> Memory {
    annotations
        .and_then(|a| a.get(ANNOTATION_PROGRESS))
        .and_then(|v| serde_json::from_str(v).ok())
        .map(with_ready_in_milliseconds)
        .and_then(|v| serde_json::from_value(v).ok())
        .unwrap_or_default()
}

/// Earlier releases kept the new nodes' ready instant in whole seconds,
/// rounded down (`newNodesReady`); read as the end of that second, so an
/// upgrade caught mid-delay by a reconciler upgrade never moves its traffic
/// early.
fn with_ready_in_milliseconds(mut stored: serde_json::Value) -> serde_json::Value {
    if let Some(fields) = stored.as_object_mut()
        && !fields.contains_key(READY_MS)
        && let Some(legacy) = fields.remove(READY_S)
    {
        let converted = match legacy.as_array().map(Vec::as_slice) {
            Some([revision, serde_json::Value::Number(at)]) => at
                .as_u64()
                .map(|s| serde_json::json!([revision, s.saturating_add(1).saturating_mul(1000)])),
            _ => None,
        };
        if let Some(converted) = converted {
            fields.insert(READY_MS.to_owned(), converted);
        }
    }
    stored
}

/// [`Memory::new_nodes_ready_at`]'s key, and the one it had in seconds.
const READY_MS: &str = "newNodesReadyMs";
const READY_S: &str = "newNodesReady";

/// The annotation value for `memory`.
pub fn store(memory: &Memory) -> String {
    serde_json::to_string(memory).unwrap_or_default()
}

/// Whether `memory` must be written: it differs from what the annotations
/// hold. An absent (or damaged) annotation holds the empty memory, so a
/// cluster that never upgraded gets no annotation at all: taking over a
/// running cluster, or a first pass, writes nothing to the object.
pub fn needs_write(annotations: Option<&BTreeMap<String, String>>, memory: &Memory) -> bool {
    load(annotations) != *memory
}

/// `memory` after a `Record…` action was carried out; other actions leave
/// it as it is.
pub fn record(memory: &mut Memory, action: &Action) {
    match action {
        Action::RecordNewNodesReady { revision, at } => {
            memory.new_nodes_ready_at = Some((revision.clone(), *at));
        }
        Action::RecordDrainStart { node, at } => {
            memory.drain = Some(Drain {
                node: node.clone(),
                started_at: *at,
            });
        }
        Action::RecordProgress { marker, at } => {
            memory.progress = Some((marker.clone(), *at));
        }
        Action::RecordAbort { revision, .. } => {
            memory.aborted = Some(revision.clone());
        }
        Action::ClearAbort => {
            memory.aborted = None;
            memory.guard = None;
        }
        Action::ArmGuard {
            revision,
            baseline,
            failures,
            at,
        } => {
            memory.guard = Some(GuardMemory {
                revision: revision.clone(),
                baseline: *baseline,
                evicted: None,
                recovered: None,
                failures: (*at, *failures),
                tripped: None,
            });
        }
        Action::RecordEviction { node, at } => {
            if let Some(guard) = &mut memory.guard {
                guard.evicted = Some((node.clone(), *at));
                // A new eviction's clients must come back on their own.
                guard.recovered = None;
            }
        }
        Action::RecordRecovery { at } => {
            if let Some(guard) = &mut memory.guard {
                guard.recovered = *at;
            }
        }
        Action::RecordFailureWindow { at, count } => {
            if let Some(guard) = &mut memory.guard {
                guard.failures = (*at, *count);
            }
        }
        Action::TripGuard { revision, message } => {
            if let Some(guard) = memory.guard.as_mut().filter(|g| g.revision == *revision) {
                guard.tripped = Some(message.clone());
            }
        }
        _ => {}
    }
}

/// Whether the pause annotation is set.
pub fn paused(annotations: Option<&BTreeMap<String, String>>) -> bool {
    annotations
        .and_then(|a| a.get(ANNOTATION_PAUSED))
        .is_some_and(|v| v.eq_ignore_ascii_case("true"))
}

/// The revision the promote annotation names (`None` when absent or blank).
pub fn promote(annotations: Option<&BTreeMap<String, String>>) -> Option<String> {
    named_revision(annotations, ANNOTATION_PROMOTE)
}

/// The revision the abort annotation names (`None` when absent or blank).
pub fn abort(annotations: Option<&BTreeMap<String, String>>) -> Option<String> {
    named_revision(annotations, ANNOTATION_ABORT)
}

fn named_revision(annotations: Option<&BTreeMap<String, String>>, key: &str) -> Option<String> {
    annotations
        .and_then(|a| a.get(key))
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
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
            aborted: Some("def".into()),
            guard: Some(GuardMemory {
                revision: "def".into(),
                baseline: 1000,
                evicted: Some(("emqx@b".into(), 140)),
                recovered: Some(142),
                failures: (135, 7),
                tripped: Some("why".into()),
            }),
        };
        let annotations = with(ANNOTATION_PROGRESS, &store(&memory));
        assert_eq!(load(Some(&annotations)), memory);
    }

    #[test]
    fn the_stored_shape_stays_readable() {
        // What earlier releases wrote: a reconciler upgraded mid-upgrade
        // must resume, not restart its waits.
        let stored =
            r#"{"newNodesReadyMs":["abc",100500],"drain":["emqx@a",120],"progress":["m",130]}"#;
        let memory = load(Some(&with(ANNOTATION_PROGRESS, stored)));
        assert_eq!(memory.new_nodes_ready_at, Some(("abc".into(), 100_500)));
        assert_eq!(
            memory.drain,
            Some(Drain {
                node: "emqx@a".into(),
                started_at: 120
            })
        );
        assert_eq!(memory.progress, Some(("m".into(), 130)));
        assert_eq!(store(&memory), stored);
    }

    #[test]
    fn a_ready_instant_in_seconds_is_read_as_the_end_of_that_second() {
        // Releases before 2026-12 kept it rounded down to the second.
        let stored = r#"{"newNodesReady":["abc",100],"progress":["m",130]}"#;
        let memory = load(Some(&with(ANNOTATION_PROGRESS, stored)));
        assert_eq!(memory.new_nodes_ready_at, Some(("abc".into(), 101_000)));
        assert_eq!(memory.progress, Some(("m".into(), 130)));
        // Damaged: forgotten (the wait restarts), the rest kept.
        let stored = r#"{"newNodesReady":["abc","x"],"progress":["m",130]}"#;
        let memory = load(Some(&with(ANNOTATION_PROGRESS, stored)));
        assert_eq!(memory.new_nodes_ready_at, None);
        assert_eq!(memory.progress, Some(("m".into(), 130)));
        // Both: the milliseconds win.
        let stored = r#"{"newNodesReady":["abc",100],"newNodesReadyMs":["abc",100250]}"#;
        let memory = load(Some(&with(ANNOTATION_PROGRESS, stored)));
        assert_eq!(memory.new_nodes_ready_at, Some(("abc".into(), 100_250)));
    }

    #[test]
    fn only_a_changed_memory_is_written() {
        // A cluster that never upgraded (one taken over, say) has no
        // annotation, and gets none.
        assert!(!needs_write(None, &Memory::default()));
        assert!(!needs_write(Some(&BTreeMap::new()), &Memory::default()));
        let memory = Memory {
            new_nodes_ready_at: Some(("abc".into(), 100)),
            ..Memory::default()
        };
        assert!(needs_write(None, &memory));
        let stored = with(ANNOTATION_PROGRESS, &store(&memory));
        assert!(!needs_write(Some(&stored), &memory));
        assert!(needs_write(Some(&stored), &Memory::default()), "cleared");
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

    #[test]
    fn promote_and_abort_name_a_revision() {
        assert_eq!(
            promote(Some(&with(ANNOTATION_PROMOTE, " 5d87d4c6bd\n"))),
            Some("5d87d4c6bd".into())
        );
        assert_eq!(promote(Some(&with(ANNOTATION_PROMOTE, "  "))), None);
        assert_eq!(promote(Some(&with(ANNOTATION_ABORT, "x"))), None);
        assert_eq!(
            abort(Some(&with(ANNOTATION_ABORT, "a/b"))),
            Some("a/b".into())
        );
        assert_eq!(abort(None), None);
    }
}
