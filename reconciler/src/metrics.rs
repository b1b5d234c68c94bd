//! `/metrics`: reconcile counts, errors and durations per kind, and the
//! progress of running evacuations. Per-cluster and per-node series are
//! removed when their cluster or node goes away, so a dashboard never shows
//! a deleted cluster as upgrading forever.

use emqx_listener::connections::{EvictReason, RefuseReason};
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::AtomicU64;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

/// A gauge of fractional values.
pub type FloatGauge = Gauge<f64, AtomicU64>;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub kind: String,
}

/// The lane a pass waited in for a slot (`crate::pass_lanes`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LaneLabels {
    pub lane: String,
}

/// A stage of a pass ([`Stage`]).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StageLabels {
    pub stage: Stage,
}

/// The stages of one pass, in order, as `pass_stage_seconds` names them:
/// where a slow pass spends its time (the API server, EMQX, or its own
/// writes).
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum Stage {
    /// The sets, pods and Services of the cluster from the API server.
    KubernetesReads,
    /// EMQX's nodes, evacuations and figures through its REST API.
    EmqxReads,
    /// The base objects applied (ConfigMap, Services, PDB, Secrets).
    Base,
    /// The decision carried out.
    Act,
    /// Events, memory, metrics and status written.
    Report,
}

impl Stage {
    pub fn label(self) -> &'static str {
        match self {
            Stage::KubernetesReads => "kubernetes_reads",
            Stage::EmqxReads => "emqx_reads",
            Stage::Base => "base",
            Stage::Act => "act",
            Stage::Report => "report",
        }
    }
}

