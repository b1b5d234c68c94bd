//! `decide` state by state, then property tests that drive it against a
//! small model of Kubernetes and EMQX (with crashes at random points) and
//! check the safety rules on every step.

use super::*;
use crate::observed::{
    Drain, Evacuation, Figures, GuardMemory, GuardSpec, Member, Memory, RoleSpec, Services,
    Strategy,
};
use proptest::prelude::{ProptestConfig, any, prop_assert, proptest};

const STRATEGY: Strategy = Strategy {
    initial_delay_s: 10,
    wait_takeover_s: 5,
    conn_evict_rate: 100,
    sess_evict_rate: 100,
};

fn spec(core_rev: &str, replicas: u32) -> Spec {
    Spec {
        core: RoleSpec {
            revision: core_rev.into(),
            replicas,
        },
        replicant: None,
        strategy: STRATEGY,
        paused: false,
        progress_deadline_s: 600,
        revision_history_limit: 1,
        listeners_service: true,
        dashboard_service: true,
        manual_promotion: false,
        promote: None,
        abort: None,
        guard: None,
    }
}

fn node(set: &str, i: u32) -> String {
    format!("emqx@{set}-{i}.emqx-headless.default.svc.cluster.local")
}

fn core_set(rev: &str, replicas: u32, created_at: Seconds, ready: bool) -> NodeSet {
    let name = format!("emqx-core-{rev}");
    NodeSet {
        pods: (0..replicas)
            .map(|i| Pod {
                name: format!("{name}-{i}"),
                ordinal: Some(i),
                created_at,
                ready,
                terminating: false,
                node: node(&name, i),
                marked_for_deletion: false,
                containers_ready: true,
                serving_gate: None,
            })
            .collect(),
        name,
        role: Role::Core,
        revision: rev.into(),
        replicas,
        created_at,
    }
}

fn members_of(sets: &[NodeSet]) -> Vec<Member> {
    sets.iter()
        .flat_map(|s| &s.pods)
        .filter(|p| p.ready)
        .map(|p| Member {
            node: p.node.clone(),
            running: true,
        })
        .collect()
}

fn observed(now: Seconds, sets: Vec<NodeSet>, listeners_rev: &str) -> Observed {
    let members = members_of(&sets);
    Observed {
        now,
        now_ms: now * 1000,
        sets,
        emqx: Some(EmqxView {
            members,
            evacuations: Vec::new(),
            evacuation_api: true,
            figures: None,
            figures_unavailable: None,
        }),
        services: Services {
            listeners: Some((Role::Core, listeners_rev.into())),
            dashboard: Some(listeners_rev.into()),
            listeners_role_wide: None,
            dashboard_role_wide: false,
        },
        memory: Memory::default(),
    }
}

fn has(decision: &Decision, f: impl Fn(&Action) -> bool) -> bool {
    decision.actions.iter().any(f)
}

#[test]
fn a_new_cluster_gets_its_core_set() {
    let obs = Observed {
        now: 0,
        now_ms: 0,
        sets: Vec::new(),
        emqx: None,
        services: Services::default(),
        memory: Memory::default(),
    };
    let d = decide(&spec("a", 3), &obs);
    assert_eq!(d.phase, Phase::Creating);
    assert!(has(
        &d,
        |a| matches!(a, Action::CreateSet { role: Role::Core, revision, replicas: 3 } if revision == "a")
    ));
}

#[test]
fn replicants_wait_for_new_cores() {
    let mut s = spec("b", 2);
    s.replicant = Some(RoleSpec {
        revision: "r".into(),
        replicas: 2,
    });
    let obs = observed(0, vec![core_set("b", 2, 0, false)], "b");
    let d = decide(&s, &obs);
    assert!(!has(&d, |a| matches!(a, Action::CreateSet { .. })));
    assert_eq!(
        d.wait.as_ref().map(|w| w.reason.as_str()),
        Some("WaitingForCoreNodes")
    );

    let obs = observed(0, vec![core_set("b", 2, 0, true)], "b");
    let d = decide(&s, &obs);
    assert!(has(&d, |a| matches!(
        a,
        Action::CreateSet {
            role: Role::Replicant,
            ..
        }
    )));
}

#[test]
fn a_steady_cluster_is_ready_and_does_nothing() {
    let mut obs = observed(100, vec![core_set("a", 3, 0, true)], "a");
    // A cluster that never changed (a Go-created one taken over, say) has
    // no progress to remember: nothing at all, so nothing is written.
    let first = decide(&spec("a", 3), &obs);
    assert_eq!(first.phase, Phase::Ready);
    assert!(first.actions.is_empty(), "{:?}", first.actions);
    // After an upgrade its last marker is replaced once by the steady one;
    // once remembered, nothing is written.
    obs.memory.progress = Some(("Evacuating|old".into(), 50));
    let after_upgrade = decide(&spec("a", 3), &obs);
    let [Action::RecordProgress { marker, at }] = after_upgrade.actions.as_slice() else {
        panic!("{:?}", after_upgrade.actions);
    };
    obs.memory.progress = Some((marker.clone(), *at));
    let again = decide(&spec("a", 3), &obs);
    assert!(again.actions.is_empty(), "{:?}", again.actions);
}

#[test]
fn replicas_change_scales_in_place() {
    let obs = observed(100, vec![core_set("a", 3, 0, true)], "a");
    let d = decide(&spec("a", 5), &obs);
    assert!(has(&d, |a| matches!(
        a,
        Action::ScaleSet { from: 3, to: 5, .. }
    )));
    assert!(!has(&d, |a| matches!(a, Action::CreateSet { .. })));
}

#[test]
fn a_template_change_creates_the_new_set_and_leaves_the_old_alone() {
    let obs = observed(100, vec![core_set("a", 3, 0, true)], "a");
    let d = decide(&spec("b", 3), &obs);
    assert!(has(
        &d,
        |a| matches!(a, Action::CreateSet { revision, .. } if revision == "b")
    ));
    assert!(!has(&d, |a| matches!(
        a,
        Action::RemoveOldNode { .. } | Action::PointServices { .. }
    )));
}

#[test]
fn traffic_moves_only_after_new_nodes_are_ready_and_the_delay_passed() {
    let sets = vec![core_set("a", 3, 0, true), core_set("b", 3, 50, false)];
    let d = decide(&spec("b", 3), &observed(100, sets, "a"));
    assert_eq!(d.phase, Phase::WaitingForNewNodes);
    assert!(!has(&d, |a| matches!(a, Action::PointServices { .. })));

    let sets = vec![core_set("a", 3, 0, true), core_set("b", 3, 50, true)];
    let mut obs = observed(100, sets, "a");
    let d = decide(&spec("b", 3), &obs);
    assert_eq!(d.phase, Phase::InitialDelay);
    assert!(has(&d, |a| matches!(
        a,
        Action::RecordNewNodesReady { at: 100_000, .. }
    )));
    assert_eq!(d.requeue_after_ms, Some(10_000));

    // Counted to the millisecond: ready at 100.9 s, so not at 110.0 s
    // (whole seconds would say 10 s have passed), but at 110.9 s.
    obs.memory.new_nodes_ready_at = Some(("b".into(), 100_900));
    obs.now = 110;
    obs.now_ms = 110_000;
    let d = decide(&spec("b", 3), &obs);
    assert!(!has(&d, |a| matches!(a, Action::PointServices { .. })));
    assert_eq!(d.phase, Phase::InitialDelay);
    assert_eq!(d.requeue_after_ms, Some(900));
    obs.now_ms = 110_899;
    let d = decide(&spec("b", 3), &obs);
    assert!(!has(&d, |a| matches!(a, Action::PointServices { .. })));
    assert_eq!(d.requeue_after_ms, Some(1));
    obs.now_ms = 110_900;
    let d = decide(&spec("b", 3), &obs);
    assert!(has(
        &d,
        |a| matches!(a, Action::PointServices { dashboard, .. } if dashboard == "b")
    ));
    assert!(
        !has(&d, |a| matches!(a, Action::StartEvacuation { .. })),
        "switch first, evict later"
    );
}

fn switched(now: Seconds) -> Observed {
    let sets = vec![core_set("a", 3, 0, true), core_set("b", 3, 50, true)];
    let mut obs = observed(now, sets, "b");
    obs.memory.new_nodes_ready_at = Some(("b".into(), 0));
    obs
}

#[test]
fn the_highest_old_ordinal_is_evacuated_to_the_new_nodes() {
    let d = decide(&spec("b", 3), &switched(100));
    let start = d.actions.iter().find_map(|a| match a {
        Action::StartEvacuation {
            node, migrate_to, ..
        } => Some((node.clone(), migrate_to.clone())),
        _ => None,
    });
    let (victim, to) = start.expect("an evacuation starts");
    assert_eq!(victim, node("emqx-core-a", 2));
    assert_eq!(to.len(), 3);
    assert!(to.iter().all(|n| n.contains("emqx-core-b")));
}

#[test]
fn a_disabled_listeners_service_counts_as_pointed() {
    // A listeners Service left over from before it was disabled still
    // selects the old revision: it must neither hold the upgrade nor be
    // moved.
    let mut obs = switched(100);
    obs.services.listeners = Some((Role::Core, "a".into()));
    let enabled = spec("b", 3);
    assert!(!traffic_on_desired(&enabled, &obs));
    let d = decide(&enabled, &obs);
    assert!(has(&d, |a| matches!(a, Action::PointServices { .. })));
    assert!(!has(&d, |a| matches!(a, Action::StartEvacuation { .. })));

    let disabled = Spec {
        listeners_service: false,
        ..spec("b", 3)
    };
    assert!(traffic_on_desired(&disabled, &obs));
    let d = decide(&disabled, &obs);
    assert!(!has(&d, |a| matches!(a, Action::PointServices { .. })));
    assert!(has(&d, |a| matches!(a, Action::StartEvacuation { .. })));
}

