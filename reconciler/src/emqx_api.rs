//! EMQX's management API, as pure functions: which path and body a call
//! needs, and what an answer means. The HTTP shell is [`crate::emqx_client`].
//!
//! Both API generations are covered: EMQX 5.x serves `/api/v5` (bare JSON
//! bodies) on the dashboard listener, EMQX 4.4 serves `/api/v4` (wrapped in
//! `{"code":0,"data":…}`) on the management listener. Every answer is
//! checked: an unexpected status or body is an error that names the call,
//! never a silent success (upstream's v1beta4 code ignored the status of
//! `evacuation/start`).

use crate::observed::{EvacuationState, Member, Strategy};
use serde::Deserialize;
use serde_json::{Value, json};

/// Which management API a broker speaks, from its image version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiGeneration {
    /// EMQX 4.4: `/api/v4` on port 8081.
    V4,
    /// EMQX 5.x and later: `/api/v5` on port 18083.
    V5,
}

impl ApiGeneration {
    /// The path prefix of every management call.
    pub fn prefix(self) -> &'static str {
        match self {
            ApiGeneration::V4 => "/api/v4",
            ApiGeneration::V5 => "/api/v5",
        }
    }

    /// The port the management API listens on.
    pub fn port(self) -> u16 {
        match self {
            ApiGeneration::V4 => 8081,
            ApiGeneration::V5 => 18083,
        }
    }
}

/// Why a call failed, precisely enough to decide what to do next.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EmqxError {
    /// The broker has no node-evacuation API (open source, or before e5.0.4).
    #[error("the broker has no load_rebalance API ({0})")]
    EvacuationUnsupported(String),
    /// `{node}` is not a running member of the cluster.
    #[error("node not found: {0}")]
    NodeNotFound(String),
    /// 401/403: the operator's API key was refused.
    #[error(
        "EMQX refused the operator's API key: {0} (a bootstrap Secret written by the Go \
         operator or by an operator before derived keys needs the chart's \
         reconciler.readClusterSecrets=true; if the chart's operator key Secret was \
         regenerated, e.g. by helm template or Argo CD, running nodes still hold keys \
         derived from the old one until they restart)"
    )]
    Unauthorized(String),
    /// Any other non-success answer, with EMQX's own code and message.
    #[error("{call}: HTTP {status}: {code} {message}")]
    Api {
        call: &'static str,
        status: u16,
        code: String,
        message: String,
    },
    /// A body that is not what the API documents.
    #[error("{call}: unexpected answer: {detail}")]
    Malformed { call: &'static str, detail: String },
    /// Transport: refused, reset, timed out.
    #[error("{call}: {detail}")]
    Transport { call: &'static str, detail: String },
}

impl EmqxError {
    /// A transport failure because the call ran out of time
    /// (`emqx_client`'s transport detail says `(timed out)`).
    pub fn is_timeout(&self) -> bool {
        matches!(self, EmqxError::Transport { detail, .. } if detail.ends_with("(timed out)"))
    }
}

/// `?TIMEOUT` of the status RPCs `global_status` makes
/// (`apps/emqx_node_rebalance/src/proto/emqx_node_rebalance_status_proto_v2.erl`,
/// from 5.2.1; the same at e5.10.4 and 6.2.2).
pub const STATUS_RPC_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(15);

/// `global_status` makes three cluster-wide RPCs one after another
/// (rebalance, evacuation, purge status: `emqx_node_rebalance_status.erl`
/// `global_status/0`), each waiting up to [`STATUS_RPC_TIMEOUT`] for the
/// slowest node, so one slow node can make an honest answer take 45 s.
/// Before 5.2.1 (`…_proto_v1.erl`) there were two RPCs without any
/// timeout; nothing bounds those.
pub const GLOBAL_STATUS_RPCS: u32 = 3;

/// How long to wait for `global_status`: the longest honest answer plus
/// the usual per-call timeout for the HTTP round trip.
pub fn global_status_timeout(call_timeout: std::time::Duration) -> std::time::Duration {
    STATUS_RPC_TIMEOUT * GLOBAL_STATUS_RPCS + call_timeout
}

/// Whether a `global_status` answer that took `took` may lack nodes: EMQX
/// drops, silently, every node whose RPC exceeded [`STATUS_RPC_TIMEOUT`]
/// (`{Results, _BadNodes} = rpc:multicall(…)`), and that can only have
/// happened if the call lasted at least that long. Such an answer cannot
/// tell "no evacuation" from "no answer".
pub fn may_leave_out_nodes(took: std::time::Duration) -> bool {
    took >= STATUS_RPC_TIMEOUT
}

/// Interprets `GET /load_rebalance/status`: any 200 is an answer.
pub fn local_status_answered(
    api: ApiGeneration,
    status: u16,
    body: &[u8],
) -> Result<(), EmqxError> {
    payload(api, "GET load_rebalance/status", status, body).map(|_| ())
}

/// What `evacuation/start` achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartOutcome {
    Started,
    /// 400 `already_started`: a restarted reconciler finds its own work.
    AlreadyRunning,
}

