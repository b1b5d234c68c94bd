//! Every condition of every EMQX object in a namespace as the watch saw it,
//! to check that a condition's `lastTransitionTime` moves only when its
//! status flips. Under load the reconciler's own store lags its writes; a
//! pass that took the status from there saw a flip that was already
//! written and moved the time again (reconciler `sent_status`).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use emqx_crd::v2beta1::EMQX;
use kube::runtime::watcher;
use kube::{Api, Client, ResourceExt};
use tokio::task::JoinHandle;

use crate::watch_task::watch;

/// One sighting of a condition: its status and `lastTransitionTime`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sighting {
    pub status: String,
    pub since: String,
}

/// Sightings by object name, then condition type, in the watch's order.
type Seen = BTreeMap<String, BTreeMap<String, Vec<Sighting>>>;

/// The recorder; its watch ends when it is dropped.
pub struct ConditionHistory {
    seen: Arc<Mutex<Seen>>,
    task: JoinHandle<()>,
}

impl Drop for ConditionHistory {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl ConditionHistory {
    /// Starts watching the EMQX objects of `namespace`.
    pub fn start(client: &Client, namespace: &str) -> ConditionHistory {
        let seen: Arc<Mutex<Seen>> = Arc::default();
        let api: Api<EMQX> = Api::namespaced(client.clone(), namespace);
        let into = seen.clone();
        let task = watch(api, watcher::Config::default(), move |event| {
            if let watcher::Event::Apply(e) | watcher::Event::InitApply(e) = event {
                record(&into, &e);
            }
        });
        ConditionHistory { seen, task }
    }

    /// Every time a condition's `lastTransitionTime` changed while its
    /// status stayed, described; empty when none did.
    pub fn moved_without_a_flip(&self) -> Vec<String> {
        let seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        seen.iter()
            .flat_map(|(object, types)| {
                types.iter().flat_map(move |(type_, sightings)| {
                    moves_without_flip(sightings)
                        .into_iter()
                        .map(move |m| format!("{object} {type_}: {m}"))
                })
            })
            .collect()
    }

    /// How many sightings were recorded (every condition of every event).
    pub fn sightings(&self) -> usize {
        let seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        seen.values().flat_map(|t| t.values()).map(Vec::len).sum()
    }
}

fn record(seen: &Mutex<Seen>, emqx: &EMQX) {
    let Some(conditions) = emqx.status.as_ref().and_then(|s| s.conditions.as_ref()) else {
        return;
    };
    let mut seen = seen.lock().unwrap_or_else(PoisonError::into_inner);
    let types = seen.entry(emqx.name_any()).or_default();
    for c in conditions {
        let sighting = Sighting {
            status: c.status.clone(),
            since: c.last_transition_time.0.to_string(),
        };
        let history = types.entry(c.type_.clone()).or_default();
        if history.last() != Some(&sighting) {
            history.push(sighting);
        }
    }
}

/// Consecutive sightings of one condition with the same status and
/// different times.
pub fn moves_without_flip(sightings: &[Sighting]) -> Vec<String> {
    sightings
        .windows(2)
        .filter(|w| w[0].status == w[1].status && w[0].since != w[1].since)
        .map(|w| {
            format!(
                "{} since {} then since {}",
                w[0].status, w[0].since, w[1].since
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(status: &str, since: &str) -> Sighting {
        Sighting {
            status: status.into(),
            since: since.into(),
        }
    }

    #[test]
    fn a_time_that_moves_with_its_flip_is_no_move() {
        let history = [s("True", "1"), s("False", "2"), s("True", "3")];
        assert!(moves_without_flip(&history).is_empty());
    }

    #[test]
    fn a_time_that_moves_while_the_status_holds_is_reported() {
        let history = [s("True", "1"), s("False", "2"), s("False", "4")];
        assert_eq!(
            moves_without_flip(&history),
            vec!["False since 2 then since 4".to_owned()]
        );
    }
}
