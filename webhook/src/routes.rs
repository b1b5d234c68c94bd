//! The HTTP surface: review endpoints, probes and metrics.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use emqx_certs::CertResolver;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;

use crate::admission::{self, Hook};
use crate::conversion;
use crate::kind::KindLabel;
use crate::metrics::{Endpoint, Metrics, Outcome};
use crate::review_error::ReviewError;

/// The API server's own request size limit (3 MiB); nothing it sends is larger.
pub const DEFAULT_BODY_LIMIT: usize = 3 * 1024 * 1024;

/// What the handlers share.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The served certificate; `/readyz` is ready only once one is loaded.
    pub resolver: Arc<CertResolver>,
    /// Request metrics.
    pub metrics: Arc<Metrics>,
    /// Set on SIGTERM so `/readyz` fails while connections drain.
    pub shutting_down: Arc<AtomicBool>,
}

impl AppState {
    /// State with fresh metrics and no certificate.
    pub fn new(resolver: Arc<CertResolver>) -> Self {
        Self {
            resolver,
            metrics: Arc::new(Metrics::new()),
            shutting_down: Arc::new(AtomicBool::new(false)),
        }
    }
}

/// Limits applied to every review request.
#[derive(Debug, Clone, Copy)]
pub struct RequestLimits {
    /// Largest accepted body; larger → 413.
    pub max_body_bytes: usize,
    /// Time to receive the body and answer; longer → 408. Bounds slow
    /// ("slowloris") bodies.
    pub request_timeout: Duration,
}

impl Default for RequestLimits {
    fn default() -> Self {
        Self {
            max_body_bytes: DEFAULT_BODY_LIMIT,
            request_timeout: Duration::from_secs(10),
        }
    }
}

/// The router: `POST /mutate`, `/validate`, `/convert`; `GET /healthz`,
/// `/readyz`, `/metrics`.
pub fn router(state: AppState, limits: RequestLimits) -> Router {
    let reviews = Router::new()
        .route("/mutate", post(mutate))
        .route("/validate", post(validate))
        .route("/convert", post(convert))
        .layer(DefaultBodyLimit::max(limits.max_body_bytes))
        // Rejects a too-large Content-Length before reading any of the body;
        // DefaultBodyLimit alone would first wait for (and count) the bytes.
        .layer(RequestBodyLimitLayer::new(limits.max_body_bytes))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            limits.request_timeout,
        ));
    Router::new()
        .merge(reviews)
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
        // A bug that panics answers 500 on that request instead of dropping
        // the connection; the property tests treat any 5xx as a failure.
        .layer(CatchPanicLayer::new())
}

async fn mutate(State(state): State<AppState>, body: Bytes) -> Response {
    admit(&state, &body, Hook::Mutate, Endpoint::Mutate)
}

async fn validate(State(state): State<AppState>, body: Bytes) -> Response {
    admit(&state, &body, Hook::Validate, Endpoint::Validate)
}

fn admit(state: &AppState, body: &[u8], hook: Hook, endpoint: Endpoint) -> Response {
    let started = Instant::now();
    let (response, kind, outcome) = match admission::review(body, hook) {
        Ok(out) => {
            if out.denied
                && let Some(r) = &out.review.response
            {
                tracing::info!(uid = %r.uid, kind = ?out.kind, ?endpoint, message = %r.result.message, "admission denied");
            }
            let outcome = if out.denied {
                Outcome::Denied
            } else {
                Outcome::Allowed
            };
            let response = match admission::encode(&out.review) {
                Ok(bytes) => ([(header::CONTENT_TYPE, "application/json")], bytes).into_response(),
                Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
            };
            (response, out.kind, outcome)
        }
        Err(e) => bad_request(&e, endpoint),
    };
    state
        .metrics
        .observe(endpoint, kind, outcome, started.elapsed().as_secs_f64());
    response
}

async fn convert(State(state): State<AppState>, body: Bytes) -> Response {
    let started = Instant::now();
    let (response, kind, outcome) = match conversion::review(&body) {
        Ok(out) => {
            if out.failed
                && let Some(r) = &out.review.response
            {
                tracing::warn!(uid = %r.uid, kind = ?out.kind, message = %r.result.message, "conversion failed");
            }
            let outcome = if out.failed {
                Outcome::Failed
            } else {
                Outcome::Allowed
            };
            (axum::Json(out.review).into_response(), out.kind, outcome)
        }
        Err(e) => bad_request(&e, Endpoint::Convert),
    };
    state.metrics.observe(
        Endpoint::Convert,
        kind,
        outcome,
        started.elapsed().as_secs_f64(),
    );
    response
}

fn bad_request(error: &ReviewError, endpoint: Endpoint) -> (Response, KindLabel, Outcome) {
    tracing::debug!(?endpoint, %error, "bad review request");
    (
        (StatusCode::BAD_REQUEST, error.to_string()).into_response(),
        KindLabel::Unknown,
        Outcome::BadRequest,
    )
}

async fn readyz(State(state): State<AppState>) -> Response {
    if state.shutting_down.load(Ordering::Relaxed) {
        (StatusCode::SERVICE_UNAVAILABLE, "shutting down").into_response()
    } else if !state.resolver.is_loaded() {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "no serving certificate loaded yet",
        )
            .into_response()
    } else {
        (StatusCode::OK, "ready").into_response()
    }
}

async fn metrics(State(state): State<AppState>) -> Response {
    match state.metrics.encode() {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}
