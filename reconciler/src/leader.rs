//! Leader election through a `coordination.k8s.io/v1` Lease: of several
//! replicas, one reconciles. The decisions are pure ([`next_step`],
//! [`observe`], [`renewal_deadline`]); the loops only read and write the
//! Lease with optimistic concurrency (every write carries the
//! `resourceVersion` it read).
//!
//! The rules are client-go's `leaderelection`:
//!
//! * A standby judges expiry by **its own monotonic clock**: it notes when
//!   it last saw the Lease's record change, and takes over only
//!   `leaseDurationSeconds` after that. The holder's `renewTime` is never
//!   compared with the standby's wall clock, so clock skew between nodes
//!   cannot hand the Lease over early.
//! * The holder gives every renewal a **deadline**: if it has not renewed
//!   within `renew_deadline` of the last renewal it sent, it steps down
//!   (the process exits), whether the API answered with errors or not at
//!   all. `renew_deadline < lease_duration`, so it has stopped before any
//!   standby can believe the Lease expired: the standby's clock starts no
//!   earlier than the write it saw was sent.
//!
//! Why not the `kube-lease-manager` crate (0.13 builds against kube 5 and
//! k8s-openapi 0.29): it decides expiry as `renewTime + duration` against
//! the reader's `SystemTime` (skewed clocks hand the Lease over early or
//! late), and a holder's renewal call has no deadline, so a hung apiserver
//! connection leaves it believing it leads while a standby takes over.

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};
use std::time::Duration;
use tokio::time::Instant;

/// Timing of the election (client-go's names and meaning).
#[derive(Debug, Clone, Copy)]
pub struct LeaseTiming {
    /// How long a standby waits after it last saw the Lease change before
    /// it takes over.
    pub duration: Duration,
    /// How long the holder keeps trying to renew before it steps down.
    pub renew_deadline: Duration,
    /// Pause between attempts (renewals and acquisitions).
    pub retry: Duration,
}

impl Default for LeaseTiming {
    fn default() -> Self {
        LeaseTiming {
            duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry: Duration::from_secs(2),
        }
    }
}

impl LeaseTiming {
    /// Checks the relations the safety argument needs, naming the flag.
    pub fn validate(self) -> Result<Self, String> {
        if self.retry.is_zero() {
            return Err("the retry period must be more than 0".into());
        }
        if self.renew_deadline <= self.retry {
            return Err(format!(
                "the renew deadline ({:?}) must be longer than the retry period ({:?})",
                self.renew_deadline, self.retry
            ));
        }
        if self.duration <= self.renew_deadline {
            return Err(format!(
                "the lease duration ({:?}) must be longer than the renew deadline ({:?}): \
                 the holder must step down before a standby may take over",
                self.duration, self.renew_deadline
            ));
        }
        Ok(self)
    }
}

/// What the Lease says, reduced to what the election compares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub holder: Option<String>,
    /// `renewTime` as written (compared, never read as a clock).
    pub renew_time: Option<String>,
    pub duration_s: i64,
    pub transitions: i32,
}

/// A record and when this replica (by its monotonic clock) first saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    pub record: Record,
    pub since: Instant,
}

/// Remembers `record` seen at `now`: the clock restarts only when the
/// record changed (a renewal, a new holder, a release).
pub fn observe(previous: Option<Observed>, record: Record, now: Instant) -> Observed {
    match previous {
        Some(p) if p.record == record => p,
        _ => Observed { record, since: now },
    }
}

/// What to do with the Lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// No Lease yet: create it holding it.
    Create,
    /// Ours: renew it.
    Renew,
    /// Someone else's and expired (or released): take it over.
    TakeOver,
    /// Someone else's and live: wait.
    Wait,
}

/// Decides what `me` does, having observed the Lease as `observed` (`None`:
/// there is no Lease) at `now`.
pub fn next_step(observed: Option<&Observed>, me: &str, now: Instant) -> Step {
    let Some(o) = observed else {
        return Step::Create;
    };
    let duration = Duration::from_secs(u64::try_from(o.record.duration_s).unwrap_or(0));
    match o.record.holder.as_deref() {
        Some(h) if h == me => Step::Renew,
        None | Some("") => Step::TakeOver,
        Some(_) if now >= o.since + duration => Step::TakeOver,
        Some(_) => Step::Wait,
    }
}

/// The instant by which the holder must have renewed, the last successful
/// renewal having been sent at `last_sent`.
pub fn renewal_deadline(last_sent: Instant, timing: LeaseTiming) -> Instant {
    last_sent + timing.renew_deadline
}

fn record(lease: &Lease) -> Record {
    let spec = lease.spec.as_ref();
    Record {
        holder: spec.and_then(|s| s.holder_identity.clone()),
        renew_time: spec
            .and_then(|s| s.renew_time.as_ref())
            .map(|t| t.0.to_string()),
        duration_s: spec
            .and_then(|s| s.lease_duration_seconds)
            .map_or(15, i64::from),
        transitions: spec.and_then(|s| s.lease_transitions).unwrap_or(0),
    }
}

