//! The status screen of a known state, and the patches of the steering
//! commands, without a cluster.

use emqx_crd::v2beta1::EMQX;
use kubectl_emqx::render::{age, bar, status};
use kubectl_emqx::snapshot::{EventRow, Kind, PodRow, SetRow, Snapshot, enterprise_as_emqx};
use kubectl_emqx::steer::{Steer, patch, revision_key};
use serde_json::json;

/// Seed 003 mid-upgrade: old revision `6b5d` evacuating its first node,
/// new revision `7c9f` ready.
fn evacuating() -> EMQX {
    serde_json::from_value(json!({
        "apiVersion": "apps.emqx.io/v2beta1", "kind": "EMQX",
        "metadata": {"name": "emqx-ee", "namespace": "default"},
        "spec": {"image": "emqx/emqx-enterprise:5.10.0", "coreTemplate": {"spec": {"replicas": 2}}},
        "status": {
            "conditions": [
                {"type": "Ready", "status": "False", "reason": "Evacuating", "message": "",
                 "lastTransitionTime": "2026-12-02T00:00:00Z"},
                {"type": "Progressing", "status": "True", "reason": "Evacuating",
                 "message": "evacuating emqx@emqx-ee-core-6b5d-0", "lastTransitionTime": "2026-12-02T00:00:00Z"}
            ],
            "coreNodesStatus": {"replicas": 2, "readyReplicas": 2, "currentRevision": "6b5d", "updateRevision": "7c9f"},
            "coreNodes": [
                {"node": "emqx@emqx-ee-core-6b5d-0.emqx-ee-headless.default.svc.cluster.local", "role": "core",
                 "node_status": "running", "connections": 600, "live_connections": 400},
                {"node": "emqx@emqx-ee-core-7c9f-0.emqx-ee-headless.default.svc.cluster.local", "role": "core",
                 "node_status": "running", "connections": 900, "live_connections": 900}
            ],
            "nodeEvacuationsStatus": [{
                "node": "emqx@emqx-ee-core-6b5d-0.emqx-ee-headless.default.svc.cluster.local",
                "state": "evicting_conns", "connection_eviction_rate": 200, "session_eviction_rate": 200,
                "stats": {"initial_connected": 1000, "current_connected": 400, "initial_sessions": 1000, "current_sessions": 600}
            }]
        }
    }))
    .expect("an EMQX object")
}

fn snapshot() -> Snapshot {
    let set = |name: &str, revision: &str, ready| SetRow {
        name: name.into(),
        role: "core".into(),
        revision: revision.into(),
        replicas: 2,
        ready,
    };
    let pod = |name: &str, revision: &str, ready| PodRow {
        name: name.into(),
        revision: revision.into(),
        ready,
        phase: "Running".into(),
    };
    Snapshot {
        kind: Kind::Emqx,
        object: evacuating(),
        sets: vec![
            set("emqx-ee-core-7c9f", "7c9f", 2),
            set("emqx-ee-core-6b5d", "6b5d", 2),
        ],
        pods: vec![
            pod("emqx-ee-core-6b5d-0", "6b5d", true),
            pod("emqx-ee-core-6b5d-1", "6b5d", true),
            pod("emqx-ee-core-7c9f-0", "7c9f", true),
            pod("emqx-ee-core-7c9f-1", "7c9f", false),
        ],
        events: vec![
            EventRow {
                age_s: 95,
                type_: "Normal".into(),
                reason: "SwitchTraffic".into(),
                note: "listeners Service to revision 7c9f".into(),
            },
            EventRow {
                age_s: 4,
                type_: "Normal".into(),
                reason: "NodeEvacuation".into(),
                note: "evacuating emqx@emqx-ee-core-6b5d-0".into(),
            },
        ],
    }
}

#[test]
fn a_known_state_renders_to_a_known_screen() {
    let screen = status(&snapshot());
    let expected = "\
Name:       default/emqx-ee
Kind:       EMQX (apps.emqx.io/v2beta1)
Image:      emqx/emqx-enterprise:5.10.0
Status:     Evacuating
Core:       revision 6b5d → 7c9f, 2 ready, 2 wanted

Sets:
  core       emqx-ee-core-6b5d                         2/2  ready  revision 6b5d
    ✔ emqx-ee-core-6b5d-0                          Running
    ✔ emqx-ee-core-6b5d-1                          Running
  core       emqx-ee-core-7c9f                         2/2  ready  revision 7c9f
    ✔ emqx-ee-core-7c9f-0                          Running
    · emqx-ee-core-7c9f-1                          Running

EMQX nodes:
  emqx@emqx-ee-core-6b5d-0.emqx-ee-headless.default.svc.cluster.local core      running      400 conns    600 sessions
  emqx@emqx-ee-core-7c9f-0.emqx-ee-headless.default.svc.cluster.local core      running      900 conns    900 sessions

Evacuations:
  emqx@emqx-ee-core-6b5d-0.emqx-ee-headless.default.svc.cluster.local (evicting_conns)
    connections [██████████████··········]    400 of 1000   left    200/s  ~2s left
    sessions    [█████████···············]    600 of 1000   left    200/s  ~3s left

Conditions:
  Ready                False  Evacuating                 
  Progressing          True   Evacuating                 evacuating emqx@emqx-ee-core-6b5d-0

Events:
   1m35s  Normal  SwitchTraffic      listeners Service to revision 7c9f
      4s  Normal  NodeEvacuation     evacuating emqx@emqx-ee-core-6b5d-0
";
    assert_eq!(screen, expected, "\n{screen}");
}