/// The label is [`Stage::label`]: the series are looked up on every pass,
/// so without a `String` made for each.
impl EncodeLabelValue for Stage {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        std::fmt::Write::write_str(encoder, self.label())
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub kind: String,
    pub error: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
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

/// A node's series, with the revision of the set its pod belongs to (empty
/// for a node in no pod of ours), so a dashboard can tell old from new.
#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
pub struct RevisionNodeLabels {
    pub namespace: String,
    pub cluster: String,
    pub node: String,
    pub revision: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PhaseLabels {
    pub namespace: String,
    pub cluster: String,
    pub phase: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DropLabels {
    pub reason: String,
}

/// The reconciler's metrics.
pub struct Metrics {
    pub registry: Registry,
    pub reconciles: Family<KindLabels, Counter>,
    pub errors: Family<ErrorLabels, Counter>,
    pub duration: Family<KindLabels, Histogram>,
    /// Each stage of a pass, over every kind.
    pub stage: Family<StageLabels, Histogram>,
    /// How long passes waited for a slot (`--max-concurrent-passes`): the
    /// reconciler is saturated when routine passes wait long.
    pub slot_wait: Family<LaneLabels, Histogram>,
    /// 1 while a cluster is upgrading, 0 otherwise.
    pub upgrading: Family<ClusterLabels, Gauge>,
    /// Connections plus sessions left on a node under evacuation.
    pub evacuation_remaining: Family<NodeLabels, Gauge>,
    /// Each EMQX node's connections and sessions as EMQX reports them.
    pub node_connections: Family<RevisionNodeLabels, Gauge>,
    pub node_sessions: Family<RevisionNodeLabels, Gauge>,
    /// 1 for the phase a cluster is in; the other phases have no series.
    pub phase: Family<PhaseLabels, Gauge>,
    /// 1 while a cluster has made no progress for its progress deadline.
    pub stalled: Family<ClusterLabels, Gauge>,
    /// 1 while this replica holds the Lease and its controllers run.
    pub leader: Gauge,
    /// Admin-port connections closed by the listener's limits, by reason.
    pub admin_dropped: Family<DropLabels, Counter>,
    /// The upgrade guard: live connections as a percent of the total before
    /// the upgrade, while it watches one.
    pub guard_connections_percent: Family<ClusterLabels, FloatGauge>,
    /// The upgrade guard: refused CONNECTs of the new nodes per minute.
    pub guard_connect_failures_per_minute: Family<ClusterLabels, FloatGauge>,
    /// Upgrades the guard aborted.
    pub guard_trips: Family<ClusterLabels, Counter>,
    /// The per-node and per-phase series each cluster has, to remove the
    /// ones a pass no longer reports.
    series: Mutex<BTreeMap<ClusterLabels, ClusterSeries>>,
}

#[derive(Debug, Default)]
struct ClusterSeries {
    evacuating: BTreeSet<String>,
    nodes: BTreeSet<RevisionNodeLabels>,
    phase: Option<String>,
}

/// What one pass tells the metrics about a cluster.
#[derive(Debug, Clone, Copy)]
pub struct ClusterFigures<'a> {
    /// Sets of an older revision still exist.
    pub upgrading: bool,
    pub phase: &'a str,
    pub stalled: bool,
    /// Node and connections plus sessions left; `None`: EMQX unreadable.
    pub evacuations: Option<&'a [(String, u64)]>,
    /// Every node EMQX lists; `None`: EMQX unreadable.
    pub nodes: Option<&'a [NodeFigures]>,
}

/// One EMQX node as `GET /nodes` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeFigures {
    pub node: String,
    /// The revision of the set whose pod runs it; empty when none of ours.
    pub revision: String,
    pub connections: i64,
    pub sessions: i64,
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
        let stage = Family::<StageLabels, Histogram>::new_with_constructor(|| {
            Histogram::new([
                0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ])
        });
        let slot_wait = Family::<LaneLabels, Histogram>::new_with_constructor(|| {
            Histogram::new([0.001, 0.01, 0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0])
        });
        let upgrading = Family::<ClusterLabels, Gauge>::default();
        let evacuation_remaining = Family::<NodeLabels, Gauge>::default();
        let node_connections = Family::<RevisionNodeLabels, Gauge>::default();
        let node_sessions = Family::<RevisionNodeLabels, Gauge>::default();
        let phase = Family::<PhaseLabels, Gauge>::default();
        let stalled = Family::<ClusterLabels, Gauge>::default();
        let leader = Gauge::default();
        let admin_dropped = Family::<DropLabels, Counter>::default();
        let guard_connections_percent = Family::<ClusterLabels, FloatGauge>::default();
        let guard_connect_failures_per_minute = Family::<ClusterLabels, FloatGauge>::default();
        let guard_trips = Family::<ClusterLabels, Counter>::default();
        registry.register(
            "guard_connections_percent",
            "Live connections as a percent of the total before the upgrade, while the upgrade guard watches one",
            guard_connections_percent.clone(),
        );
        registry.register(
            "guard_connect_failures_per_minute",
            "CONNACK errors of the new nodes per minute (packets.connack.error), while the upgrade guard watches an upgrade",
            guard_connect_failures_per_minute.clone(),
        );
        registry.register(
            "guard_trips",
            "Upgrades aborted by the upgrade guard",
            guard_trips.clone(),
        );
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
            "pass_stage_seconds",
            "Duration of each stage of a reconcile pass: kubernetes_reads, emqx_reads, \
             base (owned objects applied), act, report (status, Events)",
            stage.clone(),
        );
        registry.register(
            "pass_slot_wait_seconds",
            "Time a pass waited for a slot (--max-concurrent-passes); lane urgent: \
             the cluster changed or is not Ready, routine: a Ready cluster looked at again",
            slot_wait.clone(),
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
        registry.register(
            "node_connections",
            "Connections of an EMQX node (EMQX's live_connections; 4.4: connections)",
            node_connections.clone(),
        );
        registry.register(
            "node_sessions",
            "Sessions of an EMQX node (EMQX's `connections` of GET /nodes)",
            node_sessions.clone(),
        );
        registry.register(
            "phase",
            "1 for the phase a cluster is in (Creating, WaitingForNewNodes, \
             AwaitingPromotion, InitialDelay, Evacuating, Ready, Aborted, Paused)",
            phase.clone(),
        );
        registry.register(
            "upgrade_stalled",
            "1 while a cluster has made no progress for its progress deadline",
            stalled.clone(),
        );
        registry.register(
            "leader",
            "1 while this replica holds the Lease and reconciles",
            leader.clone(),
        );
        registry.register(
            "admin_connections_dropped",
            "Connections to /metrics and the probes closed by the listener's limits \
             (refused_*, evicted_*, idle)",
            admin_dropped.clone(),
        );
        Metrics {
            registry,
            reconciles,
            errors,
            duration,
            stage,
            slot_wait,
            upgrading,
            evacuation_remaining,
            node_connections,
            node_sessions,
            phase,
            stalled,
            leader,
            admin_dropped,
            guard_connections_percent,
            guard_connect_failures_per_minute,
            guard_trips,
            series: Mutex::default(),
        }
    }
}

