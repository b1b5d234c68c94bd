//! Schema check of the `evacuation/start` body, as EMQX's hocon schema does it:
//! unknown fields, non-positive rates, bad durations and empty `migrate_to`
//! are rejected with a message naming the field.

use std::time::Duration;

use serde_json::Value;

use super::evacuation::EvacuationOptions;
use super::version::BrokerVersion;

/// Largest duration EMQX accepts for `wait_*` fields, in seconds.
const MAX_DURATION_S: u64 = 4_294_967;

/// Parses and validates a start body with the newest schema (e5.1.0 on).
pub fn parse_evacuation_start(body: &[u8]) -> Result<EvacuationOptions, String> {
    parse_evacuation_start_as(
        &BrokerVersion {
            major: 5,
            minor: 8,
            patch: 9,
        },
        body,
    )
}

/// Parses and validates a start body as a node of `version` does. An empty
/// body means all defaults.
///
/// The schema is the serving node's: `fields(rebalance_evacuation_start)` in
/// `apps/emqx_node_rebalance/src/emqx_node_rebalance_api.erl` has no
/// `wait_health_check` at e5.0.4 (it arrives in e5.1.0, #10967), and its
/// `wait_takeover` is integer seconds there, so e5.0.x rejects the field as
/// unknown and a string duration as a bad type. 4.4 Enterprise (closed
/// source) has no `wait_health_check` for evacuation either (docs
/// `release-4.4`: `advanced/rebalancing.md`; emqx-api.md §12).
pub fn parse_evacuation_start_as(
    version: &BrokerVersion,
    body: &[u8],
) -> Result<EvacuationOptions, String> {
    let knows_wait_health_check = (version.major, version.minor) >= (5, 1);
    let string_durations = (version.major, version.minor) >= (5, 1);
    let mut options = EvacuationOptions::default();
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(options);
    }
    let value: Value =
        serde_json::from_slice(body).map_err(|e| format!("request body is not JSON: {e}"))?;
    let Value::Object(fields) = value else {
        return Err("request body must be a JSON object".into());
    };
    for (name, value) in &fields {
        match name.as_str() {
            "wait_health_check" if knows_wait_health_check => {
                options.wait_health_check = duration(name, value)?;
            }
            "wait_takeover" if !string_durations && !value.is_u64() => {
                return Err(format!(
                    "{name}: expected integer seconds, got {}",
                    short(value)
                ));
            }
            "wait_takeover" => options.wait_takeover = duration(name, value)?,
            "conn_evict_rate" => options.conn_evict_rate = rate(name, value)?,
            "sess_evict_rate" => options.sess_evict_rate = rate(name, value)?,
            "redirect_to" => match value {
                Value::String(s) => options.redirect_to = Some(s.clone()),
                _ => return Err(format!("{name}: expected a string")),
            },
            "migrate_to" => options.migrate_to = Some(node_list(name, value)?),
            other => return Err(unknown(other)),
        }
    }
    Ok(options)
}

fn unknown(field: &str) -> String {
    let shown: String = field.chars().take(64).collect();
    format!("unknown field `{shown}`")
}

fn rate(name: &str, value: &Value) -> Result<u32, String> {
    match value.as_u64() {
        Some(n) if n >= 1 && n <= u64::from(u32::MAX) => Ok(n as u32),
        _ => Err(format!(
            "{name}: expected an integer ≥ 1, got {}",
            short(value)
        )),
    }
}

fn duration(name: &str, value: &Value) -> Result<Duration, String> {
    let d = match value {
        Value::Number(n) => n
            .as_u64()
            .map(Duration::from_secs)
            .ok_or_else(|| format!("{name}: expected non-negative integer seconds, got {n}"))?,
        Value::String(s) => parse_duration(s).map_err(|e| format!("{name}: {e}"))?,
        other => return Err(format!("{name}: expected a duration, got {}", short(other))),
    };
    if d > Duration::from_secs(MAX_DURATION_S) {
        return Err(format!("{name}: must be at most {MAX_DURATION_S}s"));
    }
    Ok(d)
}

/// Parses hocon-style durations: `10s`, `1m`, `500ms`, `2h`, `1d`, or bare seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("`{}` is not a duration", short_str(s)))?;
    let ms_per_unit: u64 = match unit.trim() {
        "" | "s" => 1000,
        "ms" => 1,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(format!("`{}` is not a duration", short_str(s))),
    };
    n.checked_mul(ms_per_unit)
        .map(Duration::from_millis)
        .ok_or_else(|| format!("`{}` is too large", short_str(s)))
}