/// A held Lease, renewed in the background.
pub struct Leadership {
    /// Turns `false` when this replica steps down: the renewal was refused
    /// (someone else holds the Lease) or missed its deadline. The caller
    /// must stop acting at once (exit).
    pub held: tokio::sync::watch::Receiver<bool>,
    renewal: tokio::task::JoinHandle<()>,
    api: Api<Lease>,
    name: String,
    me: String,
}

impl Leadership {
    /// Stops renewing and hands the Lease back, so a standby takes over at
    /// once instead of after the lease duration. Call only once nothing of
    /// this replica writes any more (the controllers have stopped). Gives
    /// up after `limit` (an unreachable apiserver must not hold up exit).
    pub async fn release(self, limit: Duration) {
        self.renewal.abort();
        let _ = self.renewal.await;
        let name = self.name.clone();
        match tokio::time::timeout(limit, release(&self.api, &self.name, &self.me)).await {
            Ok(Ok(true)) => tracing::info!(lease = %name, "released leadership"),
            Ok(Ok(false)) => {}
            Ok(Err(error)) => {
                tracing::warn!(%error, lease = %name, "could not release leadership")
            }
            Err(_) => {
                tracing::warn!(lease = %name, ?limit, "could not release leadership in time")
            }
        }
    }
}

/// Clears the holder if it is still `me`; true when it did.
async fn release(api: &Api<Lease>, name: &str, me: &str) -> Result<bool, kube::Error> {
    let Some(mut lease) = api.get_opt(name).await? else {
        return Ok(false);
    };
    if record(&lease).holder.as_deref() != Some(me) {
        return Ok(false);
    }
    if let Some(spec) = lease.spec.as_mut() {
        spec.holder_identity = None;
    }
    // Guarded by resourceVersion: a Lease someone else took meanwhile is
    // left alone (409).
    match api.replace(name, &PostParams::default(), &lease).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
        Err(e) => Err(e),
    }
}

/// Holds a Lease for `me`: waits until acquired, then keeps renewing in the
/// background until released or stepped down from.
pub async fn acquire(
    client: Client,
    namespace: &str,
    name: &str,
    me: &str,
    timing: LeaseTiming,
) -> Leadership {
    let api: Api<Lease> = Api::namespaced(client, namespace);
    let mut observed = None;
    let last_sent = loop {
        let sent = Instant::now();
        // A hung call must not stall the loop: the Lease is read afresh on
        // the next attempt.
        let attempt = tokio::time::timeout(
            timing.renew_deadline,
            try_hold(&api, name, me, timing, &mut observed),
        )
        .await;
        match attempt {
            Ok(Ok(true)) => break sent,
            Ok(Ok(false)) => {}
            Ok(Err(error)) => tracing::warn!(%error, lease = name, "reading the lease failed"),
            Err(_) => tracing::warn!(lease = name, "reading the lease timed out"),
        }
        tokio::time::sleep(timing.retry).await;
    };
    tracing::info!(lease = name, identity = me, "acquired leadership");
    let (tx, rx) = tokio::sync::watch::channel(true);
    let renewal = tokio::spawn(keep_renewing(
        api.clone(),
        name.to_owned(),
        me.to_owned(),
        timing,
        last_sent,
        tx,
    ));
    Leadership {
        held: rx,
        renewal,
        api,
        name: name.to_owned(),
        me: me.to_owned(),
    }
}

/// Renews every `retry` until a renewal is refused or the deadline passes,
/// then says so on `held`.
async fn keep_renewing(
    api: Api<Lease>,
    name: String,
    me: String,
    timing: LeaseTiming,
    mut last_sent: Instant,
    held: tokio::sync::watch::Sender<bool>,
) {
    let mut observed = None;
    loop {
        tokio::time::sleep(timing.retry).await;
        let deadline = renewal_deadline(last_sent, timing);
        let sent = Instant::now();
        let attempt =
            tokio::time::timeout_at(deadline, try_hold(&api, &name, &me, timing, &mut observed))
                .await;
        match attempt {
            Ok(Ok(true)) => last_sent = sent,
            Ok(Ok(false)) => {
                tracing::error!(lease = %name, "the lease is held by another replica; stepping down");
                break;
            }
            Ok(Err(error)) if Instant::now() < deadline => {
                tracing::warn!(%error, lease = %name, "lease renewal failed; retrying");
            }
            Ok(Err(error)) => {
                tracing::error!(%error, lease = %name, "lease not renewed before the renew deadline; stepping down");
                break;
            }
            Err(_) => {
                tracing::error!(lease = %name, deadline = ?timing.renew_deadline, "lease renewal hung past the renew deadline; stepping down");
                break;
            }
        }
    }
    let _ = held.send(false);
}

