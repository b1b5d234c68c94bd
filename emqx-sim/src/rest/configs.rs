//! `GET /api/v5/configs`: the node's effective configuration, as
//! `apps/emqx_management/src/emqx_mgmt_api_configs.erl` (v5.8.9) serves it.
//!
//! - The `Accept` header picks the form (`find_suitable_accept/2`, with
//!   `text/plain` preferred): `*/*`, no header or `text/plain` → HOCON text
//!   (`get_configs_v2/1`, `hocon_pp`); `application/json` alone → the
//!   deprecated JSON form (`get_configs_v1/1`); anything else → 400
//!   `INVALID_ACCEPT`.
//! - `?key=<root>` (HOCON form) answers one root, still wrapped in its name
//!   (`emqx_conf_cli:get_config/1` returns `#{Key => Value}`). The key is an
//!   enum of root names checked by the schema (400 `BAD_REQUEST`
//!   otherwise). The simulator has only `listeners` and `dashboard`, the
//!   roots clients read ports from (the Go operator 2.2.29's `add_svc.go`
//!   builds its Services from them); any other key is refused with a 400
//!   that says so, never answered with made-up content.
//! - `?node=<node>` (JSON form): a node that is not running → 404
//!   `NOT_FOUND` `Bad node '<node>', reason not found`.
//!
//! The values are EMQX's defaults with the simulated node's real ports: the
//! MQTT TCP listener and the dashboard's HTTP listener are where this node
//! listens; ssl/ws/wss listeners are described as EMQX enables them by
//! default (the simulator does not serve them). Listener settings written in
//! `emqx.conf` are not applied.

use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use super::api::ApiContext;
use super::reply;
use super::route::percent_decode;

/// The roots the simulator describes.
pub const ROOTS: [&str; 2] = ["dashboard", "listeners"];

/// The form `Accept` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    /// `text/plain`: HOCON.
    Hocon,
    /// `application/json`: the deprecated v1 JSON.
    Json,
}

/// `find_suitable_accept/2` with preferences `[text/plain, application/json]`.
pub fn form(headers: &HeaderMap) -> Option<Form> {
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("*/*");
    let types: Vec<String> = accept
        .split(',')
        .map(|t| {
            t.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .collect();
    if types.iter().any(|t| t == "*/*" || t == "text/plain") {
        Some(Form::Hocon)
    } else if types.iter().any(|t| t == "application/json") {
        Some(Form::Json)
    } else {
        None
    }
}

/// The effective configuration of the node's listeners and dashboard.
pub fn effective(mqtt_port: u16, http_port: u16) -> Value {
    let listener = |bind: String, extra: Value| {
        let mut m = json!({
            "bind": bind,
            "enable": true,
            "acceptors": 16,
            "max_connections": "infinity",
            "proxy_protocol": false,
            "enable_authn": true,
            "mountpoint": "",
            "zone": "default"
        });
        if let (Some(m), Value::Object(extra)) = (m.as_object_mut(), extra) {
            m.extend(extra);
        }
        json!({ "default": m })
    };
    // The dashboard's two listeners differ only in their port (0: off).
    let dashboard_listener = |bind: u16| {
        json!({
            "bind": bind,
            "backlog": 1024,
            "inet6": false,
            "ipv6_v6only": false,
            "max_connections": 512,
            "num_acceptors": 2,
            "proxy_header": false,
            "send_timeout": "10s"
        })
    };
    json!({
        "dashboard": {
            "listeners": {
                "http": dashboard_listener(http_port),
                "https": dashboard_listener(0)
            },
            "default_username": "admin",
            "token_expired_time": "60m"
        },
        "listeners": {
            "tcp": listener(format!("0.0.0.0:{mqtt_port}"), json!({})),
            "ssl": listener("0.0.0.0:8883".into(), json!({
                "ssl_options": {
                    "cacertfile": "${EMQX_ETC_DIR}/certs/cacert.pem",
                    "certfile": "${EMQX_ETC_DIR}/certs/cert.pem",
                    "keyfile": "${EMQX_ETC_DIR}/certs/key.pem",
                    "verify": "verify_none"
                }
            })),
            "ws": listener("0.0.0.0:8083".into(), json!({"websocket": {"mqtt_path": "/mqtt"}})),
            "wss": listener("0.0.0.0:8084".into(), json!({"websocket": {"mqtt_path": "/mqtt"}}))
        }
    })
}

/// HOCON text of a JSON tree, one field per line, two-space indents,
/// sorted keys, strings quoted (what `hocon_pp:do/2` prints, readable by
/// any HOCON parser).
pub fn to_hocon(tree: &Map<String, Value>) -> String {
    let mut out = String::new();
    write_object(&mut out, tree, 0);
    out
}

fn write_object(out: &mut String, map: &Map<String, Value>, depth: usize) {
    let indent = "  ".repeat(depth);
    for (key, value) in map {
        let key = if key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            key.clone()
        } else {
            Value::String(key.clone()).to_string()
        };
        match value {
            Value::Object(inner) => {
                out.push_str(&format!("{indent}{key} {{\n"));
                write_object(out, inner, depth + 1);
                out.push_str(&format!("{indent}}}\n"));
            }
            // serde_json's string form is a valid HOCON quoted string.
            other => out.push_str(&format!("{indent}{key} = {other}\n")),
        }
    }
}

fn query_param(query: &str, name: &str) -> Option<String> {
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| percent_decode(&v.replace('+', " ")))
}

