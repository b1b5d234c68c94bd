//! Which connections a listener keeps when a new one arrives and the table is
//! full: the decision ([`admit`], pure) and the table it reads ([`Table`]).
//!
//! The policy is **oldest-idle eviction with a per-peer quota**:
//!
//! * A connection is *idle* while no request is in flight on it (that
//!   includes a TLS handshake that has not finished, and a keep-alive or h2
//!   connection between requests). A connection with a request in flight is
//!   never evicted.
//! * A peer (source IP) that already holds `max_per_peer` connections makes
//!   room among its *own* connections (its oldest idle one goes), or is
//!   refused when all of them are busy: one address can never take more than
//!   its quota, and never pushes anyone else out once it has it.
//! * When the whole table is full, the oldest idle connection of the peer
//!   holding the *most* connections goes. A flood of idle connections, from
//!   one address or many, therefore only ever evicts itself: the real
//!   apiserver, which connects from a few addresses with a few connections,
//!   is the last to lose an idle connection, and loses no request (a busy
//!   connection is not a candidate; an evicted h2 connection gets a GOAWAY).
//! * Only when every connection is busy is the new one refused. Busy is
//!   bounded in time by the request timeout, idle by the idle timeout.
//!
//! A plain per-peer cap without eviction would let one address park its
//! quota for the idle timeout and would starve the apiserver if it shared an
//! address with the flood (SNAT, a proxy, a host-network pod on its node);
//! eviction alone would let a many-address flood cycle through the
//! apiserver's idle connections first. Together they need neither guess.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

/// What [`admit`] sees of one open connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotView {
    /// Table key.
    pub id: u64,
    /// Source address.
    pub peer: IpAddr,
    /// `Some(since)` when no request is in flight; `None` when busy.
    pub idle_since: Option<Instant>,
}

/// The answer for a new connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Room to spare.
    Accept,
    /// Accept after closing connection `victim`.
    Evict {
        /// The connection to close.
        victim: u64,
        /// Why there was no room.
        reason: EvictReason,
    },
    /// Close the new connection at once.
    Refuse(RefuseReason),
}

/// Why a connection was evicted (a metric label).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EvictReason {
    /// The table was full.
    Capacity,
    /// The new connection's peer was at its quota.
    PeerQuota,
}

/// Why a connection was refused (a metric label).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RefuseReason {
    /// The table was full and every connection busy.
    AllBusy,
    /// The peer was at its quota and all its connections busy.
    PeerBusy,
}

impl EvictReason {
    /// The metric label value.
    pub fn as_str(self) -> &'static str {
        match self {
            EvictReason::Capacity => "capacity",
            EvictReason::PeerQuota => "peer_quota",
        }
    }
}

impl RefuseReason {
    /// The metric label value.
    pub fn as_str(self) -> &'static str {
        match self {
            RefuseReason::AllBusy => "all_busy",
            RefuseReason::PeerBusy => "peer_busy",
        }
    }
}

/// Decides whether a connection from `peer` may join `open` (the connections
/// not already being closed). See the module documentation for the policy.
pub fn admit(open: &[SlotView], peer: IpAddr, max_total: usize, max_per_peer: usize) -> Admission {
    let oldest_idle_of = |who: IpAddr| {
        open.iter()
            .filter(|s| s.peer == who)
            .filter_map(|s| s.idle_since.map(|t| (t, s.id)))
            .min()
            .map(|(_, id)| id)
    };
    let own = open.iter().filter(|s| s.peer == peer).count();
    if own >= max_per_peer {
        return match oldest_idle_of(peer) {
            Some(victim) => Admission::Evict {
                victim,
                reason: EvictReason::PeerQuota,
            },
            None => Admission::Refuse(RefuseReason::PeerBusy),
        };
    }
    if open.len() < max_total {
        return Admission::Accept;
    }
    let mut per_peer: HashMap<IpAddr, usize> = HashMap::new();
    for s in open {
        *per_peer.entry(s.peer).or_default() += 1;
    }
    // The peer with the most connections that has an idle one; among equals,
    // the one whose idle connection is oldest.
    let victim = open
        .iter()
        .filter_map(|s| s.idle_since.map(|t| (per_peer[&s.peer], t, s.id)))
        .max_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)))
        .map(|(_, _, id)| id);
    match victim {
        Some(victim) => Admission::Evict {
            victim,
            reason: EvictReason::Capacity,
        },
        None => Admission::Refuse(RefuseReason::AllBusy),
    }
}

/// Requests in flight on one connection and when it was last active.
#[derive(Debug)]
pub struct Activity {
    epoch: Instant,
    in_flight: AtomicUsize,
    /// Milliseconds after `epoch` of the last request start or end.
    last_active_ms: AtomicU64,
}

