//! Prometheus metrics: requests and latency per endpoint and kind, denials;
//! connections per listener (open, refused, evicted, closed idle), failed
//! TLS handshakes, and reviews turned away by the concurrency limit.

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::connections::{EvictReason, RefuseReason};
use crate::kind::KindLabel;

/// The two listeners.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub enum ListenerName {
    /// The TLS port the apiserver calls.
    Webhook,
    /// The plain-HTTP probe and metrics port.
    Health,
}

impl ListenerName {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            ListenerName::Webhook => "webhook",
            ListenerName::Health => "health",
        }
    }
}

/// Why a TLS handshake did not finish.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub enum HandshakeFailure {
    /// Not finished within the handshake timeout.
    Timeout,
    /// The peer sent something that is not a TLS handshake we accept.
    Error,
}

/// A connection-table decision, as a label.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
enum TableReason {
    Evict(EvictReason),
    Refuse(RefuseReason),
}

impl EncodeLabelValue for ListenerName {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        std::fmt::Write::write_str(encoder, self.as_str())
    }
}

impl EncodeLabelValue for HandshakeFailure {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        let text = match self {
            HandshakeFailure::Timeout => "timeout",
            HandshakeFailure::Error => "error",
        };
        std::fmt::Write::write_str(encoder, text)
    }
}

impl EncodeLabelValue for TableReason {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        let text = match self {
            TableReason::Evict(r) => r.as_str(),
            TableReason::Refuse(r) => r.as_str(),
        };
        std::fmt::Write::write_str(encoder, text)
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ListenerLabels {
    listener: ListenerName,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TableLabels {
    listener: ListenerName,
    reason: TableReason,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HandshakeLabels {
    reason: HandshakeFailure,
}

/// The review endpoints.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub enum Endpoint {
    /// `POST /mutate`
    Mutate,
    /// `POST /validate`
    Validate,
    /// `POST /convert`
    Convert,
}

/// How a review request ended.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub enum Outcome {
    /// Allowed (admission) or converted (conversion).
    Allowed,
    /// Admission denied.
    Denied,
    /// Conversion failed.
    Failed,
    /// Not a review: HTTP 4xx.
    BadRequest,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    endpoint: Endpoint,
    kind: KindLabel,
    outcome: Outcome,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndpointLabels {
    endpoint: Endpoint,
    kind: KindLabel,
}

/// The webhook's metrics and their registry.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    denials: Family<EndpointLabels, Counter>,
    latency: Family<EndpointLabels, Histogram>,
    open: Family<ListenerLabels, Gauge>,
    refused: Family<TableLabels, Counter>,
    evicted: Family<TableLabels, Counter>,
    idle_closed: Family<ListenerLabels, Counter>,
    handshakes_failed: Family<HandshakeLabels, Counter>,
    reviews_overloaded: Counter,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric under the `emqx_webhook` prefix.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("emqx_webhook");
        let requests = Family::<RequestLabels, Counter>::default();
        let denials = Family::<EndpointLabels, Counter>::default();
        // 50 µs … ~1.6 s: our answers take well under a millisecond; the tail
        // is there to show a starving process.
        let latency = Family::<EndpointLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.000_05, 2.0, 16))
        });
        registry.register(
            "requests",
            "Review requests by endpoint, kind and outcome",
            requests.clone(),
        );
        registry.register(
            "denials",
            "Admission denials and failed conversions",
            denials.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "Time to answer a review, body read excluded",
            latency.clone(),
        );
        let open = Family::<ListenerLabels, Gauge>::default();
        let refused = Family::<TableLabels, Counter>::default();
        let evicted = Family::<TableLabels, Counter>::default();
        let idle_closed = Family::<ListenerLabels, Counter>::default();
        let handshakes_failed = Family::<HandshakeLabels, Counter>::default();
        let reviews_overloaded = Counter::default();
        registry.register(
            "connections_open",
            "Open connections per listener",
            open.clone(),
        );
        registry.register(
            "connections_refused",
            "Connections closed at accept because every slot was busy",
            refused.clone(),
        );
        registry.register(
            "connections_evicted",
            "Idle connections closed to make room for a new one",
            evicted.clone(),
        );
        registry.register(
            "connections_idle_closed",
            "Connections closed after the idle timeout with no request in flight",
            idle_closed.clone(),
        );
        registry.register(
            "tls_handshakes_failed",
            "TLS handshakes that failed or timed out",
            handshakes_failed.clone(),
        );
        registry.register(
            "reviews_overloaded",
            "Reviews answered 503 after waiting the request timeout for a review slot",
            reviews_overloaded.clone(),
        );
        Self {
            registry,
            requests,
            denials,
            latency,
            open,
            refused,
            evicted,
            idle_closed,
            handshakes_failed,
            reviews_overloaded,
        }
    }

    /// A connection was accepted.
    pub fn connection_opened(&self, listener: ListenerName) {
        self.open.get_or_create(&ListenerLabels { listener }).inc();
    }

    /// A connection ended.
    pub fn connection_closed(&self, listener: ListenerName) {
        self.open.get_or_create(&ListenerLabels { listener }).dec();
    }

    /// A new connection was closed at once.
    pub fn connection_refused(&self, listener: ListenerName, reason: RefuseReason) {
        let labels = TableLabels {
            listener,
            reason: TableReason::Refuse(reason),
        };
        self.refused.get_or_create(&labels).inc();
    }

    /// An idle connection was closed to make room.
    pub fn connection_evicted(&self, listener: ListenerName, reason: EvictReason) {
        let labels = TableLabels {
            listener,
            reason: TableReason::Evict(reason),
        };
        self.evicted.get_or_create(&labels).inc();
    }

    /// A connection was closed by the idle timeout.
    pub fn connection_idle_closed(&self, listener: ListenerName) {
        self.idle_closed
            .get_or_create(&ListenerLabels { listener })
            .inc();
    }

    /// A TLS handshake failed.
    pub fn handshake_failed(&self, reason: HandshakeFailure) {
        self.handshakes_failed
            .get_or_create(&HandshakeLabels { reason })
            .inc();
    }

    /// A review waited too long for a slot.
    pub fn review_overloaded(&self) {
        self.reviews_overloaded.inc();
    }

    /// Records one answered request.
    pub fn observe(&self, endpoint: Endpoint, kind: KindLabel, outcome: Outcome, seconds: f64) {
        self.requests
            .get_or_create(&RequestLabels {
                endpoint,
                kind,
                outcome,
            })
            .inc();
        let labels = EndpointLabels { endpoint, kind };
        if matches!(outcome, Outcome::Denied | Outcome::Failed) {
            self.denials.get_or_create(&labels).inc();
        }
        self.latency.get_or_create(&labels).observe(seconds);
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

impl Endpoint {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Endpoint::Mutate => "mutate",
            Endpoint::Validate => "validate",
            Endpoint::Convert => "convert",
        }
    }
}

