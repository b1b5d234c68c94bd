//! Status as the seeds print it, and conditions that move only on change.

use super::*;
use crate::decide::{Decision, Phase};
use crate::explain::Explained;
use crate::observed::{Pod, RoleSpec, Strategy};

fn spec(rev: &str) -> Spec {
    Spec {
        core: RoleSpec {
            revision: rev.into(),
            replicas: 2,
        },
        replicant: None,
        strategy: Strategy {
            initial_delay_s: 10,
            wait_takeover_s: 10,
            conn_evict_rate: 200,
            sess_evict_rate: 200,
        },
        paused: false,
        progress_deadline_s: 600,
        revision_history_limit: 3,
        listeners_service: true,
        dashboard_service: true,
        manual_promotion: false,
        promote: None,
        abort: None,
        guard: None,
    }
}

fn set(rev: &str, replicas: u32, ready: u32, created_at: Seconds) -> NodeSet {
    NodeSet {
        name: format!("emqx-ee-core-{rev}"),
        role: Role::Core,
        revision: rev.into(),
        replicas,
        created_at,
        pods: (0..replicas)
            .map(|i| Pod {
                name: format!("emqx-ee-core-{rev}-{i}"),
                ordinal: Some(i),
                created_at,
                ready: i < ready,
                terminating: false,
                node: format!("emqx@emqx-ee-core-{rev}-{i}"),
                marked_for_deletion: false,
                containers_ready: true,
                serving_gate: None,
            })
            .collect(),
    }
}

/// A decision in `phase`, and its wait as the conditions tell it.
fn decision(phase: Phase, wait: Option<(&'static str, &str)>) -> (Decision, Option<Explained>) {
    let decision = Decision {
        phase,
        actions: Vec::new(),
        wait: None,
        stalled: false,
        requeue_after_s: None,
        requeue_after_ms: None,
        guard: None,
    };
    let explained = wait.map(|(reason, message)| Explained {
        reason,
        message: message.into(),
    });
    (decision, explained)
}

fn first_true(status: &EMQXStatus) -> Option<String> {
    status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.status == "True")
        .map(|c| c.type_.clone())
}

#[test]
fn mid_upgrade_counts_read_like_seed_002() {
    // seed 002: {"currentReplicas":2,"currentRevision":"54fc496fb4","readyReplicas":4,
    //            "replicas":2,"updateReplicas":2,"updateRevision":"5d87d4c6bd"}
    let s = spec("5d87d4c6bd");
    let sets = [set("54fc496fb4", 2, 2, 1), set("5d87d4c6bd", 2, 2, 2)];
    let (d, d_wait) = decision(
        Phase::Evacuating,
        Some(("EvacuatingNode", "evacuating node x")),
    );
    let out = status(&StatusInput {
        generation: 2,
        now: 1000,
        spec: &s,
        sets: &sets,
        decision: &d,
        wait: d_wait.as_ref(),
        traffic_on_desired: true,
        nodes: None,
        evacuations: None,
        evacuation_unsupported: false,
        previous: None,
    });
    let core = out.core_nodes_status.expect("core status");
    assert_eq!(
        core,
        EMQXNodesStatus {
            replicas: Some(2),
            ready_replicas: Some(4),
            current_revision: Some("54fc496fb4".into()),
            current_replicas: Some(2),
            update_revision: Some("5d87d4c6bd".into()),
            update_replicas: Some(2),
            collision_count: None,
        }
    );
    assert_eq!(
        first_true(&EMQXStatus {
            conditions: out.conditions.clone(),
            ..Default::default()
        })
        .as_deref(),
        Some("Progressing")
    );
    let conditions = out.conditions.expect("conditions");
    assert!(conditions.iter().all(|c| c.observed_generation == Some(2)));
    let progressing = conditions
        .iter()
        .find(|c| c.type_ == "Progressing")
        .expect("progressing");
    assert_eq!(
        (progressing.reason.as_str(), progressing.message.as_str()),
        ("EvacuatingNode", "evacuating node x")
    );
}

#[test]
fn a_finished_cluster_shows_ready_first() {
    let s = spec("b");
    let sets = [set("a", 0, 0, 1), set("b", 2, 2, 2)];
    let (d, d_wait) = decision(Phase::Ready, None);
    let out = status(&StatusInput {
        generation: 3,
        now: 2000,
        spec: &s,
        sets: &sets,
        decision: &d,
        wait: d_wait.as_ref(),
        traffic_on_desired: true,
        nodes: None,
        evacuations: Some(Vec::new()),
        evacuation_unsupported: false,
        previous: None,
    });
    assert_eq!(first_true(&out).as_deref(), Some("Ready"));
    let core = out.core_nodes_status.expect("core");
    assert_eq!(
        core.current_revision.as_deref(),
        Some("b"),
        "the old set is at zero"
    );
    assert_eq!(out.node_evacuations_status, Some(Vec::new()));
}

