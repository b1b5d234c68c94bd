//! What one reconcile pass sees of a cluster, reduced to what the blue-green
//! decision needs: the model [`crate::decide`] reads. [`crate::gather`]
//! builds it from the API server (sets, pods, Services, the object's
//! annotations, through [`crate::live`] and [`crate::memory`]) and from
//! EMQX's REST API; `decide` reads nothing else, so every decision can be
//! replayed in a unit test.

use serde::{Deserialize, Serialize};

/// A pod-template revision: the `apps.emqx.io/pod-template-hash` label value.
pub type Revision = String;

/// Seconds since the Unix epoch. Plain integers keep `decide` free of clocks.
pub type Seconds = u64;
/// Milliseconds since the Unix epoch.
pub type Millis = u64;

/// EMQX node role; also which kind of set runs it (core: StatefulSet,
/// replicant: ReplicaSet).
pub use emqx_crd::names::DbRole as Role;

/// The `updateStrategy` figures that pace an upgrade.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Strategy {
    pub initial_delay_s: Seconds,
    /// Sent to EMQX as `wait_takeover`: the pause between "no connections
    /// left" and session migration. It has this one meaning (upstream also
    /// used it as a gap between deletions, measured with expiring Events).
    pub wait_takeover_s: Seconds,
    pub conn_evict_rate: u32,
    pub sess_evict_rate: u32,
}

/// What the spec asks for one role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleSpec {
    /// The revision whose pod template equals the desired one. The shell
    /// decides this by comparing templates (never by recomputing another
    /// operator's hash), so adopting a Go-operator set yields its label.
    pub revision: Revision,
    pub replicas: u32,
}

/// The desired state, from the object's (hub) spec and annotations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec {
    pub core: RoleSpec,
    /// `None` for a core-only cluster.
    pub replicant: Option<RoleSpec>,
    pub strategy: Strategy,
    /// The pause annotation is set: observe and report, change nothing.
    pub paused: bool,
    /// Waiting longer than this without progress marks the upgrade stalled.
    pub progress_deadline_s: Seconds,
    /// Old sets at zero replicas kept per role, newest first.
    pub revision_history_limit: usize,
    /// The listeners Service is enabled (`listenersServiceTemplate.enabled`
    /// is not `false`); a disabled one counts as pointed.
    pub listeners_service: bool,
    /// The dashboard Service is enabled.
    pub dashboard_service: bool,
    /// `updateStrategy.promotion: Manual`: an upgrade stops before the
    /// Service switch until [`Spec::promote`] names its revision.
    pub manual_promotion: bool,
    /// The revision the `apps.emqx.io/promote` annotation names, if any
    /// (compared with [`Spec::revision_key`]).
    pub promote: Option<Revision>,
    /// The revision the `apps.emqx.io/abort` annotation names, if any.
    pub abort: Option<Revision>,
    /// `updateStrategy.guard`; `None` when turned off.
    pub guard: Option<GuardSpec>,
}

/// The upgrade guard's thresholds (`updateStrategy.guard`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuardSpec {
    /// The connection total must be back to this percent of the baseline…
    pub min_percent: u64,
    /// …this long after a node's connection eviction ended.
    pub window_s: Seconds,
    /// Most refused CONNECTs (`packets.connack.error`) of the new nodes per
    /// minute.
    pub max_failures_per_minute: u64,
}

impl Spec {
    /// The role whose nodes serve MQTT clients (the listeners Service).
    pub fn serving_role(&self) -> Role {
        match &self.replicant {
            Some(r) if r.replicas > 0 => Role::Replicant,
            _ => Role::Core,
        }
    }

    /// The desired revision as the promote and abort annotations name it:
    /// the core revision, or `core/replicant` with replicants (a change of
    /// either template is an upgrade of its own).
    pub fn revision_key(&self) -> Revision {
        match &self.replicant {
            Some(r) => format!("{}/{}", self.core.revision, r.revision),
            None => self.core.revision.clone(),
        }
    }

    /// The spec of one role, if the cluster has it.
    pub fn role(&self, role: Role) -> Option<&RoleSpec> {
        match role {
            Role::Core => Some(&self.core),
            Role::Replicant => self.replicant.as_ref(),
        }
    }
}

/// One pod of a set, as the decision needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pod {
    pub name: String,
    /// StatefulSet ordinal; `None` for ReplicaSet pods.
    pub ordinal: Option<u32>,
    /// For ordering ReplicaSet victims, oldest first.
    pub created_at: Seconds,
    /// The pod's Ready condition.
    pub ready: bool,
    /// The pod's ContainersReady condition (Ready without readiness gates).
    pub containers_ready: bool,
    /// Pods the Go EMQX Operator created carry its readiness gate
    /// `apps.emqx.io/on-serving`: `Some(whether that condition is True)`;
    /// `None` without the gate. Only an operator sets that condition, so
    /// ours does for the pods of clusters it took over.
    pub serving_gate: Option<bool>,
    /// `metadata.deletionTimestamp` is set.
    pub terminating: bool,
    /// The EMQX node name this pod runs (`emqx@<host>`).
    pub node: String,
    /// Carries `controller.kubernetes.io/pod-deletion-cost` chosen by us:
    /// the recorded victim of a ReplicaSet scale-down.
    pub marked_for_deletion: bool,
}

