//! What the self-managed mode writes to its Secret, given what it read. Pure:
//! the caller passes the clock, the Secret as read, and the CAs that clients
//! may trust right now; the answer says what to build and how to guard the
//! write. The keeper (`keeper.rs`) does the I/O.
//!
//! # Recovery with overlap
//!
//! A Secret that is deleted, or edited into something unreadable, must not
//! cost TLS failures. When one replica replaces it with a new CA, the other
//! replicas still serve the leaf of the old CA until their next refresh, and
//! the API server may still hold a `caBundle` that knows only the old CA. So
//! the new bundle is the new CA *followed by* every CA a client may trust or
//! a replica may serve right now ([`Decision`]'s `keep`): the CAs of the Secret
//! if any still parse, the CAs of the bundle this replica serves (resolver),
//! and the CAs injected as `caBundle` into the webhook configurations and
//! CRDs. Expired and unparsable certificates are dropped; at most
//! [`MAX_KEPT_CAS`] are kept.
//!
//! # When the old CAs go
//!
//! A bundle that carries old CAs also carries a deadline (the Secret
//! annotation [`OVERLAP_UNTIL_ANNOTATION`]), [`OVERLAP_WINDOW`] after the write.
//! Every replica re-reads the Secret and installs its leaf once per refresh
//! period (30 s by default, at most 3600 s as the chart's schema allows), and
//! a replica that starts reads the Secret before it listens. So once the window
//! is over every replica that can reach the API server serves the new leaf,
//! and the old CAs only widen trust: the first refresh after the deadline
//! drops them ([`Change::DropOverlap`]) and re-injects `caBundle`. The window is
//! six times the longest refresh period the chart allows, so a few failed
//! refreshes in a row do not break anything; it is bounded, so a CA deleted
//! because its key leaked stops being trusted within hours, not years.
//!
//! # Races
//!
//! Every write is guarded ([`Guard`]): a Secret that was absent is *created*
//! (409 AlreadyExists: another replica won, re-read and serve theirs); one that
//! was read is *replaced at the `resourceVersion` read* (409 Conflict: the
//! same). A Secret without a `resourceVersion` is never overwritten. So two
//! replicas deciding at once write once, and both serve the winner's pair.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::authority::{first_pem_certificate, pem_certificates};
use crate::rotation::{RotationPlan, parse_validity, plan_rotation};
use crate::store::StoredBundle;
use crate::{CertError, ServiceIdentity};

/// How long old CAs stay in the bundle after a new CA is written.
pub const OVERLAP_WINDOW: Duration = Duration::from_secs(6 * 60 * 60);
/// The most old CAs carried after a new one, so a hostile `caBundle` full of
/// certificates cannot grow the Secret.
pub const MAX_KEPT_CAS: usize = 4;
/// Secret annotation: Unix seconds after which the old CAs are dropped.
pub const OVERLAP_UNTIL_ANNOTATION: &str = "apps.emqx.io/ca-overlap-until";

/// What reading the certificate Secret found.
#[derive(Debug, Clone)]
pub enum SecretRead {
    /// No such Secret.
    Absent,
    /// The Secret exists but is not a usable bundle (garbage PEM, missing key).
    Unreadable {
        /// The version read, which the replacement must carry.
        resource_version: Option<String>,
        /// Why it cannot be used (for the log).
        reason: String,
        /// Its `ca.crt` text, if it had one: clients may trust those CAs.
        ca_pem: Option<String>,
    },
    /// A bundle.
    Readable(StoredBundle),
}

/// How a Secret write is made safe against another replica's write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Guard {
    /// Create; fails with 409 if it exists.
    Create,
    /// Replace at exactly this `resourceVersion`; fails with 409 if it moved.
    Replace {
        /// The version read.
        resource_version: String,
    },
}

/// The bundle to write, relative to the one read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A new CA and leaf, followed by `keep` (PEM CAs still trusted).
    NewCa {
        /// Old CAs kept until the overlap deadline, in order.
        keep: Vec<String>,
    },
    /// Same CAs, a new leaf.
    ReissueServing,
    /// The overlap is over: same CA and leaf, old CAs dropped.
    DropOverlap,
    /// Old CAs without a (credible) deadline: same material, deadline set now.
    StartOverlapClock,
}

/// One write to make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Write {
    /// How it is guarded.
    pub guard: Guard,
    /// What changes.
    pub change: Change,
    /// The deadline written with it (`None`: the bundle has no old CAs).
    pub overlap_until: Option<SystemTime>,
}

