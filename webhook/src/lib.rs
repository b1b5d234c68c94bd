//! `emqx-webhook`: admission (defaulting, validation) and CRD conversion for
//! `apps.emqx.io`.
//!
//! Every decision is made by `emqx-crd` ([`emqx_crd::dynamic`]); this crate
//! only speaks the AdmissionReview/ConversionReview protocol ([`admission`],
//! [`conversion`], both pure), serves it over TLS ([`server`], [`routes`]),
//! and counts what it did ([`metrics`]).

pub mod admission;
pub mod config;
/// The connection table, shared with the reconciler's admin port.
pub use emqx_listener::connections;
pub mod conversion;
pub mod envelope;
pub mod intake;
pub mod kind;
pub mod metrics;
pub mod review_error;
pub mod routes;
pub mod server;
pub mod telemetry;
pub mod tls;