impl emqx_listener::plain::ConnectionEvents for Metrics {
    fn refused(&self, reason: RefuseReason) {
        let reason = match reason {
            RefuseReason::AllBusy => "refused_all_busy",
            RefuseReason::PeerBusy => "refused_peer_busy",
        };
        self.admin_dropped
            .get_or_create(&DropLabels {
                reason: reason.to_owned(),
            })
            .inc();
    }

    fn evicted(&self, reason: EvictReason) {
        let reason = match reason {
            EvictReason::Capacity => "evicted_capacity",
            EvictReason::PeerQuota => "evicted_peer_quota",
        };
        self.admin_dropped
            .get_or_create(&DropLabels {
                reason: reason.to_owned(),
            })
            .inc();
    }

    fn idle_closed(&self) {
        self.admin_dropped
            .get_or_create(&DropLabels {
                reason: "idle".to_owned(),
            })
            .inc();
    }
}

impl Metrics {
    /// Counts `took` spent in `stage` of a pass.
    pub fn observe_stage(&self, stage: Stage, took: Duration) {
        self.stage
            .get_or_create(&StageLabels { stage })
            .observe(took.as_secs_f64());
    }

    /// Sets a cluster's gauges from one pass: whether it upgrades, its
    /// phase, the nodes and the evacuations EMQX reports. A node's series that
    /// this pass does not report is removed; `None` (EMQX could not be read)
    /// leaves them as they are.
    pub fn record_cluster(&self, cluster: &ClusterLabels, figures: ClusterFigures<'_>) {
        self.upgrading
            .get_or_create(cluster)
            .set(i64::from(figures.upgrading));
        self.stalled
            .get_or_create(cluster)
            .set(i64::from(figures.stalled));
        // From zero, so that a rate sees the first trip.
        self.guard_trips.get_or_create(cluster).inc_by(0);
        let mut series = self.series.lock().unwrap_or_else(PoisonError::into_inner);
        let known = series.entry(cluster.clone()).or_default();
        if known.phase.as_deref() != Some(figures.phase) {
            if let Some(before) = known.phase.take() {
                self.phase.remove(&phase_labels(cluster, &before));
            }
            known.phase = Some(figures.phase.to_owned());
        }
        self.phase
            .get_or_create(&phase_labels(cluster, figures.phase))
            .set(1);
        if let Some(evacuations) = figures.evacuations {
            let now: BTreeSet<String> = evacuations.iter().map(|(n, _)| n.clone()).collect();
            for (node, remaining) in evacuations {
                self.evacuation_remaining
                    .get_or_create(&node_labels(cluster, node))
                    .set(i64::try_from(*remaining).unwrap_or(i64::MAX));
            }
            for gone in known.evacuating.difference(&now) {
                self.evacuation_remaining
                    .remove(&node_labels(cluster, gone));
            }
            known.evacuating = now;
        }
        if let Some(nodes) = figures.nodes {
            let mut now = BTreeSet::new();
            for node in nodes {
                let labels = RevisionNodeLabels {
                    namespace: cluster.namespace.clone(),
                    cluster: cluster.cluster.clone(),
                    node: node.node.clone(),
                    revision: node.revision.clone(),
                };
                self.node_connections
                    .get_or_create(&labels)
                    .set(node.connections);
                self.node_sessions.get_or_create(&labels).set(node.sessions);
                now.insert(labels);
            }
            for gone in known.nodes.difference(&now) {
                self.node_connections.remove(gone);
                self.node_sessions.remove(gone);
            }
            known.nodes = now;
        }
    }

