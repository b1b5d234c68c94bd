//! The blue-green state machine, as one pure function.
//!
//! `decide(spec, observed)` looks at what the cluster shows and returns the
//! next actions. It remembers nothing: every step is derived from the sets,
//! their pods, the Service selectors, EMQX's own evacuation state and the few
//! timestamps kept on the object in the `apps.emqx.io/blue-green-progress`
//! annotation ([`crate::observed::Memory`], read and written by
//! [`crate::memory`]). Killing the reconciler at any instant and starting it
//! again therefore resumes the same upgrade: no node is evacuated twice and
//! none is removed early.
//!
//! The rules that read the observation live here and nowhere else: which
//! sets are old ([`NodeSet::is_old`]), that a disabled Service counts as
//! pointed, and why the cluster waits ([`WaitReason`]; [`crate::explain`]
//! adds what only the shell knows, such as the node whose API failed).
//!
//! Before the flow, on every pass: pods carrying the Go operator's
//! `apps.emqx.io/on-serving` readiness gate get that condition once ready
//! and joined ([`Action::MarkServing`]), as the Go operator did.
//!
//! The flow (seed 002's state diagram):
//! 1. create the new core set, then (cores ready) the new replicant set;
//! 2. wait until every new pod is ready *and* joined to the EMQX cluster;
//! 3. with `promotion: Manual`, wait for the promote annotation naming the
//!    revision ([`Phase::AwaitingPromotion`]); then wait `initialDelaySeconds`;
//! 4. point the listeners and dashboard Services at the new revision;
//! 5. drain old nodes one at a time, replicants before cores, oldest set
//!    first: evacuate through EMQX, and only once the evacuation reached
//!    `prohibiting` scale that set down by exactly one;
//! 6. `force_leave` stopped nodes whose pods are gone;
//! 7. with every old set at zero: the new revision is current and `Ready`;
//!    delete zero sets beyond `revisionHistoryLimit`.
//!
//! An abort (the abort annotation naming the desired revision) runs the
//! same flow towards the old sets instead ([`rollback_spec`]), as a revert
//! of the spec would: traffic stays on or goes back to them, the new sets
//! drain and are scaled away, and no third set is created.

use crate::observed::{
    EmqxView, Evacuation, EvacuationState, Millis, NodeSet, Observed, Pod, Revision, Role,
    RoleSpec, Seconds, Services, Spec, Strategy,
};
use emqx_crd::names::{ANNOTATION_ABORT, ANNOTATION_PROMOTE};

/// One thing the shell must do, in order. The shell stops at the first
/// failure; the next pass re-derives what is still to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Create the set of `role` for `revision`.
    CreateSet {
        role: Role,
        revision: Revision,
        replicas: u32,
    },
    /// Scale the set of the desired revision in place (only ever that one).
    ScaleSet { name: String, from: u32, to: u32 },
    /// Patch the Services' selectors to the new revision (one patch each).
    PointServices {
        listeners: (Role, Revision),
        dashboard: Revision,
    },
    /// Set the pod condition `apps.emqx.io/on-serving` True (status patch):
    /// the readiness gate of pods the Go operator created, which only an
    /// operator sets; without it a restarted Go-created pod never becomes
    /// Ready again.
    MarkServing { pod: String },
    /// Remember when the new nodes were first all ready and joined.
    RecordNewNodesReady { revision: Revision, at: Millis },
    /// Set `controller.kubernetes.io/pod-deletion-cost` on the chosen victim
    /// so the ReplicaSet controller removes exactly this pod.
    MarkForDeletion { pod: String },
    /// `POST /load_rebalance/{node}/evacuation/start`.
    StartEvacuation {
        node: String,
        migrate_to: Vec<String>,
        strategy: Strategy,
    },
    /// `POST /load_rebalance/{node}/evacuation/stop` (a node we keep).
    StopEvacuation { node: String },
    /// Remember the start of a drain without the evacuation API.
    RecordDrainStart { node: String, at: Seconds },
    /// Scale an old set from `from` to `from - 1`, conditional on it still
    /// being at `from` (a JSON Patch `test`), so a retry never removes two.
    RemoveOldNode {
        set: String,
        /// The node that leaves; `None` when the slot runs no pod.
        node: Option<String>,
        from: u32,
    },
    /// `DELETE /cluster/{node}/force_leave`: a stopped node whose pod is gone.
    ForceLeave { node: String },
    /// Delete an old set at zero replicas beyond the history limit.
    DeleteSet { name: String },
    /// Remember a new progress marker (resets the progress deadline).
    RecordProgress { marker: String, at: Seconds },
    /// Remember that the upgrade to `revision` is aborted, back to
    /// `back_to` (revision keys, [`Spec::revision_key`]): its Event is told
    /// once per abort. `why`: the upgrade guard's figures when it aborted.
    RecordAbort {
        revision: Revision,
        back_to: Revision,
        why: Option<String>,
    },
    /// Forget an abort that is no longer in force (a retry, or a new spec),
    /// and the guard's figures of that upgrade.
    ClearAbort,
    /// Arm the upgrade guard for `revision` with the figures just before
    /// the Service switch.
    ArmGuard {
        revision: Revision,
        baseline: u64,
        failures: u64,
        at: Seconds,
    },
    /// Remember that `node`'s connection eviction was seen ended at `at`.
    RecordEviction { node: String, at: Seconds },
    /// Start a new failure window with the new nodes' refusals so far.
    RecordFailureWindow { at: Seconds, count: u64 },
    /// The connections were first seen back (at or above `minPercent`) at
    /// `Some(at)` since the last eviction; `None`: a later pass saw them
    /// low again, so their recovery starts over.
    RecordRecovery { at: Option<Seconds> },
    /// The guard aborts the upgrade to `revision`: the shell annotates the
    /// object `apps.emqx.io/abort=<revision>` (so the user retries as after
    /// any abort, by removing it) and remembers `message`.
    TripGuard { revision: Revision, message: String },
}

