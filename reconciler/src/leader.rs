//! Leader election through a `coordination.k8s.io/v1` Lease: of several
//! replicas, one reconciles. The decision is pure ([`next_step`]); the loop
//! only reads and writes the Lease with optimistic concurrency, so two
//! replicas can never both believe they hold it for longer than one lease.

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};
use std::time::Duration;

/// Timing of the lease (upstream: 30 s lease, 20 s renew deadline).
#[derive(Debug, Clone, Copy)]
pub struct LeaseTiming {
    pub duration: Duration,
    pub retry: Duration,
}

impl Default for LeaseTiming {
    fn default() -> Self {
        LeaseTiming {
            duration: Duration::from_secs(15),
            retry: Duration::from_secs(2),
        }
    }
}

/// What the Lease says, reduced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    pub holder: Option<String>,
    /// Seconds since the epoch of the last renewal.
    pub renewed_at: i64,
    pub duration_s: i64,
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

/// Decides what `me` does with the lease at `now`.
pub fn next_step(held: Option<&Held>, me: &str, now: i64) -> Step {
    match held {
        None => Step::Create,
        Some(h) if h.holder.as_deref() == Some(me) => Step::Renew,
        Some(h) if h.holder.as_deref().is_none_or(str::is_empty) => Step::TakeOver,
        Some(h) if now > h.renewed_at.saturating_add(h.duration_s) => Step::TakeOver,
        Some(_) => Step::Wait,
    }
}

fn held(lease: &Lease) -> Held {
    let spec = lease.spec.as_ref();
    Held {
        holder: spec.and_then(|s| s.holder_identity.clone()),
        renewed_at: spec
            .and_then(|s| s.renew_time.as_ref().or(s.acquire_time.as_ref()))
            .map_or(0, |t| t.0.as_second()),
        duration_s: spec
            .and_then(|s| s.lease_duration_seconds)
            .map_or(15, i64::from),
    }
}

/// A held Lease, renewed in the background.
pub struct Leadership {
    /// Turns `false` if the lease is lost (the caller should stop
    /// reconciling and exit, to be restarted).
    pub held: tokio::sync::watch::Receiver<bool>,
    renewal: tokio::task::JoinHandle<()>,
    api: Api<Lease>,
    name: String,
    me: String,
}

impl Leadership {
    /// Stops renewing and hands the Lease back, so a standby takes over at
    /// once instead of after the lease duration. Call only once nothing of
    /// this replica writes any more (the controllers have stopped).
    pub async fn release(self) {
        self.renewal.abort();
        let _ = self.renewal.await;
        let Ok(Some(mut lease)) = self.api.get_opt(&self.name).await else {
            return;
        };
        let ours = lease
            .spec
            .as_ref()
            .and_then(|s| s.holder_identity.as_deref())
            == Some(self.me.as_str());
        if !ours {
            return;
        }
        if let Some(spec) = lease.spec.as_mut() {
            spec.holder_identity = None;
        }
        // Guarded by resourceVersion: a Lease someone else took meanwhile is
        // left alone (409).
        match self
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => tracing::info!(lease = %self.name, "released leadership"),
            Err(error) => {
                tracing::warn!(%error, lease = %self.name, "could not release leadership")
            }
        }
    }
}

/// Holds a Lease for `me`: waits until acquired, then keeps renewing in the
/// background until released or lost.
pub async fn acquire(
    client: Client,
    namespace: &str,
    name: &str,
    me: &str,
    timing: LeaseTiming,
) -> Result<Leadership, kube::Error> {
    let api: Api<Lease> = Api::namespaced(client, namespace);
    loop {
        if try_hold(&api, name, me, timing).await? {
            break;
        }
        tokio::time::sleep(timing.retry).await;
    }
    tracing::info!(lease = name, identity = me, "acquired leadership");
    let (tx, rx) = tokio::sync::watch::channel(true);
    let (name, me) = (name.to_owned(), me.to_owned());
    let renewal_api = api.clone();
    let (renewal_name, renewal_me) = (name.clone(), me.clone());
    let renewal = tokio::spawn(async move {
        let (api, name, me) = (renewal_api, renewal_name, renewal_me);
        let renew_every = timing.duration / 3;
        let mut last_ok = tokio::time::Instant::now();
        loop {
            tokio::time::sleep(renew_every).await;
            match try_hold(&api, &name, &me, timing).await {
                Ok(true) => last_ok = tokio::time::Instant::now(),
                Ok(false) => break,
                // A transient API error: keep trying until the lease would
                // have expired for the others.
                Err(error) if last_ok.elapsed() < timing.duration => {
                    tracing::warn!(%error, "lease renewal failed; retrying");
                }
                Err(_) => break,
            }
        }
        tracing::error!(lease = %name, "lost leadership");
        let _ = tx.send(false);
    });
    Ok(Leadership {
        held: rx,
        renewal,
        api,
        name,
        me,
    })
}

/// One attempt: true when `me` holds the lease afterwards.
async fn try_hold(
    api: &Api<Lease>,
    name: &str,
    me: &str,
    timing: LeaseTiming,
) -> Result<bool, kube::Error> {
    let now = Timestamp::now();
    let existing = api.get_opt(name).await?;
    let step = next_step(existing.as_ref().map(held).as_ref(), me, now.as_second());
    let spec = |acquired: Option<MicroTime>| LeaseSpec {
        holder_identity: Some(me.to_owned()),
        lease_duration_seconds: i32::try_from(timing.duration.as_secs()).ok(),
        acquire_time: acquired.or(Some(MicroTime(now))),
        renew_time: Some(MicroTime(now)),
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
            let acquired = lease.spec.as_ref().and_then(|s| s.acquire_time.clone());
            lease.spec = Some(spec(acquired));
            api.replace(name, &PostParams::default(), &lease)
                .await
                .map(|_| ())
        }
        (Step::TakeOver, Some(mut lease)) => {
            let transitions = lease
                .spec
                .as_ref()
                .and_then(|s| s.lease_transitions)
                .unwrap_or(0);
            let mut s = spec(None);
            s.lease_transitions = Some(transitions.saturating_add(1));
            lease.spec = Some(s);
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

    fn h(holder: Option<&str>, renewed_at: i64) -> Held {
        Held {
            holder: holder.map(str::to_owned),
            renewed_at,
            duration_s: 15,
        }
    }

    #[test]
    fn one_holder_at_a_time() {
        assert_eq!(next_step(None, "a", 100), Step::Create);
        assert_eq!(next_step(Some(&h(Some("a"), 90)), "a", 100), Step::Renew);
        assert_eq!(next_step(Some(&h(Some("b"), 90)), "a", 100), Step::Wait);
        assert_eq!(
            next_step(Some(&h(Some("b"), 90)), "a", 105),
            Step::Wait,
            "exactly at expiry is still b's"
        );
        assert_eq!(next_step(Some(&h(Some("b"), 90)), "a", 106), Step::TakeOver);
        assert_eq!(next_step(Some(&h(None, 99)), "a", 100), Step::TakeOver);
        assert_eq!(next_step(Some(&h(Some(""), 99)), "a", 100), Step::TakeOver);
        // A clock far in the past never takes a live lease.
        assert_eq!(next_step(Some(&h(Some("b"), i64::MAX)), "a", 0), Step::Wait);
    }
}
