//! The operator-wide bound on upgrades that run at once
//! (`--max-concurrent-upgrades`, chart value `reconciler.maxConcurrentUpgrades`).
//!
//! A platform team upgrading the EMQX image of many clusters at once may
//! want them to go a few at a time (a bad image then hurts a few clusters,
//! and the nodes' pulls and the clients' reconnects are spread out). An
//! upgrade *starts* when a pass would create the first set of a new
//! revision while sets of an older one still run; one that has started
//! (its new sets exist) always goes on, so a reconciler restart or a lower
//! limit never leaves an upgrade half-way. A cluster that may not start
//! waits in the order it first asked, in phase `Queued` with
//! `Progressing=False`, reason `UpgradeQueued`, and a message naming the
//! upgrades that hold the slots.
//!
//! The slots live in the reconciler's memory: after a restart, or on a new
//! leader, the running upgrades take their slots again on their next pass
//! and the queue order starts afresh. In the first passes after a restart a
//! waiting upgrade may start before a running one has taken its slot back,
//! so for a moment one more than the limit may run; none is ever stopped.
//! An aborted upgrade keeps its slot until it is retried or its spec
//! changes: it is still unfinished.
//!
//! [`need`], [`Slots::admit`] and [`queued`] are pure; [`UpgradeSlots`] is
//! the shared, locked state.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Mutex, PoisonError};

use crate::decide::{Decision, Phase, Wait, WaitReason};
use crate::observed::{Observed, Seconds, Spec};

/// A cluster's name in the slots: `KIND/namespace/name`.
pub fn key(kind: &str, namespace: &str, name: &str) -> String {
    format!("{kind}/{namespace}/{name}")
}

/// What a cluster needs from the slots this pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// No upgrade: nothing old runs (a new cluster, a Ready one).
    Idle,
    /// An upgrade whose new sets exist: it holds a slot, whatever the limit.
    Running,
    /// Old sets run and no set of the desired revision exists yet: this
    /// pass would start an upgrade.
    Starting,
}

/// Whether `obs` shows an upgrade to `spec` starting, running or none.
pub fn need(spec: &Spec, obs: &Observed) -> Need {
    if !obs.sets.iter().any(|s| s.is_old(spec)) {
        return Need::Idle;
    }
    let started = obs.sets.iter().any(|s| s.is_desired(spec));
    if started {
        Need::Running
    } else {
        Need::Starting
    }
}

/// Who holds the slots and who waits.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Slots {
    running: BTreeSet<String>,
    /// Waiting clusters and the order they first asked in.
    waiting: BTreeMap<String, u64>,
    asked: u64,
}

/// The answer to one cluster's pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    Go,
    /// Not yet: `ahead` clusters wait before it, `running` hold the slots.
    Queued {
        ahead: usize,
        running: Vec<String>,
    },
}

impl Slots {
    /// Admits `key` for this pass; `limit` 0 admits everyone.
    pub fn admit(&mut self, limit: usize, key: &str, need: Need) -> Admission {
        match need {
            Need::Idle => {
                self.forget(key);
                Admission::Go
            }
            Need::Running => {
                self.waiting.remove(key);
                self.running.insert(key.to_owned());
                Admission::Go
            }
            Need::Starting => {
                if self.running.contains(key) {
                    return Admission::Go;
                }
                let asked = *self.waiting.entry(key.to_owned()).or_insert_with(|| {
                    self.asked += 1;
                    self.asked
                });
                let ahead = self.waiting.values().filter(|a| **a < asked).count();
                if limit == 0 || (self.running.len() < limit && ahead == 0) {
                    self.waiting.remove(key);
                    self.running.insert(key.to_owned());
                    Admission::Go
                } else {
                    Admission::Queued {
                        ahead,
                        running: self.running.iter().cloned().collect(),
                    }
                }
            }
        }
    }

    /// Drops a cluster that is gone (or has nothing to upgrade).
    pub fn forget(&mut self, key: &str) {
        self.running.remove(key);
        self.waiting.remove(key);
    }
}

/// How often a queued cluster asks again.
pub const QUEUED_RETRY_S: Seconds = 3;

