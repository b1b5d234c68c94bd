//! JSON and text bodies built from cluster state: nodes, stats, evacuation
//! status, Prometheus metrics.

use std::fmt::Write as _;
use std::time::SystemTime;

use serde_json::{Map, Value, json};

use crate::cluster::{EvacuationStatus, NodeSummary};
use crate::version::ApiGeneration;

/// A running node in `/nodes` (5.x), or the minimal stopped entry.
pub fn node_v5(n: &NodeSummary, cluster_sessions: u64) -> Value {
    if !n.running {
        return json!({"node": n.name, "node_status": "stopped", "role": n.role.as_str()});
    }
    let uptime = SystemTime::now()
        .duration_since(n.started)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    json!({
        "node": n.name,
        "node_status": "running",
        "version": n.version.to_string(),
        "edition": n.edition.as_str(),
        "role": n.role.as_str(),
        "otp_release": "26.2.5-3",
        "uptime": uptime,
        "connections": n.connections,
        "live_connections": n.live_connections,
        "cluster_sessions": cluster_sessions,
        "load1": 0.12, "load5": 0.1, "load15": 0.05,
        "max_fds": 1_048_576,
        "process_available": 2_097_152,
        "process_used": 600 + n.connections,
        "memory_total": "7.63G",
        "memory_used": "512.00M",
        "sys_path": "/opt/emqx",
        "log_path": "/opt/emqx/log",
    })
}

/// A node in `/api/v4/nodes`. `connections` is the size of `emqx_channel`
/// (sessions whose client is gone included); `live_connections`, the
/// connected clients, is listed from v4.4.19 on
/// (`apps/emqx_management/src/emqx_mgmt.erl` `node_info/1`; absent in
/// v4.4.18).
pub fn node_v4(n: &NodeSummary) -> Value {
    let mut v = json!({
        "node": n.name,
        "node_status": if n.running { "Running" } else { "Stopped" },
        "otp_release": "24.3.4.2-1/12.3.2.2",
        "version": n.version.to_string(),
        "connections": n.connections,
    });
    if n.version.patch >= 19
        && let Some(m) = v.as_object_mut()
    {
        m.insert("live_connections".into(), json!(n.live_connections));
    }
    v
}

/// One node's stats in 4.4's `/api/v4/stats` (`src/emqx_stats.erl`
/// v4.4.19: every stat is created at 0 and listed, `.count` and `.max` of
/// connections, live_connections (from v4.4-alpha.1), channels, sessions,
/// topics, suboptions, subscribers, subscriptions, subscriptions.shared,
/// routes, retained). No `cluster_sessions`, `delayed` or
/// `durable_subscriptions`, which are 5.x's.
pub fn stats_v4(n: &NodeSummary) -> Map<String, Value> {
    let mut m = Map::new();
    let pairs = [
        ("connections", n.connections, n.connections.max(n.max_live)),
        ("live_connections", n.live_connections, n.max_live),
        ("channels", n.connections, n.connections),
        ("sessions", n.connections, n.connections),
        ("topics", n.subscriptions, n.subscriptions),
        ("suboptions", n.subscriptions, n.subscriptions),
        ("subscribers", n.subscriptions, n.subscriptions),
        ("subscriptions", n.subscriptions, n.subscriptions),
        ("subscriptions.shared", 0, 0),
        ("routes", n.subscriptions, n.subscriptions),
        ("retained", 0, 0),
    ];
    for (k, count, max) in pairs {
        m.insert(format!("{k}.count"), json!(count));
        m.insert(format!("{k}.max"), json!(max));
    }
    m
}

/// One node's entry in `/stats`.
pub fn stats(n: &NodeSummary, cluster_sessions: u64) -> Map<String, Value> {
    let mut m = Map::new();
    let pairs = [
        ("connections", n.connections, n.connections.max(n.max_live)),
        ("live_connections", n.live_connections, n.max_live),
        ("sessions", n.connections, n.connections),
        ("channels", n.connections, n.connections),
        ("cluster_sessions", cluster_sessions, cluster_sessions),
        ("subscriptions", n.subscriptions, n.subscriptions),
        ("subscriptions.shared", 0, 0),
        ("suboptions", n.subscriptions, n.subscriptions),
        ("subscribers", n.subscriptions, n.subscriptions),
        ("topics", n.subscriptions, n.subscriptions),
        ("retained", 0, 0),
        ("delayed", 0, 0),
    ];
    for (k, count, max) in pairs {
        m.insert(format!("{k}.count"), json!(count));
        m.insert(format!("{k}.max"), json!(max));
    }
    m.insert("durable_subscriptions.count".into(), json!(0));
    m
}

/// One node's counters in `GET /metrics`, by EMQX's names
/// (`emqx_metrics:all/0`, `apps/emqx/src/emqx_metrics.erl` v5.8.9; the
/// same names in `src/emqx_metrics.erl` v4.4.19). Only what the simulator
/// counts from real events; EMQX lists many more, all counters.
pub fn counters(n: &NodeSummary) -> Map<String, Value> {
    let c = &n.counters;
    let pairs = [
        ("client.connected", c.client_connected),
        ("client.disconnected", c.client_disconnected),
        ("packets.connack.sent", c.connack_sent),
        ("packets.connack.error", c.connack_error),
        ("packets.connack.auth_error", c.connack_auth_error),
        ("authentication.failure", c.authentication_failure),
        ("session.created", c.session_created),
        ("session.resumed", c.session_resumed),
        ("session.takenover", c.session_takenover),
        ("session.discarded", c.session_discarded),
        ("messages.received", c.messages_received),
        ("delivery.dropped", c.delivery_dropped_queue_full),
        ("delivery.dropped.queue_full", c.delivery_dropped_queue_full),
    ];
    pairs
        .into_iter()
        .map(|(k, v)| (k.to_owned(), json!(v)))
        .collect()
}

