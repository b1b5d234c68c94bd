//! The request handler: faults, routing, authentication, then the endpoint.

use std::sync::Arc;

use axum::body::{Body, to_bytes};
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::auth::authorize;
use super::calls::ApiCalls;
use super::global_status;
use super::payload;
use super::reply::{self, node_error};
use super::route::{Endpoint, Route, route};
use crate::cluster::{BrokerCluster, EvacuationCallError, RecipientError};
use crate::config::NodeConfig;
use crate::evacuation_request::parse_evacuation_start_as;
use crate::faults::Faults;
use crate::version::ApiGeneration;

/// Largest request body read (EMQX's dashboard limit is of the same order).
const MAX_BODY: usize = 1024 * 1024;

/// What every request handler needs.
#[derive(Debug, Clone)]
pub struct ApiContext {
    /// The serving node's configuration.
    pub config: Arc<NodeConfig>,
    /// Its cluster.
    pub cluster: Arc<BrokerCluster>,
    /// Its fault switches.
    pub faults: Arc<Faults>,
    /// The API calls it received.
    pub calls: Arc<ApiCalls>,
}

impl ApiContext {
    fn v5(&self) -> bool {
        self.config.version.api() == ApiGeneration::V5
    }

    fn node(&self) -> &str {
        &self.config.node_name
    }
}

/// Serves any request to the node's HTTP listener.
pub async fn handle(State(ctx): State<ApiContext>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_string();
    let query = parts.uri.query().unwrap_or("").to_string();
    ctx.calls.record(&parts.method, &path);
    if path == "/status" || (ctx.v5() && path == "/api/v5/status") {
        return status(&ctx, &query);
    }
    if path.starts_with("/api/") {
        let delay = ctx.faults.http_delay();
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let write = parts.method != axum::http::Method::GET;
        if ctx.faults.http_500() || (write && ctx.faults.http_500_on_writes()) {
            return reply::error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "INTERNAL_ERROR",
                "injected fault",
            );
        }
    }
    let routed = route(
        &ctx.config.version,
        ctx.config.edition,
        &parts.method,
        &path,
    );
    if !ctx.v5() {
        return v4_request(&ctx, routed, &parts, &path, &query, body).await;
    }
    let (endpoint, public) = match routed {
        Route::Unknown if ctx.config.version.is_5_0() => return reply::not_found_5_0(&path),
        Route::Unknown => return reply::not_found_by_accept(&parts.headers),
        Route::MethodNotAllowed => return StatusCode::METHOD_NOT_ALLOWED.into_response(),
        Route::Known { endpoint, public } => (endpoint, public),
    };
    if !public
        && let Err(denied) = authorize(&parts.headers, &parts.method, &ctx.cluster.api_keys())
    {
        return *denied;
    }
    if let Some(answer) = global_status::timed(&ctx, &endpoint).await {
        return answer;
    }
    let body = match read_body(body).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    dispatch(&ctx, endpoint, &query, &parts.headers, &body)
}

/// EMQX 4.4's management listener (`apps/emqx_management/src/emqx_mgmt_http.erl`
/// at v4.4.19) routes `/status` and `/api/v4/[...]` only; anything else is
/// cowboy's bare 404. Under `/api/v4`, minirest 0.3.12 (`src/minirest.erl`,
/// `apply_handler/3`) checks the AppID before it matches a route, and
/// `src/minirest_handler.erl` (`dispatch/4`) answers a path or method it does
/// not know with `404`, `text/plain`, `Not found.`: not JSON. That is how a
/// 4.4 broker without node evacuation answers `…/load_rebalance/…`.
async fn v4_request(
    ctx: &ApiContext,
    routed: Route,
    parts: &axum::http::request::Parts,
    path: &str,
    query: &str,
    body: Body,
) -> Response {
    if path != "/api/v4" && !path.starts_with("/api/v4/") {
        return StatusCode::NOT_FOUND.into_response();
    }
    let (endpoint, public) = match routed {
        Route::Known { endpoint, public } => (Some(endpoint), public),
        Route::Unknown | Route::MethodNotAllowed => (None, false),
    };
    if !public && authorize(&parts.headers, &parts.method, &ctx.cluster.api_keys()).is_err() {
        return reply::unauthorized_minirest_0_3();
    }
    let Some(endpoint) = endpoint else {
        return reply::not_found_minirest_0_3();
    };
    if let Some(answer) = global_status::timed(ctx, &endpoint).await {
        return answer;
    }
    let body = match read_body(body).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    dispatch(ctx, endpoint, query, &parts.headers, &body)
}