/// The decision of a pass that may not start its upgrade: no action at
/// all, phase `Queued`, and a wait naming the slot holders.
pub fn queued(limit: usize, ahead: usize, running: &[String]) -> Decision {
    let holders = if running.len() > 5 {
        format!(
            "{}, and {} more",
            running[..5].join(", "),
            running.len() - 5
        )
    } else {
        running.join(", ")
    };
    Decision {
        phase: Phase::Queued,
        actions: Vec::new(),
        wait: Some(Wait {
            reason: WaitReason::UpgradeQueued,
            message: format!(
                "waiting for one of {limit} upgrade slots (--max-concurrent-upgrades), \
                 {ahead} cluster(s) ahead; running: {holders}"
            ),
            timed: false,
        }),
        stalled: false,
        requeue_after_s: Some(QUEUED_RETRY_S),
        requeue_after_ms: None,
        guard: None,
    }
}

/// The slots of one reconciler, shared by its controllers.
#[derive(Debug, Default)]
pub struct UpgradeSlots {
    limit: usize,
    slots: Mutex<Slots>,
}

impl UpgradeSlots {
    /// At most `limit` upgrades at once; 0: no bound.
    pub fn new(limit: usize) -> Self {
        UpgradeSlots {
            limit,
            slots: Mutex::default(),
        }
    }

    /// `decision` itself, or the queued decision when the upgrade it would
    /// start must wait.
    pub fn admit(&self, key: &str, need: Need, decision: Decision) -> Decision {
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        match slots.admit(self.limit, key, need) {
            Admission::Go => decision,
            Admission::Queued { ahead, running } => queued(self.limit, ahead, &running),
        }
    }

    /// Drops a deleted cluster.
    pub fn forget(&self, key: &str) {
        self.slots
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .forget(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_limit_admits_that_many_and_the_rest_in_the_order_they_asked() {
        let mut slots = Slots::default();
        assert_eq!(slots.admit(2, "a", Need::Starting), Admission::Go);
        assert_eq!(slots.admit(2, "b", Need::Starting), Admission::Go);
        let c = slots.admit(2, "c", Need::Starting);
        assert_eq!(
            c,
            Admission::Queued {
                ahead: 0,
                running: vec!["a".into(), "b".into()]
            }
        );
        assert!(matches!(
            slots.admit(2, "d", Need::Starting),
            Admission::Queued { ahead: 1, .. }
        ));
        // a's new sets exist: it keeps its slot, pass after pass.
        assert_eq!(slots.admit(2, "a", Need::Running), Admission::Go);
        // a is done: c, which asked first, goes before d.
        assert_eq!(slots.admit(2, "a", Need::Idle), Admission::Go);
        assert!(matches!(
            slots.admit(2, "d", Need::Starting),
            Admission::Queued { ahead: 1, .. }
        ));
        assert_eq!(slots.admit(2, "c", Need::Starting), Admission::Go);
        assert!(matches!(
            slots.admit(2, "d", Need::Starting),
            Admission::Queued { ahead: 0, .. }
        ));
        // A deleted cluster frees its slot.
        slots.forget("b");
        assert_eq!(slots.admit(2, "d", Need::Starting), Admission::Go);
    }

    #[test]
    fn a_running_upgrade_is_never_stopped_and_no_limit_admits_everyone() {
        let mut slots = Slots::default();
        // After a restart (empty slots) with a limit of 1, two upgrades
        // that had started both go on.
        assert_eq!(slots.admit(1, "a", Need::Running), Admission::Go);
        assert_eq!(slots.admit(1, "b", Need::Running), Admission::Go);
        assert!(matches!(
            slots.admit(1, "c", Need::Starting),
            Admission::Queued { .. }
        ));
        let mut open = Slots::default();
        for key in ["a", "b", "c", "d"] {
            assert_eq!(open.admit(0, key, Need::Starting), Admission::Go);
        }
    }

    #[test]
    fn a_queued_pass_does_nothing_and_says_who_holds_the_slots() {
        let running: Vec<String> = (0..7).map(|i| format!("EMQX/default/c{i}")).collect();
        let d = queued(7, 2, &running);
        assert_eq!(d.phase, Phase::Queued);
        assert!(d.actions.is_empty());
        assert!(!d.stalled);
        let wait = d.wait.expect("a wait");
        assert_eq!(wait.reason.as_str(), "UpgradeQueued");
        assert!(
            wait.message.contains("2 cluster(s) ahead"),
            "{}",
            wait.message
        );
        assert!(
            wait.message.contains("EMQX/default/c4, and 2 more"),
            "{}",
            wait.message
        );
    }
}