/// What `evacuation/stop` achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopOutcome {
    Stopped,
    /// 400 `not_started`: nothing to stop, which is what we wanted.
    NotRunning,
}

/// Path of `evacuation/start` or `evacuation/stop` for `node`.
pub fn evacuation_path(api: ApiGeneration, node: &str, verb: &str) -> String {
    format!(
        "{}/load_rebalance/{}/evacuation/{verb}",
        api.prefix(),
        encode_segment(node)
    )
}

/// Path of `force_leave` (5.x only; 4.4 has no such REST call).
pub fn force_leave_path(node: &str) -> String {
    format!("/api/v5/cluster/{}/force_leave", encode_segment(node))
}

/// Node names contain `@` and dots only, but a hostile or odd name must not
/// be able to change the path.
fn encode_segment(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for b in segment.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'@' => {
                out.push(char::from(b));
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// The body of `evacuation/start`.
///
/// `wait_health_check` is sent as 0 on brokers that know it (e5.1.0+): the
/// Service already moved before the first eviction, so EMQX's own 60 s
/// default would only lengthen every node's drain. Older brokers reject
/// unknown fields with 400, so it is left out for them.
pub fn evacuation_start_body(
    api: ApiGeneration,
    strategy: &Strategy,
    migrate_to: &[String],
    knows_wait_health_check: bool,
) -> Value {
    let mut body = json!({
        "conn_evict_rate": strategy.conn_evict_rate.max(1),
        "sess_evict_rate": strategy.sess_evict_rate.max(1),
        "migrate_to": migrate_to,
    });
    if strategy.wait_takeover_s > 0 {
        body["wait_takeover"] = json!(strategy.wait_takeover_s);
    }
    if api == ApiGeneration::V5 && knows_wait_health_check {
        body["wait_health_check"] = json!(0);
    }
    body
}

/// Whether a 5.x version string (`5.8.9`, `e5.1.0`) knows `wait_health_check`.
pub fn knows_wait_health_check(version: &str) -> bool {
    // Enterprise builds report `e5.1.0`; the rest is a tag's version.
    emqx_crd::image::tag_version(version.strip_prefix('e').unwrap_or(version))
        .is_some_and(|v| v.len() >= 2 && v[..2] >= [5, 1][..])
}

/// The version of `serving`, the node the reconciler sends its calls to.
/// That node checks the request body against its own schema
/// (`emqx_node_rebalance_api.erl`: no `wait_health_check` before e5.1.0), so
/// its version decides the body, not whichever node `/nodes` lists first: in
/// a rollback from 5.8 to e5.0.x the first listed node may be a newer one.
pub fn version_of(nodes: &[NodeInfo], serving: &str) -> Option<String> {
    nodes
        .iter()
        .find(|n| n.node == serving)
        .and_then(|n| n.version.clone())
}

/// EMQX's error body: `{"code": "...", "message": "..."}`.
#[derive(Debug, Default, Deserialize)]
struct ErrorBody {
    #[serde(default)]
    code: Value,
    #[serde(default)]
    message: Value,
}

fn error_parts(body: &[u8]) -> (String, String) {
    let parsed: ErrorBody = serde_json::from_slice(body).unwrap_or_default();
    let text = |v: &Value| match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    };
    let (code, message) = (text(&parsed.code), text(&parsed.message));
    if code.is_empty() && message.is_empty() {
        // Not JSON (an HTML 404 page, a proxy's error): keep a short excerpt.
        let excerpt: String = String::from_utf8_lossy(body).chars().take(200).collect();
        (String::new(), excerpt)
    } else {
        (code, message)
    }
}

/// A 404 that says the path does not exist (so the feature is absent), as
/// opposed to `Node not found: …`:
/// - 5.1+: `{"code":"NOT_FOUND","message":"Request Path Not Found"}` or its
///   text/HTML forms (`apps/emqx_dashboard/src/emqx_dashboard_not_found.erl`);
/// - 5.0.x: code `API_NOT_EXIST` (`emqx_dashboard_bad_api.erl`);
/// - 4.4 (minirest 0.3.12, `src/minirest_handler.erl`, pinned by emqx
///   v4.4.19's `rebar.config`): the whole body is the text `Not found.`,
///   which is how open-source 4.4 and Enterprise before 4.4.12 answer
///   `…/load_rebalance/…`.
fn is_path_not_found(code: &str, message: &str) -> bool {
    code == "API_NOT_EXIST"
        || message.contains("Request Path Not Found")
        || message.contains("404 - NOT FOUND")
        || (code.is_empty() && message.trim() == "Not found.")
}

/// Classifies any non-2xx answer.
fn classify(call: &'static str, status: u16, body: &[u8]) -> EmqxError {
    let (code, message) = error_parts(body);
    match status {
        401 | 403 => EmqxError::Unauthorized(format!("{code} {message}").trim().to_owned()),
        404 if is_path_not_found(&code, &message) => EmqxError::EvacuationUnsupported(message),
        404 if message.starts_with("Node not found") => EmqxError::NodeNotFound(message),
        _ => EmqxError::Api {
            call,
            status,
            code,
            message,
        },
    }
}

/// Interprets the answer to `evacuation/start`.
pub fn start_outcome(
    api: ApiGeneration,
    status: u16,
    body: &[u8],
) -> Result<StartOutcome, EmqxError> {
    const CALL: &str = "evacuation/start";
    if status == 200 {
        return v4_envelope_ok(api, CALL, body).map(|()| StartOutcome::Started);
    }
    match classify(CALL, status, body) {
        EmqxError::Api {
            status: 400,
            message,
            ..
        } if message.contains("already_started") => Ok(StartOutcome::AlreadyRunning),
        other => Err(other),
    }
}

/// Interprets the answer to `evacuation/stop`.
pub fn stop_outcome(
    api: ApiGeneration,
    status: u16,
    body: &[u8],
) -> Result<StopOutcome, EmqxError> {
    const CALL: &str = "evacuation/stop";
    if status == 200 {
        return v4_envelope_ok(api, CALL, body).map(|()| StopOutcome::Stopped);
    }
    match classify(CALL, status, body) {
        EmqxError::Api {
            status: 400,
            message,
            ..
        } if message.contains("not_started") => Ok(StopOutcome::NotRunning),
        other => Err(other),
    }
}

/// Interprets the answer to `force_leave`: 204 (or 200) is done, and so is
/// a node that is already gone. EMQX says "gone" with a 400, not a 404:
/// `apps/emqx_management/src/emqx_mgmt_api_cluster.erl` (v5.8.9; the same
/// from v5.0.26/e5.0.4 to e5.10.4) prints mria's
/// `{error, node_not_in_cluster}` (`src/mria.erl` `force_leave/1`, mria
/// 0.8.x via ekka 0.23.2) as `{"code":"BAD_REQUEST","message":"node_not_in_cluster"}`.
/// Every other 400 ("Can't leave self", an RPC failure) is an error.
pub fn force_leave_outcome(status: u16, body: &[u8]) -> Result<(), EmqxError> {
    match status {
        200 | 204 => Ok(()),
        _ => match classify("force_leave", status, body) {
            EmqxError::Api {
                status: 400,
                code,
                message,
                ..
            } if code == "BAD_REQUEST" && message.trim() == "node_not_in_cluster" => Ok(()),
            other => Err(other),
        },
    }
}

/// 4.4 answers 200 with `{"code":0,...}`; a non-zero code is a failure.
fn v4_envelope_ok(api: ApiGeneration, call: &'static str, body: &[u8]) -> Result<(), EmqxError> {
    if api == ApiGeneration::V5 {
        return Ok(());
    }
    let value: Value = serde_json::from_slice(body).map_err(|e| EmqxError::Malformed {
        call,
        detail: format!("not JSON: {e}"),
    })?;
    match value.get("code").and_then(Value::as_i64) {
        Some(0) => Ok(()),
        Some(code) => Err(EmqxError::Api {
            call,
            status: 200,
            code: code.to_string(),
            message: value
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
        }),
        None => Err(EmqxError::Malformed {
            call,
            detail: "no numeric \"code\" in the 4.4 envelope".into(),
        }),
    }
}

/// The JSON of a successful read, unwrapped from 4.4's envelope if present.
fn payload(
    api: ApiGeneration,
    call: &'static str,
    status: u16,
    body: &[u8],
) -> Result<Value, EmqxError> {
    if status != 200 {
        return Err(classify(call, status, body));
    }
    let value: Value = serde_json::from_slice(body).map_err(|e| EmqxError::Malformed {
        call,
        detail: format!("not JSON: {e}"),
    })?;
    match (api, value) {
        (ApiGeneration::V4, Value::Object(mut map)) if map.contains_key("data") => {
            Ok(map.remove("data").unwrap_or(Value::Null))
        }
        (_, value) => Ok(value),
    }
}

/// One node of `GET /nodes`, the fields the reconciler reads. Everything is
/// optional except the name: a stopped core is listed with three fields.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct NodeInfo {
    pub node: String,
    #[serde(default)]
    pub node_status: String,
    #[serde(default)]
    pub version: Option<String>,
    #[serde(default)]
    pub edition: Option<String>,
    #[serde(default)]
    pub role: Option<String>,
    #[serde(default)]
    pub otp_release: Option<String>,
    #[serde(default)]
    pub connections: Option<i64>,
    #[serde(default)]
    pub live_connections: Option<i64>,
}

