use super::*;
use serde_json::json;

fn headless() -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "emqx-ee-headless", "namespace": "default",
                     "labels": {"apps.emqx.io/instance": "emqx-ee"}},
        "spec": {"clusterIP": "None", "publishNotReadyAddresses": true,
                 "selector": {"apps.emqx.io/db-role": "core"},
                 "ports": [{"name": "erlang-dist", "port": 4370, "targetPort": 4370, "protocol": "TCP"}]}
    })
}

/// What the API server returns after applying `stamped`: its own fields added.
fn as_served(stamped: &Value) -> Value {
    let mut live = stamped.clone();
    json_patch::merge(
        &mut live,
        &json!({
            "metadata": {"uid": "u-1", "resourceVersion": "42", "creationTimestamp": "2026-01-01T00:00:00Z",
                         "managedFields": [{"manager": "emqx-operator", "operation": "Apply"}],
                         "annotations": {"other.example/keep": "x"}},
            "spec": {"clusterIPs": ["None"], "type": "ClusterIP", "sessionAffinity": "None",
                     "ipFamilies": ["IPv4"], "internalTrafficPolicy": "Cluster"},
            "status": {"loadBalancer": {}}
        }),
    );
    live
}

#[test]
fn an_absent_object_is_applied() {
    assert!(needs_apply(&stamp(headless()), None));
}

#[test]
fn what_we_applied_last_pass_is_not_applied_again() {
    let stamped = stamp(headless());
    let live = as_served(&stamped);
    assert!(!needs_apply(&stamped, Some(&live)));
    // Rendering is deterministic: the next pass stamps the same hash.
    assert!(!needs_apply(&stamp(headless()), Some(&live)));
}

#[test]
fn a_field_someone_else_changed_is_applied_back() {
    let stamped = stamp(headless());
    let mut live = as_served(&stamped);
    live["spec"]["ports"][0]["port"] = json!(4371);
    assert!(needs_apply(&stamped, Some(&live)));
    let mut live = as_served(&stamped);
    live["metadata"]["labels"]["apps.emqx.io/instance"] = json!("other");
    assert!(needs_apply(&stamped, Some(&live)));
    let mut live = as_served(&stamped);
    live["spec"]["ports"]
        .as_array_mut()
        .expect("ports")
        .push(json!({"name": "extra", "port": 1}));
    assert!(
        needs_apply(&stamped, Some(&live)),
        "a list must match in length"
    );
}

#[test]
fn a_field_we_stopped_rendering_is_applied_away() {
    let mut before = headless();
    before["metadata"]["labels"]["team"] = json!("a");
    let live = as_served(&stamp(before));
    // The user dropped the label: live still holds every desired field, but
    // the hash says the rendering changed.
    assert!(needs_apply(&stamp(headless()), Some(&live)));
}

#[test]
fn objects_from_an_older_operator_without_the_hash_are_applied_once() {
    let live = as_served(&headless());
    assert!(needs_apply(&stamp(headless()), Some(&live)));
}

#[test]
fn server_normalised_numbers_and_dropped_empties_are_no_change() {
    let mut desired = headless();
    desired["spec"]["ports"][0]["port"] = json!(4370.0);
    desired["metadata"]["annotations"] = json!(null);
    desired["spec"]["externalIPs"] = json!([]);
    let stamped = stamp(desired);
    let mut live = as_served(&stamped);
    live["spec"]["ports"][0]["port"] = json!(4370);
    live["spec"]
        .as_object_mut()
        .expect("spec")
        .remove("externalIPs");
    assert!(!needs_apply(&stamped, Some(&live)));
}

#[test]
fn stamping_adds_the_hash_without_touching_other_annotations() {
    let mut desired = headless();
    desired["metadata"]["annotations"] = json!({"a": "b"});
    let stamped = stamp(desired.clone());
    assert_eq!(stamped["metadata"]["annotations"]["a"], "b");
    let hash = stamped["metadata"]["annotations"][ANNOTATION_APPLIED]
        .as_str()
        .expect("hash");
    assert_eq!(hash.len(), 10);
    // A different rendering, a different hash.
    desired["metadata"]["annotations"] = json!({"a": "c"});
    assert_ne!(
        stamp(desired)["metadata"]["annotations"][ANNOTATION_APPLIED],
        stamped["metadata"]["annotations"][ANNOTATION_APPLIED]
    );
}

#[test]
fn hostile_shapes_never_panic_and_are_applied() {
    for desired in [
        json!(null),
        json!(1),
        json!("x"),
        json!([]),
        json!({"metadata": 5}),
    ] {
        let stamped = stamp(desired);
        assert!(needs_apply(&stamped, Some(&json!({"metadata": {}}))));
        assert!(needs_apply(&stamped, None));
    }
    let stamped = stamp(headless());
    for live in [
        json!(null),
        json!([]),
        json!({"metadata": {"annotations": 7}}),
    ] {
        assert!(needs_apply(&stamped, Some(&live)));
    }
}