impl EncodeLabelValue for Endpoint {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        std::fmt::Write::write_str(encoder, self.as_str())
    }
}

impl Outcome {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Allowed => "allowed",
            Outcome::Denied => "denied",
            Outcome::Failed => "failed",
            Outcome::BadRequest => "bad_request",
        }
    }
}

impl EncodeLabelValue for Outcome {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        std::fmt::Write::write_str(encoder, self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_denials_separately_and_labels_by_endpoint_and_kind() {
        let m = Metrics::new();
        m.observe(Endpoint::Validate, KindLabel::Emqx, Outcome::Denied, 0.0002);
        m.observe(
            Endpoint::Validate,
            KindLabel::Emqx,
            Outcome::Allowed,
            0.0001,
        );
        m.observe(
            Endpoint::Convert,
            KindLabel::EmqxEnterprise,
            Outcome::Allowed,
            0.0001,
        );
        let text = m.encode().expect("encode");
        assert!(
            text.contains(
                r#"emqx_webhook_requests_total{endpoint="validate",kind="EMQX",outcome="denied"} 1"#
            ),
            "{text}"
        );
        assert!(
            text.contains(r#"emqx_webhook_denials_total{endpoint="validate",kind="EMQX"} 1"#),
            "{text}"
        );
        assert!(text.contains(r#"emqx_webhook_request_duration_seconds_count{endpoint="convert",kind="EmqxEnterprise"} 1"#), "{text}");
        assert!(
            !text.contains(r#"denials_total{endpoint="convert""#),
            "{text}"
        );
    }
}