#[test]
fn bars_and_ages_stay_in_range_on_odd_figures() {
    assert_eq!(bar(0, 0), format!("[{}]", "█".repeat(24)));
    assert_eq!(bar(-5, 10), format!("[{}]", "·".repeat(24)));
    assert_eq!(bar(50, 10), format!("[{}]", "█".repeat(24)));
    assert_eq!(bar(i64::MAX, i64::MAX), format!("[{}]", "█".repeat(24)));
    assert_eq!(age(-3), "0s");
    assert_eq!(age(3_700), "1h1m");
    assert_eq!(age(200_000), "2d");
    // An object without status renders without panicking.
    let mut bare = snapshot();
    bare.object.status = None;
    bare.sets.clear();
    assert!(status(&bare).contains("Status:     Unknown"));
}

#[test]
fn promote_and_abort_name_the_update_revision() {
    let object = evacuating();
    assert_eq!(revision_key(&object).expect("revision"), "7c9f");
    let (body, said) = patch(Steer::Promote, &object).expect("promote");
    assert_eq!(
        body,
        json!({"metadata": {"annotations": {"apps.emqx.io/promote": "7c9f"}}})
    );
    assert!(said.contains("7c9f"), "{said}");
    let (body, _) = patch(Steer::Abort, &object).expect("abort");
    assert_eq!(
        body,
        json!({"metadata": {"annotations": {"apps.emqx.io/abort": "7c9f"}}})
    );
    // With replicants the key is core/replicant, as the reconciler reads it.
    let mut with_replicants = object.clone();
    let mut value = serde_json::to_value(&with_replicants).expect("json");
    value["spec"]["replicantTemplate"] = json!({"spec": {"replicas": 2}});
    value["status"]["replicantNodesStatus"] = json!({"updateRevision": "88aa"});
    with_replicants = serde_json::from_value(value).expect("EMQX");
    assert_eq!(revision_key(&with_replicants).expect("key"), "7c9f/88aa");
}

#[test]
fn steering_without_what_it_needs_is_a_clear_error() {
    let mut object = evacuating();
    object.status = None;
    let err = patch(Steer::Promote, &object).expect_err("no status");
    assert!(err.to_string().contains("updateRevision"), "{err}");
    let err = patch(Steer::Retry, &evacuating()).expect_err("nothing aborted");
    assert!(err.to_string().contains("apps.emqx.io/abort"), "{err}");
    let (pause, _) = patch(Steer::Pause, &object).expect("pause");
    assert_eq!(
        pause,
        json!({"metadata": {"annotations": {"apps.emqx.io/reconcile-paused": "true"}}})
    );
    let (resume, _) = patch(Steer::Resume, &object).expect("resume");
    assert_eq!(
        resume,
        json!({"metadata": {"annotations": {"apps.emqx.io/reconcile-paused": null}}})
    );
}

/// Seed 000's v1beta4 `EmqxEnterprise` (EMQX 4.4) aborted by the upgrade
/// guard, as its v2beta1 view shows it: rendered like an `EMQX`, with its
/// kind, 4.4's node names and the guard's figures; promote and abort name
/// its update revision.
#[test]
fn an_emqx_enterprise_renders_and_steers_like_an_emqx() {
    let enterprise: emqx_crd::v2beta1::EmqxEnterprise = serde_json::from_value(json!({
        "apiVersion": "apps.emqx.io/v2beta1", "kind": "EmqxEnterprise",
        "metadata": {"name": "emqx-ee", "namespace": "default",
                     "annotations": {"apps.emqx.io/abort": "5d8c"}},
        "spec": {"image": "emqx/emqx-ee:4.4.14", "coreTemplate": {"spec": {"replicas": 3}}},
        "status": {
            "conditions": [
                {"type": "Progressing", "status": "False", "reason": "UpgradeAborted",
                 "message": "upgrade to 5d8c aborted by the upgrade guard (the new nodes refused 75 CONNECTs in 4 s)",
                 "lastTransitionTime": "2026-12-02T00:00:00Z"}
            ],
            "coreNodesStatus": {"replicas": 3, "readyReplicas": 3, "currentRevision": "79c4", "updateRevision": "5d8c"},
            "coreNodes": [
                {"node": "emqx-ee@emqx-ee-core-79c4-0.emqx-ee-headless.default.svc.cluster.local",
                 "node_status": "Running", "connections": 30}
            ]
        }
    }))
    .expect("an EmqxEnterprise v2beta1 view");
    let object = enterprise_as_emqx(enterprise);
    let screen = status(&Snapshot {
        kind: Kind::EmqxEnterprise,
        object: object.clone(),
        sets: vec![SetRow {
            name: "emqx-ee-core-79c4".into(),
            role: "core".into(),
            revision: "79c4".into(),
            replicas: 3,
            ready: 3,
        }],
        pods: Vec::new(),
        events: Vec::new(),
    });
    let expected = "\
Name:       default/emqx-ee
Kind:       EmqxEnterprise (apps.emqx.io/v1beta4)
Image:      emqx/emqx-ee:4.4.14
Status:     UpgradeAborted
Core:       revision 79c4 → 5d8c, 3 ready, 3 wanted

Sets:
  core       emqx-ee-core-79c4                         3/3  ready  revision 79c4

EMQX nodes:
  emqx-ee@emqx-ee-core-79c4-0.emqx-ee-headless.default.svc.cluster.local ?         Running        - conns     30 sessions

Conditions:
  Progressing          False  UpgradeAborted             upgrade to 5d8c aborted by the upgrade guard (the new nodes refused 75 CONNECTs in 4 s)
";
    assert_eq!(screen, expected, "\n{screen}");
    assert_eq!(revision_key(&object).expect("revision"), "5d8c");
    let (retry, said) = patch(Steer::Retry, &object).expect("retry");
    assert_eq!(
        retry,
        json!({"metadata": {"annotations": {"apps.emqx.io/abort": null}}})
    );
    assert!(said.contains("5d8c"), "{said}");
}
