//! HTTP Basic API-key authentication of the management API.

use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::Response;
use base64::Engine;

use super::reply;
use crate::api_key::{ApiKey, ApiRole};

/// Checks the `Authorization` header against `keys`; `Err` is the response to send.
pub fn authorize(
    headers: &HeaderMap,
    method: &Method,
    keys: &[ApiKey],
) -> Result<(), Box<Response>> {
    let header_error = || {
        reply::unauthorized(
            "AUTHORIZATION_HEADER_ERROR",
            "Support authorization: basic/bearer ",
        )
    };
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Err(Box::new(header_error()));
    };
    let Ok(value) = value.to_str() else {
        return Err(Box::new(header_error()));
    };
    let (scheme, rest) = value.trim().split_once(' ').unwrap_or((value, ""));
    if scheme.eq_ignore_ascii_case("bearer") {
        // The simulator issues no dashboard tokens.
        return Err(Box::new(reply::unauthorized(
            "BAD_TOKEN",
            "Token is invalid",
        )));
    }
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(Box::new(header_error()));
    }
    let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(rest.trim()) else {
        return Err(Box::new(header_error()));
    };
    let Ok(decoded) = String::from_utf8(decoded) else {
        return Err(Box::new(header_error()));
    };
    let (key, secret) = decoded.split_once(':').unwrap_or((&decoded, ""));
    let Some(found) = keys.iter().find(|k| k.key == key && k.secret == secret) else {
        return Err(Box::new(reply::unauthorized(
            "BAD_API_KEY_OR_SECRET",
            "Check api_key/api_secret",
        )));
    };
    let allowed = match found.role {
        ApiRole::Administrator => true,
        ApiRole::Viewer => method == Method::GET,
        ApiRole::Publisher => false,
    };
    if allowed {
        Ok(())
    } else {
        Err(Box::new(reply::error(
            StatusCode::FORBIDDEN,
            "UNAUTHORIZED_ROLE",
            "This API Key don't have permission to access this resource",
        )))
    }
}