/// What to do with the Secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Serve the bundle read; write nothing.
    Serve,
    /// Write, then serve what was written (or the winner's, on 409).
    Write(Write),
}

/// The rotation the Secret as read calls for: an absent or unreadable Secret
/// needs a new CA. The keeper asks this first, to gather the CAs clients
/// trust (API reads) only when a new CA is coming, and hands it to
/// [`decide`].
pub fn rotation_for(
    now: SystemTime,
    read: &SecretRead,
    identity: &ServiceIdentity,
) -> RotationPlan {
    match read {
        SecretRead::Absent | SecretRead::Unreadable { .. } => RotationPlan::ReissueAll,
        SecretRead::Readable(stored) => plan_rotation(now, &stored.bundle, identity),
    }
}

/// Decides the write for `read` at `now`; `plan` is [`rotation_for`] of the
/// same `now` and `read`. `trusted_elsewhere` is the PEM text of every CA
/// bundle clients may trust besides the Secret: what this replica serves and
/// every injected `caBundle` (hostile: anything may be in there). It is only
/// looked at when a new CA is made.
pub fn decide(
    now: SystemTime,
    read: &SecretRead,
    plan: RotationPlan,
    trusted_elsewhere: &[String],
) -> Result<Decision, CertError> {
    let new_ca = |guard: Guard, secret_cas: Option<&str>| {
        let sources = secret_cas
            .into_iter()
            .chain(trusted_elsewhere.iter().map(String::as_str));
        let keep = still_trusted(now, sources);
        let overlap_until = (!keep.is_empty()).then(|| now + OVERLAP_WINDOW);
        Ok(Decision::Write(Write {
            guard,
            change: Change::NewCa { keep },
            overlap_until,
        }))
    };
    let stored = match read {
        SecretRead::Absent => return new_ca(Guard::Create, None),
        SecretRead::Unreadable {
            resource_version,
            ca_pem,
            ..
        } => return new_ca(replace_guard(resource_version)?, ca_pem.as_deref()),
        SecretRead::Readable(stored) => stored,
    };
    let write = |change, overlap_until| {
        Ok(Decision::Write(Write {
            guard: replace_guard(&stored.resource_version)?,
            change,
            overlap_until,
        }))
    };
    if plan == RotationPlan::ReissueAll {
        return new_ca(
            replace_guard(&stored.resource_version)?,
            Some(&stored.bundle.ca_pem),
        );
    }
    let has_old_cas = pem_certificates(&stored.bundle.ca_pem).len() > 1;
    // A deadline further away than one window was not written by a replica
    // (hand edit, clock jump): it would keep old CAs trusted indefinitely.
    let deadline = stored
        .overlap_until
        .filter(|until| *until <= now + OVERLAP_WINDOW);
    if plan == RotationPlan::ReissueServing {
        // The old CAs ride along unchanged; their deadline too.
        let until = has_old_cas.then(|| deadline.unwrap_or(now + OVERLAP_WINDOW));
        return write(Change::ReissueServing, until);
    }
    match (has_old_cas, deadline) {
        // A stray deadline without old CAs drops nothing: leave it.
        (false, _) => Ok(Decision::Serve),
        (true, Some(until)) if now >= until => write(Change::DropOverlap, None),
        (true, Some(_)) => Ok(Decision::Serve),
        (true, None) => write(Change::StartOverlapClock, Some(now + OVERLAP_WINDOW)),
    }
}

fn replace_guard(resource_version: &Option<String>) -> Result<Guard, CertError> {
    match resource_version {
        Some(rv) if !rv.is_empty() => Ok(Guard::Replace {
            resource_version: rv.clone(),
        }),
        _ => Err(CertError::Missing {
            what: "resourceVersion of the certificate Secret (refusing an unguarded replace)"
                .into(),
        }),
    }
}

/// The distinct certificates of `sources`, in order, that parse and are not
/// expired at `now`; at most [`MAX_KEPT_CAS`].
pub fn still_trusted<'a>(now: SystemTime, sources: impl Iterator<Item = &'a str>) -> Vec<String> {
    let mut kept: Vec<(Vec<u8>, String)> = Vec::new();
    for block in sources.flat_map(pem_certificates) {
        if kept.len() == MAX_KEPT_CAS {
            break;
        }
        let Ok((_, pem)) = x509_parser::pem::parse_x509_pem(block.as_bytes()) else {
            continue;
        };
        let Ok(validity) = parse_validity(&block) else {
            continue;
        };
        if validity.not_after <= now || kept.iter().any(|(der, _)| *der == pem.contents) {
            continue;
        }
        kept.push((pem.contents, block));
    }
    kept.into_iter().map(|(_, block)| block).collect()
}