#[test]
fn old_means_another_revision_with_replicas_or_pods_left() {
    let spec = spec("b", 3);
    let mut draining = core_set("a", 1, 0, true);
    assert!(draining.is_old(&spec));
    draining.replicas = 0;
    assert!(draining.is_old(&spec), "its last pod still runs");
    draining.pods.clear();
    assert!(!draining.is_old(&spec), "history, not an upgrade");
    assert!(!core_set("b", 3, 1, true).is_old(&spec));
}

#[test]
fn a_running_evacuation_is_waited_for_and_nothing_is_removed() {
    let mut obs = switched(100);
    if let Some(emqx) = obs.emqx.as_mut() {
        emqx.evacuations.push(Evacuation {
            node: node("emqx-core-a", 2),
            state: EvacuationState::EvictingConns,
            remaining: 40,
        });
    }
    let d = decide(&spec("b", 3), &obs);
    assert!(!has(&d, |a| matches!(
        a,
        Action::RemoveOldNode { .. } | Action::StartEvacuation { .. }
    )));
    assert_eq!(
        d.wait.as_ref().map(|w| w.reason.as_str()),
        Some("EvacuatingNode")
    );
}

/// `switched(now)` with a-2 evacuating in `state` with `remaining` left.
fn evacuating(now: Seconds, state: EvacuationState, remaining: u64) -> Observed {
    let mut obs = switched(now);
    if let Some(emqx) = obs.emqx.as_mut() {
        emqx.evacuations.push(Evacuation {
            node: node("emqx-core-a", 2),
            state,
            remaining,
        });
    }
    obs
}

/// The progress marker this pass records (what the next pass compares).
fn marker_of(d: &Decision) -> String {
    d.actions
        .iter()
        .find_map(|a| match a {
            Action::RecordProgress { marker, .. } => Some(marker.clone()),
            _ => None,
        })
        .expect("a progress marker is recorded")
}

/// EMQX ends `waiting_takeover` on a timer it does not report: the pass
/// that first sees the state polls once a second as before; from two
/// seconds before `waitTakeover` (5) can have run out since that pass, EMQX
/// is polled every 200 ms, so `prohibiting` is seen at once, not up to a
/// second late.
#[test]
fn the_end_of_the_takeover_wait_is_polled_closely() {
    let spec = spec("b", 3);
    let first = evacuating(100, EvacuationState::WaitingTakeover, 0);
    let d = decide(&spec, &first);
    assert_eq!(d.requeue_after_s, Some(1));
    assert_eq!(d.requeue_after_ms, None, "just entered: 5 s to go");
    let marker = marker_of(&d);

    let mut later = evacuating(102, EvacuationState::WaitingTakeover, 0);
    later.memory.progress = Some((marker.clone(), 100));
    assert_eq!(decide(&spec, &later).requeue_after_ms, None);

    let mut near = evacuating(103, EvacuationState::WaitingTakeover, 0);
    near.memory.progress = Some((marker, 100));
    let d = decide(&spec, &near);
    assert_eq!(d.requeue_after_ms, Some(EVACUATION_END_POLL_MS));
    assert!(!has(&d, |a| matches!(
        a,
        Action::RemoveOldNode { .. } | Action::StartEvacuation { .. }
    )));
}

#[test]
fn the_last_batch_of_sessions_is_polled_closely_and_earlier_ones_once_a_second() {
    let spec = spec("b", 3); // sessEvictRate 100
    let d = decide(
        &spec,
        &evacuating(100, EvacuationState::EvictingSessions, 250),
    );
    assert_eq!(d.requeue_after_ms, None);
    assert_eq!(d.requeue_after_s, Some(1));
    let d = decide(
        &spec,
        &evacuating(100, EvacuationState::EvictingSessions, 100),
    );
    assert_eq!(d.requeue_after_ms, Some(EVACUATION_END_POLL_MS));
}

/// After the connections comes `waitTakeover`: the last batch of
/// connections is no end, unless there is no takeover wait.
#[test]
fn the_last_batch_of_connections_is_an_end_only_without_a_takeover_wait() {
    let d = decide(
        &spec("b", 3),
        &evacuating(100, EvacuationState::EvictingConns, 40),
    );
    assert_eq!(d.requeue_after_ms, None);
    let mut no_wait = spec("b", 3);
    no_wait.strategy.wait_takeover_s = 0;
    let d = decide(
        &no_wait,
        &evacuating(100, EvacuationState::EvictingConns, 40),
    );
    assert_eq!(d.requeue_after_ms, Some(EVACUATION_END_POLL_MS));
    let d = decide(
        &no_wait,
        &evacuating(100, EvacuationState::EvictingConns, 400),
    );
    assert_eq!(d.requeue_after_ms, None);
}

#[test]
fn prohibiting_removes_exactly_that_node() {
    let mut obs = switched(100);
    if let Some(emqx) = obs.emqx.as_mut() {
        emqx.evacuations.push(Evacuation {
            node: node("emqx-core-a", 2),
            state: EvacuationState::Prohibiting,
            remaining: 0,
        });
    }
    let d = decide(&spec("b", 3), &obs);
    assert!(has(
        &d,
        |a| matches!(a, Action::RemoveOldNode { from: 3, node: Some(n), .. } if *n == node("emqx-core-a", 2))
    ));
    assert!(!has(&d, |a| matches!(a, Action::StartEvacuation { .. })));
}

/// Right after `RemoveOldNode` the StatefulSet says 2 but its controller
/// has not deleted pod 2 yet (its node sits in `prohibiting`): the next
/// node must not start evacuating until that pod is gone.
#[test]
fn the_next_node_waits_until_the_scaled_away_pod_is_deleted() {
    let mut obs = switched(100);
    if let Some(old) = obs.sets.iter_mut().find(|s| s.revision == "a") {
        old.replicas = 2;
    }
    if let Some(emqx) = obs.emqx.as_mut() {
        emqx.evacuations.push(Evacuation {
            node: node("emqx-core-a", 2),
            state: EvacuationState::Prohibiting,
            remaining: 0,
        });
    }
    let d = decide(&spec("b", 3), &obs);
    assert!(!has(&d, |a| matches!(
        a,
        Action::StartEvacuation { .. } | Action::RemoveOldNode { .. }
    )));
    let wait = d.wait.expect("a wait");
    assert_eq!(wait.reason.as_str(), "WaitingForPodTermination");
    assert!(wait.message.contains("emqx-core-a-2"), "{}", wait.message);

    // Once the controller deleted it, the next highest ordinal goes.
    if let Some(old) = obs.sets.iter_mut().find(|s| s.revision == "a") {
        old.pods.retain(|p| p.ordinal != Some(2));
    }
    if let Some(emqx) = obs.emqx.as_mut() {
        emqx.evacuations.clear();
    }
    let d = decide(&spec("b", 3), &obs);
    assert!(has(
        &d,
        |a| matches!(a, Action::StartEvacuation { node: n, .. } if *n == node("emqx-core-a", 1))
    ));
}

#[test]
fn a_stopped_node_without_a_pod_is_force_left() {
    let mut obs = switched(100);
    if let Some(emqx) = obs.emqx.as_mut() {
        emqx.members.push(Member {
            node: node("emqx-core-a", 3),
            running: false,
        });
    }
    let d = decide(&spec("b", 3), &obs);
    assert!(has(
        &d,
        |a| matches!(a, Action::ForceLeave { node: n } if *n == node("emqx-core-a", 3))
    ));
}

#[test]
fn a_core_pod_its_statefulset_recreates_is_not_force_left() {
    // Pod 1 of the desired set was deleted (a node drained, say): its
    // StatefulSet is making it again under the same name, and its EMQX node
    // shows as stopped until the new pod boots.
    let mut set = core_set("b", 3, 0, true);
    set.pods.retain(|p| p.ordinal != Some(1));
    let mut obs = observed(100, vec![set], "b");
    if let Some(emqx) = obs.emqx.as_mut() {
        emqx.members.push(Member {
            node: node("emqx-core-b", 1),
            running: false,
        });
    }
    let d = decide(&spec("b", 3), &obs);
    assert!(
        !has(&d, |a| matches!(a, Action::ForceLeave { .. })),
        "{:?}",
        d.actions
    );

    // Beyond the set's replicas (scaled down), the same node is gone for
    // good and leaves the cluster.
    if let Some(set) = obs.sets.first_mut() {
        set.replicas = 1;
    }
    let d = decide(&spec("b", 1), &obs);
    assert!(has(
        &d,
        |a| matches!(a, Action::ForceLeave { node: n } if *n == node("emqx-core-b", 1))
    ));
}

#[test]
fn without_the_evacuation_api_the_node_is_drained_by_the_clock() {
    let mut obs = switched(100);
    if let Some(emqx) = obs.emqx.as_mut() {
        emqx.evacuation_api = false;
    }
    let d = decide(&spec("b", 3), &obs);
    assert!(has(&d, |a| matches!(
        a,
        Action::RecordDrainStart { at: 100, .. }
    )));
    assert_eq!(
        d.wait.as_ref().map(|w| w.reason.as_str()),
        Some("DrainingWithoutEvacuation")
    );
    obs.memory.drain = Some(Drain {
        node: node("emqx-core-a", 2),
        started_at: 100,
    });
    obs.now = 104;
    assert!(!has(&decide(&spec("b", 3), &obs), |a| matches!(
        a,
        Action::RemoveOldNode { .. }
    )));
    obs.now = 105;
    assert!(has(&decide(&spec("b", 3), &obs), |a| matches!(
        a,
        Action::RemoveOldNode { .. }
    )));
}

#[test]
fn emqx_unreachable_touches_no_old_node() {
    let mut obs = switched(100);
    obs.emqx = None;
    let d = decide(&spec("b", 3), &obs);
    assert_eq!(
        d.wait.as_ref().map(|w| w.reason.as_str()),
        Some("EmqxApiUnavailable")
    );
    assert!(!has(&d, |a| matches!(
        a,
        Action::RemoveOldNode { .. }
            | Action::StartEvacuation { .. }
            | Action::PointServices { .. }
    )));
}

