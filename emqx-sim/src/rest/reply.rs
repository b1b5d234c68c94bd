//! Response shapes EMQX uses: bare JSON (5.x), the `{"code":0,"data":…}`
//! envelope (4.4), `{"code","message"}` errors, and the 404 page by `Accept`.

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// A JSON response.
pub fn json(status: StatusCode, body: Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// A 5.x error body `{"code":…,"message":…}`.
pub fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    json(status, json!({"code": code, "message": message.into()}))
}

/// A 4.4 success envelope.
pub fn v4_ok(data: Value) -> Response {
    json(StatusCode::OK, json!({"code": 0, "data": data}))
}

/// A 4.4 error with a numeric code (102 unknown, 108 bad parameter). The
/// exact 4.4 rebalance error bodies are not public; these are a best guess.
pub fn v4_error(status: StatusCode, code: u32, message: impl Into<String>) -> Response {
    json(status, json!({"code": code, "message": message.into()}))
}

/// 401 with `WWW-Authenticate`, as the dashboard listener answers.
pub fn unauthorized(code: &str, message: &str) -> Response {
    let mut r = error(StatusCode::UNAUTHORIZED, code, message);
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic Realm=\"emqx-dashboard\""),
    );
    r
}

/// 404 for an unknown path (5.1+): body chosen by `Accept`.
pub fn not_found_by_accept(headers: &HeaderMap) -> Response {
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    if accept.contains("application/json") {
        error(StatusCode::NOT_FOUND, "NOT_FOUND", "Request Path Not Found")
    } else if accept.contains("text/plain") {
        (
            StatusCode::NOT_FOUND,
            [(header::CONTENT_TYPE, "text/plain")],
            "404 - NOT FOUND",
        )
            .into_response()
    } else {
        (
            StatusCode::NOT_FOUND,
            [(header::CONTENT_TYPE, "text/html")],
            "<html><head><title>404 - NOT FOUND</title></head><body><h1>404 - NOT FOUND</h1></body></html>",
        )
            .into_response()
    }
}

/// 4.4 (minirest 0.3.12, `src/minirest_handler.erl`): an unknown path or
/// method under `/api/v4` is `404`, `text/plain`, `Not found.`.
pub fn not_found_minirest_0_3() -> Response {
    (
        StatusCode::NOT_FOUND,
        [(header::CONTENT_TYPE, "text/plain")],
        "Not found.",
    )
        .into_response()
}

/// 4.4 (minirest 0.3.12, `src/minirest.erl`, `apply_handler/3`): a refused
/// AppID is `401 UNAUTHORIZED` with the minirest realm, no JSON.
pub fn unauthorized_minirest_0_3() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic Realm=\"minirest-server\""),
        )],
        "UNAUTHORIZED",
    )
        .into_response()
}

/// 5.0.x: unknown `/api/v5` paths answer `API_NOT_EXIST`; others get the dashboard.
pub fn not_found_5_0(path: &str) -> Response {
    if path.starts_with("/api/v5") {
        error(
            StatusCode::NOT_FOUND,
            "API_NOT_EXIST",
            "Request Path Not Found",
        )
    } else {
        (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/html")],
            "<html><head><title>EMQX Dashboard</title></head><body><div id=\"app\"></div></body></html>",
        )
            .into_response()
    }
}

/// An Erlang node atom as EMQX prints it inside messages: bare when it has only
/// letters, digits, `_` and `@` and starts lower-case, else single-quoted.
pub fn atom(name: &str) -> String {
    let bare = name.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '@');
    if bare {
        name.to_string()
    } else {
        format!("'{}'", name.replace('\\', "\\\\").replace('\'', "\\'"))
    }
}

/// `error on node '…': <reason>` with the node printed as an atom.
pub fn node_error(node: &str, reason: &str) -> String {
    format!("error on node {}: {reason}", atom(node))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atoms_are_quoted_like_erlang() {
        assert_eq!(atom("emqx@localhost"), "emqx@localhost");
        assert_eq!(atom("emqx@10.0.0.1"), "'emqx@10.0.0.1'");
        assert_eq!(atom("Emqx@a"), "'Emqx@a'");
        assert_eq!(
            node_error("emqx@10.0.0.1", "already_started"),
            "error on node 'emqx@10.0.0.1': already_started"
        );
    }
}