async fn read_body(body: Body) -> Result<Vec<u8>, Response> {
    to_bytes(body, MAX_BODY)
        .await
        .map(|b| b.to_vec())
        .map_err(|_| {
            reply::error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "BAD_REQUEST",
                format!("request body larger than {MAX_BODY} bytes or unreadable"),
            )
        })
}

fn status(ctx: &ApiContext, query: &str) -> Response {
    let name = ctx.node();
    let rel = if ctx.v5() {
        format!("e{}", ctx.config.version)
    } else {
        ctx.config.version.to_string()
    };
    if query.split('&').any(|q| q == "format=json") {
        return reply::json(
            StatusCode::OK,
            json!({"node_name": name, "rel_vsn": rel, "broker_status": "started", "app_status": "running"}),
        );
    }
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "text/plain"),
            (header::RETRY_AFTER, "15"),
        ],
        format!("Node {name} is started\nemqx is running"),
    )
        .into_response()
}

fn ok_empty(ctx: &ApiContext) -> Response {
    if ctx.v5() {
        reply::json(StatusCode::OK, json!({}))
    } else {
        reply::v4_ok(json!([]))
    }
}

fn ok(ctx: &ApiContext, v: Value) -> Response {
    if ctx.v5() {
        reply::json(StatusCode::OK, v)
    } else {
        reply::v4_ok(v)
    }
}

/// Errors keep their HTTP status in both generations; 4.4 bodies carry numeric codes.
fn fail(ctx: &ApiContext, status: StatusCode, code: &str, message: String) -> Response {
    if ctx.v5() {
        reply::error(status, code, message)
    } else {
        let numeric = if code == "BAD_REQUEST" { 108 } else { 102 };
        reply::v4_error(status, numeric, message)
    }
}

fn node_not_found(ctx: &ApiContext, node: &str) -> Response {
    fail(
        ctx,
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
        format!("Node not found: {node}"),
    )
}