#[test]
fn reverting_reuses_the_old_set_and_stops_its_evacuation() {
    // Upgrade a → b under way: a-2 is prohibiting, a scaled to 2 already.
    let mut obs = switched(100);
    obs.sets[0].replicas = 2;
    obs.sets[0].pods.truncate(2);
    if let Some(emqx) = obs.emqx.as_mut() {
        emqx.evacuations.push(Evacuation {
            node: node("emqx-core-a", 1),
            state: EvacuationState::Prohibiting,
            remaining: 0,
        });
    }
    let d = decide(&spec("a", 3), &obs);
    assert!(
        !has(&d, |a| matches!(a, Action::CreateSet { .. })),
        "no third set"
    );
    assert!(has(&d, |a| matches!(
        a,
        Action::ScaleSet { from: 2, to: 3, .. }
    )));
    assert!(has(
        &d,
        |a| matches!(a, Action::StopEvacuation { node: n } if *n == node("emqx-core-a", 1))
    ));
}

fn manual(core_rev: &str) -> Spec {
    Spec {
        manual_promotion: true,
        ..spec(core_rev, 3)
    }
}

/// a serves, b's nodes are ready and joined, no client moved.
fn new_nodes_in(now: Seconds) -> Observed {
    observed(
        now,
        vec![core_set("a", 3, 0, true), core_set("b", 3, 50, true)],
        "a",
    )
}

fn reason(d: &Decision) -> Option<&'static str> {
    d.wait.as_ref().map(|w| w.reason.as_str())
}

#[test]
fn manual_promotion_stops_before_the_switch() {
    let s = manual("b");
    // Not before the new nodes are in.
    let sets = vec![core_set("a", 3, 0, true), core_set("b", 3, 50, false)];
    let d = decide(&s, &observed(100, sets, "a"));
    assert_eq!(d.phase, Phase::WaitingForNewNodes);

    let d = decide(&s, &new_nodes_in(100));
    assert_eq!(d.phase, Phase::AwaitingPromotion);
    assert_eq!(reason(&d), Some("AwaitingPromotion"));
    let message = &d.wait.as_ref().expect("a wait").message;
    assert!(
        message.contains("apps.emqx.io/promote=b") && message.contains("apps.emqx.io/abort=b"),
        "{message}"
    );
    assert!(
        !has(&d, |a| matches!(
            a,
            Action::PointServices { .. }
                | Action::StartEvacuation { .. }
                | Action::RemoveOldNode { .. }
                | Action::RecordNewNodesReady { .. }
        )),
        "{:?}",
        d.actions
    );
    // An automatic upgrade in the same state goes on to its initial delay.
    let d = decide(&spec("b", 3), &new_nodes_in(100));
    assert_eq!(d.phase, Phase::InitialDelay);
}

#[test]
fn waiting_for_the_promotion_is_no_stall() {
    let s = manual("b");
    let mut obs = new_nodes_in(100);
    let d = decide(&s, &obs);
    let Some(Action::RecordProgress { marker, .. }) = d
        .actions
        .iter()
        .find(|a| matches!(a, Action::RecordProgress { .. }))
    else {
        panic!("{:?}", d.actions)
    };
    obs.memory.progress = Some((marker.clone(), 100));
    obs.now = 100 + s.progress_deadline_s * 10;
    let d = decide(&s, &obs);
    assert_eq!(d.phase, Phase::AwaitingPromotion);
    assert!(!d.stalled);
}

#[test]
fn promoting_the_desired_revision_continues_the_upgrade() {
    let mut s = manual("b");
    s.promote = Some("b".into());
    let mut obs = new_nodes_in(100);
    let d = decide(&s, &obs);
    assert_eq!(
        d.phase,
        Phase::InitialDelay,
        "the delay counts from the promotion"
    );
    assert!(has(&d, |a| matches!(
        a,
        Action::RecordNewNodesReady { at: 100_000, .. }
    )));
    obs.memory.new_nodes_ready_at = Some(("b".into(), 100_000));
    obs.now = 110;
    obs.now_ms = 110_000;
    let d = decide(&s, &obs);
    assert!(has(
        &d,
        |a| matches!(a, Action::PointServices { listeners, .. } if listeners.1 == "b")
    ));
    // After the switch, the annotation removed does not hold the drain.
    let mut s = manual("b");
    s.promote = None;
    let d = decide(&s, &switched(200));
    assert_eq!(d.phase, Phase::Evacuating);
    assert!(has(&d, |a| matches!(a, Action::StartEvacuation { .. })));
}

#[test]
fn a_stale_promote_annotation_promotes_nothing() {
    let mut s = manual("b");
    // Left from the upgrade to a.
    s.promote = Some("a".into());
    let d = decide(&s, &new_nodes_in(100));
    assert_eq!(d.phase, Phase::AwaitingPromotion);
    assert!(!has(&d, |a| matches!(
        a,
        Action::PointServices { .. } | Action::RecordNewNodesReady { .. }
    )));
    let message = &d.wait.as_ref().expect("a wait").message;
    assert!(message.contains("names a, not this revision"), "{message}");
    // With replicants the key names both revisions: the core one alone is stale.
    let mut s = manual("b");
    s.replicant = Some(RoleSpec {
        revision: "rb".into(),
        replicas: 0,
    });
    assert_eq!(s.revision_key(), "b/rb");
    s.promote = Some("b".into());
    let mut obs = new_nodes_in(100);
    obs.sets.push(NodeSet {
        name: "emqx-replicant-rb".into(),
        role: Role::Replicant,
        revision: "rb".into(),
        replicas: 0,
        created_at: 50,
        pods: Vec::new(),
    });
    let d = decide(&s, &obs);
    assert_eq!(d.phase, Phase::AwaitingPromotion);
    s.promote = Some("b/rb".into());
    assert_eq!(decide(&s, &obs).phase, Phase::InitialDelay);
}

#[test]
fn an_abort_before_the_switch_scales_the_new_set_away_and_keeps_traffic() {
    let mut s = manual("b");
    s.abort = Some("b".into());
    let d = decide(&s, &new_nodes_in(100));
    assert_eq!(d.phase, Phase::Aborted);
    assert_eq!(reason(&d), Some("UpgradeAborted"));
    assert!(
        !has(&d, |a| matches!(
            a,
            Action::CreateSet { .. } | Action::PointServices { .. } | Action::ScaleSet { .. }
        )),
        "{:?}",
        d.actions
    );
    assert!(has(&d, |a| matches!(
        a,
        Action::RecordAbort { revision, back_to, why: None } if revision == "b" && back_to == "a"
    )));
    // The new nodes drain as old ones would, to the old nodes, at once
    // (traffic never left the old nodes: no initial delay).
    let start = d.actions.iter().find_map(|a| match a {
        Action::StartEvacuation {
            node, migrate_to, ..
        } => Some((node.clone(), migrate_to.clone())),
        _ => None,
    });
    let (victim, to) = start.expect("an evacuation of a new node");
    assert_eq!(victim, node("emqx-core-b", 2));
    assert!(to.iter().all(|n| n.contains("emqx-core-a")), "{to:?}");
    let message = &d.wait.as_ref().expect("a wait").message;
    assert!(
        message.contains("aborted") && message.contains("revision a"),
        "{message}"
    );

    // Drained: only the old set runs; the abort stays, telling its Event once.
    let mut obs = observed(
        300,
        vec![core_set("a", 3, 0, true), core_set("b", 0, 50, true)],
        "a",
    );
    obs.memory.aborted = Some("b".into());
    let d = decide(&s, &obs);
    assert_eq!(d.phase, Phase::Aborted);
    assert!(
        d.actions.iter().all(|a| matches!(
            a,
            Action::RecordProgress { .. } | Action::RecordNewNodesReady { .. }
        )),
        "{:?}",
        d.actions
    );
    // Without manual promotion an abort works the same.
    let mut automatic = spec("b", 3);
    automatic.abort = Some("b".into());
    assert_eq!(decide(&automatic, &obs).phase, Phase::Aborted);
}

#[test]
fn an_abort_after_the_switch_scales_the_old_set_back_and_returns_traffic() {
    // a → b switched, a-2 already removed.
    let mut obs = switched(100);
    obs.sets[0].replicas = 2;
    obs.sets[0].pods.truncate(2);
    let mut s = spec("b", 3);
    s.abort = Some("b".into());
    let d = decide(&s, &obs);
    assert_eq!(d.phase, Phase::Aborted);
    assert!(
        !has(&d, |a| matches!(a, Action::CreateSet { .. })),
        "no third set"
    );
    assert!(has(
        &d,
        |a| matches!(a, Action::ScaleSet { name, from: 2, to: 3 } if name == "emqx-core-a")
    ));
    // Once the old set is whole again, traffic goes back to it, after the
    // initial delay its restarted nodes get like any new ones.
    let mut obs = switched(100);
    obs.memory.new_nodes_ready_at = Some(("a".into(), 0));
    let d = decide(&s, &obs);
    assert!(has(
        &d,
        |a| matches!(a, Action::PointServices { listeners, dashboard } if listeners.1 == "a" && dashboard == "a")
    ));
    assert!(!has(&d, |a| matches!(a, Action::StartEvacuation { .. })));
}

