//! Which passes go first when more are asked for than may run at once
//! (`--max-concurrent-passes`).
//!
//! Most passes of a large fleet are routine: a Ready cluster looked at
//! again every `--resync-seconds`, or woken by its own status write. When
//! the reconciler is saturated (1,000 clusters at a 30 s resync ask for
//! about 33 passes a second; this machine served about 29), a pass that
//! matters — a spec just changed, an upgrade moving, a cluster being
//! created — waited behind hundreds of routine ones in one first-come
//! queue: a spec change took 15 s to reach its new set at 1,000 clusters
//! against 0.13 s at 200. So waiting passes are served in two lanes: the
//! first *urgent* waiter takes the next free slot, and *routine* passes take
//! what is left, in the order they came. Routine passes still use every slot
//! when nothing urgent waits, so the fleet's resync is as fast as before.
//!
//! A pass is routine when the object's status already says it is at rest:
//! `Ready=True`, written for the object's current `metadata.generation`.
//! Everything else is urgent: a new spec (its generation is ahead of the
//! status), a cluster not Ready (creating, upgrading, queued, failing), or
//! a status another operator wrote without `observedGeneration` (a cluster
//! being taken over). A routine pass that finds something to do (a pod
//! gone) does it; it only waited in the slower lane.
//!
//! [`lane`] is pure; [`PassPermits`] is the shared semaphore
//! (`priority-semaphore`: higher priority first, first come first served
//! within one, cancellation-safe).

use emqx_crd::hub::condition;
use emqx_crd::v2beta1::EMQXStatus;
use priority_semaphore::{Permit, PrioritySemaphore};
use std::sync::Arc;

/// How soon a waiting pass should run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lane {
    /// The cluster changed, or is not at rest.
    Urgent,
    /// A Ready cluster looked at again.
    Routine,
}

impl Lane {
    /// The metrics' label.
    pub fn label(self) -> &'static str {
        match self {
            Lane::Urgent => "urgent",
            Lane::Routine => "routine",
        }
    }

    /// The semaphore priority (higher goes first).
    fn priority(self) -> i32 {
        match self {
            Lane::Urgent => 1,
            Lane::Routine => 0,
        }
    }
}

/// The lane of a pass over an object of `generation` whose status is
/// `status`.
pub fn lane(generation: Option<i64>, status: Option<&EMQXStatus>) -> Lane {
    let at_rest = status
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == condition::READY))
        .is_some_and(|ready| {
            ready.status == "True"
                && generation.is_some()
                && ready.observed_generation == generation
        });
    if at_rest { Lane::Routine } else { Lane::Urgent }
}

/// The bound on passes at work at once, shared by every controller.
#[derive(Debug)]
pub struct PassPermits(Arc<PrioritySemaphore>);

impl PassPermits {
    /// `passes` slots (at least one).
    pub fn new(passes: usize) -> PassPermits {
        PassPermits(Arc::new(PrioritySemaphore::new(passes.max(1))))
    }

    /// Waits for a slot in `lane`; the slot is freed when the permit drops.
    /// `None` only if the semaphore was closed, which this process never
    /// does: the pass then runs unbounded rather than not at all.
    pub async fn acquire(&self, lane: Lane) -> Option<Permit> {
        self.0.acquire(lane.priority()).await.ok()
    }

    /// Passes waiting for a slot.
    pub fn waiting(&self) -> usize {
        self.0.queued()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

    fn ready(status: &str, observed: Option<i64>) -> EMQXStatus {
        EMQXStatus {
            conditions: Some(vec![Condition {
                type_: condition::READY.into(),
                status: status.into(),
                observed_generation: observed,
                last_transition_time: Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH),
                message: String::new(),
                reason: "ClusterReady".into(),
            }]),
            ..EMQXStatus::default()
        }
    }

    #[test]
    fn only_a_ready_status_of_the_current_generation_is_routine() {
        assert_eq!(lane(Some(3), Some(&ready("True", Some(3)))), Lane::Routine);
        // The spec changed since the status was written.
        assert_eq!(lane(Some(4), Some(&ready("True", Some(3)))), Lane::Urgent);
        // Upgrading, creating, failing.
        assert_eq!(lane(Some(3), Some(&ready("False", Some(3)))), Lane::Urgent);
        // No status yet, no Ready condition, or one written by the Go
        // operator (no observedGeneration).
        assert_eq!(lane(Some(1), None), Lane::Urgent);
        assert_eq!(lane(Some(1), Some(&EMQXStatus::default())), Lane::Urgent);
        assert_eq!(lane(Some(3), Some(&ready("True", None))), Lane::Urgent);
        assert_eq!(lane(None, Some(&ready("True", None))), Lane::Urgent);
    }

    /// With every slot taken, an urgent pass that came last runs before the
    /// routine ones that waited longer; routine ones keep their order.
    #[tokio::test]
    async fn an_urgent_pass_overtakes_waiting_routine_passes() {
        let permits = Arc::new(PassPermits::new(1));
        let held = permits.acquire(Lane::Routine).await.expect("free slot");
        let (order_tx, mut order) = tokio::sync::mpsc::unbounded_channel();
        let mut tasks = Vec::new();
        for (name, lane) in [
            ("routine-1", Lane::Routine),
            ("routine-2", Lane::Routine),
            ("urgent", Lane::Urgent),
        ] {
            let slots = permits.clone();
            let order_tx = order_tx.clone();
            tasks.push(tokio::spawn(async move {
                let _slot = slots.acquire(lane).await;
                order_tx.send(name).expect("receiver alive");
            }));
            // Queue them in this order.
            while permits.waiting() < tasks.len() {
                tokio::task::yield_now().await;
            }
        }
        drop(held);
        for task in tasks {
            task.await.expect("task ran");
        }
        drop(order_tx);
        let mut served = Vec::new();
        while let Some(name) = order.recv().await {
            served.push(name);
        }
        assert_eq!(served, ["urgent", "routine-1", "routine-2"]);
    }

    /// A pass dropped while it waits (the controller shutting down) gives
    /// its turn to the next one; no slot is lost.
    #[tokio::test]
    async fn a_cancelled_waiter_loses_no_slot() {
        let permits = Arc::new(PassPermits::new(1));
        let held = permits.acquire(Lane::Routine).await.expect("free slot");
        let waiting = {
            let permits = permits.clone();
            tokio::spawn(async move { permits.acquire(Lane::Urgent).await.is_some() })
        };
        while permits.waiting() < 1 {
            tokio::task::yield_now().await;
        }
        waiting.abort();
        let _ = waiting.await;
        drop(held);
        let again = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            permits.acquire(Lane::Routine),
        )
        .await
        .expect("the slot came back");
        assert!(again.is_some());
    }
}
