//! Node evacuation: the spec knobs (`evacuationStrategy`) and the progress EMQX
//! reports (`global_status.evacuations`), which every version shares.

use crate::limits::{DELAY_DEFAULT, DELAY_MAX, RATE_DEFAULT, RATE_MAX, RATE_MIN};
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};

/// How old nodes are drained during a blue-green upgrade.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EvacuationStrategy {
    /// Seconds to wait, after a node's connections are gone, for clients to take
    /// over their sessions elsewhere before the node is removed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "wait_takeover_schema")]
    pub wait_takeover: Option<i32>,
    /// MQTT connections disconnected per second on the evacuated node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "conn_evict_rate_schema")]
    pub conn_evict_rate: Option<i32>,
    /// MQTT sessions migrated per second from the evacuated node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "sess_evict_rate_schema")]
    pub sess_evict_rate: Option<i32>,
}

fn rate_schema(field: &str) -> Schema {
    json_schema!({
        "type": "integer",
        "format": "int32",
        "default": RATE_DEFAULT,
        "x-kubernetes-validations": [{
            "rule": format!("self >= {RATE_MIN} && self <= {RATE_MAX}"),
            "message": format!("{field} must be between {RATE_MIN} and {RATE_MAX} (per second)"),
        }],
    })
}

fn conn_evict_rate_schema(_: &mut SchemaGenerator) -> Schema {
    rate_schema("connEvictRate")
}

fn sess_evict_rate_schema(_: &mut SchemaGenerator) -> Schema {
    rate_schema("sessEvictRate")
}

/// Schema of a delay in seconds (`initialDelaySeconds`, `waitTakeover`).
pub(crate) fn delay_schema(field: &str) -> Schema {
    json_schema!({
        "type": "integer",
        "format": "int32",
        "default": DELAY_DEFAULT,
        "x-kubernetes-validations": [{
            "rule": format!("self >= 0 && self <= {DELAY_MAX}"),
            "message": format!("{field} must be between 0 and {DELAY_MAX} (seconds)"),
        }],
    })
}

fn wait_takeover_schema(_: &mut SchemaGenerator) -> Schema {
    delay_schema("waitTakeover")
}

/// Schema of `evacuationStrategy` itself: defaulted to `{}` so that its own
/// fields are defaulted whenever the parent exists (structural defaulting
/// applies nested defaults only when the parent is present).
pub(crate) fn evacuation_strategy_schema(generator: &mut SchemaGenerator) -> Schema {
    let mut schema = EvacuationStrategy::json_schema(generator);
    schema.insert("default".into(), serde_json::json!({}));
    schema
}

/// One node's evacuation as EMQX reports it in `load_rebalance/global_status`
/// (snake_case field names, verbatim).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct NodeEvacuationStatus {
    /// The evacuated node, e.g. `emqx@emqx-ee-core-54fc496fb4-2.emqx-ee-headless...`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// Connection and session counts at the start and now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stats: Option<NodeEvacuationStats>,
    /// `waiting_health_check`, `evicting_conns`, `waiting_takeover`,
    /// `evicting_sessions` or `prohibiting`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// Nodes that receive the migrated sessions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_recipients: Option<Vec<String>>,
    /// Sessions to leave on the node (EMQX's goal).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_goal: Option<i32>,
    /// Sessions migrated per second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_eviction_rate: Option<i32>,
    /// Connections to leave on the node (EMQX's goal).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_goal: Option<i32>,
    /// Connections disconnected per second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_eviction_rate: Option<i32>,
}

/// Counts of an evacuation; EMQX fills them lazily, so each may be absent.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct NodeEvacuationStats {
    /// Sessions when the evacuation started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_sessions: Option<i32>,
    /// Connections when the evacuation started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_connected: Option<i32>,
    /// Sessions now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_sessions: Option<i32>,
    /// Connections now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_connected: Option<i32>,
}
