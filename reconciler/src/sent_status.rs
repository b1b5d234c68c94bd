//! The status this process last wrote for each cluster, as the server
//! answered the write.
//!
//! A pass computes the new status from the previous one (a condition keeps
//! its `lastTransitionTime` while its status holds). The previous one in the
//! watch's store lags this process's own writes under load: with 20 clusters
//! upgrading at once a pass often saw the status from before the last write,
//! took a condition's flip for a new one, and moved its time back and forth
//! (32:53, 32:55, 32:53, ...) while writing the status once more per pass.
//! The kubelet's status manager keeps what it sent for the same reason.
//!
//! What was written is trusted for one resync period only: after that the
//! store is the truth again, so a status someone else rewrote is put right
//! within one period.

use emqx_crd::v2beta1::EMQXStatus;
use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// One write: to which object (uid), what the server stored, and when.
#[derive(Debug, Clone)]
struct Sent {
    uid: String,
    status: EMQXStatus,
    at: Instant,
}

/// The last status written per cluster key ([`crate::upgrade_slots::key`]).
#[derive(Debug, Default)]
pub struct SentStatuses(Mutex<BTreeMap<String, Sent>>);

impl SentStatuses {
    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, Sent>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records what the server stored for the object `uid` just now.
    pub fn record(&self, key: &str, uid: &str, status: EMQXStatus) {
        self.lock().insert(
            key.to_owned(),
            Sent {
                uid: uid.to_owned(),
                status,
                at: Instant::now(),
            },
        );
    }

    /// The status to take as the previous one for the object `uid`: what
    /// this process wrote within `trusted_for`, else `live` (the store's).
    /// A write that is not taken is never taken later either (it only ages,
    /// or belongs to an object deleted since), so it is dropped: the map
    /// holds the clusters written to within the last period, not every
    /// cluster ever written to.
    pub fn previous(
        &self,
        key: &str,
        uid: &str,
        live: Option<&EMQXStatus>,
        trusted_for: Duration,
    ) -> Option<EMQXStatus> {
        let mut sent = self.lock();
        let now = Instant::now();
        let chosen = choose(sent.get(key), uid, None, now, trusted_for).cloned();
        if chosen.is_none() {
            sent.remove(key);
        }
        chosen.or_else(|| live.cloned())
    }

    /// Forgets a deleted cluster, so that entries do not pile up.
    pub fn forget(&self, key: &str) {
        self.lock().remove(key);
    }
}

/// The written status when it is this object's (a cluster deleted and
/// created again under its name is another) and recent, else the store's.
fn choose<'a>(
    sent: Option<&'a Sent>,
    uid: &str,
    live: Option<&'a EMQXStatus>,
    now: Instant,
    trusted_for: Duration,
) -> Option<&'a EMQXStatus> {
    match sent {
        Some(s) if s.uid == uid && now.saturating_duration_since(s.at) < trusted_for => {
            Some(&s.status)
        }
        _ => live,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use emqx_crd::v2beta1::EMQXNodesStatus;

    fn status(replicas: i32) -> EMQXStatus {
        EMQXStatus {
            core_nodes_status: Some(EMQXNodesStatus {
                replicas: Some(replicas),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn sent(uid: &str, replicas: i32, at: Instant) -> Sent {
        Sent {
            uid: uid.to_owned(),
            status: status(replicas),
            at,
        }
    }

    fn replicas(s: Option<&EMQXStatus>) -> Option<i32> {
        s.and_then(|s| s.core_nodes_status.as_ref())
            .and_then(|c| c.replicas)
    }

    #[test]
    fn a_recent_write_wins_over_a_lagging_store() {
        let at = Instant::now();
        let written = sent("u1", 3, at);
        let live = status(2);
        let chosen = choose(
            Some(&written),
            "u1",
            Some(&live),
            at + Duration::from_secs(5),
            Duration::from_secs(30),
        );
        assert_eq!(replicas(chosen), Some(3));
    }

    #[test]
    fn the_store_is_the_truth_again_after_the_trusted_period() {
        let at = Instant::now();
        let written = sent("u1", 3, at);
        let live = status(2);
        let chosen = choose(
            Some(&written),
            "u1",
            Some(&live),
            at + Duration::from_secs(30),
            Duration::from_secs(30),
        );
        assert_eq!(replicas(chosen), Some(2));
    }

    #[test]
    fn a_write_for_an_object_deleted_since_is_not_taken() {
        let at = Instant::now();
        let written = sent("old-uid", 3, at);
        let chosen = choose(Some(&written), "new-uid", None, at, Duration::from_secs(30));
        assert_eq!(replicas(chosen), None);
    }

    #[test]
    fn without_a_write_the_store_is_taken() {
        let live = status(2);
        let chosen = choose(
            None,
            "u1",
            Some(&live),
            Instant::now(),
            Duration::from_secs(30),
        );
        assert_eq!(replicas(chosen), Some(2));
    }

    #[test]
    fn record_then_previous_and_forget() {
        let sent = SentStatuses::default();
        sent.record("EMQX/ns/a", "u1", status(3));
        let trusted = Duration::from_secs(30);
        assert_eq!(
            replicas(sent.previous("EMQX/ns/a", "u1", None, trusted).as_ref()),
            Some(3)
        );
        sent.forget("EMQX/ns/a");
        assert_eq!(
            replicas(sent.previous("EMQX/ns/a", "u1", None, trusted).as_ref()),
            None
        );
    }

    #[test]
    fn a_write_not_taken_is_dropped() {
        let sent = SentStatuses::default();
        let live = status(2);
        sent.record("EMQX/ns/aged", "u1", status(3));
        sent.record("EMQX/ns/recreated", "old-uid", status(3));
        sent.record("EMQX/ns/recent", "u1", status(3));
        let aged = sent.previous("EMQX/ns/aged", "u1", Some(&live), Duration::ZERO);
        let recreated = sent.previous(
            "EMQX/ns/recreated",
            "new-uid",
            Some(&live),
            Duration::from_secs(30),
        );
        assert_eq!(
            (replicas(aged.as_ref()), replicas(recreated.as_ref())),
            (Some(2), Some(2))
        );
        let kept: Vec<String> = sent.lock().keys().cloned().collect();
        assert_eq!(kept, ["EMQX/ns/recent"]);
    }
}
