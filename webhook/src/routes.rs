//! The HTTP surface: the review endpoints (TLS port) and the probes and
//! metrics (health port, or the TLS port when no health port is set).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use emqx_certs::CertResolver;
use tower_http::catch_panic::CatchPanicLayer;

use crate::admission::{self, Hook};
use crate::conversion;
use crate::intake::{BodyError, Intake};
pub use crate::intake::{DEFAULT_BODY_LIMIT, RequestLimits};
use crate::kind::KindLabel;
use crate::metrics::{Endpoint, Metrics, Outcome};
use crate::review_error::ReviewError;

/// What the handlers share.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The served certificate; `/readyz` is ready only once one is loaded.
    pub resolver: Arc<CertResolver>,
    /// Request and connection metrics.
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

#[derive(Debug, Clone)]
struct Reviews {
    state: AppState,
    intake: Intake,
}

/// The review endpoints: `POST /mutate`, `/validate`, `/convert`.
pub fn review_router(state: AppState, limits: RequestLimits) -> Router {
    let reviews = Arc::new(Reviews {
        state,
        intake: Intake::new(limits),
    });
    Router::new()
        .route("/mutate", post(mutate))
        .route("/validate", post(validate))
        .route("/convert", post(convert))
        .with_state(reviews)
        // A bug that panics answers 500 on that request instead of dropping
        // the connection; the property tests treat any 5xx as a failure.
        .layer(CatchPanicLayer::new())
}

/// The probes and metrics: `GET /healthz`, `/readyz`, `/metrics`.
pub fn health_router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
        .layer(CatchPanicLayer::new())
}

/// Both on one port (when the binary runs without `--health-listen`).
pub fn router(state: AppState, limits: RequestLimits) -> Router {
    review_router(state.clone(), limits).merge(health_router(state))
}

async fn mutate(State(r): State<Arc<Reviews>>, req: Request) -> Response {
    r.answer(Endpoint::Mutate, req).await
}

async fn validate(State(r): State<Arc<Reviews>>, req: Request) -> Response {
    r.answer(Endpoint::Validate, req).await
}

async fn convert(State(r): State<Arc<Reviews>>, req: Request) -> Response {
    r.answer(Endpoint::Convert, req).await
}

impl Reviews {
    /// Receives the body, waits for a review slot, and answers on a blocking
    /// thread (a 3 MiB review is tens of milliseconds of CPU; the async
    /// workers keep accepting and answering probes meanwhile).
    async fn answer(self: Arc<Self>, endpoint: Endpoint, req: Request) -> Response {
        let deadline = tokio::time::Instant::now() + self.intake.limits.request_timeout;
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let body = match self
            .intake
            .receive(req.into_body(), declared, deadline)
            .await
        {
            Ok(body) => body,
            Err(e) => {
                let status = match e {
                    BodyError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
                    BodyError::Timeout(_) => StatusCode::REQUEST_TIMEOUT,
                    BodyError::Read(_) => StatusCode::BAD_REQUEST,
                    BodyError::TooManyValues { .. } => StatusCode::PAYLOAD_TOO_LARGE,
                };
                self.state
                    .metrics
                    .observe(endpoint, KindLabel::Unknown, Outcome::BadRequest, 0.0);
                return (status, e.to_string()).into_response();
            }
        };
        // Its tokens were counted, and refused over the limit, as it arrived.
        let Some(slot) = self.intake.slot(body.lane, body.tokens, deadline).await else {
            self.state.metrics.review_overloaded();
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                "too many reviews in progress; try again",
            )
                .into_response();
        };
        let this = self.clone();
        let answered = tokio::task::spawn_blocking(move || {
            let _slot = slot;
            let response = match endpoint {
                Endpoint::Mutate => this.admit(&body.bytes, Hook::Mutate, endpoint),
                Endpoint::Validate => this.admit(&body.bytes, Hook::Validate, endpoint),
                Endpoint::Convert => this.convert(&body.bytes),
            };
            drop(body);
            response
        })
        .await;
        answered.unwrap_or_else(|e| {
            tracing::error!(?endpoint, error = %e, "review panicked");
            (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
        })
    }

    fn admit(&self, body: &[u8], hook: Hook, endpoint: Endpoint) -> Response {
        let started = Instant::now();
        let (response, kind, outcome) = match admission::review(body, hook) {
            Ok(out) => {
                if out.denied {
                    let r = &out.answer;
                    tracing::info!(uid = %r.uid, kind = ?out.kind, ?endpoint, message = %r.result.message, "admission denied");
                }
                let outcome = if out.denied {
                    Outcome::Denied
                } else {
                    Outcome::Allowed
                };
                (
                    json_response(admission::encode(&out.answer)),
                    out.kind,
                    outcome,
                )
            }
            Err(e) => bad_request(&e, endpoint),
        };
        self.state
            .metrics
            .observe(endpoint, kind, outcome, started.elapsed().as_secs_f64());
        response
    }

    fn convert(&self, body: &[u8]) -> Response {
        let started = Instant::now();
        let (response, kind, outcome) = match conversion::review(body) {
            Ok(out) => {
                if out.failed {
                    let r = &out.answer;
                    tracing::warn!(uid = %r.uid, kind = ?out.kind, message = %r.result.message, "conversion failed");
                }
                let outcome = if out.failed {
                    Outcome::Failed
                } else {
                    Outcome::Allowed
                };
                (
                    json_response(conversion::encode(&out.answer)),
                    out.kind,
                    outcome,
                )
            }
            Err(e) => bad_request(&e, Endpoint::Convert),
        };
        self.state.metrics.observe(
            Endpoint::Convert,
            kind,
            outcome,
            started.elapsed().as_secs_f64(),
        );
        response
    }
}

fn json_response(encoded: Result<Vec<u8>, serde_json::Error>) -> Response {
    match encoded {
        Ok(bytes) => ([(header::CONTENT_TYPE, "application/json")], bytes).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
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
