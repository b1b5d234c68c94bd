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

    /// What this process wrote for the object `uid` within `trusted_for`,
    /// to take as the previous status instead of the store's; `None` when
    /// the store's is the one to take. A write that is not taken is never
    /// taken later either (it only ages, or belongs to an object deleted
    /// since), so it is dropped: the map holds the clusters written to
    /// within the last period, not every cluster ever written to.
    pub fn recent(&self, key: &str, uid: &str, trusted_for: Duration) -> Option<EMQXStatus> {
        let mut sent = self.lock();
        let entry = sent.get(key)?;
        if taken(entry, uid, Instant::now(), trusted_for) {
            return Some(entry.status.clone());
        }
        sent.remove(key);
        None
    }

    /// Forgets a deleted cluster, so that entries do not pile up.
    pub fn forget(&self, key: &str) {
        self.lock().remove(key);
    }
}

/// Whether a write is taken over the store's status: it was for this
/// object (a cluster deleted and created again under its name is another)
/// and is recent.
fn taken(sent: &Sent, uid: &str, now: Instant, trusted_for: Duration) -> bool {
    sent.uid == uid && now.saturating_duration_since(sent.at) < trusted_for
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

    fn sent(uid: &str, at: Instant) -> Sent {
        Sent {
            uid: uid.to_owned(),
            status: status(3),
            at,
        }
    }

    fn replicas(s: Option<&EMQXStatus>) -> Option<i32> {
        s.and_then(|s| s.core_nodes_status.as_ref())
            .and_then(|c| c.replicas)
    }

    /// Whether a write of `uid` is taken `after` it was made, trusted 30 s.
    fn taken_after(uid: &str, after: Duration) -> bool {
        let at = Instant::now();
        taken(&sent("u1", at), uid, at + after, Duration::from_secs(30))
    }

    #[test]
    fn a_recent_write_of_the_object_is_taken_until_the_trusted_period_ends() {
        assert!(taken_after("u1", Duration::ZERO));
        assert!(taken_after("u1", Duration::from_millis(29_999)));
        assert!(
            !taken_after("u1", Duration::from_secs(30)),
            "the store again"
        );
    }

    #[test]
    fn a_write_for_an_object_deleted_since_is_not_taken() {
        assert!(!taken_after("new-uid", Duration::ZERO));
    }

    #[test]
    fn record_then_recent_and_forget() {
        let sent = SentStatuses::default();
        sent.record("EMQX/ns/a", "u1", status(3));
        let trusted = Duration::from_secs(30);
        assert_eq!(
            replicas(sent.recent("EMQX/ns/a", "u1", trusted).as_ref()),
            Some(3)
        );
        assert_eq!(
            sent.recent("EMQX/ns/b", "u1", trusted),
            None,
            "never written"
        );
        sent.forget("EMQX/ns/a");
        assert_eq!(sent.recent("EMQX/ns/a", "u1", trusted), None);
    }

    #[test]
    fn a_write_not_taken_is_dropped() {
        let sent = SentStatuses::default();
        sent.record("EMQX/ns/aged", "u1", status(3));
        sent.record("EMQX/ns/recreated", "old-uid", status(3));
        sent.record("EMQX/ns/recent", "u1", status(3));
        let aged = sent.recent("EMQX/ns/aged", "u1", Duration::ZERO);
        let recreated = sent.recent("EMQX/ns/recreated", "new-uid", Duration::from_secs(30));
        assert_eq!((aged, recreated), (None, None));
        let kept: Vec<String> = sent.lock().keys().cloned().collect();
        assert_eq!(kept, ["EMQX/ns/recent"]);
    }
}
