//! "Does the live object say what we rendered?": the one JSON comparison
//! behind drift detection ([`crate::drift`]) and revision matching
//! ([`crate::revision`]). They differ only in what a live object may add.

use serde_json::Value;

/// What a live value may have beyond the rendered one.
#[derive(Clone, Copy)]
pub struct Rules {
    /// Whether a key present live and absent from the rendering is no
    /// difference (the server's default, another manager's field).
    pub extra_live_key: fn(&str, &Value) -> bool,
    /// Whether a rendered `null` matches any live value.
    pub null_matches_anything: bool,
}

/// `live` holds every field of `desired` with the same value, and adds only
/// what `rules` allow. Numbers compare by value (`1` = `1.0`); lists as a
/// whole, element by element.
pub fn holds(desired: &Value, live: &Value, rules: Rules) -> bool {
    match (desired, live) {
        (Value::Object(d), Value::Object(l)) => {
            d.iter().all(|(k, dv)| match l.get(k) {
                Some(lv) => holds(dv, lv, rules),
                // The server drops empty maps, lists and nulls we render.
                None => is_empty(dv),
            }) && l
                .iter()
                .all(|(k, lv)| d.contains_key(k) || (rules.extra_live_key)(k, lv))
        }
        (Value::Array(d), Value::Array(l)) => {
            d.len() == l.len() && d.iter().zip(l).all(|(dv, lv)| holds(dv, lv, rules))
        }
        (Value::Number(d), Value::Number(l)) => d.as_f64() == l.as_f64(),
        (Value::Null, _) if rules.null_matches_anything => true,
        (d, l) => d == l,
    }
}

/// `null`, `{}` or `[]`: what the server drops, so absent live.
pub fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Object(m) => m.is_empty(),
        Value::Array(a) => a.is_empty(),
        _ => false,
    }
}