#[test]
fn transition_times_move_only_when_the_status_flips() {
    let s = spec("b");
    let sets = [set("b", 2, 2, 2)];
    let (d, d_wait) = decision(Phase::Ready, None);
    let input = |now, previous| StatusInput {
        generation: 1,
        now,
        spec: &s,
        sets: &sets,
        decision: &d,
        wait: d_wait.as_ref(),
        traffic_on_desired: true,
        nodes: None,
        evacuations: None,
        evacuation_unsupported: false,
        previous,
    };
    let first = status(&input(100, None));
    let again = status(&input(500, Some(&first)));
    assert_eq!(
        first.conditions, again.conditions,
        "nothing flipped, nothing moved"
    );
    let (busy, busy_wait) = decision(
        Phase::WaitingForNewNodes,
        Some(("WaitingForNodes", "core 1/2")),
    );
    let flipped = status(&StatusInput {
        decision: &busy,
        wait: busy_wait.as_ref(),
        ..input(900, Some(&again))
    });
    let ready = flipped
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "Ready")
        .expect("ready");
    assert_eq!(ready.status, "False");
    assert_eq!(ready.last_transition_time.0.as_second(), 900);
    let init = flipped
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "Initialized")
        .expect("init");
    assert_eq!(init.last_transition_time.0.as_second(), 100);
}

#[test]
fn a_stall_says_so_with_the_reason_it_waits() {
    let s = spec("b");
    let sets = [set("a", 2, 2, 1), set("b", 2, 0, 2)];
    let (mut d, d_wait) = decision(
        Phase::WaitingForNewNodes,
        Some(("WaitingForNewNodes", "core 0/2 ready")),
    );
    d.stalled = true;
    let out = status(&StatusInput {
        generation: 1,
        now: 100,
        spec: &s,
        sets: &sets,
        decision: &d,
        wait: d_wait.as_ref(),
        traffic_on_desired: false,
        nodes: None,
        evacuations: None,
        evacuation_unsupported: false,
        previous: None,
    });
    let p = out
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "Progressing")
        .expect("progressing");
    assert_eq!(
        (p.status.as_str(), p.reason.as_str()),
        ("False", "ProgressDeadlineExceeded")
    );
    assert!(p.message.contains("core 0/2 ready"));
    assert_eq!(first_true(&out).as_deref(), Some("CoreNodesProgressing"));
}

#[test]
fn a_paused_cluster_says_paused_not_idle() {
    let s = spec("b");
    let sets = [set("a", 1, 1, 1), set("b", 2, 2, 2)];
    let (d, d_wait) = decision(
        Phase::Paused,
        Some(("Paused", "reconciliation is paused by annotation")),
    );
    let out = status(&StatusInput {
        generation: 1,
        now: 100,
        spec: &s,
        sets: &sets,
        decision: &d,
        wait: d_wait.as_ref(),
        traffic_on_desired: true,
        nodes: None,
        evacuations: None,
        evacuation_unsupported: false,
        previous: None,
    });
    let find = |t: &str| {
        out.conditions
            .iter()
            .flatten()
            .find(|c| c.type_ == t)
            .map(|c| (c.status.clone(), c.reason.clone()))
    };
    assert_eq!(find("Paused"), Some(("True".into(), "Paused".into())));
    assert_eq!(find("Progressing"), Some(("False".into(), "Paused".into())));
    assert_eq!(find("Ready"), Some(("False".into(), "Paused".into())));
    assert_eq!(first_true(&out).as_deref(), Some("Paused"));
}

fn emqx_node(name: &str) -> EMQXNode {
    EMQXNode {
        node: Some(name.into()),
        node_status: Some("running".into()),
        version: Some("5.8.9".into()),
        connections: Some(0),
        ..EMQXNode::default()
    }
}