impl Pod {
    /// Whether EMQX may be asked through this pod: it is Ready; or, for a
    /// pod with the Go operator's readiness gate, its containers are ready
    /// (EMQX answers `/status`). Such a pod is Ready only once an operator
    /// sets `apps.emqx.io/on-serving`, which ours does after asking EMQX:
    /// asking Ready pods only, a taken-over cluster whose pods all
    /// restarted would never be asked, and never be Ready again. The Go
    /// operator asked `ContainersReady` pods for the same reason.
    pub fn answers_api(&self) -> bool {
        !self.terminating && (self.ready || (self.serving_gate.is_some() && self.containers_ready))
    }
}

/// A core StatefulSet or replicant ReplicaSet of one revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeSet {
    pub name: String,
    pub role: Role,
    pub revision: Revision,
    /// `spec.replicas`.
    pub replicas: u32,
    pub created_at: Seconds,
    pub pods: Vec<Pod>,
}

impl NodeSet {
    /// Whether this set's controller brings `node` back when its pod is
    /// gone: a StatefulSet recreates every ordinal below its replicas under
    /// the same pod name, so the same EMQX node name (`…@<pod>.<headless
    /// service>…`, [`crate::render::node_name`]). ReplicaSet pods get new
    /// names (and replicant nodes are named by pod IP), so nothing is
    /// brought back by name.
    pub fn brings_back(&self, node: &str) -> bool {
        if self.role != Role::Core {
            return false;
        }
        let Some((_, host)) = node.split_once('@') else {
            return false;
        };
        let pod = host.split('.').next().unwrap_or(host);
        pod.strip_prefix(self.name.as_str())
            .and_then(|rest| rest.strip_prefix('-'))
            .and_then(|ordinal| {
                ordinal
                    .parse::<u32>()
                    .ok()
                    .filter(|o| o.to_string() == ordinal)
            })
            .is_some_and(|ordinal| ordinal < self.replicas)
    }
}

/// EMQX evacuation states, as `global_status` spells them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EvacuationState {
    WaitingHealthCheck,
    EvictingConns,
    WaitingTakeover,
    EvictingSessions,
    /// Done: no connections, no sessions; terminal until stopped.
    Prohibiting,
}

/// One entry of `global_status.evacuations`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evacuation {
    pub node: String,
    pub state: EvacuationState,
    /// `current_connected + current_sessions`: how much is left, so a long
    /// evacuation that moves is never mistaken for a stall.
    pub remaining: u64,
}

/// One node of `GET /nodes`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub node: String,
    pub running: bool,
}

/// What EMQX itself reports, read through a node that survives the upgrade.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmqxView {
    pub members: Vec<Member>,
    pub evacuations: Vec<Evacuation>,
    /// `false` on brokers without the node-evacuation API (open source ≤ 5.8,
    /// 4.4 open source): the documented fallback drains without it.
    pub evacuation_api: bool,
    /// The guard's figures; `None` when they could not be read.
    pub figures: Option<Figures>,
    /// Why the guard's figures could not be read this pass, to say while
    /// the switch waits for them.
    pub figures_unavailable: Option<String>,
}

/// What the upgrade guard reads from EMQX (README, "The upgrade guard").
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Figures {
    /// Clients connected now, summed over the running nodes
    /// (`live_connections` of `GET /api/v5/nodes`; 4.4:
    /// `live_connections.count` of `GET /api/v4/stats`).
    pub live_connections: u64,
    /// `packets.connack.error` of each running node (`GET /metrics`).
    pub connack_errors: std::collections::BTreeMap<String, u64>,
}

impl EmqxView {
    pub fn is_running_member(&self, node: &str) -> bool {
        self.members.iter().any(|m| m.node == node && m.running)
    }

    pub fn evacuation_of(&self, node: &str) -> Option<EvacuationState> {
        self.evacuations
            .iter()
            .find(|e| e.node == node)
            .map(|e| e.state)
    }
}

/// Where the Services send new connections, read from their selectors.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Services {
    /// Role and revision the listeners Service selects.
    pub listeners: Option<(Role, Revision)>,
    /// Core revision the dashboard Service selects.
    pub dashboard: Option<Revision>,
    /// The role the listeners Service selects when it selects a whole role,
    /// every revision (as the Go operator's Services do).
    pub listeners_role_wide: Option<Role>,
    /// The dashboard Service selects every core, of every revision.
    pub dashboard_role_wide: bool,
}

/// A drain without the evacuation API: which node, since when. Stored as
/// `[node, startedAt]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "(String, Seconds)", into = "(String, Seconds)")]
pub struct Drain {
    pub node: String,
    pub started_at: Seconds,
}

impl From<(String, Seconds)> for Drain {
    fn from((node, started_at): (String, Seconds)) -> Self {
        Drain { node, started_at }
    }
}