impl NodeInfo {
    /// 5.x says `running`, 4.4 says `Running`.
    pub fn is_running(&self) -> bool {
        self.node_status.eq_ignore_ascii_case("running")
    }
}

/// Interprets `GET /nodes`.
pub fn nodes(api: ApiGeneration, status: u16, body: &[u8]) -> Result<Vec<NodeInfo>, EmqxError> {
    const CALL: &str = "GET nodes";
    let value = payload(api, CALL, status, body)?;
    serde_json::from_value(value).map_err(|e| EmqxError::Malformed {
        call: CALL,
        detail: e.to_string(),
    })
}

/// Cluster membership as `decide` needs it.
pub fn members(nodes: &[NodeInfo]) -> Vec<Member> {
    nodes
        .iter()
        .map(|n| Member {
            node: n.node.clone(),
            running: n.is_running(),
        })
        .collect()
}

/// Interprets `GET /metrics` (5.x: one map per running node, `node` first,
/// `apps/emqx_management/src/emqx_mgmt_api_metrics.erl` v5.8.9): each
/// node's `packets.connack.error`, every CONNACK that was not a success
/// (`do_inc_sent/1` in `apps/emqx/src/emqx_metrics.erl`). A node whose RPC
/// failed is listed as `{node, reason}` without counters: left out.
pub fn connack_errors(
    api: ApiGeneration,
    status: u16,
    body: &[u8],
) -> Result<std::collections::BTreeMap<String, u64>, EmqxError> {
    const CALL: &str = "GET metrics";
    let value = payload(api, CALL, status, body)?;
    let list = value.as_array().ok_or_else(|| EmqxError::Malformed {
        call: CALL,
        detail: "not a list".into(),
    })?;
    Ok(list
        .iter()
        .filter_map(|entry| {
            let node = entry.get("node")?.as_str()?;
            // 4.4 nests the counters under `metrics`.
            let counters = entry.get("metrics").unwrap_or(entry);
            let errors = counters.get("packets.connack.error")?.as_u64()?;
            Some((node.to_owned(), errors))
        })
        .collect())
}

