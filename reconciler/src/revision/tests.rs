//! Matching templates the way the API server hands them back.

use super::*;
use proptest::prelude::{ProptestConfig, any, prop_assert, prop_assert_eq, proptest};
use serde_json::json;

fn desired() -> Value {
    json!({
        "metadata": {"labels": {"apps.emqx.io/instance": "emqx-ee", "apps.emqx.io/db-role": "core"}},
        "spec": {
            "containers": [{
                "name": "emqx",
                "image": "emqx/emqx:6.0.1",
                "ports": [{"name": "dashboard", "containerPort": 18083}],
                "env": [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
                "readinessProbe": {"httpGet": {"path": "/status", "port": "dashboard"}, "initialDelaySeconds": 10, "periodSeconds": 5, "failureThreshold": 12}
            }],
            "volumes": [{"name": "bootstrap", "secret": {"secretName": "emqx-ee-bootstrap-api-key"}}]
        }
    })
}

/// What the API server returns for `desired()` after defaulting.
fn as_served(revision: &str) -> Value {
    json!({
        "metadata": {"creationTimestamp": null, "labels": {
            "apps.emqx.io/instance": "emqx-ee", "apps.emqx.io/db-role": "core",
            "apps.emqx.io/pod-template-hash": revision}},
        "spec": {
            "containers": [{
                "name": "emqx",
                "image": "emqx/emqx:6.0.1",
                "imagePullPolicy": "IfNotPresent",
                "ports": [{"name": "dashboard", "containerPort": 18083, "protocol": "TCP"}],
                "env": [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.name"}}}],
                "readinessProbe": {"httpGet": {"path": "/status", "port": "dashboard", "scheme": "HTTP"},
                    "initialDelaySeconds": 10, "periodSeconds": 5, "failureThreshold": 12,
                    "timeoutSeconds": 1, "successThreshold": 1},
                "resources": {},
                "terminationMessagePath": "/dev/termination-log",
                "terminationMessagePolicy": "File"
            }],
            "volumes": [{"name": "bootstrap", "secret": {"secretName": "emqx-ee-bootstrap-api-key", "defaultMode": 420}}],
            "dnsPolicy": "ClusterFirst",
            "restartPolicy": "Always",
            "schedulerName": "default-scheduler",
            "securityContext": {},
            "terminationGracePeriodSeconds": 30
        }
    })
}

#[test]
fn a_served_template_matches_what_was_asked() {
    assert!(template_matches(&desired(), &as_served("54fc496fb4")));
}

#[test]
fn the_seed_003_patch_is_a_change() {
    // kubectl patch emqx emqx-ee --type=merge -p '{"spec":{"imagePullPolicy":"Never"}}'
    let mut patched = desired();
    patched["spec"]["containers"][0]["imagePullPolicy"] = json!("Never");
    assert!(!template_matches(&patched, &as_served("54fc496fb4")));
}

#[test]
fn dropping_a_field_back_to_its_default_is_a_change_only_if_it_differed() {
    let mut live = as_served("x");
    live["spec"]["containers"][0]["imagePullPolicy"] = json!("Never");
    // The user removed imagePullPolicy: Never → back to the default, an upgrade.
    assert!(!template_matches(&desired(), &live));
    let mut live = as_served("x");
    live["spec"]["containers"][0]["resources"] = json!({"limits": {"cpu": "1"}});
    assert!(
        !template_matches(&desired(), &live),
        "removed limits are a change"
    );
}

#[test]
fn env_order_and_count_matter() {
    let mut more = desired();
    more["spec"]["containers"][0]["env"]
        .as_array_mut()
        .expect("env")
        .push(json!({"name": "EXTRA", "value": "1"}));
    assert!(!template_matches(&more, &as_served("x")));
}

/// A set the Go EMQX Operator 2.2.29 created (captured, never rendered by
/// us) keeps its hash: the name is adopted, not recomputed. The object is
/// the one it reconciled, served with our CRD's defaults.
#[test]
fn revisions_are_adopted_not_recomputed() {
    use crate::go_operator::as_ours;
    use crate::render::{Cluster, pod_template};
    use emqx_crd::names::DbRole;
    use emqx_crd::v2beta1::EMQX;
    use k8s_openapi::api::apps::v1::StatefulSet;

    let sts: StatefulSet = serde_saphyr::from_str(include_str!(
        "../../tests/fixtures/go-operator-2.2.29/statefulset.yaml"
    ))
    .expect("fixture");
    let go = as_ours(
        &serde_json::to_value(sts.spec.expect("spec").template).expect("json"),
        "probe",
        DbRole::Core,
    );
    let object: Value = serde_saphyr::from_str(include_str!(
        "../../tests/fixtures/go-operator-2.2.29/emqx.yaml"
    ))
    .expect("fixture");
    let render = |object: &Value| {
        let served = emqx_crd::dynamic::default_object(object).expect("defaults");
        let emqx: EMQX = serde_json::from_value(served).expect("EMQX");
        let cluster = Cluster {
            api_version: "apps.emqx.io/v2beta1",
            kind: "EMQX",
            name: "probe",
            namespace: "default",
            uid: "u",
            spec: &emqx.spec,
        };
        serde_json::to_value(pod_template(&cluster, DbRole::Core)).expect("json")
    };
    let live = [LiveTemplate {
        revision: "57b88cb8f",
        replicas: 3,
        created_at: 1,
        template: &go,
    }];
    assert_eq!(resolve_revision(&render(&object), &live), "57b88cb8f");
    let mut changed = object.clone();
    changed["spec"]["image"] = json!("emqx/emqx:6.0.2");
    let desired = render(&changed);
    let new = resolve_revision(&desired, &live);
    assert_ne!(new, "57b88cb8f");
    assert_eq!(
        new,
        revision_hash(&desired),
        "a new revision is named by its hash"
    );
}

#[test]
fn a_revert_prefers_the_set_that_still_runs() {
    let a = as_served("aaaa");
    let b = as_served("bbbb");
    let live = [
        LiveTemplate {
            revision: "aaaa",
            replicas: 0,
            created_at: 5,
            template: &a,
        },
        LiveTemplate {
            revision: "bbbb",
            replicas: 2,
            created_at: 1,
            template: &b,
        },
    ];
    assert_eq!(resolve_revision(&desired(), &live), "bbbb");
}

#[test]
fn the_hash_ignores_its_own_label_and_is_pinned() {
    let mut labelled = desired();
    labelled["metadata"]["labels"][LABEL_POD_TEMPLATE_HASH] = json!("whatever");
    assert_eq!(revision_hash(&desired()), revision_hash(&labelled));
    // Pinned: a change of this value renames every new revision, which is
    // harmless (existing sets are matched by template) but should be a
    // deliberate decision.
    // The values come from an independent FNV-1a/base-27 computation.
    assert_eq!(revision_hash(&json!({})), "l7t7jbdt44");
    assert_eq!(revision_hash(&json!({"spec": {}})), "fcd5q8fqd5");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Any changed image or replica-independent scalar is a change, and the
    /// hash alphabet never yields vowels or look-alike digits.
    #[test]
    fn any_image_change_is_seen(tag in "[a-z0-9.]{1,12}", port in 1u16..65535, noise in any::<u64>()) {
        let mut changed = desired();
        changed["spec"]["containers"][0]["image"] = json!(format!("emqx/emqx:{tag}"));
        changed["spec"]["containers"][0]["ports"][0]["containerPort"] = json!(port);
        let same = tag == "6.0.1" && port == 18083;
        prop_assert_eq!(template_matches(&changed, &as_served("x")), same);
        let h = revision_hash(&json!({"noise": noise}));
        prop_assert!(h.chars().all(|c| "bcdfghjklmnpqrstvwxz2456789".contains(c)));
    }
}
