//! `/metrics`: reconcile counts, errors and durations per kind, and the
//! progress of running evacuations.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub kind: String,
    pub error: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ClusterLabels {
    pub namespace: String,
    pub cluster: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NodeLabels {
    pub namespace: String,
    pub cluster: String,
    pub node: String,
}

/// The reconciler's metrics.
pub struct Metrics {
    pub registry: Registry,
    pub reconciles: Family<KindLabels, Counter>,
    pub errors: Family<ErrorLabels, Counter>,
    pub duration: Family<KindLabels, Histogram>,
    /// 1 while a cluster is upgrading, 0 otherwise.
    pub upgrading: Family<ClusterLabels, Gauge>,
    /// Connections plus sessions left on a node under evacuation.
    pub evacuation_remaining: Family<NodeLabels, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("emqx_reconciler");
        let reconciles = Family::<KindLabels, Counter>::default();
        let errors = Family::<ErrorLabels, Counter>::default();
        let duration = Family::<KindLabels, Histogram>::new_with_constructor(|| {
            Histogram::new([
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ])
        });
        let upgrading = Family::<ClusterLabels, Gauge>::default();
        let evacuation_remaining = Family::<NodeLabels, Gauge>::default();
        registry.register("reconciles", "Reconcile passes", reconciles.clone());
        registry.register(
            "reconcile_errors",
            "Failed reconcile passes",
            errors.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Duration of a reconcile pass",
            duration.clone(),
        );
        registry.register(
            "upgrading",
            "1 while a blue-green upgrade runs",
            upgrading.clone(),
        );
        registry.register(
            "evacuation_remaining",
            "Connections plus sessions left on a node being evacuated",
            evacuation_remaining.clone(),
        );
        Metrics {
            registry,
            reconciles,
            errors,
            duration,
            upgrading,
            evacuation_remaining,
        }
    }
}

impl Metrics {
    /// The text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Encoding into a String cannot fail on I/O; an error would be a bug
        // in a metric name, so an empty page is the honest answer.
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_show_up_in_the_exposition() {
        let m = Metrics::default();
        m.reconciles
            .get_or_create(&KindLabels {
                kind: "EMQX".into(),
            })
            .inc();
        m.evacuation_remaining
            .get_or_create(&NodeLabels {
                namespace: "default".into(),
                cluster: "emqx-ee".into(),
                node: "emqx@a".into(),
            })
            .set(42);
        let text = m.encode();
        assert!(
            text.contains("emqx_reconciler_reconciles_total{kind=\"EMQX\"} 1"),
            "{text}"
        );
        assert!(text.contains("node=\"emqx@a\"} 42"), "{text}");
    }
}