/// Where the cluster stands; becomes the `Progressing`/`Ready` conditions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Paused,
    /// Creating the sets of the desired revision (first creation or upgrade).
    Creating,
    /// New sets exist; waiting for their pods to be ready and joined.
    WaitingForNewNodes,
    /// New nodes ready and joined, no client moved: `promotion: Manual`
    /// waits for the promote annotation naming this revision.
    AwaitingPromotion,
    /// New nodes ready; `initialDelaySeconds` running.
    InitialDelay,
    /// Old nodes are being drained.
    Evacuating,
    /// Only the desired revision runs, all ready.
    Ready,
    /// The upgrade to the desired revision is aborted by annotation: the
    /// old nodes serve (or are being returned to), the new ones are scaled
    /// away.
    Aborted,
    /// An upgrade that may not start yet: `--max-concurrent-upgrades`
    /// upgrades run ([`crate::upgrade_slots`]).
    Queued,
}

impl Phase {
    /// The phase's name, as the metrics label it.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Paused => "Paused",
            Phase::Creating => "Creating",
            Phase::WaitingForNewNodes => "WaitingForNewNodes",
            Phase::AwaitingPromotion => "AwaitingPromotion",
            Phase::InitialDelay => "InitialDelay",
            Phase::Evacuating => "Evacuating",
            Phase::Ready => "Ready",
            Phase::Aborted => "Aborted",
            Phase::Queued => "Queued",
        }
    }
}

/// Why the cluster waits; [`WaitReason::as_str`] is the condition reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitReason {
    Paused,
    WaitingForCoreNodes,
    CreatingNodes,
    WaitingForNodes,
    /// EMQX could not be read this pass; [`crate::explain`] names the node
    /// and the error.
    EmqxApiUnavailable,
    WaitingForNewNodes,
    AwaitingPromotion,
    InitialDelay,
    WaitingForPodTermination,
    EvacuatingNode,
    NoRecipients,
    DrainingWithoutEvacuation,
    RemovingOldNode,
    UpgradeAborted,
    UpgradeQueued,
}

impl WaitReason {
    /// The CamelCase reason of the conditions.
    pub fn as_str(self) -> &'static str {
        match self {
            WaitReason::Paused => "Paused",
            WaitReason::WaitingForCoreNodes => "WaitingForCoreNodes",
            WaitReason::CreatingNodes => "CreatingNodes",
            WaitReason::WaitingForNodes => "WaitingForNodes",
            WaitReason::EmqxApiUnavailable => "EmqxApiUnavailable",
            WaitReason::WaitingForNewNodes => "WaitingForNewNodes",
            WaitReason::InitialDelay => "InitialDelay",
            WaitReason::WaitingForPodTermination => "WaitingForPodTermination",
            WaitReason::EvacuatingNode => "EvacuatingNode",
            WaitReason::NoRecipients => "NoRecipients",
            WaitReason::DrainingWithoutEvacuation => "DrainingWithoutEvacuation",
            WaitReason::RemovingOldNode => "RemovingOldNode",
            WaitReason::AwaitingPromotion => "AwaitingPromotion",
            WaitReason::UpgradeAborted => "UpgradeAborted",
            WaitReason::UpgradeQueued => "UpgradeQueued",
        }
    }
}

/// Why the cluster waits: a reason and a human message, for the condition
/// that tells the user what happens next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wait {
    pub reason: WaitReason,
    pub message: String,
    /// A wait that ends by the clock (initial delay, fallback drain) never
    /// counts as a stall.
    pub timed: bool,
}

/// The output of one pass.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub phase: Phase,
    pub actions: Vec<Action>,
    pub wait: Option<Wait>,
    /// No progress for longer than the progress deadline.
    pub stalled: bool,
    /// Look again after this long even if nothing is watched to change.
    pub requeue_after_s: Option<Seconds>,
    /// Look again sooner than a whole second: set while an EMQX step is
    /// about to end (see [`EVACUATION_END_POLL_MS`]); wins over
    /// `requeue_after_s`.
    pub requeue_after_ms: Option<u64>,
    /// The upgrade guard's figures, while it watches an upgrade.
    pub guard: Option<guard::Gauges>,
}

/// How often EMQX is polled while it does work we cannot watch.
const POLL_S: Seconds = 1;

/// How often EMQX is polled while an evacuation is about to reach
/// `prohibiting`. EMQX steps an evacuation on timers
/// (`apps/emqx_node_rebalance/src/emqx_node_rebalance_evacuation.erl`,
/// commit 18736d2: a batch every `?EVICT_INTERVAL`, 1 s, and
/// `waiting_takeover` a `state_timeout` of `wait_takeover` seconds, after
/// which a node without sessions is `prohibiting` at once); a once-a-second
/// poll that
/// falls just before its step sees the end almost a second late: the old
/// node then sits empty in `prohibiting` for nothing, once per node. Polled
/// this often only near the end (the last second of `waitTakeover`, the
/// last batch of sessions), so a long evacuation costs no more calls.
pub const EVACUATION_END_POLL_MS: u64 = 200;

/// The progress marker recorded while paused, so the progress deadline
/// counts from the resume, not from before the pause (as a Deployment's).
pub const PAUSED_MARKER: &str = "Paused";

/// Decides the next actions for one cluster.
pub fn decide(spec: &Spec, obs: &Observed) -> Decision {
    if spec.paused {
        // Only our own bookkeeping: nothing in the cluster or EMQX changes.
        let actions = if obs
            .memory
            .progress
            .as_ref()
            .is_some_and(|(marker, _)| marker == PAUSED_MARKER)
        {
            Vec::new()
        } else {
            vec![Action::RecordProgress {
                marker: PAUSED_MARKER.into(),
                at: obs.now,
            }]
        };
        return Decision {
            phase: Phase::Paused,
            actions,
            wait: Some(Wait {
                reason: WaitReason::Paused,
                message: "reconciliation is paused by annotation; remove it to resume".into(),
                timed: false,
            }),
            stalled: false,
            requeue_after_s: None,
            requeue_after_ms: None,
            guard: None,
        };
    }
    if let Some(mut rollback) = rollback_spec(spec, obs) {
        let why = guard_trip(spec, obs);
        if why.is_some() {
            // The old nodes served moments ago: no warm-up before traffic
            // goes back.
            rollback.strategy.initial_delay_s = 0;
        }
        return aborted(spec, &rollback, obs, why);
    }
    let mut pass = Pass::new(spec, obs);
    pass.run();
    if let Some(why) = pass.trip.take() {
        let key = spec.revision_key();
        let aborting = Spec {
            abort: Some(key.clone()),
            ..spec.clone()
        };
        if let Some(mut rollback) = rollback_spec(&aborting, obs) {
            rollback.strategy.initial_delay_s = 0;
            let mut decision = aborted(&aborting, &rollback, obs, Some(&why));
            decision.actions.insert(
                0,
                Action::TripGuard {
                    revision: key,
                    message: why,
                },
            );
            decision.guard = pass.gauges;
            return decision;
        }
    }
    let mut decision = pass.finish();
    if obs.memory.aborted.is_some() {
        decision.actions.push(Action::ClearAbort);
    }
    decision
}

