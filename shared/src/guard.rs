//! `updateStrategy.guard`: the figures an upgrade must keep, read from
//! EMQX's own API while clients move, and the thresholds that abort it.
//! Shared by v2beta1 and v2alpha2 (one update strategy type) and absent from
//! v1beta4, where it travels in the conversion data.

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};

/// Lowest `connectionRecovery.minPercent`: 1 (0 would never trip).
pub const MIN_PERCENT_MIN: i64 = 1;
/// Highest `connectionRecovery.minPercent`: 100 (the total before the upgrade).
pub const MIN_PERCENT_MAX: i64 = 100;
/// Default `connectionRecovery.minPercent`: evicted clients reconnect with
/// backoff, and a few give up or belong to devices going offline anyway;
/// 80% tolerates that and still catches new nodes that refuse or drop most.
pub const MIN_PERCENT_DEFAULT: i64 = 80;
/// Lowest `connectionRecovery.windowSeconds`: clients need time to reconnect.
pub const WINDOW_MIN: i64 = 5;
/// Highest `connectionRecovery.windowSeconds`: one hour.
pub const WINDOW_MAX: i64 = 3_600;
/// Default `connectionRecovery.windowSeconds`: MQTT client libraries
/// reconnect within seconds (paho's first retry is 1 s, doubling); a
/// minute leaves room for the slowest common backoffs.
pub const WINDOW_DEFAULT: i64 = 60;
/// Lowest `connectFailures.maxPerMinute`.
pub const FAILURES_MIN: i64 = 1;
/// Highest `connectFailures.maxPerMinute`.
pub const FAILURES_MAX: i64 = 1_000_000;
/// Default `connectFailures.maxPerMinute`: one refused CONNECT a second.
/// A healthy cluster refuses only stray clients with bad credentials (a
/// device retrying every few seconds stays below it); clients evicted into
/// nodes that refuse them reconnect far faster than that.
pub const FAILURES_DEFAULT: i64 = 60;

/// The upgrade guard.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Guard {
    /// `false` turns the guard off: the upgrade moves every client whatever
    /// the figures say.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "enabled_schema")]
    pub enabled: Option<bool>,
    /// The cluster-wide connection total must come back after each node's
    /// connection eviction.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "connection_recovery_schema")]
    pub connection_recovery: Option<ConnectionRecovery>,
    /// Refused CONNECTs on the new nodes (`packets.connack.error`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "connect_failures_schema")]
    pub connect_failures: Option<ConnectFailures>,
}

/// `guard.connectionRecovery`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConnectionRecovery {
    /// Percent of the pre-upgrade connection total (live connections of
    /// every node) that must be connected again `windowSeconds` after a
    /// node's connection eviction ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "min_percent_schema")]
    pub min_percent: Option<i32>,
    /// Seconds the evicted clients get to come back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "window_schema")]
    pub window_seconds: Option<i32>,
}

/// `guard.connectFailures`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConnectFailures {
    /// Most CONNACKs with an error code (bad credentials, not authorised,
    /// any refusal) the new nodes may send per minute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "max_per_minute_schema")]
    pub max_per_minute: Option<i32>,
}

/// The guard with every default applied; `None` when it is turned off.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GuardSettings {
    /// `connectionRecovery.minPercent`.
    pub min_percent: i32,
    /// `connectionRecovery.windowSeconds`.
    pub window_seconds: i32,
    /// `connectFailures.maxPerMinute`.
    pub max_failures_per_minute: i32,
}

// Small constants: the conversions cannot truncate.
#[allow(clippy::cast_possible_truncation)]
const DEFAULTS: GuardSettings = GuardSettings {
    min_percent: MIN_PERCENT_DEFAULT as i32,
    window_seconds: WINDOW_DEFAULT as i32,
    max_failures_per_minute: FAILURES_DEFAULT as i32,
};

impl Guard {
    /// What the CRD's defaulting makes of an empty guard: also what a
    /// v1beta4 object converts to, so a defaulted object needs no
    /// conversion-data entry.
    pub fn defaulted() -> Guard {
        Guard {
            enabled: Some(true),
            connection_recovery: Some(ConnectionRecovery {
                min_percent: Some(DEFAULTS.min_percent),
                window_seconds: Some(DEFAULTS.window_seconds),
            }),
            connect_failures: Some(ConnectFailures {
                max_per_minute: Some(DEFAULTS.max_failures_per_minute),
            }),
        }
    }

    /// The effective settings; `None` when `enabled: false`.
    pub fn settings(&self) -> Option<GuardSettings> {
        if self.enabled == Some(false) {
            return None;
        }
        let recovery = self.connection_recovery.clone().unwrap_or_default();
        let failures = self.connect_failures.clone().unwrap_or_default();
        Some(GuardSettings {
            min_percent: recovery.min_percent.unwrap_or(DEFAULTS.min_percent),
            window_seconds: recovery.window_seconds.unwrap_or(DEFAULTS.window_seconds),
            max_failures_per_minute: failures
                .max_per_minute
                .unwrap_or(DEFAULTS.max_failures_per_minute),
        })
    }
}

fn enabled_schema(_: &mut SchemaGenerator) -> Schema {
    json_schema!({"type": "boolean", "default": true})
}

/// An integer with a range the API server checks itself (its message names
/// the field's path and the bound); the webhook says the same with the unit.
fn bounded(default: i64, min: i64, max: i64) -> Schema {
    json_schema!({
        "type": "integer",
        "format": "int32",
        "default": default,
        "minimum": min,
        "maximum": max,
    })
}

fn min_percent_schema(_: &mut SchemaGenerator) -> Schema {
    bounded(MIN_PERCENT_DEFAULT, MIN_PERCENT_MIN, MIN_PERCENT_MAX)
}

fn window_schema(_: &mut SchemaGenerator) -> Schema {
    bounded(WINDOW_DEFAULT, WINDOW_MIN, WINDOW_MAX)
}

fn max_per_minute_schema(_: &mut SchemaGenerator) -> Schema {
    bounded(FAILURES_DEFAULT, FAILURES_MIN, FAILURES_MAX)
}

/// An object defaulted to `{}` so its own fields are defaulted whenever the
/// parent exists (structural defaulting fills nested defaults only inside
/// present parents), as `evacuationStrategy` is.
fn with_empty_default(mut schema: Schema) -> Schema {
    schema.insert("default".into(), serde_json::json!({}));
    schema
}

fn connection_recovery_schema(generator: &mut SchemaGenerator) -> Schema {
    with_empty_default(ConnectionRecovery::json_schema(generator))
}

fn connect_failures_schema(generator: &mut SchemaGenerator) -> Schema {
    with_empty_default(ConnectFailures::json_schema(generator))
}

/// Schema of `updateStrategy.guard`.
pub(crate) fn guard_schema(generator: &mut SchemaGenerator) -> Schema {
    with_empty_default(Guard::json_schema(generator))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_guard_is_the_defaulted_one_and_off_is_none() {
        assert_eq!(Guard::default().settings(), Guard::defaulted().settings());
        assert_eq!(
            Guard::default().settings(),
            Some(GuardSettings {
                min_percent: 80,
                window_seconds: 60,
                max_failures_per_minute: 60
            })
        );
        let off = Guard {
            enabled: Some(false),
            ..Guard::defaulted()
        };
        assert_eq!(off.settings(), None);
    }
}
