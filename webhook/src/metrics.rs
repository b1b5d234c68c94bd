//! Prometheus metrics: requests and latency per endpoint and kind, denials.

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::kind::KindLabel;

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
        Self {
            registry,
            requests,
            denials,
            latency,
        }
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