/// Interprets EMQX 4.4's `GET /api/v4/stats`: the cluster's live
/// connections, the sum of each running node's `live_connections.count`.
/// 4.4 answers `{code, data: [#{node, stats}]}` with one entry per running
/// node (`apps/emqx_management/src/emqx_mgmt_api_stats.erl`, v4.4.0 …
/// v4.4.19); `live_connections.count` is the size of `emqx_channel_live`,
/// the channels whose client is connected now (`src/emqx_cm.erl`,
/// `mark_channel_connected/1`; in `src/emqx_stats.erl` from v4.4-alpha.1 on),
/// whereas `connections.count` and `/nodes`' `connections` also count
/// sessions whose client is gone. `/nodes` lists `live_connections` only
/// from v4.4.19 (`apps/emqx_management/src/emqx_mgmt.erl`), so every 4.4
/// is read here. `Ok(None)`: a node's stats lack the figure (a broker
/// before 4.4), which the guard must say rather than guess.
pub fn live_connections_v4(status: u16, body: &[u8]) -> Result<Option<u64>, EmqxError> {
    const CALL: &str = "GET stats";
    let value = payload(ApiGeneration::V4, CALL, status, body)?;
    let list = value.as_array().ok_or_else(|| EmqxError::Malformed {
        call: CALL,
        detail: "not a list".into(),
    })?;
    let mut total = 0u64;
    for entry in list {
        let stats = entry.get("stats").ok_or_else(|| EmqxError::Malformed {
            call: CALL,
            detail: format!("an entry without \"stats\": {entry}"),
        })?;
        match stats.get("live_connections.count").map(Value::as_u64) {
            Some(Some(n)) => total = total.saturating_add(n),
            Some(None) => {
                return Err(EmqxError::Malformed {
                    call: CALL,
                    detail: "\"live_connections.count\" is not a count".into(),
                });
            }
            None => return Ok(None),
        }
    }
    Ok(Some(total))
}