/// An idle Ready cluster: the status of the next pass, a minute later and
/// with EMQX listing its members in another order, equals the one stored
/// (after the API server's JSON round trip), so the shell writes nothing.
#[test]
fn steady_state_status_is_identical_pass_after_pass() {
    let s = spec("5d87d4c6bd");
    let sets = [set("5d87d4c6bd", 2, 2, 2)];
    let (d, d_wait) = decision(Phase::Ready, None);
    let a = "emqx@emqx-ee-core-5d87d4c6bd-0";
    let b = "emqx@emqx-ee-core-5d87d4c6bd-1";
    let input = |now, nodes: Vec<&str>, previous| StatusInput {
        generation: 3,
        now,
        spec: &s,
        sets: &sets,
        decision: &d,
        wait: d_wait.as_ref(),
        traffic_on_desired: true,
        nodes: Some(
            nodes
                .into_iter()
                .map(|n| (Role::Core, emqx_node(n)))
                .collect(),
        ),
        evacuations: Some(Vec::new()),
        evacuation_unsupported: false,
        previous,
    };
    let first = status(&input(1000, vec![a, b], None));
    let stored: EMQXStatus =
        serde_json::from_value(serde_json::to_value(&first).expect("json")).expect("status");
    assert_eq!(stored, first);
    let next = status(&input(1060, vec![b, a], Some(&stored)));
    assert_eq!(next, stored);
    // EmqxEnterprise stores it as v1beta4 and reads it back through the
    // conversion: still no change.
    let converted = emqx_crd::v2beta1::EmqxEnterprise {
        metadata: Default::default(),
        spec: Default::default(),
        status: Some(stored.clone()),
    };
    let v1: emqx_crd::v1beta4::EmqxEnterprise = converted.into();
    let back: emqx_crd::v2beta1::EmqxEnterprise = v1.into();
    let next = status(&input(1120, vec![a, b], back.status.as_ref()));
    assert_eq!(next, stored);
    // A real change (a node stops) is a new status.
    let mut stopped = emqx_node(b);
    stopped.node_status = Some("stopped".into());
    let changed = status(&StatusInput {
        nodes: Some(vec![(Role::Core, emqx_node(a)), (Role::Core, stopped)]),
        ..input(1180, vec![], Some(&stored))
    });
    assert_ne!(changed, stored);
}

#[test]
fn an_empty_field_another_manager_left_is_no_change() {
    let (d, wait) = decision(Phase::Ready, None);
    let sets = [set("a", 3, 3, 0)];
    let spec = spec("a");
    let ours = status(&StatusInput {
        generation: 1,
        now: 100,
        spec: &spec,
        sets: &sets,
        decision: &d,
        wait: wait.as_ref(),
        traffic_on_desired: true,
        nodes: None,
        evacuations: None,
        evacuation_unsupported: false,
        previous: None,
    });
    assert!(unchanged(Some(&ours), &ours));
    assert!(!unchanged(None, &ours), "no status yet");
    // What the Go operator leaves on a core-only cluster it made.
    let mut go_left = ours.clone();
    go_left.replicant_nodes_status = Some(EMQXNodesStatus::default());
    assert!(unchanged(Some(&go_left), &ours));
    // A field with a value is a difference: applying ours removes it if it
    // was ours.
    go_left.replicant_nodes_status = Some(EMQXNodesStatus {
        replicas: Some(2),
        ..EMQXNodesStatus::default()
    });
    assert!(!unchanged(Some(&go_left), &ours));
    let mut older = ours.clone();
    if let Some(c) = older.conditions.as_mut().and_then(|c| c.first_mut()) {
        c.status = "False".into();
    }
    assert!(!unchanged(Some(&older), &ours));
}

/// The conditions of a held state, by type: (status, reason).
fn held(
    phase: Phase,
    reason: &'static str,
    stalled: bool,
) -> (EMQXStatus, Vec<(String, String, String)>) {
    let s = spec("b");
    let sets = [set("a", 2, 2, 1), set("b", 2, 2, 2)];
    let (mut d, d_wait) = decision(phase, Some((reason, "held: see the message")));
    d.stalled = stalled;
    let out = status(&StatusInput {
        generation: 1,
        now: 100,
        spec: &s,
        sets: &sets,
        decision: &d,
        wait: d_wait.as_ref(),
        traffic_on_desired: false,
        nodes: None,
        evacuations: None,
        evacuation_unsupported: false,
        previous: None,
    });
    let all = out
        .conditions
        .iter()
        .flatten()
        .map(|c| (c.type_.clone(), c.status.clone(), c.reason.clone()))
        .collect();
    (out, all)
}

#[test]
fn awaiting_promotion_and_an_abort_are_shown_first_and_are_not_progress() {
    let find = |all: &[(String, String, String)], t: &str| {
        all.iter()
            .find(|(type_, ..)| type_ == t)
            .map(|(_, status, reason)| (status.clone(), reason.clone()))
    };
    let (out, all) = held(Phase::AwaitingPromotion, "AwaitingPromotion", false);
    assert_eq!(first_true(&out).as_deref(), Some("AwaitingPromotion"));
    assert_eq!(
        find(&all, "Progressing"),
        Some(("False".into(), "AwaitingPromotion".into()))
    );
    assert_eq!(
        find(&all, "Ready"),
        Some(("False".into(), "AwaitingPromotion".into()))
    );
    assert_eq!(find(&all, "Aborted"), None);

    // Aborted wins over a stall, which its message still tells.
    let (out, all) = held(Phase::Aborted, "UpgradeAborted", true);
    assert_eq!(first_true(&out).as_deref(), Some("Aborted"));
    assert_eq!(
        find(&all, "Progressing"),
        Some(("False".into(), "UpgradeAborted".into()))
    );
    let progressing = out
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "Progressing")
        .map(|c| c.message.clone())
        .unwrap_or_default();
    assert!(
        progressing.contains("no progress for over 600s"),
        "{progressing}"
    );
    assert_eq!(find(&all, "AwaitingPromotion"), None);
}