/// Sum of per-node stats (`?aggregate=true`).
pub fn aggregate(per_node: &[Map<String, Value>]) -> Map<String, Value> {
    let mut out = Map::new();
    for m in per_node {
        for (k, v) in m {
            let add = v.as_u64().unwrap_or(0);
            let cur = out.get(k).and_then(Value::as_u64).unwrap_or(0);
            out.insert(k.clone(), json!(cur + add));
        }
    }
    out
}

/// The evacuation fields shared by `status` and `global_status` entries.
fn evacuation_fields(s: &EvacuationStatus) -> Map<String, Value> {
    let e = &s.evacuation;
    let mut m = Map::new();
    m.insert("state".into(), json!(e.state.as_str()));
    m.insert(
        "connection_eviction_rate".into(),
        json!(e.options.conn_evict_rate),
    );
    m.insert(
        "session_eviction_rate".into(),
        json!(e.options.sess_evict_rate),
    );
    m.insert("connection_goal".into(), json!(0));
    m.insert("session_goal".into(), json!(0));
    m.insert("session_recipients".into(), json!(s.recipients));
    m.insert(
        "stats".into(),
        json!({
            "initial_connected": e.stats.initial_connected,
            "current_connected": e.stats.current_connected,
            "initial_sessions": e.stats.initial_sessions,
            "current_sessions": e.stats.current_sessions,
        }),
    );
    m
}

/// `GET /load_rebalance/status` for the serving node.
pub fn local_status(s: Option<&EvacuationStatus>) -> Value {
    match s {
        None => json!({"status": "disabled"}),
        Some(s) => {
            let mut m = Map::new();
            m.insert("status".into(), json!("enabled"));
            m.insert("process".into(), json!("evacuation"));
            m.extend(evacuation_fields(s));
            Value::Object(m)
        }
    }
}

/// `GET /load_rebalance/global_status`; `purges` from e5.2 on.
pub fn global_status(all: &[EvacuationStatus], api: ApiGeneration, with_purges: bool) -> Value {
    let evacuations: Vec<Value> = all
        .iter()
        .map(|s| {
            let mut m = Map::new();
            m.insert("node".into(), json!(s.node));
            m.extend(evacuation_fields(s));
            Value::Object(m)
        })
        .collect();
    let mut out = Map::new();
    out.insert("evacuations".into(), json!(evacuations));
    if api == ApiGeneration::V5 && with_purges {
        out.insert("purges".into(), json!([]));
    }
    out.insert("rebalances".into(), json!([]));
    Value::Object(out)
}

/// Gauges and counters of one node (or a sum), by metric name.
pub fn metrics(
    n: &NodeSummary,
    cluster_sessions: u64,
    running: u64,
    stopped: u64,
) -> Vec<(&'static str, u64)> {
    vec![
        ("emqx_connections_count", n.connections),
        ("emqx_connections_max", n.connections.max(n.max_live)),
        ("emqx_live_connections_count", n.live_connections),
        ("emqx_live_connections_max", n.max_live),
        ("emqx_sessions_count", n.connections),
        ("emqx_sessions_max", n.connections),
        ("emqx_channels_count", n.connections),
        ("emqx_channels_max", n.connections),
        ("emqx_subscriptions_count", n.subscriptions),
        ("emqx_subscriptions_max", n.subscriptions),
        ("emqx_cluster_sessions_count", cluster_sessions),
        ("emqx_cluster_sessions_max", cluster_sessions),
        ("emqx_subscribers_count", n.subscriptions),
        ("emqx_suboptions_count", n.subscriptions),
        ("emqx_topics_count", n.subscriptions),
        ("emqx_retained_count", 0),
        ("emqx_delayed_count", 0),
        ("emqx_cluster_nodes_running", running),
        ("emqx_cluster_nodes_stopped", stopped),
        ("emqx_client_connected", n.counters.client_connected),
        ("emqx_client_disconnected", n.counters.client_disconnected),
        ("emqx_session_created", n.counters.session_created),
        ("emqx_session_resumed", n.counters.session_resumed),
        ("emqx_session_takenover", n.counters.session_takenover),
        ("emqx_session_discarded", n.counters.session_discarded),
        ("emqx_messages_received", n.counters.messages_received),
        (
            "emqx_delivery_dropped",
            n.counters.delivery_dropped_queue_full,
        ),
        (
            "emqx_delivery_dropped_queue_full",
            n.counters.delivery_dropped_queue_full,
        ),
    ]
}

fn metric_type(name: &str) -> &'static str {
    if name.ends_with("_count") || name.ends_with("_max") || name.starts_with("emqx_cluster_nodes")
    {
        "gauge"
    } else {
        "counter"
    }
}

/// Metric values of one node (or the sum), by name.
pub type MetricValues = Vec<(&'static str, u64)>;

/// One series per node label (`None`: unlabelled).
pub type MetricSeries = Vec<(Option<String>, MetricValues)>;

/// Prometheus text format; a label adds `node="…"` (`all_nodes_unaggregated`).
pub fn prometheus_text(series: &[(Option<String>, MetricValues)]) -> String {
    let mut out = String::new();
    let Some((_, first)) = series.first() else {
        return out;
    };
    for (i, (name, _)) in first.iter().enumerate() {
        let _ = writeln!(out, "# TYPE {name} {}", metric_type(name));
        for (label, values) in series {
            let value = values.get(i).map(|(_, v)| *v).unwrap_or(0);
            match label {
                Some(node) => {
                    let _ = writeln!(out, "{name}{{node=\"{node}\"}} {value}");
                }
                None => {
                    let _ = writeln!(out, "{name} {value}");
                }
            }
        }
    }
    out
}
