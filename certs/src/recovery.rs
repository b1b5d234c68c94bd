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
/// trust (API reads) only when a new CA is coming.
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

/// Decides the write for `read` at `now`. `trusted_elsewhere` is the PEM text
/// of every CA bundle clients may trust besides the Secret: what this replica
/// serves and every injected `caBundle` (hostile: anything may be in there).
/// It is only looked at when a new CA is made.
pub fn decide(
    now: SystemTime,
    read: &SecretRead,
    identity: &ServiceIdentity,
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
    let plan = plan_rotation(now, &stored.bundle, identity);
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