fn dispatch(
    ctx: &ApiContext,
    endpoint: Endpoint,
    query: &str,
    headers: &axum::http::HeaderMap,
    body: &[u8],
) -> Response {
    let cluster = &ctx.cluster;
    match endpoint {
        Endpoint::Nodes => {
            let sessions = cluster.cluster_sessions();
            let nodes: Vec<Value> = cluster
                .summaries()
                .iter()
                .filter(|n| n.running || n.role == crate::config::Role::Core)
                .map(|n| {
                    if ctx.v5() {
                        payload::node_v5(n, sessions)
                    } else {
                        payload::node_v4(n)
                    }
                })
                .collect();
            ok(ctx, json!(nodes))
        }
        Endpoint::Node(name) => {
            let sessions = cluster.cluster_sessions();
            match cluster
                .summaries()
                .iter()
                .find(|n| n.name == name && n.running)
            {
                Some(n) if ctx.v5() => ok(ctx, payload::node_v5(n, sessions)),
                Some(n) => ok(ctx, payload::node_v4(n)),
                None => node_not_found(ctx, &name),
            }
        }
        Endpoint::Cluster => reply::json(
            StatusCode::OK,
            json!({"name": cluster.name, "nodes": cluster.running_nodes(), "self": ctx.node()}),
        ),
        // `apps/emqx_management/src/emqx_mgmt_api_cluster.erl` (v5.8.9, the
        // same in e5.0.4 … e5.10.4): `ignore` (self) → 400 "Can't leave self";
        // `{error, E}` → 400 with E printed by `~p`; mria's `force_leave/1`
        // (`src/mria.erl`, 0.8.x under ekka 0.23.2) gives `node_not_in_cluster`
        // for a node that is not a member. Never 404.
        Endpoint::ForceLeave(name) => match cluster.force_leave(ctx.node(), &name) {
            Ok(()) => StatusCode::NO_CONTENT.into_response(),
            Err(message) => reply::error(StatusCode::BAD_REQUEST, "BAD_REQUEST", message),
        },
        // 4.4 (`apps/emqx_management/src/emqx_mgmt_api_stats.erl` v4.4.19):
        // `[#{node, stats}]` in the `{code, data}` envelope, one entry per
        // running node; no `aggregate` parameter (minirest ignores it).
        Endpoint::Stats if !ctx.v5() => {
            let data: Vec<Value> = cluster
                .summaries()
                .iter()
                .filter(|n| n.running)
                .map(|n| json!({"node": n.name, "stats": payload::stats_v4(n)}))
                .collect();
            ok(ctx, json!(data))
        }
        Endpoint::Stats => {
            let sessions = cluster.cluster_sessions();
            let per_node: Vec<_> = cluster
                .summaries()
                .iter()
                .filter(|n| n.running)
                .map(|n| {
                    let mut m = payload::stats(n, sessions);
                    m.insert("node".into(), json!(n.name));
                    m
                })
                .collect();
            if query.split('&').any(|q| q == "aggregate=true") {
                let mut sum = payload::aggregate(&per_node);
                sum.remove("node");
                ok(ctx, Value::Object(sum))
            } else {
                ok(ctx, json!(per_node))
            }
        }
        // 5.x: `apps/emqx_management/src/emqx_mgmt_api_metrics.erl`
        // (v5.8.9): `aggregate=true` sums every node's counters into one
        // map; otherwise one map per running node with its `node` first
        // (`[{node, Node} | Result]`). 4.4 (`emqx_mgmt_api_metrics.erl`,
        // v4.4.19): `[#{node, metrics}]` in the `{code, data}` envelope.
        Endpoint::Metrics => {
            let running: Vec<_> = cluster
                .summaries()
                .into_iter()
                .filter(|n| n.running)
                .collect();
            if !ctx.v5() {
                let data: Vec<Value> = running
                    .iter()
                    .map(|n| json!({"node": n.name, "metrics": payload::counters(n)}))
                    .collect();
                return ok(ctx, json!(data));
            }
            let per_node: Vec<_> = running.iter().map(payload::counters).collect();
            if query.split('&').any(|q| q == "aggregate=true") {
                ok(ctx, Value::Object(payload::aggregate(&per_node)))
            } else {
                let data: Vec<Value> = running
                    .iter()
                    .zip(per_node)
                    .map(|(n, counters)| {
                        let mut m = serde_json::Map::new();
                        m.insert("node".into(), json!(n.name));
                        m.extend(counters);
                        Value::Object(m)
                    })
                    .collect();
                ok(ctx, json!(data))
            }
        }
        Endpoint::Prometheus => prometheus(ctx, query, headers),
        Endpoint::Configs => super::configs::answer(ctx, query, headers),
        Endpoint::Listeners => {
            let data: Vec<Value> = cluster
                .running_nodes()
                .iter()
                .map(|n| {
                    json!({"node": n, "listeners": [{
                        "protocol": "mqtt:tcp", "identifier": "mqtt:tcp:external",
                        "listen_on": format!("0.0.0.0:{}", ctx.config.mqtt_port),
                        "acceptors": 8, "max_conns": 1_024_000, "current_conns": 0,
                        "shutdown_count": []
                    }]})
                })
                .collect();
            reply::v4_ok(json!(data))
        }
        // Answered with their delays by `global_status::timed` first.
        Endpoint::RebalanceStatus => global_status::local(ctx),
        Endpoint::GlobalStatus => global_status::global(ctx, &Default::default()),
        Endpoint::AvailabilityCheck => {
            if cluster.is_evacuating(ctx.node()) {
                reply::error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "NODE_EVACUATING",
                    "Node Evacuating",
                )
            } else {
                reply::json(StatusCode::OK, json!({}))
            }
        }
        Endpoint::NodeEvictionStatus => {
            let me = cluster
                .summaries()
                .into_iter()
                .find(|n| n.name == ctx.node());
            match (cluster.evacuation_state(ctx.node()), me) {
                (Some(_), Some(n)) => reply::json(
                    StatusCode::OK,
                    json!({"status": "enabled", "stats": {"connections": n.live_connections, "sessions": n.connections}}),
                ),
                _ => reply::json(StatusCode::OK, json!({"status": "disabled"})),
            }
        }
        Endpoint::EvacuationStart(node) => evacuation_start(ctx, &node, headers, body),
        Endpoint::EvacuationStop(node) => {
            if !cluster.is_running(&node) {
                return node_not_found(ctx, &node);
            }
            match cluster.stop_evacuation(&node) {
                Ok(()) => ok_empty(ctx),
                Err(EvacuationCallError::NodeNotFound) => node_not_found(ctx, &node),
                Err(_) => fail(
                    ctx,
                    StatusCode::BAD_REQUEST,
                    "BAD_REQUEST",
                    node_error(&node, "not_started"),
                ),
            }
        }
    }
}

