//! Whether an owned object needs a server-side apply this pass.
//!
//! A no-op apply still costs the API server a write request (admission,
//! a read-modify-compare against etcd, an audit record), and a reconciler
//! that re-applies everything on every pass of every cluster writes
//! thousands of times a minute while nothing changes. So an object is
//! applied only when what we render differs from what is live:
//!
//! - every field we render must hold the same value live (extra live fields
//!   are the server's defaults or other managers' and are not ours to judge);
//! - and the live object must carry the hash of what we rendered last time,
//!   in [`ANNOTATION_APPLIED`]. Without it, a field we stopped rendering
//!   (a label the user removed from a template) would linger live and never
//!   trigger the apply that removes it.

use crate::json_subset::{self, Rules};
use serde_json::Value;

/// Hash of the rendered object we last applied, on the object itself.
pub const ANNOTATION_APPLIED: &str = "apps.emqx.io/applied-hash";

/// Adds [`ANNOTATION_APPLIED`] to a rendered object: the hash of the object
/// as rendered, before the annotation. A value that is not a JSON object is
/// left alone (it cannot be applied anyway).
pub fn stamp(mut desired: Value) -> Value {
    let hash = crate::revision::revision_hash(&desired);
    if let Some(object) = desired.as_object_mut() {
        let metadata = object
            .entry("metadata")
            .or_insert_with(|| Value::Object(serde_json::Map::new()));
        if let Some(metadata) = metadata.as_object_mut() {
            let annotations = metadata
                .entry("annotations")
                .or_insert_with(|| Value::Object(serde_json::Map::new()));
            if annotations.is_null() {
                *annotations = Value::Object(serde_json::Map::new());
            }
            if let Some(annotations) = annotations.as_object_mut() {
                annotations.insert(ANNOTATION_APPLIED.to_owned(), Value::String(hash));
            }
        }
    }
    desired
}

/// True when `stamped` (a [`stamp`]ed rendering) must be applied over
/// `live` (the object as the API server returns it, `None` if absent).
pub fn needs_apply(stamped: &Value, live: Option<&Value>) -> bool {
    let Some(live) = live else {
        return true;
    };
    let applied = |v: &Value| {
        v.pointer("/metadata/annotations")
            .and_then(|a| a.get(ANNOTATION_APPLIED))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    applied(stamped).is_none() || applied(stamped) != applied(live) || !holds(stamped, live)
}

/// `live` holds every field of `desired` with the same value; extra live
/// fields are the server's defaults or other managers' and not ours to judge.
fn holds(desired: &Value, live: &Value) -> bool {
    json_subset::holds(
        desired,
        live,
        Rules {
            extra_live_key: |_, _| true,
            null_matches_anything: true,
        },
    )
}

#[cfg(test)]
mod tests;