impl From<Drain> for (String, Seconds) {
    fn from(drain: Drain) -> Self {
        (drain.node, drain.started_at)
    }
}

/// Facts the cluster cannot show again after a restart, kept on the object
/// in the `apps.emqx.io/blue-green-progress` annotation (JSON of this
/// struct; [`crate::memory`] says why an annotation and not the status).
/// Everything else is re-derived from the cluster on every pass.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Memory {
    /// When every node of the named revision was first seen ready and joined,
    /// in milliseconds: `initialDelaySeconds` counts from here. (Whole
    /// seconds, as earlier releases kept it in `newNodesReady`, let the
    /// traffic move up to a second early; [`crate::memory::load`] still
    /// reads that shape.)
    #[serde(
        rename = "newNodesReadyMs",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub new_nodes_ready_at: Option<(Revision, Millis)>,
    /// The node being drained by the fallback, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drain: Option<Drain>,
    /// The last progress marker and when it was first seen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<(String, Seconds)>,
    /// The revision whose upgrade is aborted, once its `UpgradeAborted`
    /// Event was told (so it is told once per abort).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aborted: Option<Revision>,
    /// The upgrade guard of the running upgrade.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guard: Option<GuardMemory>,
}

/// What the upgrade guard keeps across passes and restarts: the figures
/// before clients moved, the last eviction and the failure window.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GuardMemory {
    /// The upgrade (revision key) these figures belong to.
    pub revision: Revision,
    /// Clients connected just before the Service switch.
    pub baseline: u64,
    /// The last old node whose connection eviction ended, and when that was
    /// first seen: `[node, at]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evicted: Option<(String, Seconds)>,
    /// Since when the connections are back at or above `minPercent` after
    /// that eviction, every pass since seeing them so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovered: Option<Seconds>,
    /// Start of the current failure window and the new nodes'
    /// `packets.connack.error` sum then: `[at, count]`.
    pub failures: (Seconds, u64),
    /// Why the guard aborted this upgrade, once it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tripped: Option<String>,
}

/// Everything `decide` looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    pub now: Seconds,
    /// The same instant in milliseconds, for the one wait kept to the
    /// millisecond (`initialDelaySeconds`).
    pub now_ms: Millis,
    pub sets: Vec<NodeSet>,
    /// `None` when EMQX's API could not be read this pass.
    pub emqx: Option<EmqxView>,
    pub services: Services,
    pub memory: Memory,
}

#[cfg(test)]
mod tests {
    use super::{NodeSet, Pod, Role};

    fn pod(ready: bool, containers_ready: bool, serving_gate: Option<bool>) -> Pod {
        Pod {
            name: "p-0".into(),
            ordinal: Some(0),
            created_at: 0,
            ready,
            containers_ready,
            serving_gate,
            terminating: false,
            node: "emqx@p-0".into(),
            marked_for_deletion: false,
        }
    }

    #[test]
    fn a_go_pod_waiting_for_on_serving_still_answers() {
        assert!(pod(true, true, None).answers_api());
        assert!(
            !pod(false, true, None).answers_api(),
            "our pods: Ready only"
        );
        assert!(pod(false, true, Some(false)).answers_api(), "gated on us");
        assert!(!pod(false, false, Some(false)).answers_api());
        let mut going = pod(true, true, Some(true));
        going.terminating = true;
        assert!(!going.answers_api());
    }

    #[test]
    fn a_statefulset_brings_back_its_ordinals_below_replicas_only() {
        let set = |role, replicas| NodeSet {
            name: "probe-core-57b88cb8f".into(),
            role,
            revision: "57b88cb8f".into(),
            replicas,
            created_at: 0,
            pods: Vec::new(),
        };
        let core = set(Role::Core, 3);
        let v5 = |pod: &str| format!("emqx@{pod}.probe-headless.default.svc.cluster.local");
        assert!(core.brings_back(&v5("probe-core-57b88cb8f-0")));
        assert!(core.brings_back(&v5("probe-core-57b88cb8f-2")));
        assert!(
            !core.brings_back(&v5("probe-core-57b88cb8f-3")),
            "beyond replicas"
        );
        assert!(
            !core.brings_back(&v5("probe-core-57b88cb8f-01")),
            "not a pod name"
        );
        assert!(
            !core.brings_back(&v5("probe-core-57b88cb8fx-1")),
            "another set"
        );
        assert!(!core.brings_back(&v5("probe-core-57b88cb8f")));
        assert!(!core.brings_back("probe-core-57b88cb8f-1"), "no node name");
        // EMQX 4.4 names nodes `<cluster>@<pod>.<headless>`.
        assert!(core.brings_back("probe@probe-core-57b88cb8f-1.probe-headless.default.svc"));
        assert!(!set(Role::Core, 0).brings_back(&v5("probe-core-57b88cb8f-0")));
        assert!(!set(Role::Replicant, 3).brings_back(&v5("probe-core-57b88cb8f-0")));
    }
}