/// The spec an abort works towards, when the abort annotation names the
/// desired revision and an old set still runs (after a finished upgrade
/// there is nothing to go back to, and the annotation is ignored):
/// each role's old set is desired again, so the new sets become the old
/// ones and drain as in a revert of the spec, and no third set is made.
/// Replica counts stay the spec's: a partly drained old set is scaled back.
pub fn rollback_spec(spec: &Spec, obs: &Observed) -> Option<Spec> {
    let key = spec.revision_key();
    if spec.abort.as_deref() != Some(key.as_str()) {
        return None;
    }
    let services = effective_services(spec, obs);
    let selected = |set: &NodeSet| {
        services
            .listeners
            .as_ref()
            .is_some_and(|(role, rev)| *role == set.role && *rev == set.revision)
            || (set.role == Role::Core && services.dashboard.as_ref() == Some(&set.revision))
    };
    // The old set a Service still selects is where the clients are; else
    // the largest, then the newest.
    let target = |role: Role| {
        obs.sets
            .iter()
            .filter(|s| s.role == role && s.is_old(spec))
            .max_by_key(|s| (selected(s), s.replicas, s.created_at, s.name.clone()))
    };
    let (core, replicant) = (target(Role::Core), target(Role::Replicant));
    if core.is_none() && replicant.is_none() {
        return None;
    }
    // A role the upgrade did not change (only the other template did)
    // keeps its one set.
    let mut rollback = Spec {
        core: RoleSpec {
            revision: core.map_or_else(|| spec.core.revision.clone(), |s| s.revision.clone()),
            replicas: spec.core.replicas,
        },
        replicant: match replicant {
            Some(set) => Some(RoleSpec {
                revision: set.revision.clone(),
                replicas: spec.replicant.as_ref().map_or(set.replicas, |r| r.replicas),
            }),
            None => spec.replicant.clone(),
        },
        manual_promotion: false,
        promote: None,
        abort: None,
        // Going back is not guarded: the old revision served before.
        guard: None,
        ..spec.clone()
    };
    // Traffic that never left the old nodes needs no warm-up delay before
    // the new ones drain; traffic going back to them does.
    if traffic_on_desired(&rollback, obs) {
        rollback.strategy.initial_delay_s = 0;
    }
    Some(rollback)
}

/// Why the upgrade guard aborted the desired revision's upgrade, if it did.
fn guard_trip<'a>(spec: &Spec, obs: &'a Observed) -> Option<&'a str> {
    let guard = obs.memory.guard.as_ref()?;
    (guard.revision == spec.revision_key())
        .then_some(guard.tripped.as_deref())
        .flatten()
}

/// An aborted upgrade: the pass runs towards `rollback`, and the decision
/// says so, whatever step it is at. `why`: the guard's figures, when the
/// guard aborted it.
fn aborted(spec: &Spec, rollback: &Spec, obs: &Observed, why: Option<&str>) -> Decision {
    let mut pass = Pass::new(rollback, obs);
    pass.run();
    let mut decision = pass.finish();
    let revision = spec.revision_key();
    let back_to = rollback.revision_key();
    if obs.memory.aborted.as_ref() != Some(&revision) {
        decision.actions.push(Action::RecordAbort {
            revision: revision.clone(),
            back_to: back_to.clone(),
            why: why.map(str::to_owned),
        });
    }
    let (now, timed) = match &decision.wait {
        Some(wait) => (format!("going back: {}", wait.message), wait.timed),
        None => (
            "the old nodes serve every client and the new ones are scaled away".to_owned(),
            false,
        ),
    };
    decision.phase = Phase::Aborted;
    let by = match why {
        Some(why) => format!(
            "by the upgrade guard ({why}), which set annotation {ANNOTATION_ABORT}={revision}"
        ),
        None => format!("by annotation {ANNOTATION_ABORT}"),
    };
    decision.wait = Some(Wait {
        reason: WaitReason::UpgradeAborted,
        message: format!(
            "the upgrade to revision {revision} is aborted {by}; traffic is kept on revision {back_to}: {now}. Remove the annotation to retry, or change the spec"
        ),
        timed,
    });
    decision
}

/// Where the Services point, with a disabled Service counted as pointed at
/// the desired revision: it has nothing to point, so it never holds the
/// upgrade, and an old set is never kept for it.
///
/// A Service that selects a whole role (the Go operator's, on a cluster
/// taken over) selects exactly the pods a revision selector would while
/// one revision of that role runs, so it counts as pointing at that
/// revision and is left as it is: taking over a cluster rewrites no
/// selector. With two revisions running (an upgrade) it counts as pointing
/// at none, and the switch writes a revision selector as usual.
pub fn effective_services(spec: &Spec, obs: &Observed) -> Services {
    let (listeners, dashboard) = desired_services(spec);
    let only_revision = |role: Role| -> Option<Revision> {
        let mut running = obs
            .sets
            .iter()
            .filter(|s| s.role == role && (s.replicas > 0 || !s.pods.is_empty()));
        let first = running.next()?;
        running.next().is_none().then(|| first.revision.clone())
    };
    let observed_listeners = obs.services.listeners.clone().or_else(|| {
        let role = obs.services.listeners_role_wide?;
        Some((role, only_revision(role)?))
    });
    let observed_dashboard = obs.services.dashboard.clone().or_else(|| {
        obs.services
            .dashboard_role_wide
            .then(|| only_revision(Role::Core))
            .flatten()
    });
    Services {
        listeners: if spec.listeners_service {
            observed_listeners
        } else {
            Some(listeners)
        },
        dashboard: if spec.dashboard_service {
            observed_dashboard
        } else {
            Some(dashboard)
        },
        listeners_role_wide: obs.services.listeners_role_wide,
        dashboard_role_wide: obs.services.dashboard_role_wide,
    }
}