    /// Starts the pass and error counters of a kind at zero, one error
    /// series per [`crate::error::Error::LABELS`].
    pub fn start_kind(&self, kind: &str) {
        let labels = KindLabels {
            kind: kind.to_owned(),
        };
        self.reconciles.get_or_create(&labels).inc_by(0);
        for error in crate::error::Error::LABELS {
            self.errors
                .get_or_create(&ErrorLabels {
                    kind: kind.to_owned(),
                    error: error.to_owned(),
                })
                .inc_by(0);
        }
    }

    /// Sets the upgrade guard's gauges from a pass; `None` (no upgrade
    /// watched) removes them, so they exist only while an upgrade runs.
    pub fn record_guard(
        &self,
        cluster: &ClusterLabels,
        gauges: Option<&crate::decide::guard::Gauges>,
    ) {
        match gauges {
            Some(g) => {
                self.guard_connections_percent
                    .get_or_create(cluster)
                    .set(g.connections_percent);
                self.guard_connect_failures_per_minute
                    .get_or_create(cluster)
                    .set(g.failures_per_minute);
            }
            None => {
                self.guard_connections_percent.remove(cluster);
                self.guard_connect_failures_per_minute.remove(cluster);
            }
        }
    }

    /// Removes every series of a cluster that no longer exists.
    pub fn forget_cluster(&self, cluster: &ClusterLabels) {
        self.upgrading.remove(cluster);
        self.guard_connections_percent.remove(cluster);
        self.guard_connect_failures_per_minute.remove(cluster);
        self.guard_trips.remove(cluster);
        self.stalled.remove(cluster);
        let mut series = self.series.lock().unwrap_or_else(PoisonError::into_inner);
        let known = series.remove(cluster).unwrap_or_default();
        for node in known.evacuating {
            self.evacuation_remaining
                .remove(&node_labels(cluster, &node));
        }
        for labels in known.nodes {
            self.node_connections.remove(&labels);
            self.node_sessions.remove(&labels);
        }
        if let Some(phase) = known.phase {
            self.phase.remove(&phase_labels(cluster, &phase));
        }
    }

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

fn phase_labels(cluster: &ClusterLabels, phase: &str) -> PhaseLabels {
    PhaseLabels {
        namespace: cluster.namespace.clone(),
        cluster: cluster.cluster.clone(),
        phase: phase.to_owned(),
    }
}

fn node_labels(cluster: &ClusterLabels, node: &str) -> NodeLabels {
    NodeLabels {
        namespace: cluster.namespace.clone(),
        cluster: cluster.cluster.clone(),
        node: node.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster(name: &str) -> ClusterLabels {
        ClusterLabels {
            namespace: "default".into(),
            cluster: name.into(),
        }
    }

    fn figures<'a>(
        phase: &'a str,
        evacuations: Option<&'a [(String, u64)]>,
        nodes: Option<&'a [NodeFigures]>,
    ) -> ClusterFigures<'a> {
        ClusterFigures {
            upgrading: true,
            phase,
            stalled: false,
            evacuations,
            nodes,
        }
    }

    fn node(name: &str, revision: &str, connections: i64) -> NodeFigures {
        NodeFigures {
            node: name.into(),
            revision: revision.into(),
            connections,
            sessions: connections + 1,
        }
    }