impl Activity {
    fn new(epoch: Instant) -> Self {
        let a = Activity {
            epoch,
            in_flight: AtomicUsize::new(0),
            last_active_ms: AtomicU64::new(0),
        };
        a.touch();
        a
    }

    fn touch(&self) {
        let ms = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_active_ms.store(ms, Ordering::Relaxed);
    }

    /// Marks a request as started; the guard marks it ended when dropped.
    pub fn begin(self: &Arc<Self>) -> RequestGuard {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.touch();
        RequestGuard {
            activity: self.clone(),
        }
    }

    /// `Some(since)` when no request is in flight.
    pub fn idle_since(&self) -> Option<Instant> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        Some(self.epoch + Duration::from_millis(self.last_active_ms.load(Ordering::Relaxed)))
    }
}

/// Ends a request on drop.
#[derive(Debug)]
pub struct RequestGuard {
    activity: Arc<Activity>,
}

impl Drop for RequestGuard {
    fn drop(&mut self) {
        self.activity.touch();
        self.activity.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// One open connection as the table holds it.
#[derive(Debug)]
pub struct Slot {
    /// Source address.
    pub peer: IpAddr,
    /// Requests in flight and last activity.
    pub activity: Arc<Activity>,
    /// Notified to close the connection (eviction or shutdown).
    pub close: Arc<Notify>,
    /// Set once asked to close; such a slot no longer counts for admission.
    closing: bool,
}

/// The open connections of one listener.
#[derive(Debug)]
pub struct Table {
    epoch: Instant,
    next_id: AtomicU64,
    slots: Mutex<HashMap<u64, Slot>>,
    max_total: usize,
    max_per_peer: usize,
    /// Notified when the last connection leaves.
    drained: Notify,
}

/// What happened to a new connection.
#[derive(Debug)]
pub enum Joined {
    /// Serve it; remove `id` from the table when done.
    Accepted {
        /// Table key.
        id: u64,
        /// Its activity, for the request tracker and the idle timer.
        activity: Arc<Activity>,
        /// Notified when it must close.
        close: Arc<Notify>,
        /// Set when another connection was asked to close to make room.
        evicted: Option<EvictReason>,
    },
    /// Close it now.
    Refused(RefuseReason),
}

impl Table {
    /// An empty table with these limits.
    pub fn new(max_total: usize, max_per_peer: usize) -> Self {
        Table {
            epoch: Instant::now(),
            next_id: AtomicU64::new(0),
            slots: Mutex::new(HashMap::new()),
            max_total,
            max_per_peer: max_per_peer.min(max_total),
            drained: Notify::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<u64, Slot>> {
        // A panic while holding the lock leaves the map consistent (every
        // operation is a single insert/remove/flag), so poisoning is ignored.
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Admits a connection from `peer`, closing another one if the policy says so.
    pub fn join(&self, peer: IpAddr) -> Joined {
        let mut slots = self.lock();
        let open: Vec<SlotView> = slots
            .iter()
            .filter(|(_, s)| !s.closing)
            .map(|(id, s)| SlotView {
                id: *id,
                peer: s.peer,
                idle_since: s.activity.idle_since(),
            })
            .collect();
        let evicted = match admit(&open, peer, self.max_total, self.max_per_peer) {
            Admission::Refuse(reason) => return Joined::Refused(reason),
            Admission::Accept => None,
            Admission::Evict { victim, reason } => {
                if let Some(slot) = slots.get_mut(&victim) {
                    slot.closing = true;
                    slot.close.notify_one();
                }
                Some(reason)
            }
        };
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let activity = Arc::new(Activity::new(self.epoch));
        let close = Arc::new(Notify::new());
        slots.insert(
            id,
            Slot {
                peer,
                activity: activity.clone(),
                close: close.clone(),
                closing: false,
            },
        );
        Joined::Accepted {
            id,
            activity,
            close,
            evicted,
        }
    }

    /// Forgets a connection that has ended.
    pub fn leave(&self, id: u64) {
        let mut slots = self.lock();
        slots.remove(&id);
        if slots.is_empty() {
            self.drained.notify_waiters();
        }
    }

    /// Shutdown: asks every connection to close ([`Table::close_all`]) and
    /// waits, at most `grace`, until every one has left. False when the
    /// grace ran out first.
    pub async fn close_all_and_wait(&self, grace: Duration) -> bool {
        self.close_all();
        let all_left = async {
            loop {
                // Registered before the check: a `leave` between the check
                // and the wait still wakes it.
                let mut drained = std::pin::pin!(self.drained.notified());
                drained.as_mut().enable();
                if self.is_empty() {
                    return;
                }
                drained.await;
            }
        };
        tokio::time::timeout(grace, all_left).await.is_ok()
    }

    /// Asks every connection to close (shutdown).
    pub fn close_all(&self) {
        for slot in self.lock().values_mut() {
            slot.closing = true;
            slot.close.notify_one();
        }
    }

    /// Connections still open (closing ones included).
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// True when no connection is open.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, last])
    }

    fn slot(id: u64, peer: u8, idle_for_s: Option<u64>, now: Instant) -> SlotView {
        SlotView {
            id,
            peer: ip(peer),
            idle_since: idle_for_s.map(|s| now - Duration::from_secs(s)),
        }
    }

    #[test]
    fn room_to_spare_accepts() {
        let now = Instant::now();
        let open = [slot(1, 1, Some(5), now)];
        assert_eq!(admit(&open, ip(2), 2, 2), Admission::Accept);
    }

    #[test]
    fn a_peer_at_its_quota_evicts_its_own_oldest_idle_connection_or_is_refused() {
        let now = Instant::now();
        let open = [
            slot(1, 1, Some(1), now),
            slot(2, 1, Some(9), now),
            slot(3, 2, Some(60), now),
        ];
        assert_eq!(
            admit(&open, ip(1), 10, 2),
            Admission::Evict {
                victim: 2,
                reason: EvictReason::PeerQuota
            }
        );
        let busy = [slot(1, 1, None, now), slot(2, 1, None, now)];
        assert_eq!(
            admit(&busy, ip(1), 10, 2),
            Admission::Refuse(RefuseReason::PeerBusy)
        );
    }

    #[test]
    fn a_full_table_evicts_from_the_peer_with_most_connections() {
        let now = Instant::now();
        // Peer 1 (the "apiserver") has the oldest idle connection, but peer
        // 2 holds more connections: peer 2's oldest idle one goes.
        let open = [
            slot(1, 1, Some(100), now),
            slot(2, 2, Some(3), now),
            slot(3, 2, Some(7), now),
            slot(4, 2, None, now),
        ];
        assert_eq!(
            admit(&open, ip(3), 4, 4),
            Admission::Evict {
                victim: 3,
                reason: EvictReason::Capacity
            }
        );
        // Busy connections are never chosen, even of the biggest peer.
        let open = [
            slot(1, 1, Some(100), now),
            slot(2, 2, None, now),
            slot(3, 2, None, now),
        ];
        assert_eq!(
            admit(&open, ip(3), 3, 3),
            Admission::Evict {
                victim: 1,
                reason: EvictReason::Capacity
            }
        );
        let open = [slot(1, 1, None, now), slot(2, 2, None, now)];
        assert_eq!(
            admit(&open, ip(3), 2, 2),
            Admission::Refuse(RefuseReason::AllBusy)
        );
    }

    #[test]
    fn the_table_marks_the_victim_closing_and_notifies_it() {
        let table = Table::new(2, 2);
        let Joined::Accepted { id: first, .. } = table.join(ip(1)) else {
            unreachable!("refused");
        };
        let Joined::Accepted { .. } = table.join(ip(1)) else {
            unreachable!("refused");
        };
        // Peer 1 is at its quota: its oldest idle connection makes room.
        let Joined::Accepted { evicted, .. } = table.join(ip(1)) else {
            unreachable!("refused");
        };
        assert_eq!(evicted, Some(EvictReason::PeerQuota));
        assert_eq!(table.len(), 3, "the victim stays until its task ends");
        let slots = table.lock();
        assert!(slots[&first].closing);
        drop(slots);
        table.leave(first);
        assert_eq!(table.len(), 2);
    }

    #[test]
    fn a_busy_connection_is_not_idle_until_its_request_ends() {
        let activity = Arc::new(Activity::new(Instant::now()));
        assert!(activity.idle_since().is_some());
        let guard = activity.begin();
        assert!(activity.idle_since().is_none());
        drop(guard);
        assert!(activity.idle_since().is_some());
    }

    #[tokio::test]
    async fn shutdown_waits_for_the_last_connection_and_no_longer_than_the_grace() {
        let table = Arc::new(Table::new(4, 4));
        assert!(table.close_all_and_wait(Duration::from_secs(1)).await);
        let Joined::Accepted { id, close, .. } = table.join(ip(1)) else {
            unreachable!("refused");
        };
        // The connection's task: leaves once asked to close, a while later.
        let task = {
            let table = table.clone();
            tokio::spawn(async move {
                close.notified().await;
                tokio::time::sleep(Duration::from_millis(100)).await;
                table.leave(id);
            })
        };
        let started = Instant::now();
        assert!(table.close_all_and_wait(Duration::from_secs(10)).await);
        assert!(
            started.elapsed() >= Duration::from_millis(100),
            "did not wait"
        );
        task.await.expect("task");
        // One that never leaves: the grace ends the wait.
        let Joined::Accepted { .. } = table.join(ip(2)) else {
            unreachable!("refused");
        };
        assert!(!table.close_all_and_wait(Duration::from_millis(200)).await);
    }
}