/// Whether the listeners Service sends new MQTT connections to the desired
/// revision of the serving role.
pub fn traffic_on_desired(spec: &Spec, obs: &Observed) -> bool {
    let ((_, desired), _) = desired_services(spec);
    effective_services(spec, obs)
        .listeners
        .is_some_and(|(_, revision)| revision == desired)
}

/// The selectors the Services should have: the serving role's desired
/// revision for the listeners, the desired core revision for the dashboard.
fn desired_services(spec: &Spec) -> ((Role, Revision), Revision) {
    let serving = spec.serving_role();
    let serving_rev = spec
        .role(serving)
        .map_or_else(|| spec.core.revision.clone(), |r| r.revision.clone());
    ((serving, serving_rev), spec.core.revision.clone())
}

impl NodeSet {
    /// The set runs the revision the spec asks for its role.
    pub fn is_desired(&self, spec: &Spec) -> bool {
        spec.role(self.role)
            .is_some_and(|r| r.revision == self.revision)
    }

    /// Not of the desired revision and still has replicas or pods: a set
    /// the upgrade has to drain. The one rule for "upgrading", everywhere.
    pub fn is_old(&self, spec: &Spec) -> bool {
        !self.is_desired(spec) && (self.replicas > 0 || !self.pods.is_empty())
    }
}

struct Pass<'a> {
    spec: &'a Spec,
    obs: &'a Observed,
    /// [`effective_services`].
    services: Services,
    actions: Vec<Action>,
    phase: Phase,
    wait: Option<Wait>,
    requeue_after_s: Option<Seconds>,
    requeue_after_ms: Option<u64>,
    /// The guard tripped: why, with the figures.
    trip: Option<String>,
    /// The guard's figures this pass.
    gauges: Option<guard::Gauges>,
    /// The guard holds the next node: seconds left and why.
    guard_hold: Option<(Seconds, String)>,
}

impl<'a> Pass<'a> {
    fn new(spec: &'a Spec, obs: &'a Observed) -> Self {
        Pass {
            spec,
            obs,
            services: effective_services(spec, obs),
            actions: Vec::new(),
            phase: Phase::Creating,
            wait: None,
            requeue_after_s: None,
            requeue_after_ms: None,
            trip: None,
            gauges: None,
            guard_hold: None,
        }
    }

    fn roles(&self) -> Vec<Role> {
        let mut roles = vec![Role::Core];
        if self.spec.replicant.is_some() {
            roles.push(Role::Replicant);
        }
        roles
    }