    #[test]
    fn series_of_departed_nodes_and_clusters_are_removed() {
        let m = Metrics::default();
        let (a, b) = (cluster("a"), cluster("b"));
        let a_nodes = [node("emqx@a-0", "old", 5), node("emqx@a-1", "old", 6)];
        m.record_cluster(
            &a,
            figures(
                "Evacuating",
                Some(&[("emqx@a-0".into(), 7), ("emqx@a-1".into(), 9)]),
                Some(&a_nodes),
            ),
        );
        m.record_cluster(
            &b,
            figures("Evacuating", Some(&[("emqx@b-0".into(), 3)]), None),
        );
        // EMQX unreadable for a pass: nothing is known to be gone.
        m.record_cluster(&a, figures("Evacuating", None, None));
        let text = m.encode();
        assert!(text.contains("node=\"emqx@a-1\"} 9"), "{text}");
        assert!(
            text.contains(
                "emqx_reconciler_node_connections{namespace=\"default\",cluster=\"a\",node=\"emqx@a-1\",revision=\"old\"} 6"
            ),
            "{text}"
        );
        // emqx@a-1 finished and left: its series go.
        m.record_cluster(
            &a,
            figures(
                "Evacuating",
                Some(&[("emqx@a-0".into(), 2)]),
                Some(&a_nodes[..1]),
            ),
        );
        let text = m.encode();
        assert!(!text.contains("emqx@a-1"), "stale node series:\n{text}");
        assert!(text.contains("node=\"emqx@a-0\"} 2"), "{text}");
        assert!(
            text.contains("node=\"emqx@a-0\",revision=\"old\"} 6"),
            "sessions of emqx@a-0:\n{text}"
        );
        // Cluster a was deleted: none of its series stays; b's do.
        m.forget_cluster(&a);
        let text = m.encode();
        assert!(
            !text.contains("cluster=\"a\""),
            "stale cluster series:\n{text}"
        );
        assert!(text.contains("node=\"emqx@b-0\"} 3"), "{text}");
        assert!(text.contains("emqx_reconciler_upgrading{"), "{text}");
    }

    #[test]
    fn guard_series_exist_while_watched_and_go_with_the_cluster() {
        let m = Metrics::default();
        let a = cluster("a");
        m.record_guard(
            &a,
            Some(&crate::decide::guard::Gauges {
                connections_percent: 31.2,
                failures_per_minute: 120.0,
            }),
        );
        m.guard_trips.get_or_create(&a).inc();
        let text = m.encode();
        for line in [
            "emqx_reconciler_guard_connections_percent{namespace=\"default\",cluster=\"a\"} 31.2",
            "emqx_reconciler_guard_connect_failures_per_minute{namespace=\"default\",cluster=\"a\"} 120.0",
            "emqx_reconciler_guard_trips_total{namespace=\"default\",cluster=\"a\"} 1",
        ] {
            assert!(text.contains(line), "{line} missing:\n{text}");
        }
        m.record_guard(&a, None);
        let text = m.encode();
        assert!(!text.contains("guard_connections_percent{"), "{text}");
        assert!(text.contains("guard_trips_total{"), "{text}");
        m.forget_cluster(&a);
        assert!(!m.encode().contains("cluster=\"a\""));
    }

    #[test]
    fn each_stage_of_a_pass_has_its_own_series() {
        let m = Metrics::default();
        m.observe_stage(Stage::KubernetesReads, Duration::from_millis(84));
        m.observe_stage(Stage::KubernetesReads, Duration::from_millis(16));
        m.observe_stage(Stage::EmqxReads, Duration::from_millis(5));
        let text = m.encode();
        for line in [
            "emqx_reconciler_pass_stage_seconds_sum{stage=\"kubernetes_reads\"} 0.1",
            "emqx_reconciler_pass_stage_seconds_count{stage=\"kubernetes_reads\"} 2",
            "emqx_reconciler_pass_stage_seconds_count{stage=\"emqx_reads\"} 1",
        ] {
            assert!(text.contains(line), "{line} missing:\n{text}");
        }
        assert!(!text.contains("stage=\"report\""), "{text}");
    }

    #[test]
    fn only_the_current_phase_has_a_series() {
        let m = Metrics::default();
        let a = cluster("a");
        m.record_cluster(&a, figures("Evacuating", None, None));
        m.record_cluster(
            &a,
            ClusterFigures {
                stalled: true,
                ..figures("Aborted", None, None)
            },
        );
        let text = m.encode();
        assert!(
            text.contains(
                "emqx_reconciler_phase{namespace=\"default\",cluster=\"a\",phase=\"Aborted\"} 1"
            ),
            "{text}"
        );
        assert!(!text.contains("phase=\"Evacuating\""), "{text}");
        assert!(
            text.contains("emqx_reconciler_upgrade_stalled{namespace=\"default\",cluster=\"a\"} 1"),
            "{text}"
        );
        m.forget_cluster(&a);
        assert!(!m.encode().contains("cluster=\"a\""), "{}", m.encode());
    }

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