/// One attempt: true when `me` holds the lease afterwards.
async fn try_hold(
    api: &Api<Lease>,
    name: &str,
    me: &str,
    timing: LeaseTiming,
    observed: &mut Option<Observed>,
) -> Result<bool, kube::Error> {
    let existing = api.get_opt(name).await?;
    let previous = observed.take();
    *observed = existing
        .as_ref()
        .map(|lease| observe(previous, record(lease), Instant::now()));
    let step = next_step(observed.as_ref(), me, Instant::now());
    let now = MicroTime(Timestamp::now());
    let spec = |acquired: Option<MicroTime>| LeaseSpec {
        holder_identity: Some(me.to_owned()),
        lease_duration_seconds: i32::try_from(timing.duration.as_secs()).ok(),
        acquire_time: acquired.or(Some(now.clone())),
        renew_time: Some(now.clone()),
        ..LeaseSpec::default()
    };
    let result = match (step, existing) {
        (Step::Wait, _) => return Ok(false),
        (Step::Create, _) => {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(name.to_owned()),
                    ..ObjectMeta::default()
                },
                spec: Some(spec(None)),
            };
            api.create(&PostParams::default(), &lease).await.map(|_| ())
        }
        (Step::Renew, Some(mut lease)) => {
            let previous = lease.spec.take().unwrap_or_default();
            let mut renewed = spec(previous.acquire_time);
            renewed.lease_transitions = previous.lease_transitions;
            lease.spec = Some(renewed);
            api.replace(name, &PostParams::default(), &lease)
                .await
                .map(|_| ())
        }
        (Step::TakeOver, Some(mut lease)) => {
            let transitions = record(&lease).transitions;
            let mut taken = spec(None);
            taken.lease_transitions = Some(transitions.saturating_add(1));
            lease.spec = Some(taken);
            api.replace(name, &PostParams::default(), &lease)
                .await
                .map(|_| ())
        }
        (_, None) => return Ok(false),
    };
    match result {
        Ok(()) => Ok(true),
        // Someone else wrote first (resourceVersion conflict or create race).
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(holder: Option<&str>, renewed: &str) -> Record {
        Record {
            holder: holder.map(str::to_owned),
            renew_time: Some(renewed.to_owned()),
            duration_s: 15,
            transitions: 0,
        }
    }

    #[test]
    fn a_live_lease_of_another_waits_out_its_duration_from_when_it_was_seen() {
        let t0 = Instant::now();
        let seen = observe(None, rec(Some("b"), "10:00:00"), t0);
        assert_eq!(next_step(Some(&seen), "a", t0), Step::Wait);
        assert_eq!(
            next_step(Some(&seen), "a", t0 + Duration::from_millis(14_999)),
            Step::Wait
        );
        assert_eq!(
            next_step(Some(&seen), "a", t0 + Duration::from_secs(15)),
            Step::TakeOver
        );
    }

    #[test]
    fn a_renewal_restarts_the_standbys_clock_whatever_the_renew_time_says() {
        let t0 = Instant::now();
        let seen = observe(None, rec(Some("b"), "10:00:00"), t0);
        // The same record read again does not restart the clock…
        let again = observe(
            Some(seen.clone()),
            rec(Some("b"), "10:00:00"),
            t0 + Duration::from_secs(10),
        );
        assert_eq!(again.since, t0);
        // …a renewal does, even one whose renewTime is far in the past (a
        // holder whose clock is behind): the standby's clock decides.
        let renewed = observe(
            Some(again),
            rec(Some("b"), "1970-01-01T00:00:01Z"),
            t0 + Duration::from_secs(12),
        );
        assert_eq!(renewed.since, t0 + Duration::from_secs(12));
        assert_eq!(
            next_step(Some(&renewed), "a", t0 + Duration::from_secs(20)),
            Step::Wait
        );
        assert_eq!(
            next_step(Some(&renewed), "a", t0 + Duration::from_secs(27)),
            Step::TakeOver
        );
    }

    #[test]
    fn own_missing_or_released_leases() {
        let t0 = Instant::now();
        assert_eq!(next_step(None, "a", t0), Step::Create);
        let own = observe(None, rec(Some("a"), "x"), t0);
        assert_eq!(next_step(Some(&own), "a", t0), Step::Renew);
        let released = observe(None, rec(None, "x"), t0);
        assert_eq!(next_step(Some(&released), "a", t0), Step::TakeOver);
        let empty = observe(None, rec(Some(""), "x"), t0);
        assert_eq!(next_step(Some(&empty), "a", t0), Step::TakeOver);
    }

    #[test]
    fn the_holder_steps_down_before_a_standby_may_take_over() {
        let timing = LeaseTiming::default().validate().expect("default timing");
        // The standby saw the renewal no earlier than it was sent.
        let sent = Instant::now();
        let seen = observe(None, rec(Some("b"), "r"), sent);
        let step_down = renewal_deadline(sent, timing);
        assert_eq!(next_step(Some(&seen), "a", step_down), Step::Wait);
        assert!(step_down < seen.since + timing.duration);
    }

    #[test]
    fn timing_that_would_let_two_act_is_refused() {
        let t = |d, r, p| LeaseTiming {
            duration: Duration::from_secs(d),
            renew_deadline: Duration::from_secs(r),
            retry: Duration::from_secs(p),
        };
        assert!(t(15, 10, 2).validate().is_ok());
        let err = t(10, 10, 2).validate().expect_err("deadline = duration");
        assert!(err.contains("lease duration"), "{err}");
        assert!(t(15, 2, 2).validate().is_err());
        assert!(t(15, 10, 0).validate().is_err());
    }
}