    fn update_set(&self, role: Role) -> Option<&'a NodeSet> {
        let revision = &self.spec.role(role)?.revision;
        self.obs
            .sets
            .iter()
            .find(|s| s.role == role && &s.revision == revision)
    }

    /// Sets that are not of the desired revision and still have replicas or
    /// pods, in drain order: replicants first, then oldest set first.
    fn old_sets(&self) -> Vec<&'a NodeSet> {
        let mut old: Vec<&NodeSet> = self
            .obs
            .sets
            .iter()
            .filter(|s| s.is_old(self.spec))
            .collect();
        old.sort_by(|a, b| {
            drain_rank(a.role)
                .cmp(&drain_rank(b.role))
                .then(a.created_at.cmp(&b.created_at))
                .then(a.name.cmp(&b.name))
        });
        old
    }

    fn wait(&mut self, reason: WaitReason, message: String) {
        self.wait = Some(Wait {
            reason,
            message,
            timed: false,
        });
    }

    fn timed_wait(&mut self, reason: WaitReason, message: String, remaining: Seconds) {
        self.wait = Some(Wait {
            reason,
            message,
            timed: true,
        });
        self.requeue_after_s = Some(remaining.max(1));
    }

    fn run(&mut self) {
        self.mark_serving(self.obs.emqx.as_ref());
        if !self.ensure_update_sets() {
            return;
        }
        let old = self.old_sets();
        if let Some(emqx) = &self.obs.emqx {
            self.force_leave_departed(emqx);
            self.stop_evacuations_of_kept_nodes(emqx);
        }
        if old.is_empty() {
            self.steady_state();
        } else {
            self.upgrade(&old);
        }
    }

    /// Pods with the Go operator's `apps.emqx.io/on-serving` readiness gate
    /// get that condition True once their containers are ready and their
    /// node is a running cluster member: the Go operator's rule
    /// (`update_pod_conditions.go`, tag 2.2.29; it also asks
    /// `availability_check` on Enterprise ≥ 5.0.3, which only turns False
    /// on a node under evacuation, and a drained node is removed, not
    /// returned to service). Never set False: traffic moves by Service
    /// selector here, not by the gate, so an old pod keeps serving until
    /// EMQX evacuates it.
    ///
    /// A gated pod that cannot be marked yet (its containers not ready, or
    /// its node not yet a running member) is polled for: nothing in
    /// Kubernetes changes when EMQX lists the node, so no watch event
    /// would bring the next pass, and the pod would wait un-Ready forever.
    fn mark_serving(&mut self, emqx: Option<&EmqxView>) {
        for pod in self.obs.sets.iter().flat_map(|s| &s.pods) {
            if pod.serving_gate != Some(false) || pod.terminating {
                continue;
            }
            if pod.containers_ready && emqx.is_some_and(|e| e.is_running_member(&pod.node)) {
                self.actions.push(Action::MarkServing {
                    pod: pod.name.clone(),
                });
            } else {
                self.requeue_after_s = Some(POLL_S * 2);
            }
        }
    }

    /// Step 1: the sets of the desired revision exist at the desired size.
    /// Returns false when this pass must stop here.
    fn ensure_update_sets(&mut self) -> bool {
        for role in self.roles() {
            let Some(role_spec) = self.spec.role(role) else {
                continue;
            };
            match self.update_set(role) {
                Some(set) if set.replicas != role_spec.replicas => {
                    self.actions.push(Action::ScaleSet {
                        name: set.name.clone(),
                        from: set.replicas,
                        to: role_spec.replicas,
                    });
                }
                Some(_) => {}
                None => {
                    // Replicants refuse cores of another version (Mria), so
                    // new replicants come only after the new cores are in.
                    if role == Role::Replicant && !self.role_ready(Role::Core) {
                        self.phase = Phase::Creating;
                        let summary = self.readiness_summary(Role::Core);
                        self.wait(
                            WaitReason::WaitingForCoreNodes,
                            format!("new replicants wait for the new core nodes: {summary}"),
                        );
                        return false;
                    }
                    self.actions.push(Action::CreateSet {
                        role,
                        revision: role_spec.revision.clone(),
                        replicas: role_spec.replicas,
                    });
                    self.phase = Phase::Creating;
                    self.wait(
                        WaitReason::CreatingNodes,
                        format!(
                            "creating the {} set of revision {}",
                            role.as_str(),
                            role_spec.revision
                        ),
                    );
                    self.requeue_after_s = Some(POLL_S);
                    return false;
                }
            }
        }
        true
    }

    /// Counts (ready, joined, wanted) over the live pods of the update set.
    fn readiness(&self, role: Role) -> (u32, u32, u32) {
        let wanted = self.spec.role(role).map_or(0, |r| r.replicas);
        let Some(set) = self.update_set(role) else {
            return (0, 0, wanted);
        };
        let live = set.pods.iter().filter(|p| !p.terminating);
        let (mut ready, mut joined) = (0, 0);
        for pod in live {
            if pod.ready {
                ready += 1;
            }
            if self
                .obs
                .emqx
                .as_ref()
                .is_some_and(|e| e.is_running_member(&pod.node))
            {
                joined += 1;
            }
        }
        (ready, joined, wanted)
    }

    fn role_ready(&self, role: Role) -> bool {
        let (ready, joined, wanted) = self.readiness(role);
        ready >= wanted && joined >= wanted
    }

    fn readiness_summary(&self, role: Role) -> String {
        let (ready, joined, wanted) = self.readiness(role);
        format!(
            "{} {ready}/{wanted} ready, {joined}/{wanted} joined",
            role.as_str()
        )
    }

    fn all_new_nodes_ready(&self) -> bool {
        self.roles().into_iter().all(|r| self.role_ready(r))
    }

    fn point_services_if_needed(&mut self) -> bool {
        let (listeners, dashboard) = desired_services(self.spec);
        let services = &self.services;
        if services.listeners.as_ref() == Some(&listeners)
            && services.dashboard.as_ref() == Some(&dashboard)
        {
            return false;
        }
        self.actions.push(Action::PointServices {
            listeners,
            dashboard,
        });
        true
    }

    /// Nodes EMQX still lists as stopped although no pod runs them: removed
    /// nodes must not linger in the cluster view (upstream #1021).
    fn force_leave_departed(&mut self, emqx: &EmqxView) {
        for member in emqx.members.iter().filter(|m| !m.running) {
            let has_pod = self
                .obs
                .sets
                .iter()
                .flat_map(|s| &s.pods)
                .any(|p| p.node == member.node);
            // A core pod deleted by hand or by a drained Kubernetes node is
            // recreated by its StatefulSet under the same name: between the
            // old pod's removal and the new one's creation, no pod has the
            // node. Force-leaving it then would either drop its schema copy
            // (it restarts with data of a cluster that forgot it) or, if the
            // new pod already joined, make it leave the cluster and run
            // alone (mria 0.8.18 `mria.erl` `force_leave/1`: a running node
            // is asked to `leave`).
            let returning = self.obs.sets.iter().any(|s| s.brings_back(&member.node));
            if !has_pod && !returning {
                self.actions.push(Action::ForceLeave {
                    node: member.node.clone(),
                });
            }
        }
    }

    /// A node of the desired revision under evacuation (a revert, or an
    /// evacuation left over by someone else) must accept clients again.
    fn stop_evacuations_of_kept_nodes(&mut self, emqx: &EmqxView) {
        let kept: Vec<&Pod> = self
            .roles()
            .into_iter()
            .filter_map(|r| self.update_set(r))
            .flat_map(|s| &s.pods)
            .filter(|p| !p.terminating)
            .collect();
        for pod in kept {
            if emqx.evacuation_of(&pod.node).is_some() {
                self.actions.push(Action::StopEvacuation {
                    node: pod.node.clone(),
                });
            }
        }
    }

    fn steady_state(&mut self) {
        self.point_services_if_needed();
        self.delete_history_beyond_limit();
        if self.all_new_nodes_ready() {
            self.phase = Phase::Ready;
            // Membership is not watched; look again now and then.
            self.requeue_after_s = Some(30);
        } else {
            self.phase = Phase::WaitingForNewNodes;
            let summary = self.summaries();
            self.wait(
                WaitReason::WaitingForNodes,
                format!("waiting for nodes: {summary}"),
            );
            self.requeue_after_s = Some(POLL_S * 5);
        }
    }

    fn summaries(&self) -> String {
        self.roles()
            .into_iter()
            .map(|r| self.readiness_summary(r))
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// Old sets at zero, beyond `revisionHistoryLimit` per role, oldest first.
    /// Their PVCs stay: a set is deleted, never its claims.
    fn delete_history_beyond_limit(&mut self) {
        for role in [Role::Replicant, Role::Core] {
            let mut zero: Vec<&NodeSet> = self
                .obs
                .sets
                .iter()
                .filter(|s| s.role == role && !s.is_desired(self.spec))
                .filter(|s| s.replicas == 0 && s.pods.is_empty())
                .collect();
            // Newest first: the first `limit` are kept.
            zero.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(b.name.cmp(&a.name)));
            for set in zero.into_iter().skip(self.spec.revision_history_limit) {
                self.actions.push(Action::DeleteSet {
                    name: set.name.clone(),
                });
            }
        }
    }

    fn upgrade(&mut self, old: &[&'a NodeSet]) {
        let Some(emqx) = self.obs.emqx.clone() else {
            self.phase = Phase::WaitingForNewNodes;
            self.wait(
                WaitReason::EmqxApiUnavailable,
                "cannot read the EMQX cluster through its API; no old node is touched until it answers"
                    .into(),
            );
            self.requeue_after_s = Some(POLL_S * 5);
            return;
        };
        let old = self.scale_away_abandoned(old, &emqx);
        if !self.all_new_nodes_ready() {
            self.phase = Phase::WaitingForNewNodes;
            let summary = self.summaries();
            self.wait(
                WaitReason::WaitingForNewNodes,
                format!("new nodes must be ready and joined before traffic moves: {summary}"),
            );
            self.requeue_after_s = Some(POLL_S * 2);
            return;
        }
        if self.awaiting_promotion() {
            return;
        }
        if !self.initial_delay_passed() {
            return;
        }
        if !self.arm_guard() {
            return;
        }
        if self.point_services_if_needed() {
            // Evictions start on a later pass, after the switch is observed.
            self.phase = Phase::Evacuating;
            self.requeue_after_s = Some(POLL_S);
            return;
        }
        self.phase = Phase::Evacuating;
        self.requeue_after_s = Some(POLL_S);
        if self.judge_guard(&old) {
            return;
        }
        self.drain_next(&old, &emqx);
    }

    /// The nodes of `sets`' pods.
    fn nodes_of<'s>(sets: impl IntoIterator<Item = &'s NodeSet>) -> Vec<String> {
        sets.into_iter()
            .flat_map(|s| &s.pods)
            .map(|p| p.node.clone())
            .collect()
    }

    /// The nodes of the desired revision.
    fn new_nodes(&self) -> Vec<String> {
        Self::nodes_of(self.obs.sets.iter().filter(|s| s.is_desired(self.spec)))
    }

    /// Arms the upgrade guard with the figures before any client moved,
    /// once per upgrade. Traffic does not move before it is armed: without
    /// EMQX's figures this pass the switch waits (false). An upgrade found
    /// switched and unarmed (begun by a reconciler without the guard) is
    /// armed with the figures of then.
    fn arm_guard(&mut self) -> bool {
        if self.spec.guard.is_none() {
            return true;
        }
        let key = self.spec.revision_key();
        if self
            .obs
            .memory
            .guard
            .as_ref()
            .is_some_and(|g| g.revision == key)
        {
            return true;
        }
        let figures = self.obs.emqx.as_ref().and_then(|e| e.figures.as_ref());
        match guard::arm(&key, figures, &self.new_nodes(), self.obs.now) {
            Some(arm) => {
                self.actions.push(arm);
                true
            }
            None if traffic_on_desired(self.spec, self.obs) => true,
            None => {
                // Why they are missing, when EMQX said (a failed call, or
                // a broker without the figure): the user must see it.
                let why = self
                    .obs
                    .emqx
                    .as_ref()
                    .and_then(|e| e.figures_unavailable.as_deref())
                    .map(|why| format!(" ({why})"))
                    .unwrap_or_default();
                self.phase = Phase::InitialDelay;
                self.wait(
                    WaitReason::InitialDelay,
                    format!(
                        "upgrade guard: waiting for EMQX's connection figures before traffic moves{why}"
                    ),
                );
                self.requeue_after_s = Some(POLL_S);
                false
            }
        }
    }

    /// The guard's verdict after the switch: bookkeeping, the figures, a
    /// trip (true: nothing else this pass) or a hold of the next node.
    fn judge_guard(&mut self, old: &[&'a NodeSet]) -> bool {
        let Some(spec) = &self.spec.guard else {
            return false;
        };
        let key = self.spec.revision_key();
        // A guard that tripped for this upgrade judges no more: past a retry
        // its figures are forgotten (ClearAbort) and it is armed again at
        // the next switch.
        let Some(memory) = self
            .obs
            .memory
            .guard
            .as_ref()
            .filter(|g| g.revision == key && g.tripped.is_none())
        else {
            return false;
        };
        let old_nodes = Self::nodes_of(old.iter().copied());
        let verdict = guard::judge(
            spec,
            memory,
            self.obs,
            &old_nodes,
            &self.new_nodes(),
            self.spec.strategy.wait_takeover_s,
        );
        self.actions.extend(verdict.actions);
        self.gauges = verdict.gauges;
        if let Some(why) = verdict.trip {
            self.trip = Some(why);
            return true;
        }
        self.guard_hold = verdict.hold_s;
        false
    }

    /// An old set that no Service selects and that runs no node (no pod
    /// ready, none a running cluster member) holds no client and no
    /// session: a superseded revision whose pods never came up, such as a
    /// bad image. It is scaled away at once, one node per pass, rather than
    /// after the new nodes are in, since its pods may be what keeps the new
    /// ones from being scheduled (upstream #1214). Returns the other sets,
    /// which drain as usual.
    fn scale_away_abandoned(&mut self, old: &[&'a NodeSet], emqx: &EmqxView) -> Vec<&'a NodeSet> {
        let services = &self.services;
        let mut rest = Vec::new();
        for set in old.iter().copied() {
            let selected = services
                .listeners
                .as_ref()
                .is_some_and(|(role, rev)| *role == set.role && *rev == set.revision)
                || (set.role == Role::Core && services.dashboard.as_ref() == Some(&set.revision));
            let idle = set
                .pods
                .iter()
                .all(|p| !p.ready && !emqx.is_running_member(&p.node));
            if selected || !idle {
                rest.push(set);
            } else if set.replicas > 0 {
                self.actions.push(Action::RemoveOldNode {
                    set: set.name.clone(),
                    node: victim_of(set).map(|p| p.node.clone()),
                    from: set.replicas,
                });
            }
        }
        rest
    }

    /// `promotion: Manual`: the new nodes are in and no client moved;
    /// traffic waits for the promote annotation naming this revision (one
    /// left from an earlier upgrade names another, and promotes nothing).
    /// Once the listeners Service selects the new revision the switch is
    /// done, and the upgrade goes on whatever the annotation says now.
    fn awaiting_promotion(&mut self) -> bool {
        if !self.spec.manual_promotion {
            return false;
        }
        let key = self.spec.revision_key();
        if self.spec.promote.as_deref() == Some(key.as_str()) {
            return false;
        }
        let (listeners, _) = desired_services(self.spec);
        if self.spec.listeners_service && self.services.listeners.as_ref() == Some(&listeners) {
            return false;
        }
        self.phase = Phase::AwaitingPromotion;
        let stale = match &self.spec.promote {
            Some(other) => format!(" ({ANNOTATION_PROMOTE} names {other}, not this revision)"),
            None => String::new(),
        };
        self.wait(
            WaitReason::AwaitingPromotion,
            format!(
                "new nodes of revision {key} are ready and joined and no client has moved{stale}; annotate {ANNOTATION_PROMOTE}={key} to move traffic to them, or {ANNOTATION_ABORT}={key} to go back to the old nodes"
            ),
        );
        // Membership is not watched; the annotation is.
        self.requeue_after_s = Some(30);
        true
    }

    /// Counted in milliseconds: in whole seconds of the clock, a pass just
    /// after a second boundary could move the traffic up to a second early.
    fn initial_delay_passed(&mut self) -> bool {
        let key = self.spec.revision_key();
        let now = self.obs.now_ms;
        let ready_at = match &self.obs.memory.new_nodes_ready_at {
            Some((rev, at)) if *rev == key => *at,
            _ => {
                self.actions.push(Action::RecordNewNodesReady {
                    revision: key,
                    at: now,
                });
                now
            }
        };
        let until =
            ready_at.saturating_add(self.spec.strategy.initial_delay_s.saturating_mul(1000));
        if now >= until {
            return true;
        }
        let left_ms = until - now;
        let left_s = left_ms.div_ceil(1000);
        self.phase = Phase::InitialDelay;
        self.timed_wait(
            WaitReason::InitialDelay,
            format!("new nodes are ready; traffic moves in {left_s}s (initialDelaySeconds)"),
            left_s,
        );
        self.requeue_after_ms = Some(left_ms);
        false
    }

    /// Step 5: one old node at a time.
    fn drain_next(&mut self, old: &[&'a NodeSet], emqx: &EmqxView) {
        // The previous victim must be gone before the next one starts, so
        // its force_leave happens first and evacuations never overlap.
        if let Some(pod) = old.iter().flat_map(|s| &s.pods).find(|p| p.terminating) {
            self.wait(
                WaitReason::WaitingForPodTermination,
                format!("waiting for old pod {} to terminate", pod.name),
            );
            return;
        }
        // A scale-down is done only when the set controller deleted the pod:
        // until then the drained node still runs, and starting the next one
        // would have two old nodes out of service at once.
        if let Some((set, pod)) = old.iter().find_map(|s| surplus_pod(s).map(|p| (s, p))) {
            self.wait(
                WaitReason::WaitingForPodTermination,
                format!(
                    "waiting for {} to remove pod {} after its scale-down",
                    set.name, pod.name
                ),
            );
            return;
        }
        // The clients of the last evicted node must be back before anything
        // else moves (or the window ends and the guard trips).
        if let Some((left, why)) = self.guard_hold.clone() {
            self.timed_wait(WaitReason::EvacuatingNode, why, left);
            self.requeue_after_s = Some(POLL_S);
            return;
        }
        // Never start a second evacuation while one runs, wherever it is.
        let running = emqx
            .evacuations
            .iter()
            .find(|e| e.state != EvacuationState::Prohibiting);
        if let Some(evacuation) = running {
            self.wait(
                WaitReason::EvacuatingNode,
                format!(
                    "evacuating node {} ({})",
                    evacuation.node,
                    state_name(evacuation.state)
                ),
            );
            self.poll_near_the_end(evacuation);
            return;
        }
        let Some(set) = old.first() else {
            return;
        };
        let victim = victim_of(set);
        let Some(pod) = victim else {
            // Nothing runs in the slot that goes next: nothing to drain.
            self.actions.push(Action::RemoveOldNode {
                set: set.name.clone(),
                node: None,
                from: set.replicas,
            });
            return;
        };
        if set.role == Role::Replicant && !pod.marked_for_deletion {
            self.actions.push(Action::MarkForDeletion {
                pod: pod.name.clone(),
            });
        }
        let serving = emqx.is_running_member(&pod.node);
        if !serving && !pod.ready {
            // Never joined or already stopped, not ready: no client is on it.
            self.remove(set, pod);
            return;
        }
        if serving && emqx.evacuation_api {
            self.evacuate(set, pod, emqx);
        } else {
            self.drain_without_api(set, pod, serving);
        }
    }

    /// Looks at a running evacuation every [`EVACUATION_END_POLL_MS`] when
    /// EMQX's next step may bring it to `prohibiting` (the node is then
    /// removed at once), else once a second as before. Near the end means:
    /// in `waiting_takeover` from two seconds before `waitTakeover` can have
    /// run out (EMQX does not say when the wait began; the progress marker,
    /// recorded on the pass that first saw this state, dates it to within a
    /// poll, a second and a pass); in `evicting_sessions` with at most one
    /// batch (`sessEvictRate`) left; in `evicting_conns` with at most one
    /// batch left and no takeover wait after it.
    fn poll_near_the_end(&mut self, evacuation: &Evacuation) {
        let strategy = &self.spec.strategy;
        let near_end = match evacuation.state {
            EvacuationState::WaitingTakeover => {
                let marker = self.progress_marker();
                let since = match &self.obs.memory.progress {
                    Some((seen, since)) if *seen == marker => *since,
                    _ => self.obs.now,
                };
                let ends_from = since
                    .saturating_add(strategy.wait_takeover_s)
                    .saturating_sub(2);
                self.obs.now >= ends_from
            }
            EvacuationState::EvictingSessions => {
                evacuation.remaining <= u64::from(strategy.sess_evict_rate)
            }
            EvacuationState::EvictingConns => {
                strategy.wait_takeover_s == 0
                    && evacuation.remaining <= u64::from(strategy.conn_evict_rate)
            }
            EvacuationState::WaitingHealthCheck | EvacuationState::Prohibiting => false,
        };
        if near_end {
            self.requeue_after_ms = Some(EVACUATION_END_POLL_MS);
        }
    }

    fn evacuate(&mut self, set: &NodeSet, pod: &Pod, emqx: &EmqxView) {
        match emqx.evacuation_of(&pod.node) {
            Some(EvacuationState::Prohibiting) => self.remove(set, pod),
            Some(state) => self.wait(
                WaitReason::EvacuatingNode,
                format!("evacuating node {} ({})", pod.node, state_name(state)),
            ),
            None => {
                let migrate_to = self.recipients(emqx);
                if migrate_to.is_empty() {
                    self.wait(
                        WaitReason::NoRecipients,
                        "no new node is a running cluster member to take the sessions".into(),
                    );
                    return;
                }
                self.actions.push(Action::StartEvacuation {
                    node: pod.node.clone(),
                    migrate_to,
                    strategy: self.spec.strategy,
                });
                self.wait(
                    WaitReason::EvacuatingNode,
                    format!("starting evacuation of node {}", pod.node),
                );
            }
        }
    }

    /// The documented fallback for brokers without node evacuation: the
    /// node already gets no new connections (the Service moved); wait
    /// `waitTakeover`, then stop it; its clients reconnect to new nodes and
    /// their non-durable sessions are lost.
    fn drain_without_api(&mut self, set: &NodeSet, pod: &Pod, serving: bool) {
        let now = self.obs.now;
        let wait = self.spec.strategy.wait_takeover_s;
        let why = if serving {
            "the broker has no node-evacuation API"
        } else {
            "the node is not a running cluster member, so EMQX cannot evacuate it"
        };
        match &self.obs.memory.drain {
            Some(drain) if drain.node == pod.node => {
                let until = drain.started_at.saturating_add(wait);
                if now >= until {
                    self.remove(set, pod);
                } else {
                    self.timed_wait(
                        WaitReason::DrainingWithoutEvacuation,
                        format!(
                            "{why}: node {} gets no new clients and stops in {}s (waitTakeover); its clients will reconnect to new nodes",
                            pod.node,
                            until - now
                        ),
                        until - now,
                    );
                }
            }
            _ => {
                self.actions.push(Action::RecordDrainStart {
                    node: pod.node.clone(),
                    at: now,
                });
                self.timed_wait(
                    WaitReason::DrainingWithoutEvacuation,
                    format!(
                        "{why}: node {} gets no new clients and stops in {wait}s (waitTakeover)",
                        pod.node
                    ),
                    wait,
                );
            }
        }
    }

    fn remove(&mut self, set: &NodeSet, pod: &Pod) {
        self.actions.push(Action::RemoveOldNode {
            set: set.name.clone(),
            node: Some(pod.node.clone()),
            from: set.replicas,
        });
        self.wait(
            WaitReason::RemovingOldNode,
            format!("removing node {} from {}", pod.node, set.name),
        );
    }

    /// `migrate_to`: the running new nodes that serve clients.
    fn recipients(&self, emqx: &EmqxView) -> Vec<String> {
        let role = self.spec.serving_role();
        let Some(set) = self.update_set(role) else {
            return Vec::new();
        };
        let mut nodes: Vec<String> = set
            .pods
            .iter()
            .filter(|p| !p.terminating && p.ready && emqx.is_running_member(&p.node))
            .map(|p| p.node.clone())
            .collect();
        nodes.sort();
        nodes
    }

    fn progress_marker(&self) -> String {
        let mut marker = format!("{:?}", self.phase);
        for role in self.roles() {
            let (ready, joined, _) = self.readiness(role);
            marker.push_str(&format!("|{}:{ready}/{joined}", role.as_str()));
        }
        for set in &self.obs.sets {
            if set.is_old(self.spec) {
                marker.push_str(&format!("|{}={}", set.name, set.replicas));
            }
        }
        if let Some(emqx) = &self.obs.emqx {
            for e in &emqx.evacuations {
                marker.push_str(&format!(
                    "|{}:{}:{}",
                    e.node,
                    state_name(e.state),
                    e.remaining
                ));
            }
        }
        marker
    }

    fn finish(mut self) -> Decision {
        let now = self.obs.now;
        let marker = self.progress_marker();
        let at_rest = self.wait.is_none() && self.actions.is_empty();
        let stalled = match &self.obs.memory.progress {
            Some((last, since)) if *last == marker => {
                // Waiting for the user to promote is no stall either.
                let waiting = self
                    .wait
                    .as_ref()
                    .is_some_and(|w| !w.timed && w.reason != WaitReason::AwaitingPromotion);
                waiting && now.saturating_sub(*since) > self.spec.progress_deadline_s
            }
            // Nothing recorded and nothing under way: a cluster that never
            // changed (one taken over from the Go operator, say) gets no
            // write to its object.
            None if at_rest => false,
            _ => {
                self.actions
                    .push(Action::RecordProgress { marker, at: now });
                false
            }
        };
        Decision {
            phase: self.phase,
            actions: self.actions,
            wait: self.wait,
            stalled,
            requeue_after_s: self.requeue_after_s,
            requeue_after_ms: self.requeue_after_ms,
            guard: self.gauges,
        }
    }
}

/// Replicants are drained before cores: an old core outlives them.
fn drain_rank(role: Role) -> u8 {
    match role {
        Role::Replicant => 0,
        Role::Core => 1,
    }
}

/// The pod that leaves the set next. A StatefulSet always removes its
/// highest ordinal; a ReplicaSet removes the pod we marked, else we mark
/// the oldest.
fn victim_of(set: &NodeSet) -> Option<&Pod> {
    let live = set.pods.iter().filter(|p| !p.terminating);
    match set.role {
        Role::Core => {
            let last = set.replicas.checked_sub(1)?;
            live.into_iter().find(|p| p.ordinal == Some(last))
        }
        Role::Replicant => {
            let live: Vec<&Pod> = live.collect();
            live.iter()
                .find(|p| p.marked_for_deletion)
                .or_else(|| {
                    live.iter()
                        .min_by(|a, b| a.created_at.cmp(&b.created_at).then(a.name.cmp(&b.name)))
                })
                .copied()
        }
    }
}

/// A live pod beyond the set's `replicas`: one a scale-down removes but
/// the set controller has not deleted yet.
fn surplus_pod(set: &NodeSet) -> Option<&Pod> {
    let live: Vec<&Pod> = set.pods.iter().filter(|p| !p.terminating).collect();
    if u32::try_from(live.len()).unwrap_or(u32::MAX) <= set.replicas {
        return None;
    }
    match set.role {
        Role::Core => live
            .into_iter()
            .filter(|p| p.ordinal.is_some_and(|o| o >= set.replicas))
            .max_by_key(|p| p.ordinal),
        Role::Replicant => live
            .iter()
            .find(|p| p.marked_for_deletion)
            .or_else(|| live.first())
            .copied(),
    }
}

/// EMQX's spelling of a state, for messages.
pub fn state_name(state: EvacuationState) -> &'static str {
    match state {
        EvacuationState::WaitingHealthCheck => "waiting_health_check",
        EvacuationState::EvictingConns => "evicting_conns",
        EvacuationState::WaitingTakeover => "waiting_takeover",
        EvacuationState::EvictingSessions => "evicting_sessions",
        EvacuationState::Prohibiting => "prohibiting",
    }
}

pub mod guard;

#[cfg(test)]
mod tests;