/// Interprets `GET /load_rebalance/global_status`: the `evacuations` entries,
/// each deserialised as `T` (the status type copied into the object).
pub fn global_evacuations<T: serde::de::DeserializeOwned>(
    api: ApiGeneration,
    status: u16,
    body: &[u8],
) -> Result<Vec<T>, EmqxError> {
    const CALL: &str = "GET load_rebalance/global_status";
    let mut value = payload(api, CALL, status, body)?;
    let evacuations = value
        .get_mut("evacuations")
        .map(Value::take)
        .ok_or_else(|| EmqxError::Malformed {
            call: CALL,
            detail: "no \"evacuations\" list".into(),
        })?;
    serde_json::from_value(evacuations).map_err(|e| EmqxError::Malformed {
        call: CALL,
        detail: e.to_string(),
    })
}

/// EMQX's state name → our enum. An unknown state is an error, not a guess.
pub fn evacuation_state(name: &str) -> Result<EvacuationState, EmqxError> {
    Ok(match name {
        "waiting_health_check" => EvacuationState::WaitingHealthCheck,
        "evicting_conns" => EvacuationState::EvictingConns,
        "waiting_takeover" => EvacuationState::WaitingTakeover,
        "evicting_sessions" => EvacuationState::EvictingSessions,
        "prohibiting" => EvacuationState::Prohibiting,
        other => {
            return Err(EmqxError::Malformed {
                call: "GET load_rebalance/global_status",
                detail: format!("unknown evacuation state {other:?}"),
            });
        }
    })
}

#[cfg(test)]
mod tests;