#[test]
fn an_abort_of_a_replicant_only_change_keeps_the_cores() {
    let replicants = |rev: &str, created_at: Seconds| {
        let mut set = core_set(rev, 2, created_at, true);
        set.role = Role::Replicant;
        set.name = format!("emqx-replicant-{rev}");
        for pod in &mut set.pods {
            pod.ordinal = None;
            pod.name = pod.name.replace("core", "replicant");
            pod.node = pod.node.replace("core", "replicant");
        }
        set
    };
    let mut s = spec("a", 3);
    s.replicant = Some(RoleSpec {
        revision: "rb".into(),
        replicas: 2,
    });
    s.abort = Some("a/rb".into());
    let mut obs = observed(
        100,
        vec![
            core_set("a", 3, 0, true),
            replicants("ra", 0),
            replicants("rb", 50),
        ],
        "a",
    );
    obs.services.listeners = Some((Role::Replicant, "ra".into()));
    let rollback = rollback_spec(&s, &obs).expect("an abort in force");
    assert_eq!(rollback.revision_key(), "a/ra");
    let d = decide(&s, &obs);
    assert_eq!(d.phase, Phase::Aborted);
    let evacuated: Vec<&str> = d
        .actions
        .iter()
        .filter_map(|a| match a {
            Action::StartEvacuation { node, .. } => Some(node.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(evacuated.len(), 1, "{:?}", d.actions);
    assert!(evacuated[0].contains("emqx-replicant-rb"), "{evacuated:?}");
    assert!(!has(&d, |a| matches!(
        a,
        Action::RemoveOldNode { set, .. } | Action::ScaleSet { name: set, .. } if set.contains("core")
    )));
}

#[test]
fn removing_the_abort_or_a_new_revision_resumes() {
    let aborted = || {
        let mut obs = observed(
            300,
            vec![core_set("a", 3, 0, true), core_set("b", 0, 50, true)],
            "a",
        );
        obs.memory.aborted = Some("b".into());
        obs
    };
    // Retry: the annotation removed.
    let d = decide(&manual("b"), &aborted());
    assert!(has(&d, |a| matches!(
        a,
        Action::ScaleSet { from: 0, to: 3, .. }
    )));
    assert!(has(&d, |a| matches!(a, Action::ClearAbort)));
    assert_ne!(d.phase, Phase::Aborted);
    // The spec moved on to c: the abort of b is stale.
    let mut s = manual("c");
    s.abort = Some("b".into());
    let d = decide(&s, &aborted());
    assert!(has(
        &d,
        |a| matches!(a, Action::CreateSet { revision, .. } if revision == "c")
    ));
    assert_ne!(d.phase, Phase::Aborted);
    // A finished upgrade has nothing to go back to: the annotation is ignored.
    let mut s = spec("b", 3);
    s.abort = Some("b".into());
    let d = decide(&s, &observed(300, vec![core_set("b", 3, 50, true)], "b"));
    assert_eq!(d.phase, Phase::Ready);
}

fn removals(d: &Decision) -> Vec<(&str, u32)> {
    d.actions
        .iter()
        .filter_map(|a| match a {
            Action::RemoveOldNode { set, from, .. } => Some((set.as_str(), *from)),
            _ => None,
        })
        .collect()
}

#[test]
fn a_superseded_revision_that_never_ran_is_scaled_away_at_once() {
    // a serves; b (a bad image) never came up; the corrected spec asks for
    // c, whose pods are still starting.
    let sets = vec![
        core_set("a", 2, 0, true),
        core_set("b", 2, 50, false),
        core_set("c", 2, 60, false),
    ];
    let obs = observed(100, sets, "a");
    let d = decide(&spec("c", 2), &obs);
    assert_eq!(d.phase, Phase::WaitingForNewNodes);
    assert_eq!(removals(&d), vec![("emqx-core-b", 2)]);
    assert!(!has(&d, |a| matches!(
        a,
        Action::StartEvacuation { .. } | Action::PointServices { .. }
    )));
}

#[test]
fn old_nodes_that_joined_are_evacuated_not_scaled_away() {
    // b's nodes joined EMQX but fail their readiness probe: they may hold
    // sessions, so they leave through evacuation after the switch.
    let sets = vec![
        core_set("a", 2, 0, true),
        core_set("b", 2, 50, false),
        core_set("c", 2, 60, false),
    ];
    let mut obs = observed(100, sets, "a");
    if let Some(emqx) = obs.emqx.as_mut() {
        for i in 0..2 {
            emqx.members.push(Member {
                node: node("emqx-core-b", i),
                running: true,
            });
        }
    }
    let d = decide(&spec("c", 2), &obs);
    assert!(removals(&d).is_empty(), "{:?}", d.actions);
    // Nor is the set the Services select, even with every pod down.
    let sets = vec![core_set("a", 2, 0, false), core_set("c", 2, 60, false)];
    let d = decide(&spec("c", 2), &observed(100, sets, "a"));
    assert!(removals(&d).is_empty(), "{:?}", d.actions);
}

#[test]
fn pause_changes_nothing() {
    let mut s = spec("b", 3);
    s.paused = true;
    let mut obs = switched(100);
    let d = decide(&s, &obs);
    assert_eq!(d.phase, Phase::Paused);
    // Only the progress clock is noted; nothing in the cluster changes.
    assert_eq!(
        d.actions,
        vec![Action::RecordProgress {
            marker: PAUSED_MARKER.into(),
            at: 100
        }]
    );
    obs.memory.progress = Some((PAUSED_MARKER.into(), 100));
    obs.now = 5000;
    let d = decide(&s, &obs);
    assert!(d.actions.is_empty(), "{:?}", d.actions);
    assert!(!d.stalled);
}

#[test]
fn a_long_pause_does_not_count_against_the_progress_deadline() {
    // Waiting for new nodes at 1000; paused until 5000 (well past 600s).
    let sets = vec![core_set("a", 3, 0, true), core_set("b", 3, 50, false)];
    let mut obs = observed(1000, sets, "a");
    let first = decide(&spec("b", 3), &obs);
    let Some(Action::RecordProgress { marker, .. }) = first
        .actions
        .iter()
        .find(|a| matches!(a, Action::RecordProgress { .. }))
        .cloned()
    else {
        panic!("a first pass records its marker");
    };
    obs.memory.progress = Some((marker.clone(), 1000));
    let mut paused = spec("b", 3);
    paused.paused = true;
    obs.now = 1001;
    for action in decide(&paused, &obs).actions {
        if let Action::RecordProgress { marker, at } = action {
            obs.memory.progress = Some((marker, at));
        }
    }
    // Resumed much later, in the same state: the clock starts again.
    obs.now = 5000;
    let resumed = decide(&spec("b", 3), &obs);
    assert!(!resumed.stalled, "the pause is not a stall");
    assert!(has(&resumed, |a| matches!(
        a,
        Action::RecordProgress { marker: m, at: 5000 } if *m == marker
    )));
}

#[test]
fn waiting_without_progress_past_the_deadline_is_a_stall() {
    let sets = vec![core_set("a", 3, 0, true), core_set("b", 3, 50, false)];
    let mut obs = observed(1000, sets, "a");
    let first = decide(&spec("b", 3), &obs);
    let Some(Action::RecordProgress { marker, .. }) = first
        .actions
        .iter()
        .find(|a| matches!(a, Action::RecordProgress { .. }))
        .cloned()
    else {
        panic!("a first pass records its marker");
    };
    obs.memory.progress = Some((marker.clone(), 400));
    assert!(
        !decide(&spec("b", 3), &obs).stalled,
        "600s without progress is within the deadline"
    );
    obs.memory.progress = Some((marker, 399));
    assert!(decide(&spec("b", 3), &obs).stalled, "601s is past it");
}

#[test]
fn old_sets_beyond_the_history_limit_are_deleted_oldest_first() {
    let mut sets = vec![core_set("c", 3, 300, true)];
    for (rev, at) in [("a", 100), ("b", 200)] {
        let mut s = core_set(rev, 0, at, true);
        s.pods.clear();
        sets.push(s);
    }
    let d = decide(&spec("c", 3), &observed(400, sets, "c"));
    let deleted: Vec<&String> = d
        .actions
        .iter()
        .filter_map(|a| match a {
            Action::DeleteSet { name } => Some(name),
            _ => None,
        })
        .collect();
    assert_eq!(deleted, vec!["emqx-core-a"]);
}

// ---------------------------------------------------------------------------
// A model world: Kubernetes controllers and EMQX, one tick per second.

#[derive(Debug, Clone)]
struct World {
    now: Seconds,
    sets: Vec<NodeSet>,
    /// Connections per node.
    conns: std::collections::HashMap<String, u64>,
    members: Vec<Member>,
    evacuations: Vec<(Evacuation, Seconds)>,
    evacuation_api: bool,
    services: Services,
    memory: Memory,
    next_created: Seconds,
    ready_after: Seconds,
    /// Pod name → tick it was created.
    born: std::collections::HashMap<String, Seconds>,
    /// Terminating pods vanish on the next tick.
    starts: u32,
}

impl World {
    fn observe(&self) -> Observed {
        Observed {
            now: self.now,
            now_ms: self.now * 1000,
            sets: self.sets.clone(),
            emqx: Some(EmqxView {
                members: self.members.clone(),
                evacuations: self.evacuations.iter().map(|(e, _)| e.clone()).collect(),
                evacuation_api: self.evacuation_api,
                figures: None,
                figures_unavailable: None,
            }),
            services: self.services.clone(),
            memory: self.memory.clone(),
        }
    }

    fn set_mut(&mut self, name: &str) -> Option<&mut NodeSet> {
        self.sets.iter_mut().find(|s| s.name == name)
    }

    fn apply(&mut self, action: &Action) -> Result<(), String> {
        match action {
            Action::CreateSet {
                role,
                revision,
                replicas,
            } => {
                let name = format!("emqx-{}-{revision}", role.as_str());
                if self.sets.iter().any(|s| s.name == name) {
                    return Err(format!("{name} exists"));
                }
                self.next_created += 1;
                self.sets.push(NodeSet {
                    name,
                    role: *role,
                    revision: revision.clone(),
                    replicas: *replicas,
                    created_at: self.next_created,
                    pods: Vec::new(),
                });
            }
            Action::ScaleSet { name, from, to } => {
                let set = self.set_mut(name).ok_or("no such set")?;
                if set.replicas != *from {
                    return Err("conflict".into());
                }
                set.replicas = *to;
            }
            Action::PointServices {
                listeners,
                dashboard,
            } => {
                self.services.listeners = Some(listeners.clone());
                self.services.dashboard = Some(dashboard.clone());
            }
            Action::RecordNewNodesReady { revision, at } => {
                self.memory.new_nodes_ready_at = Some((revision.clone(), *at));
            }
            Action::MarkServing { .. } => {}
            Action::MarkForDeletion { pod } => {
                for set in &mut self.sets {
                    for p in &mut set.pods {
                        if &p.name == pod {
                            p.marked_for_deletion = true;
                        }
                    }
                }
            }
            Action::StartEvacuation {
                node, migrate_to, ..
            } => {
                if !self.members.iter().any(|m| &m.node == node && m.running) {
                    return Err("404 node not found".into());
                }
                assert!(
                    self.evacuations
                        .iter()
                        .all(|(e, _)| e.state == EvacuationState::Prohibiting),
                    "a second evacuation started while one runs: {:?}",
                    self.evacuations
                );
                assert!(!migrate_to.is_empty(), "migrate_to must not be empty");
                if self.evacuations.iter().any(|(e, _)| &e.node == node) {
                    return Err("400 already_started".into());
                }
                self.starts += 1;
                self.evacuations.push((
                    Evacuation {
                        node: node.clone(),
                        state: EvacuationState::WaitingHealthCheck,
                        remaining: self.conns.get(node).copied().unwrap_or(0),
                    },
                    self.now,
                ));
            }
            Action::StopEvacuation { node } => {
                let before = self.evacuations.len();
                self.evacuations.retain(|(e, _)| &e.node != node);
                if before == self.evacuations.len() {
                    return Err("400 not_started".into());
                }
            }
            Action::RecordDrainStart { node, at } => {
                self.memory.drain = Some(Drain {
                    node: node.clone(),
                    started_at: *at,
                });
            }
            Action::RemoveOldNode { set, from, .. } => {
                let now = self.now;
                let evacuation_api = self.evacuation_api;
                let drain = self.memory.drain.clone();
                let snapshot = self.evacuations.clone();
                let members = self.members.clone();
                let conns = self.conns.clone();
                let s = self.set_mut(set).ok_or("no such set")?;
                if s.replicas != *from {
                    return Err("conflict".into());
                }
                assert!(s.replicas > 0, "scaled below zero");
                s.replicas -= 1;
                // What the real controller removes.
                let victim = match s.role {
                    Role::Core => s.pods.iter_mut().find(|p| p.ordinal == Some(s.replicas)),
                    Role::Replicant => {
                        let pick = s
                            .pods
                            .iter()
                            .filter(|p| !p.terminating)
                            .max_by_key(|p| p.marked_for_deletion)
                            .map(|p| p.name.clone());
                        s.pods.iter_mut().find(|p| Some(&p.name) == pick.as_ref())
                    }
                };
                if let Some(victim) = victim {
                    let serving = members.iter().any(|m| m.node == victim.node && m.running);
                    if serving {
                        let evacuated = snapshot.iter().any(|(e, _)| {
                            e.node == victim.node && e.state == EvacuationState::Prohibiting
                        });
                        let drained = drain.as_ref().is_some_and(|d| {
                            d.node == victim.node && now >= d.started_at + STRATEGY.wait_takeover_s
                        });
                        let safe = if evacuation_api { evacuated } else { drained };
                        assert!(
                            safe || conns.get(&victim.node).copied().unwrap_or(0) == 0
                                && !evacuation_api,
                            "node {} removed before its evacuation finished",
                            victim.node
                        );
                    }
                    victim.terminating = true;
                }
            }
            Action::ForceLeave { node } => {
                let m = self
                    .members
                    .iter()
                    .position(|m| &m.node == node)
                    .ok_or("404")?;
                assert!(!self.members[m].running, "force_leave of a running node");
                self.members.remove(m);
            }
            Action::DeleteSet { name } => {
                let i = self
                    .sets
                    .iter()
                    .position(|s| &s.name == name)
                    .ok_or("404")?;
                assert!(self.sets[i].replicas == 0 && self.sets[i].pods.is_empty());
                self.sets.remove(i);
            }
            Action::RecordProgress { marker, at } => {
                self.memory.progress = Some((marker.clone(), *at));
            }
            Action::RecordAbort { .. }
            | Action::ClearAbort
            | Action::ArmGuard { .. }
            | Action::RecordEviction { .. }
            | Action::RecordFailureWindow { .. }
            | Action::RecordRecovery { .. }
            | Action::TripGuard { .. } => {
                crate::memory::record(&mut self.memory, action);
            }
        }
        Ok(())
    }

    /// One second of Kubernetes and EMQX.
    fn tick(&mut self) {
        self.now += 1;
        // Terminated pods disappear; their nodes stop.
        for set in &mut self.sets {
            for p in set.pods.iter().filter(|p| p.terminating) {
                for m in &mut self.members {
                    if m.node == p.node {
                        m.running = false;
                    }
                }
                self.conns.remove(&p.node);
                self.evacuations.retain(|(e, _)| e.node != p.node);
            }
            set.pods.retain(|p| !p.terminating);
        }
        // Controllers create missing pods.
        for set in &mut self.sets {
            let live = set.pods.len() as u32;
            for i in 0..set.replicas.saturating_sub(live) {
                let ordinal = match set.role {
                    Role::Core => Some(live + i),
                    Role::Replicant => None,
                };
                let name = match ordinal {
                    Some(o) => format!("{}-{o}", set.name),
                    None => format!("{}-{}", set.name, self.now * 100 + u64::from(i)),
                };
                self.born.insert(name.clone(), self.now);
                set.pods.push(Pod {
                    node: format!("emqx@{name}"),
                    name,
                    ordinal,
                    created_at: self.now,
                    ready: false,
                    terminating: false,
                    marked_for_deletion: false,
                    containers_ready: true,
                    serving_gate: None,
                });
            }
            if set.role == Role::Core {
                // StatefulSet scale-down removes the highest ordinals.
                for p in &mut set.pods {
                    if p.ordinal.is_some_and(|o| o >= set.replicas) {
                        p.terminating = true;
                    }
                }
            }
        }
        // Pods become ready and join after a while.
        for set in &mut self.sets {
            for p in &mut set.pods {
                let born = self.born.get(&p.name).copied().unwrap_or(0);
                if !p.ready && !p.terminating && self.now >= born + self.ready_after {
                    p.ready = true;
                    self.members.retain(|m| m.node != p.node);
                    self.members.push(Member {
                        node: p.node.clone(),
                        running: true,
                    });
                }
            }
        }
        // Evacuations advance (rates per tick, as EMQX does).
        let now = self.now;
        for (e, since) in &mut self.evacuations {
            let left = self.conns.get(&e.node).copied().unwrap_or(0);
            match e.state {
                EvacuationState::WaitingHealthCheck => e.state = EvacuationState::EvictingConns,
                EvacuationState::EvictingConns => {
                    let next = left.saturating_sub(u64::from(STRATEGY.conn_evict_rate));
                    self.conns.insert(e.node.clone(), next);
                    e.remaining = next;
                    if next == 0 {
                        e.state = EvacuationState::WaitingTakeover;
                        *since = now;
                    }
                }
                EvacuationState::WaitingTakeover => {
                    if now >= *since + STRATEGY.wait_takeover_s {
                        e.state = EvacuationState::EvictingSessions;
                    }
                }
                EvacuationState::EvictingSessions => e.state = EvacuationState::Prohibiting,
                EvacuationState::Prohibiting => {}
            }
        }
    }
}

fn world(
    core: u32,
    replicant: Option<u32>,
    conns: u64,
    api: bool,
    ready_after: Seconds,
) -> (World, Spec) {
    let mut spec = spec("a", core);
    spec.replicant = replicant.map(|replicas| RoleSpec {
        revision: "ra".into(),
        replicas,
    });
    spec.strategy.initial_delay_s = 3;
    let mut w = World {
        now: 0,
        sets: Vec::new(),
        conns: Default::default(),
        members: Vec::new(),
        evacuations: Vec::new(),
        evacuation_api: api,
        services: Services::default(),
        memory: Memory::default(),
        next_created: 0,
        ready_after,
        born: Default::default(),
        starts: 0,
    };
    // Bring the first revision up.
    for _ in 0..200 {
        let d = decide(&spec, &w.observe());
        for a in &d.actions {
            if w.apply(a).is_err() {
                break;
            }
        }
        if d.phase == Phase::Ready {
            break;
        }
        w.tick();
    }
    for p in w.sets.iter().flat_map(|s| &s.pods) {
        w.conns.insert(p.node.clone(), conns);
    }
    (w, spec)
}

/// Runs decide → apply → tick until Ready. `crash` lists (pass, actions
/// carried out): at that pass the shell dies after that many actions.
fn run_upgrade(w: &mut World, spec: &Spec, crash: &[(usize, usize)], max_steps: usize) -> usize {
    for step in 0..max_steps {
        let d = decide(spec, &w.observe());
        let keep = crash
            .iter()
            .find(|(at, _)| *at == step)
            .map_or(usize::MAX, |(_, keep)| *keep);
        for a in d.actions.iter().take(keep) {
            if w.apply(a).is_err() {
                break;
            }
        }
        let done = d.phase == Phase::Ready
            && w.sets.iter().all(|s| {
                spec.role(s.role).is_some_and(|r| r.revision == s.revision)
                    || (s.replicas == 0 && s.pods.is_empty())
            });
        if done {
            return step;
        }
        w.tick();
    }
    panic!("no convergence in {max_steps} steps: {:#?}", w.observe());
}

/// Runs decide → apply → tick until `until` holds for the decision.
fn run_until(
    w: &mut World,
    spec: &Spec,
    max_steps: usize,
    until: impl Fn(&Decision, &World) -> bool,
) -> Decision {
    for _ in 0..max_steps {
        let d = decide(spec, &w.observe());
        for a in &d.actions {
            assert!(
                !matches!(a, Action::CreateSet { revision, .. } if revision == "a"),
                "a set of the old revision created again: {a:?}"
            );
            if w.apply(a).is_err() {
                break;
            }
        }
        if until(&d, w) {
            return d;
        }
        w.tick();
    }
    panic!("not reached in {max_steps} steps: {:#?}", w.observe());
}

#[test]
fn a_manual_upgrade_waits_in_the_model_and_an_abort_goes_back_without_a_third_set() {
    let (mut w, mut spec) = world(3, None, 250, true, 2);
    spec.core.revision = "b".into();
    spec.manual_promotion = true;
    let waiting = run_until(&mut w, &spec, 300, |d, _| {
        d.phase == Phase::AwaitingPromotion
    });
    // Long after, still waiting: nothing moved, no client was touched.
    w.now += 3600;
    let later = decide(&spec, &w.observe());
    assert_eq!(later.phase, Phase::AwaitingPromotion, "{later:?}");
    assert!(!later.stalled, "waiting for the user is no stall");
    assert_eq!(later.wait, waiting.wait);
    assert_eq!(w.services.listeners, Some((Role::Core, "a".to_string())));
    assert_eq!(w.starts, 0, "no evacuation before the promotion");

    spec.abort = Some("b".into());
    let done = run_until(&mut w, &spec, 500, |d, w| {
        d.wait
            .as_ref()
            .is_some_and(|wait| wait.message.contains("scaled away"))
            && w.sets
                .iter()
                .all(|s| s.revision == "a" || s.pods.is_empty())
            && w.members.iter().all(|m| m.node.contains("emqx-core-a"))
    });
    assert_eq!(done.phase, Phase::Aborted);
    assert_eq!(w.services.listeners, Some((Role::Core, "a".to_string())));
    assert_eq!(w.memory.aborted.as_deref(), Some("b"));
    let names: Vec<(&str, u32)> = w
        .sets
        .iter()
        .map(|s| (s.name.as_str(), s.replicas))
        .collect();
    assert_eq!(
        names,
        [("emqx-core-a", 3), ("emqx-core-b", 0)],
        "no third set"
    );
    assert!(w.members.iter().all(|m| m.node.contains("emqx-core-a")));
    // The abort holds: more passes change nothing in the cluster.
    w.tick();
    let held = decide(&spec, &w.observe());
    assert_eq!(held.phase, Phase::Aborted);
    assert!(
        held.actions
            .iter()
            .all(|a| matches!(a, Action::RecordProgress { .. })),
        "{:?}",
        held.actions
    );

    // A retry (the annotation removed) brings the new nodes back and waits
    // for the promotion again; promoting finishes the upgrade.
    spec.abort = None;
    run_until(&mut w, &spec, 300, |d, _| {
        d.phase == Phase::AwaitingPromotion
    });
    assert_eq!(w.memory.aborted, None);
    spec.promote = Some("b".into());
    run_upgrade(&mut w, &spec, &[], 500);
    assert_eq!(w.services.listeners, Some((Role::Core, "b".to_string())));
}

#[test]
fn a_whole_upgrade_converges_in_the_model() {
    let (mut w, mut spec) = world(3, None, 250, true, 2);
    spec.core.revision = "b".into();
    run_upgrade(&mut w, &spec, &[], 500);
    assert_eq!(w.starts, 3, "each old node evacuated exactly once");
    assert!(
        w.members.iter().all(|m| m.running),
        "no stopped node lingers"
    );
    assert_eq!(w.services.listeners, Some((Role::Core, "b".to_string())));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    /// From any reachable state, with the shell killed part-way through any
    /// pass, the upgrade finishes, never removes a node before its
    /// evacuation finished, never runs two evacuations, and evacuates each
    /// old node at most once.
    #[test]
    fn upgrades_are_safe_and_finish_despite_crashes(
        core in 1u32..4,
        replicant in proptest::option::of(0u32..4),
        conns in 0u64..400,
        api in any::<bool>(),
        ready_after in 1u64..5,
        change_core in any::<bool>(),
        change_replicant in any::<bool>(),
        crash in proptest::collection::vec((0usize..120, 0usize..4), 0..16),
    ) {
        let (mut w, mut spec) = world(core, replicant, conns, api, ready_after);
        if change_core {
            spec.core.revision = "b".into();
        }
        if let Some(r) = spec.replicant.as_mut().filter(|_| change_replicant) {
            r.revision = "rb".into();
        }
        let old_nodes = w.sets.iter().filter(|s| spec.role(s.role).is_none_or(|r| r.revision != s.revision)).map(|s| s.replicas).sum::<u32>();
        run_upgrade(&mut w, &spec, &crash, 3000);
        if api {
            prop_assert!(w.starts <= old_nodes, "{} evacuations for {} old nodes", w.starts, old_nodes);
        }
    }
}

/// A Go pod (with the on-serving gate) is marked once its containers are
/// ready and EMQX lists its node running; until then the pass polls,
/// since EMQX listing the node changes nothing a watch would see.
#[test]
fn a_gated_pod_is_marked_serving_once_its_node_runs_and_polled_until_then() {
    let mut sets = vec![core_set("a", 3, 0, true)];
    for pod in &mut sets[0].pods {
        pod.serving_gate = Some(true);
    }
    let restarted = &mut sets[0].pods[1];
    restarted.serving_gate = Some(false);
    restarted.ready = false;
    let name = restarted.name.clone();
    let mut obs = observed(100, sets, "a");
    // Not yet a member: nothing to do but to come back.
    obs.emqx = Some(EmqxView {
        members: members_of(&obs.sets),
        evacuations: Vec::new(),
        evacuation_api: true,
        figures: None,
        figures_unavailable: None,
    });
    let waiting = decide(&spec("a", 3), &obs);
    assert!(!has(&waiting, |a| matches!(a, Action::MarkServing { .. })));
    assert!(waiting.requeue_after_s.is_some(), "no poll: {waiting:?}");
    // Where nothing else polls (new replicants waiting for the cores, the
    // gated one among them), the gated pod's own poll brings the next pass.
    let mut with_replicants = spec("a", 3);
    with_replicants.replicant = Some(RoleSpec {
        revision: "r".into(),
        replicas: 2,
    });
    let held = decide(&with_replicants, &obs);
    assert_eq!(
        held.wait.as_ref().map(|w| w.reason.as_str()),
        Some("WaitingForCoreNodes")
    );
    assert_eq!(held.requeue_after_s, Some(2), "{held:?}");
    // EMQX unreachable: the same.
    let mut unreachable = obs.clone();
    unreachable.emqx = None;
    assert!(
        decide(&spec("a", 3), &unreachable)
            .requeue_after_s
            .is_some()
    );
    // A running member now: marked.
    if let Some(emqx) = obs.emqx.as_mut() {
        emqx.members.push(Member {
            node: obs.sets[0].pods[1].node.clone(),
            running: true,
        });
    }
    let marked = decide(&spec("a", 3), &obs);
    assert!(has(
        &marked,
        |a| matches!(a, Action::MarkServing { pod } if *pod == name)
    ));
    // Marked: back to the steady cluster's slow look now and then.
    obs.sets[0].pods[1].serving_gate = Some(true);
    obs.sets[0].pods[1].ready = true;
    let steady = decide(&spec("a", 3), &obs);
    assert_eq!(steady.requeue_after_s, Some(30), "{steady:?}");
}

// The upgrade guard (`updateStrategy.guard`, `decide/guard.rs`).

const GUARD: GuardSpec = GuardSpec {
    min_percent: 80,
    window_s: 60,
    max_failures_per_minute: 60,
};

fn guarded(rev: &str) -> Spec {
    Spec {
        guard: Some(GUARD),
        ..spec(rev, 3)
    }
}

/// a → b switched; the guard armed at 1000 connections at t=100; EMQX
/// shows `live` connections and `errors` refusals on b's nodes.
fn watched(now: Seconds, live: u64, errors: u64) -> Observed {
    let mut obs = switched(now);
    let emqx = obs.emqx.as_mut().expect("emqx");
    emqx.figures = Some(Figures {
        live_connections: live,
        connack_errors: (0..3)
            .map(|i| (node("emqx-core-b", i), if i == 0 { errors } else { 0 }))
            .chain([(node("emqx-core-a", 0), 500)])
            .collect(),
    });
    obs.memory.guard = Some(GuardMemory {
        revision: "b".into(),
        baseline: 1000,
        evicted: None,
        recovered: None,
        failures: (100, 0),
        tripped: None,
    });
    obs
}

/// a-2's connection eviction ended at t=110 (now waiting for takeover).
fn evicted(mut obs: Observed, state: EvacuationState) -> Observed {
    if let Some(emqx) = obs.emqx.as_mut() {
        emqx.evacuations.push(Evacuation {
            node: node("emqx-core-a", 2),
            state,
            remaining: 10,
        });
    }
    if let Some(g) = obs.memory.guard.as_mut() {
        g.evicted = Some((node("emqx-core-a", 2), 110));
    }
    obs
}

/// The guard holds the upgrade: nothing trips, no old node is drained,
/// removed or evacuated, and the wait names every one of `words`.
fn assert_held(d: &Decision, words: &[&str]) {
    assert_eq!(trip_of(d), None);
    assert!(!has(d, |a| matches!(
        a,
        Action::RemoveOldNode { .. }
            | Action::StartEvacuation { .. }
            | Action::RecordDrainStart { .. }
    )));
    let wait = d.wait.as_ref().expect("a wait");
    assert!(
        words.iter().all(|w| wait.message.contains(w)),
        "{}",
        wait.message
    );
}

fn trip_of(d: &Decision) -> Option<&str> {
    d.actions.iter().find_map(|a| match a {
        Action::TripGuard { message, .. } => Some(message.as_str()),
        _ => None,
    })
}

#[test]
fn the_guard_is_armed_with_the_figures_before_the_switch() {
    let sets = vec![core_set("a", 3, 0, true), core_set("b", 3, 50, true)];
    let mut obs = observed(200, sets, "a");
    obs.memory.new_nodes_ready_at = Some(("b".into(), 0));
    let emqx = obs.emqx.as_mut().expect("emqx");
    emqx.figures = Some(Figures {
        live_connections: 1000,
        connack_errors: [(node("emqx-core-b", 1), 3), (node("emqx-core-a", 1), 9)]
            .into_iter()
            .collect(),
    });
    let d = decide(&guarded("b"), &obs);
    let arm = d
        .actions
        .iter()
        .position(|a| {
            matches!(a, Action::ArmGuard { revision, baseline: 1000, failures: 3, at: 200 } if revision == "b")
        })
        .expect("armed");
    let switch = d
        .actions
        .iter()
        .position(|a| matches!(a, Action::PointServices { .. }))
        .expect("switch");
    assert!(arm < switch, "{:?}", d.actions);
    // Turned off: never armed.
    let d = decide(&spec("b", 3), &obs);
    assert!(!has(&d, |a| matches!(a, Action::ArmGuard { .. })));
}

#[test]
fn low_recovery_trips_after_the_window_not_before() {
    // 312 of 1000 back, 30 s after a-2's eviction ended: wait, and start
    // nothing else.
    let obs = evicted(watched(140, 312, 0), EvacuationState::WaitingTakeover);
    let d = decide(&guarded("b"), &obs);
    assert_eq!(trip_of(&d), None);
    assert!(!has(&d, |a| matches!(
        a,
        Action::RemoveOldNode { .. } | Action::StartEvacuation { .. }
    )));
    let wait = d.wait.as_ref().expect("a wait");
    assert!(wait.message.contains("upgrade guard"), "{}", wait.message);
    // Even with a-2 done (prohibiting), it is not removed yet.
    let obs = evicted(watched(140, 312, 0), EvacuationState::Prohibiting);
    let d = decide(&guarded("b"), &obs);
    assert!(!has(&d, |a| matches!(a, Action::RemoveOldNode { .. })));

    // At the window's end: tripped, with the figures.
    let obs = evicted(watched(170, 312, 0), EvacuationState::EvictingSessions);
    let d = decide(&guarded("b"), &obs);
    let why = trip_of(&d).expect("tripped");
    assert!(
        why.contains("312 of 1000")
            && why.contains("31% < 80%")
            && why.contains("60 s after evicting emqx@emqx-core-a-2"),
        "{why}"
    );
    assert_eq!(d.phase, Phase::Aborted);
    let wait = d.wait.as_ref().expect("a wait");
    assert_eq!(wait.reason, WaitReason::UpgradeAborted);
    assert!(wait.message.contains(why), "{}", wait.message);
}

/// [`evicted`], the connections seen back since `since`.
fn back_since(mut obs: Observed, since: Option<Seconds>) -> Observed {
    if let Some(g) = obs.memory.guard.as_mut() {
        g.recovered = since;
    }
    obs
}

fn recovery_of(d: &Decision) -> Option<Option<Seconds>> {
    d.actions.iter().find_map(|a| match a {
        Action::RecordRecovery { at } => Some(*at),
        _ => None,
    })
}

#[test]
fn clients_back_in_time_let_the_upgrade_go_on_at_once() {
    // 900 of 1000 back 5 s after the eviction ended, and back since 112:
    // a-2 is removed as soon as it is done, without waiting for the window.
    let obs = back_since(
        evicted(watched(115, 900, 0), EvacuationState::Prohibiting),
        Some(112),
    );
    let d = decide(&guarded("b"), &obs);
    assert_eq!(trip_of(&d), None);
    assert_eq!(recovery_of(&d), None);
    assert!(has(&d, |a| matches!(
        a,
        Action::RemoveOldNode { from: 3, .. }
    )));
    // A dip while the next node's connections are being evicted (clients
    // in flight) is not judged, window or not.
    let mut obs = watched(300, 500, 0);
    if let Some(emqx) = obs.emqx.as_mut() {
        emqx.evacuations.push(Evacuation {
            node: node("emqx-core-a", 1),
            state: EvacuationState::EvictingConns,
            remaining: 300,
        });
    }
    if let Some(g) = obs.memory.guard.as_mut() {
        g.evicted = Some((node("emqx-core-a", 2), 110));
    }
    assert_eq!(trip_of(&decide(&guarded("b"), &obs)), None);
}

#[test]
fn one_sample_back_is_not_a_recovery() {
    // The first pass that sees 900 of 1000 back records it and holds a-2:
    // clients that the new nodes drop a moment after CONNACK are counted
    // while connected, and a sample can fall on such a moment.
    let d = decide(
        &guarded("b"),
        &evicted(watched(115, 900, 0), EvacuationState::Prohibiting),
    );
    assert_eq!(recovery_of(&d), Some(Some(115)));
    assert!(!has(&d, |a| matches!(a, Action::RemoveOldNode { .. })));
    let wait = d.wait.as_ref().expect("a wait");
    assert!(
        wait.message.contains("upgrade guard") && wait.message.contains("stay back 3s"),
        "{}",
        wait.message
    );
    // Back for less than SETTLE_S: still held, nothing recorded again.
    let obs = back_since(
        evicted(watched(117, 900, 0), EvacuationState::Prohibiting),
        Some(115),
    );
    let d = decide(&guarded("b"), &obs);
    assert_eq!(recovery_of(&d), None);
    assert!(!has(&d, |a| matches!(a, Action::RemoveOldNode { .. })));
    // Back for SETTLE_S: a-2 goes.
    let obs = back_since(
        evicted(watched(118, 900, 0), EvacuationState::Prohibiting),
        Some(115),
    );
    assert!(has(&decide(&guarded("b"), &obs), |a| matches!(
        a,
        Action::RemoveOldNode { from: 3, .. }
    )));
    // Low again in between: the recovery starts over, and the window of
    // the eviction still counts (here it ran out: tripped).
    let obs = back_since(
        evicted(watched(117, 312, 0), EvacuationState::Prohibiting),
        Some(115),
    );
    let d = decide(&guarded("b"), &obs);
    assert_eq!(recovery_of(&d), Some(None));
    assert!(!has(&d, |a| matches!(a, Action::RemoveOldNode { .. })));
    let obs = back_since(
        evicted(watched(171, 312, 0), EvacuationState::Prohibiting),
        Some(115),
    );
    assert!(trip_of(&decide(&guarded("b"), &obs)).is_some());
}

#[test]
fn a_recovery_of_an_earlier_eviction_does_not_count_for_the_next() {
    // a-2 recovered at 112; a-1's eviction is now seen ended: its clients
    // must come back on their own.
    let mut obs = back_since(
        evicted(watched(200, 900, 0), EvacuationState::Prohibiting),
        Some(112),
    );
    if let Some(emqx) = obs.emqx.as_mut() {
        emqx.evacuations = vec![Evacuation {
            node: node("emqx-core-a", 1),
            state: EvacuationState::WaitingTakeover,
            remaining: 10,
        }];
    }
    let d = decide(&guarded("b"), &obs);
    assert!(has(&d, |a| matches!(
        a,
        Action::RecordEviction { node: n, at: 200 } if *n == node("emqx-core-a", 1)
    )));
    assert_eq!(recovery_of(&d), Some(Some(200)));
}

#[test]
fn without_emqx_figures_nothing_moves_after_an_eviction() {
    // a-2 is done and its clients were back, but this pass could not read
    // EMQX's figures: a-2 stays, the wait says why, nothing trips.
    let mut obs = back_since(
        evicted(watched(150, 900, 0), EvacuationState::Prohibiting),
        Some(112),
    );
    if let Some(emqx) = obs.emqx.as_mut() {
        emqx.figures = None;
        emqx.figures_unavailable = Some("EMQX's metrics not read: timed out".into());
    }
    let d = decide(&guarded("b"), &obs);
    assert_held(&d, &["not read", "timed out"]);
    // Before any eviction ended there is nothing to hold: the first node's
    // evacuation is not kept from starting by a missing figure.
    let mut obs = watched(120, 1000, 0);
    if let Some(emqx) = obs.emqx.as_mut() {
        emqx.figures = None;
    }
    assert!(has(&decide(&guarded("b"), &obs), |a| matches!(
        a,
        Action::StartEvacuation { .. }
    )));
}

#[test]
fn refused_connects_on_the_new_nodes_trip_the_guard() {
    // 61 refusals by b-0 within the first minute: tripped at once, even
    // with every client still connected. a-0's refusals (an evacuating
    // node's) are not the new nodes'.
    let d = decide(&guarded("b"), &watched(120, 1000, 61));
    let why = trip_of(&d).expect("tripped");
    assert!(
        why.contains("refused 61 CONNECTs in 20 s") && why.contains("> 60 per minute"),
        "{why}"
    );
    // 60 is the limit, not over it.
    let d = decide(&guarded("b"), &watched(120, 1000, 60));
    assert_eq!(trip_of(&d), None);
    assert_eq!(d.guard.map(|g| g.failures_per_minute), Some(60.0));
    // Over two minutes the same 61 is a rate of 30.5 a minute, and the
    // window starts again.
    let d = decide(&guarded("b"), &watched(220, 1000, 61));
    assert_eq!(trip_of(&d), None);
    assert!(has(&d, |a| matches!(
        a,
        Action::RecordFailureWindow { at: 220, count: 61 }
    )));
}

#[test]
fn a_disabled_guard_never_trips() {
    for obs in [
        evicted(watched(500, 10, 0), EvacuationState::Prohibiting),
        watched(120, 1000, 10_000),
    ] {
        let d = decide(&spec("b", 3), &obs);
        assert_eq!(trip_of(&d), None);
        assert_ne!(d.phase, Phase::Aborted);
        assert_eq!(d.guard, None);
    }
}

#[test]
fn a_trip_takes_the_abort_path() {
    let obs = evicted(watched(170, 312, 0), EvacuationState::WaitingTakeover);
    let d = decide(&guarded("b"), &obs);
    assert!(matches!(
        d.actions.first(),
        Some(Action::TripGuard { revision, .. }) if revision == "b"
    ));
    // The running evacuation stops, traffic goes back at once (no initial
    // delay: the old nodes served moments ago), no third set, nothing of
    // the old set is scaled down, one abort remembered with the figures.
    assert!(has(
        &d,
        |a| matches!(a, Action::StopEvacuation { node: n } if *n == node("emqx-core-a", 2))
    ));
    assert!(has(
        &d,
        |a| matches!(a, Action::PointServices { listeners, dashboard } if listeners.1 == "a" && dashboard == "a")
    ));
    assert!(!has(&d, |a| matches!(a, Action::CreateSet { .. })));
    assert!(!has(
        &d,
        |a| matches!(a, Action::RemoveOldNode { set, .. } if set == "emqx-core-a")
    ));
    assert!(has(
        &d,
        |a| matches!(a, Action::RecordAbort { revision, back_to, why: Some(_) } if revision == "b" && back_to == "a")
    ));

    // The next pass: the abort annotation the trip wrote is in force and
    // the memory holds the figures; it goes on back, with the guard's words.
    let mut obs = obs;
    let mut memory = obs.memory.clone();
    for a in &d.actions {
        crate::memory::record(&mut memory, a);
    }
    obs.memory = memory;
    obs.services.listeners = Some((Role::Core, "a".into()));
    obs.services.dashboard = Some("a".into());
    if let Some(emqx) = obs.emqx.as_mut() {
        emqx.evacuations.clear();
    }
    let mut s = guarded("b");
    s.abort = Some("b".into());
    let d = decide(&s, &obs);
    assert_eq!(d.phase, Phase::Aborted);
    assert_eq!(trip_of(&d), None, "tripped once");
    assert!(
        !has(&d, |a| matches!(a, Action::RecordAbort { .. })),
        "one Event"
    );
    let wait = d.wait.as_ref().expect("a wait");
    assert!(
        wait.message.contains("upgrade guard") && wait.message.contains("312 of 1000"),
        "{}",
        wait.message
    );
    // The new set drains back to the old nodes; the old set stays whole.
    assert!(has(&d, |a| matches!(
        a,
        Action::StartEvacuation { node: n, .. } if n.contains("emqx-core-b")
    )));
    assert!(!has(
        &d,
        |a| matches!(a, Action::RemoveOldNode { set, .. } if set == "emqx-core-a")
    ));
}

#[test]
fn a_retry_or_a_new_spec_resumes_with_a_fresh_guard() {
    let mut obs = evicted(watched(170, 312, 0), EvacuationState::Prohibiting);
    obs.memory.aborted = Some("b".into());
    if let Some(g) = obs.memory.guard.as_mut() {
        g.tripped = Some("connections 312 of 1000".into());
    }
    // The annotation removed (a retry): the abort and the guard's figures
    // are forgotten...
    let d = decide(&guarded("b"), &obs);
    assert_ne!(d.phase, Phase::Aborted);
    assert!(has(&d, |a| matches!(a, Action::ClearAbort)));
    let mut memory = obs.memory.clone();
    crate::memory::record(&mut memory, &Action::ClearAbort);
    assert_eq!(memory.guard, None);
    // ...so the next switch arms it again.
    let sets = vec![core_set("a", 3, 0, true), core_set("b", 3, 50, true)];
    let mut again = observed(300, sets, "a");
    again.memory = memory;
    again.memory.new_nodes_ready_at = Some(("b".into(), 0));
    if let Some(emqx) = again.emqx.as_mut() {
        emqx.figures = Some(Figures {
            live_connections: 990,
            connack_errors: Default::default(),
        });
    }
    let d = decide(&guarded("b"), &again);
    assert!(has(&d, |a| matches!(
        a,
        Action::ArmGuard { baseline: 990, .. }
    )));
    // A new revision while the abort annotation names b: the old memory is
    // another upgrade's, and c is armed afresh.
    let mut s = guarded("c");
    s.abort = Some("b".into());
    let sets = vec![core_set("a", 3, 0, true), core_set("c", 3, 60, true)];
    let mut next = observed(400, sets, "a");
    next.memory = obs.memory.clone();
    next.memory.new_nodes_ready_at = Some(("c".into(), 0));
    if let Some(emqx) = next.emqx.as_mut() {
        emqx.figures = Some(Figures::default());
    }
    let d = decide(&s, &next);
    assert_ne!(d.phase, Phase::Aborted);
    assert!(has(
        &d,
        |a| matches!(a, Action::ArmGuard { revision, .. } if revision == "c")
    ));
}

#[test]
fn traffic_waits_for_the_figures_that_arm_the_guard() {
    let sets = vec![core_set("a", 3, 0, true), core_set("b", 3, 50, true)];
    let mut obs = observed(200, sets, "a");
    obs.memory.new_nodes_ready_at = Some(("b".into(), 0));
    // EMQX's metrics not read this pass: no switch.
    let d = decide(&guarded("b"), &obs);
    assert!(!has(&d, |a| matches!(a, Action::PointServices { .. })));
    assert!(!has(&d, |a| matches!(a, Action::ArmGuard { .. })));
    assert_eq!(d.requeue_after_s, Some(1));
    // Guard off: the switch does not wait for them.
    let d = decide(&spec("b", 3), &obs);
    assert!(has(&d, |a| matches!(a, Action::PointServices { .. })));
    // Why they are missing is said, not left to guess (a broker whose
    // stats lack the figure waits with that reason).
    if let Some(emqx) = obs.emqx.as_mut() {
        emqx.figures_unavailable = Some("no live_connections.count".into());
    }
    let d = decide(&guarded("b"), &obs);
    assert!(!has(&d, |a| matches!(a, Action::PointServices { .. })));
    let wait = d.wait.as_ref().expect("a wait");
    assert!(
        wait.message.contains("upgrade guard")
            && wait.message.contains("no live_connections.count"),
        "{}",
        wait.message
    );
}

/// [`watched`] on a broker without the evacuation API, a-2's fallback
/// drain started at t=100 (`waitTakeover` 5 s: removal due at t=105).
fn watched_fallback(now: Seconds, live: u64, errors: u64) -> Observed {
    let mut obs = watched(now, live, errors);
    if let Some(emqx) = obs.emqx.as_mut() {
        emqx.evacuation_api = false;
    }
    obs.memory.drain = Some(Drain {
        node: node("emqx-core-a", 2),
        started_at: 100,
    });
    obs
}

/// [`watched_fallback`] after a-2 was removed at t=105 (its pod gone, the
/// set scaled to 2) and the guard saw it then.
fn removed_by_fallback(now: Seconds, live: u64) -> Observed {
    let mut obs = watched_fallback(now, live, 0);
    obs.sets[0].replicas = 2;
    obs.sets[0].pods.truncate(2);
    if let Some(emqx) = obs.emqx.as_mut() {
        emqx.members.retain(|m| m.node != node("emqx-core-a", 2));
    }
    if let Some(g) = obs.memory.guard.as_mut() {
        g.evicted = Some((node("emqx-core-a", 2), 105));
    }
    obs
}

#[test]
fn the_fallback_drains_removal_starts_the_recovery_window() {
    // Within waitTakeover the node still holds its clients: nothing ended.
    let d = decide(&guarded("b"), &watched_fallback(103, 1000, 0));
    assert!(!has(&d, |a| matches!(a, Action::RecordEviction { .. })));
    // waitTakeover passed: the node is removed, and that is the moment its
    // clients are cut off.
    let d = decide(&guarded("b"), &watched_fallback(105, 1000, 0));
    assert!(has(&d, |a| matches!(
        a,
        Action::RecordEviction { node: n, at: 105 } if *n == node("emqx-core-a", 2)
    )));
    assert!(has(&d, |a| matches!(
        a,
        Action::RemoveOldNode { node: Some(n), .. } if *n == node("emqx-core-a", 2)
    )));
    // A drain remembered from an earlier upgrade (a node of no old set of
    // this one) ends nothing.
    let mut stale = watched_fallback(105, 1000, 0);
    stale.memory.drain = Some(Drain {
        node: node("emqx-core-z", 2),
        started_at: 10,
    });
    let d = decide(&guarded("b"), &stale);
    assert!(!has(&d, |a| matches!(a, Action::RecordEviction { .. })));
}

#[test]
fn the_fallback_holds_the_next_node_until_the_clients_are_back() {
    // 312 of 1000 back 30 s after a-2's removal: a-1's drain does not
    // start.
    let d = decide(&guarded("b"), &removed_by_fallback(135, 312));
    assert_held(&d, &["upgrade guard", "emqx-core-a-2"]);
    // At the window's end: tripped, with the figures, and aborted.
    let d = decide(&guarded("b"), &removed_by_fallback(165, 312));
    let why = trip_of(&d).expect("tripped");
    assert!(
        why.contains("312 of 1000") && why.contains("60 s after evicting emqx@emqx-core-a-2"),
        "{why}"
    );
    assert_eq!(d.phase, Phase::Aborted);
    // Back in time (and stayed back): a-1's drain starts at once.
    let d = decide(
        &guarded("b"),
        &back_since(removed_by_fallback(110, 900), Some(107)),
    );
    assert_eq!(trip_of(&d), None);
    assert!(has(&d, |a| matches!(
        a,
        Action::RecordDrainStart { node: n, at: 110 } if *n == node("emqx-core-a", 1)
    )));
}

#[test]
fn refused_connects_trip_the_guard_on_the_fallback_too() {
    let d = decide(&guarded("b"), &watched_fallback(120, 1000, 61));
    let why = trip_of(&d).expect("tripped");
    assert!(why.contains("refused 61 CONNECTs"), "{why}");
}
