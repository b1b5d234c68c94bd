//! Seed 000's flow as the v1beta4 conditions tell it: created → Running;
//! template patched → BlueGreenUpdating while old nodes drain → Running
//! again, BlueGreenUpdating False.

use super::*;
use emqx_crd::v2beta1::EMQXNodesStatus;

fn condition(type_: &str, status: &str, reason: &str, at: i64) -> Condition {
    Condition {
        type_: type_.into(),
        status: status.into(),
        reason: reason.into(),
        message: format!("{type_} message"),
        observed_generation: Some(2),
        last_transition_time: Time(k8s_openapi::jiff::Timestamp::from_second(at).expect("time")),
    }
}

fn hub(ready: bool, current: &str, update: &str) -> EMQXStatus {
    EMQXStatus {
        conditions: Some(vec![
            condition(
                condition::READY,
                if ready { "True" } else { "False" },
                if ready {
                    "ClusterReady"
                } else {
                    "EvacuatingNode"
                },
                10,
            ),
            condition("Progressing", if ready { "False" } else { "True" }, "X", 10),
        ]),
        core_nodes_status: Some(EMQXNodesStatus {
            current_revision: Some(current.into()),
            update_revision: Some(update.into()),
            ..EMQXNodesStatus::default()
        }),
        ..EMQXStatus::default()
    }
}

fn get<'a>(s: &'a EMQXStatus, type_: &str) -> Option<&'a Condition> {
    s.conditions.iter().flatten().find(|c| c.type_ == type_)
}

#[test]
fn a_new_cluster_is_running_without_an_update_condition() {
    let out = with_v1beta4_conditions(hub(true, "a", "a"), None, 100);
    let running = get(&out, RUNNING).expect("Running");
    assert_eq!(
        (running.status.as_str(), running.reason.as_str()),
        ("True", "ClusterReady")
    );
    assert_eq!(running.observed_generation, Some(2));
    assert_eq!(running.last_transition_time.0.as_second(), 100);
    assert!(get(&out, BLUE_GREEN_UPDATING).is_none());
    // The hub's own conditions stay.
    assert!(get(&out, condition::READY).is_some());
}

#[test]
fn an_update_shows_blue_green_updating_first_then_finishes() {
    let created = with_v1beta4_conditions(hub(true, "a", "a"), None, 100);
    let during = with_v1beta4_conditions(hub(false, "a", "b"), Some(&created), 200);
    let first = during
        .conditions
        .as_ref()
        .and_then(|c| c.first())
        .expect("first");
    assert_eq!(
        (first.type_.as_str(), first.status.as_str()),
        (BLUE_GREEN_UPDATING, "True")
    );
    assert_eq!(first.message, "Progressing message");
    let running = get(&during, RUNNING).expect("Running");
    assert_eq!(
        (running.status.as_str(), running.reason.as_str()),
        ("False", "EvacuatingNode")
    );
    assert_eq!(running.last_transition_time.0.as_second(), 200);

    // A later pass of the same update moves no transition time.
    let still = with_v1beta4_conditions(hub(false, "a", "b"), Some(&during), 260);
    assert_eq!(
        get(&still, BLUE_GREEN_UPDATING).map(|c| c.last_transition_time.0.as_second()),
        Some(200)
    );

    let done = with_v1beta4_conditions(hub(true, "b", "b"), Some(&still), 300);
    let update = get(&done, BLUE_GREEN_UPDATING).expect("kept after the update");
    assert_eq!(
        (update.status.as_str(), update.reason.as_str()),
        ("False", "BlueGreenUpdateFinished")
    );
    assert_eq!(get(&done, RUNNING).map(|c| c.status.as_str()), Some("True"));
    // Idempotent: the next idle pass yields the same status (no write).
    assert_eq!(
        with_v1beta4_conditions(hub(true, "b", "b"), Some(&done), 400),
        done
    );
}

#[test]
fn a_status_without_conditions_or_revisions_gets_running_false() {
    let out = with_v1beta4_conditions(EMQXStatus::default(), None, 5);
    let running = get(&out, RUNNING).expect("Running");
    assert_eq!(
        (running.status.as_str(), running.reason.as_str()),
        ("False", "Waiting")
    );
    assert!(get(&out, BLUE_GREEN_UPDATING).is_none());
    // Absurd times do not panic.
    let _ = with_v1beta4_conditions(EMQXStatus::default(), None, u64::MAX);
}
