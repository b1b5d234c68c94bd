//! Which revision the spec asks for.
//!
//! "Changed" is decided by comparing the desired pod template with each live
//! set's template, never by recomputing a hash: the Go operator's hashes
//! (FNV over a Go `spew` dump) cannot be reproduced outside Go, and our own
//! rendering may gain a harmless field in a later release. A live set whose
//! template says what the desired one says *is* the desired revision, and
//! keeps its name and label. Only when no set matches is a new revision
//! named, by a hash of the desired template.
//!
//! The comparison tolerates what the API server adds (defaults such as
//! `terminationMessagePath` or a probe's `timeoutSeconds`), and nothing else:
//! a field the live template has and the desired one lacks is a change,
//! unless it holds the documented server default.

use crate::json_subset::{self, Rules};
use emqx_crd::names::LABEL_POD_TEMPLATE_HASH;
use serde_json::Value;

/// What the API server fills in on a pod template when a field is omitted
/// (k8s.io/kubernetes pkg/apis/core/v1/defaults.go). A field present live
/// and absent from the desired template is no change only when it holds
/// exactly this default: a user who drops `imagePullPolicy: Never` gets an
/// upgrade back to the default.
fn is_server_default(key: &str, value: &Value) -> bool {
    let s = value.as_str();
    let n = value.as_i64();
    match key {
        "dnsPolicy" => s == Some("ClusterFirst"),
        "restartPolicy" => s == Some("Always"),
        "schedulerName" => s == Some("default-scheduler"),
        "terminationGracePeriodSeconds" => n == Some(30),
        "enableServiceLinks" => value.as_bool() == Some(true),
        "terminationMessagePath" => s == Some("/dev/termination-log"),
        "terminationMessagePolicy" => s == Some("File"),
        // IfNotPresent, or Always for an image without a tag or `:latest`.
        "imagePullPolicy" => matches!(s, Some("IfNotPresent" | "Always")),
        "protocol" => s == Some("TCP"),
        "timeoutSeconds" | "successThreshold" => n == Some(1),
        "periodSeconds" => n == Some(10),
        "failureThreshold" => n == Some(3),
        "scheme" => s == Some("HTTP"),
        "apiVersion" => s == Some("v1"),
        "defaultMode" => n == Some(420),
        "creationTimestamp" => value.is_null(),
        _ => false,
    }
}

/// True when the live template says everything the desired one says, and
/// adds only server defaults. The revision label is ignored on both sides.
pub fn template_matches(desired: &Value, live: &Value) -> bool {
    let desired = without_revision_label(desired);
    let live = without_revision_label(live);
    covers(&desired, &live)
}

fn without_revision_label(template: &Value) -> Value {
    let mut t = template.clone();
    if let Some(labels) = t
        .pointer_mut("/metadata/labels")
        .and_then(Value::as_object_mut)
    {
        // An emptied label map compares as absent (see `json_subset::is_empty`).
        labels.remove(LABEL_POD_TEMPLATE_HASH);
    }
    t
}

/// `live` covers `desired`: equal where desired speaks; extra keys only
/// where the server defaults them (or empty, which the server drops).
fn covers(desired: &Value, live: &Value) -> bool {
    json_subset::holds(
        desired,
        live,
        Rules {
            extra_live_key: |k, v| is_server_default(k, v) || json_subset::is_empty(v),
            null_matches_anything: false,
        },
    )
}

/// A live set as far as naming the revision goes.
#[derive(Debug, Clone)]
pub struct LiveTemplate<'a> {
    pub revision: &'a str,
    pub replicas: u32,
    pub created_at: u64,
    pub template: &'a Value,
}

/// The revision the desired template belongs to: an existing set's, when
/// one matches (preferring one that still has replicas, then the newest),
/// else a new name from [`revision_hash`].
pub fn resolve_revision(desired: &Value, live: &[LiveTemplate<'_>]) -> String {
    live.iter()
        .filter(|l| template_matches(desired, l.template))
        .max_by_key(|l| (l.replicas > 0, l.created_at))
        .map_or_else(|| revision_hash(desired), |l| l.revision.to_owned())
}

/// A short, stable name for a template: FNV-1a (64-bit) over the template's
/// canonical JSON (serde_json sorts object keys), without the revision
/// label, written in Kubernetes' "safe" alphabet (no vowels, no 0/1/3) so
/// it never spells words and never looks like a number.
pub fn revision_hash(template: &Value) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let canonical = without_revision_label(template).to_string();
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in canonical.bytes() {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    let mut out = String::with_capacity(10);
    for _ in 0..10 {
        let i = usize::try_from(hash % 27).unwrap_or(0);
        out.push(char::from(ALPHABET[i]));
        hash /= 27;
    }
    out
}

#[cfg(test)]
mod tests;