/// The current CA of a bundle without the old ones.
pub fn without_old_cas(ca_pem: &str) -> String {
    first_pem_certificate(ca_pem).unwrap_or_default()
}

/// The annotation value for a deadline.
pub fn format_deadline(until: SystemTime) -> String {
    until
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
        .to_string()
}

/// Reads the annotation value; `None` for anything but Unix seconds.
pub fn parse_deadline(text: &str) -> Option<SystemTime> {
    let secs: u64 = text.trim().parse().ok()?;
    UNIX_EPOCH.checked_add(Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::CertBundle;
    use crate::authority::new_bundle;

    const DAY: Duration = Duration::from_secs(86_400);

    /// [`super::decide`] with the plan the keeper hands it.
    fn decide(
        now: SystemTime,
        read: &SecretRead,
        identity: &ServiceIdentity,
        trusted_elsewhere: &[String],
    ) -> Result<Decision, CertError> {
        super::decide(
            now,
            read,
            rotation_for(now, read, identity),
            trusted_elsewhere,
        )
    }

    fn id() -> ServiceIdentity {
        ServiceIdentity {
            service: "emqx-webhook".into(),
            namespace: "emqx".into(),
            cluster_domain: "cluster.local".into(),
            extra_names: Vec::new(),
        }
    }

    fn bundle(now: SystemTime) -> CertBundle {
        new_bundle(&id(), now, None).expect("bundle")
    }

    fn stored(bundle: CertBundle, rv: &str, overlap_until: Option<SystemTime>) -> SecretRead {
        SecretRead::Readable(StoredBundle {
            bundle,
            resource_version: Some(rv.into()),
            overlap_until,
        })
    }

    fn new_ca(d: Decision) -> (Guard, Vec<String>, Option<SystemTime>) {
        match d {
            Decision::Write(Write {
                guard,
                change: Change::NewCa { keep },
                overlap_until,
            }) => (guard, keep, overlap_until),
            other => panic!("expected a new CA, got {other:?}"),
        }
    }

    const GARBAGE_PEM: &str =
        "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n";

    #[test]
    fn a_deleted_secret_is_created_keeping_the_served_and_injected_cas() {
        let now = SystemTime::now();
        let served = bundle(now);
        let other = bundle(now);
        let injected = format!("{}{}", served.ca_pem, other.ca_pem);
        let trusted = [
            served.ca_pem.clone(),
            injected,
            "junk".into(),
            GARBAGE_PEM.into(),
        ];
        let d = decide(now, &SecretRead::Absent, &id(), &trusted).expect("decide");
        let (guard, keep, until) = new_ca(d);
        assert_eq!(guard, Guard::Create);
        assert_eq!(
            keep,
            vec![served.ca_pem, other.ca_pem],
            "each once, garbage dropped"
        );
        assert_eq!(until, Some(now + OVERLAP_WINDOW));
    }

    #[test]
    fn a_corrupt_secret_is_replaced_at_the_version_read_keeping_its_ca() {
        let now = SystemTime::now();
        let old = bundle(now);
        let read = SecretRead::Unreadable {
            resource_version: Some("7".into()),
            reason: "tls.key is missing".into(),
            ca_pem: Some(format!("{GARBAGE_PEM}{}", old.ca_pem)),
        };
        let (guard, keep, until) = new_ca(decide(now, &read, &id(), &[]).expect("decide"));
        assert_eq!(
            guard,
            Guard::Replace {
                resource_version: "7".into()
            }
        );
        assert_eq!(keep, vec![old.ca_pem]);
        assert!(until.is_some());
    }

    #[test]
    fn a_secret_without_a_resource_version_is_never_overwritten() {
        let now = SystemTime::now();
        for rv in [None, Some(String::new())] {
            let read = SecretRead::Unreadable {
                resource_version: rv,
                reason: "garbage".into(),
                ca_pem: None,
            };
            let err = decide(now, &read, &id(), &[]).expect_err("unguarded");
            assert!(err.to_string().contains("resourceVersion"), "{err}");
        }
        // Serving a readable one needs no write, so no version either.
        let read = SecretRead::Readable(StoredBundle {
            bundle: bundle(now),
            resource_version: None,
            overlap_until: None,
        });
        assert_eq!(
            decide(now, &read, &id(), &[]).expect("serve"),
            Decision::Serve
        );
    }

    #[test]
    fn a_ca_without_key_or_with_a_garbage_key_gets_a_new_ca_that_keeps_it() {
        let now = SystemTime::now();
        for key in [
            None,
            Some("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n".into()),
        ] {
            let mut b = bundle(now);
            b.ca_key_pem = key;
            let (guard, keep, _) =
                new_ca(decide(now, &stored(b.clone(), "3", None), &id(), &[]).expect("decide"));
            assert_eq!(
                guard,
                Guard::Replace {
                    resource_version: "3".into()
                }
            );
            assert_eq!(keep, vec![b.ca_pem]);
        }
    }

    #[test]
    fn an_expired_ca_is_replaced_and_not_kept_anywhere() {
        let now = SystemTime::now();
        let expired = bundle(now - crate::authority::CA_LIFETIME - DAY);
        let (_, keep, until) = new_ca(
            decide(
                now,
                &stored(expired.clone(), "3", None),
                &id(),
                std::slice::from_ref(&expired.ca_pem),
            )
            .expect("decide"),
        );
        assert!(keep.is_empty(), "nobody can verify against an expired CA");
        assert_eq!(until, None, "nothing to drop later");
    }

    #[test]
    fn a_hostile_ca_bundle_keeps_at_most_a_few_cas() {
        let now = SystemTime::now();
        let many: String = (0..MAX_KEPT_CAS + 3).map(|_| bundle(now).ca_pem).collect();
        let flood = GARBAGE_PEM.repeat(10_000);
        let kept = still_trusted(now, [flood.as_str(), many.as_str()].into_iter());
        assert_eq!(kept.len(), MAX_KEPT_CAS);
    }

    #[test]
    fn old_cas_stay_until_the_deadline_then_go() {
        let now = SystemTime::now();
        let old = bundle(now);
        let (_, keep, until) = new_ca(
            decide(
                now,
                &SecretRead::Absent,
                &id(),
                std::slice::from_ref(&old.ca_pem),
            )
            .expect("new"),
        );
        let until = until.expect("deadline");
        let mut next = crate::authority::new_bundle_keeping(&id(), now, &keep).expect("build");
        assert!(next.ca_pem.ends_with(&old.ca_pem));
        let read = |at| stored(next.clone(), "9", at);

        // Every replica refreshes well within the window: nothing to do.
        let before = until - Duration::from_secs(1);
        assert_eq!(
            decide(before, &read(Some(until)), &id(), &[]).expect("in"),
            Decision::Serve
        );
        // Then the old CA goes, guarded by the version read.
        assert_eq!(
            decide(until, &read(Some(until)), &id(), &[]).expect("over"),
            Decision::Write(Write {
                guard: Guard::Replace {
                    resource_version: "9".into()
                },
                change: Change::DropOverlap,
                overlap_until: None,
            })
        );
        // Old CAs with no deadline, or one no replica could have written
        // (beyond one window), get a deadline from now, never a drop.
        for at in [None, Some(now + OVERLAP_WINDOW * 1000)] {
            let d = decide(now, &read(at), &id(), &[]).expect("clock");
            let Decision::Write(w) = d else {
                panic!("expected a write, got {d:?}")
            };
            assert_eq!(w.change, Change::StartOverlapClock);
            assert_eq!(w.overlap_until, Some(now + OVERLAP_WINDOW));
        }
        // After the drop the bundle holds one CA and the steady state writes nothing.
        next.ca_pem = without_old_cas(&next.ca_pem);
        assert_eq!(next.ca_pem.matches("BEGIN CERTIFICATE").count(), 1);
        assert_eq!(
            decide(until, &stored(next, "10", None), &id(), &[]).expect("steady"),
            Decision::Serve
        );
    }

    #[test]
    fn a_serving_reissue_keeps_the_old_cas_and_their_deadline() {
        let now = SystemTime::now();
        let old = bundle(now);
        let b = crate::authority::new_bundle_keeping(&id(), now, &[old.ca_pem]).expect("b");
        let mut broken_leaf = b.clone();
        broken_leaf.key_pem = bundle(now).key_pem;
        let until = now + Duration::from_secs(60);
        let d = decide(now, &stored(broken_leaf, "4", Some(until)), &id(), &[]).expect("d");
        let Decision::Write(w) = d else {
            panic!("expected a write, got {d:?}")
        };
        assert_eq!(
            w.change,
            Change::ReissueServing,
            "a mismatched tls.key is repaired"
        );
        assert_eq!(w.overlap_until, Some(until));
    }

    /// The window's reasoning (module doc, README: "every replica re-reads
    /// the Secret at least hourly") rests on the chart's largest refresh
    /// period: raising it there must fail here.
    #[test]
    fn the_window_holds_six_of_the_longest_refresh_period_the_chart_allows() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../charts/emqx-operator/values.schema.json"
        );
        let schema: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).expect("chart schema"))
                .expect("schema is JSON");
        let longest = schema
            .pointer(
                "/properties/webhook/properties/certificates/properties/refreshSeconds/maximum",
            )
            .and_then(serde_json::Value::as_u64)
            .expect("refreshSeconds has a maximum");
        assert!(
            OVERLAP_WINDOW >= Duration::from_secs(6 * longest),
            "window {OVERLAP_WINDOW:?}, chart allows refreshes every {longest} s"
        );
    }

    #[test]
    fn deadlines_round_trip_and_garbage_is_none() {
        let t = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        assert_eq!(parse_deadline(&format_deadline(t)), Some(t));
        for junk in ["", "soon", "-5", "1e9", "99999999999999999999999"] {
            assert_eq!(parse_deadline(junk), None, "{junk}");
        }
    }

    /// Two replicas against a model of the API server's guarded writes: both
    /// read the same Secret, both decide, only the first write lands, and the
    /// loser, re-reading, serves the winner's bundle instead of writing again.
    #[test]
    fn two_replicas_racing_write_once_and_agree_on_the_winner() {
        struct Model {
            rv: u64,
            secret: Option<CertBundle>,
            overlap_until: Option<SystemTime>,
        }
        impl Model {
            fn read(&self) -> SecretRead {
                match &self.secret {
                    None => SecretRead::Absent,
                    Some(b) => stored(b.clone(), &self.rv.to_string(), self.overlap_until),
                }
            }
            /// The API server's rule: create only if absent, replace only at the current version.
            fn write(&mut self, w: &Write, b: CertBundle) -> bool {
                let ok = match &w.guard {
                    Guard::Create => self.secret.is_none(),
                    Guard::Replace { resource_version } => {
                        self.secret.is_some() && *resource_version == self.rv.to_string()
                    }
                };
                if ok {
                    self.rv += 1;
                    self.secret = Some(b);
                    self.overlap_until = w.overlap_until;
                }
                ok
            }
        }
        let now = SystemTime::now();
        let old = bundle(now);
        let build = |d: Decision| match d {
            Decision::Write(w) => {
                let Change::NewCa { keep } = &w.change else {
                    panic!("expected a new CA, got {w:?}")
                };
                let b = crate::authority::new_bundle_keeping(&id(), now, keep).expect("build");
                (w, b)
            }
            Decision::Serve => panic!("expected a write"),
        };
        // Deleted, then garbled: both starting points of a recovery.
        for start in [None, Some("garbled")] {
            let mut api = Model {
                rv: 7,
                secret: None,
                overlap_until: None,
            };
            let read = match start {
                None => SecretRead::Absent,
                Some(_) => SecretRead::Unreadable {
                    resource_version: Some("7".into()),
                    reason: "garbled".into(),
                    ca_pem: None,
                },
            };
            if start.is_some() {
                // Something stands at version 7; the model only needs it to exist.
                api.secret = Some(bundle(now));
            }
            let trusted = [old.ca_pem.clone()];
            let (wa, ba) = build(decide(now, &read, &id(), &trusted).expect("a"));
            let (wb, bb) = build(decide(now, &read, &id(), &trusted).expect("b"));
            assert!(api.write(&wa, ba.clone()), "a wins");
            assert!(
                !api.write(&wb, bb.clone()),
                "b's guarded write must not land"
            );
            assert_eq!(api.secret.as_ref(), Some(&ba), "a's CA is not overwritten");
            // b re-reads after its 409 and serves a's bundle, old CA still in it.
            assert_eq!(
                decide(now, &api.read(), &id(), &[]).expect("b again"),
                Decision::Serve
            );
            assert!(ba.ca_pem.ends_with(&old.ca_pem));
        }
    }
}