fn node_list(name: &str, value: &Value) -> Result<Vec<String>, String> {
    let Value::Array(items) = value else {
        return Err(format!("{name}: expected a non-empty array of node names"));
    };
    if items.is_empty() {
        return Err(format!("{name}: must not be empty"));
    }
    items
        .iter()
        .map(|v| match v {
            Value::String(s) if !s.is_empty() => Ok(s.clone()),
            other => Err(format!("{name}: expected node names, got {}", short(other))),
        })
        .collect()
}

fn short(v: &Value) -> String {
    short_str(&v.to_string())
}

fn short_str(s: &str) -> String {
    let mut out: String = s.chars().take(40).collect();
    if s.chars().count() > 40 {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_full_body() {
        assert_eq!(
            parse_evacuation_start(b"").expect("empty"),
            EvacuationOptions::default()
        );
        let o = parse_evacuation_start(
            br#"{"wait_health_check":"10s","conn_evict_rate":100,"sess_evict_rate":100,
                "redirect_to":"othernode:1883","wait_takeover":10,"migrate_to":["emqx@10.0.0.2"]}"#,
        )
        .expect("valid");
        assert_eq!(o.wait_health_check, Duration::from_secs(10));
        assert_eq!(o.wait_takeover, Duration::from_secs(10));
        assert_eq!(o.conn_evict_rate, 100);
        assert_eq!(o.migrate_to, Some(vec!["emqx@10.0.0.2".to_string()]));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
    }

    #[test]
    fn e5_0_and_4_4_have_no_wait_health_check() {
        let v = |s: &str| BrokerVersion::parse(s).expect("valid");
        let body = br#"{"conn_evict_rate":10,"wait_health_check":0}"#;
        for old in ["5.0.4", "5.0.26", "4.4.19"] {
            let e = parse_evacuation_start_as(&v(old), body).expect_err(old);
            assert!(
                e.contains("unknown field `wait_health_check`"),
                "{old}: {e}"
            );
        }
        for new in ["5.1.0", "5.8.9", "6.0.1"] {
            assert!(parse_evacuation_start_as(&v(new), body).is_ok(), "{new}");
        }
        // e5.0.4's wait_takeover is integer seconds only.
        let text = br#"{"wait_takeover":"10s"}"#;
        assert!(parse_evacuation_start_as(&v("5.0.4"), text).is_err());
        assert!(parse_evacuation_start_as(&v("5.0.4"), br#"{"wait_takeover":10}"#).is_ok());
        assert!(parse_evacuation_start_as(&v("5.1.0"), text).is_ok());
    }

    #[test]
    fn rejects_bad_bodies_naming_the_field() {
        for (body, field) in [
            (&br#"{"conn_evict_rate":0}"#[..], "conn_evict_rate"),
            (br#"{"conn_evict_rate":-5}"#, "conn_evict_rate"),
            (br#"{"sess_evict_rate":1.5}"#, "sess_evict_rate"),
            (br#"{"sess_evict_rate":"100"}"#, "sess_evict_rate"),
            (br#"{"conn_evict_rate":99999999999999}"#, "conn_evict_rate"),
            (br#"{"wait_takeover":"soon"}"#, "wait_takeover"),
            (br#"{"wait_takeover":-1}"#, "wait_takeover"),
            (br#"{"wait_health_check":4294968}"#, "wait_health_check"),
            (
                br#"{"wait_health_check":"99999999999999999999d"}"#,
                "wait_health_check",
            ),
            (br#"{"migrate_to":[]}"#, "migrate_to"),
            (br#"{"migrate_to":"emqx@a"}"#, "migrate_to"),
            (br#"{"migrate_to":[1]}"#, "migrate_to"),
            (br#"{"redirect_to":5}"#, "redirect_to"),
            (br#"{"nodes":["a"]}"#, "nodes"),
        ] {
            let e = parse_evacuation_start(body).expect_err("must fail");
            assert!(e.contains(field), "{e} should name {field}");
        }
        assert!(parse_evacuation_start(b"[1,2]").is_err());
        assert!(parse_evacuation_start(b"{\"a\":").is_err());
        assert!(parse_evacuation_start(&[0xff, 0xfe, 0x00]).is_err());
    }
}