/// Order of checks as in EMQX: media type → body schema → node →
/// `migrate_to` → state machine.
fn evacuation_start(
    ctx: &ApiContext,
    node: &str,
    headers: &axum::http::HeaderMap,
    body: &[u8],
) -> Response {
    if ctx.v5() && !body.is_empty() && !is_json(headers) {
        return unsupported_media_type();
    }
    let options = match parse_evacuation_start_as(&ctx.config.version, body) {
        Ok(o) => o,
        Err(message) => return fail(ctx, StatusCode::BAD_REQUEST, "BAD_REQUEST", message),
    };
    let cluster = &ctx.cluster;
    if !cluster.is_running(node) {
        return node_not_found(ctx, node);
    }
    if let Some(list) = &options.migrate_to {
        match cluster.validate_recipients(list) {
            Ok(()) => {}
            Err(RecipientError::Invalid(bad)) => {
                let shown: Vec<String> = bad.iter().map(|b| format!("<<\"{b}\">>")).collect();
                return fail(
                    ctx,
                    StatusCode::BAD_REQUEST,
                    "BAD_REQUEST",
                    format!("Invalid nodes: [{}]", shown.join(",")),
                );
            }
            Err(RecipientError::Unavailable(bad)) => {
                let shown: Vec<String> = bad.iter().map(|b| reply::atom(b)).collect();
                return fail(
                    ctx,
                    StatusCode::BAD_REQUEST,
                    "NOT_FOUND",
                    format!("Nodes unavailable: [{}]", shown.join(",")),
                );
            }
        }
    }
    match cluster.start_evacuation(node, options) {
        Ok(()) => ok_empty(ctx),
        Err(EvacuationCallError::NodeNotFound) => node_not_found(ctx, node),
        Err(_) => fail(
            ctx,
            StatusCode::BAD_REQUEST,
            "BAD_REQUEST",
            node_error(node, "already_started"),
        ),
    }
}

/// Whether the request says its body is JSON.
fn is_json(headers: &axum::http::HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"))
}

/// 5.x: minirest (1.4.8 at v5.8.9, the same in 1.4.10; `src/minirest_body.erl`)
/// decodes a body as JSON only under `content-type: application/json` and
/// leaves any other body a binary; `check_request_body/5` in
/// `apps/emqx_dashboard/src/emqx_dashboard_swagger.erl` (v5.8.9) then answers
/// 415. A request without a body is not checked. 4.4's minirest 0.3.12
/// decodes every body as JSON whatever its type, so 4.4 has no 415.
fn unsupported_media_type() -> Response {
    reply::error(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "UNSUPPORTED_MEDIA_TYPE",
        "content-type:application/json Required",
    )
}

fn prometheus(ctx: &ApiContext, query: &str, headers: &axum::http::HeaderMap) -> Response {
    let cluster = &ctx.cluster;
    let all = cluster.summaries();
    let sessions = cluster.cluster_sessions();
    let running = all.iter().filter(|n| n.running).count() as u64;
    let stopped = all.len() as u64 - running;
    let mode = query
        .split('&')
        .find_map(|q| q.strip_prefix("mode="))
        .unwrap_or("node");
    let series: payload::MetricSeries = match mode {
        "node" => all
            .iter()
            .filter(|n| n.name == ctx.node())
            .map(|n| (None, payload::metrics(n, sessions, running, stopped)))
            .collect(),
        "all_nodes_unaggregated" => all
            .iter()
            .filter(|n| n.running)
            .map(|n| {
                (
                    Some(n.name.clone()),
                    payload::metrics(n, sessions, running, stopped),
                )
            })
            .collect(),
        "all_nodes_aggregated" => {
            let mut sum: Vec<(&'static str, u64)> = Vec::new();
            for n in all.iter().filter(|n| n.running) {
                let m = payload::metrics(n, sessions, running, stopped);
                if sum.is_empty() {
                    sum = m;
                } else {
                    for (acc, (_, v)) in sum.iter_mut().zip(m) {
                        // Cluster-wide gauges are not summed.
                        if !acc.0.starts_with("emqx_cluster_") {
                            acc.1 += v;
                        }
                    }
                }
            }
            vec![(None, sum)]
        }
        other => {
            let shown: String = other.chars().take(40).collect();
            return reply::error(
                StatusCode::BAD_REQUEST,
                "BAD_REQUEST",
                format!("mode: unknown value `{shown}`"),
            );
        }
    };
    let wants_json = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("application/json"));
    if wants_json {
        let items: Vec<Value> = series
            .iter()
            .map(|(label, values)| {
                let mut m = serde_json::Map::new();
                if let Some(node) = label {
                    m.insert("node".into(), json!(node));
                }
                for (k, v) in values {
                    m.insert((*k).to_string(), json!(v));
                }
                Value::Object(m)
            })
            .collect();
        let body = if mode == "all_nodes_unaggregated" {
            json!(items)
        } else {
            items.into_iter().next().unwrap_or(json!({}))
        };
        return reply::json(StatusCode::OK, body);
    }
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        payload::prometheus_text(&series),
    )
        .into_response()
}