/// Answers `GET /configs` on `ctx`'s node.
pub fn answer(ctx: &ApiContext, query: &str, headers: &HeaderMap) -> Response {
    let key = query_param(query, "key");
    if let Some(key) = &key
        && !ROOTS.contains(&key.as_str())
    {
        return reply::error(
            StatusCode::BAD_REQUEST,
            "BAD_REQUEST",
            format!(
                "key: {key:?} is not a root this simulated EMQX describes (simulated: {})",
                ROOTS.join(", ")
            ),
        );
    }
    let Some(form) = form(headers) else {
        return reply::error(
            StatusCode::BAD_REQUEST,
            "INVALID_ACCEPT",
            "{error,no_suitable_accept}",
        );
    };
    let node = query_param(query, "node").unwrap_or_else(|| ctx.config.node_name.clone());
    if !ctx.cluster.is_running(&node) {
        return match form {
            Form::Json => reply::error(
                StatusCode::NOT_FOUND,
                "NOT_FOUND",
                format!("Bad node {}, reason not found", reply::atom(&node)),
            ),
            // The HOCON form makes the RPC regardless and fails on its
            // `badrpc` (code, unverified): minirest's 500.
            Form::Hocon => reply::error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "INTERNAL_ERROR",
                format!("{{badrpc,nodedown}} from {}", reply::atom(&node)),
            ),
        };
    }
    // Every simulated node of a cluster runs the same ports.
    let Value::Object(mut all) = effective(ctx.config.mqtt_port, ctx.config.http_port) else {
        return reply::error(StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL_ERROR", "");
    };
    match form {
        Form::Json => reply::json(StatusCode::OK, Value::Object(all)),
        Form::Hocon => {
            if let Some(key) = key {
                all.retain(|k, _| *k == key);
            }
            (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "text/plain")],
                to_hocon(&all),
            )
                .into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hocon_paths;

    fn headers(accept: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(a) = accept {
            h.insert(header::ACCEPT, a.parse().expect("header"));
        }
        h
    }

    #[test]
    fn accept_prefers_hocon_as_emqx_does() {
        assert_eq!(form(&headers(None)), Some(Form::Hocon));
        assert_eq!(form(&headers(Some("*/*"))), Some(Form::Hocon));
        assert_eq!(form(&headers(Some("text/plain"))), Some(Form::Hocon));
        assert_eq!(
            form(&headers(Some("application/json, text/plain;q=0.1"))),
            Some(Form::Hocon)
        );
        assert_eq!(form(&headers(Some("application/json"))), Some(Form::Json));
        assert_eq!(form(&headers(Some("text/html"))), None);
    }

    #[test]
    fn the_hocon_form_reads_back_with_the_ports() {
        let Value::Object(tree) = effective(1883, 18083) else {
            panic!("object")
        };
        let text = to_hocon(&tree);
        let get = |p: &str| hocon_paths::lookup(&text, p).expect("parses");
        assert_eq!(
            get("listeners.tcp.default.bind"),
            Some("0.0.0.0:1883".into())
        );
        assert_eq!(
            get("listeners.ws.default.websocket.mqtt_path"),
            Some("/mqtt".into())
        );
        assert_eq!(get("dashboard.listeners.http.bind"), Some("18083".into()));
        assert_eq!(get("dashboard.listeners.https.bind"), Some("0".into()));
        assert_eq!(
            get("listeners.ssl.default.ssl_options.certfile"),
            Some("${EMQX_ETC_DIR}/certs/cert.pem".into())
        );
    }
}
