//! Rendering the seeds' clusters, checked against what upstream renders and
//! what the blue-green needs of it.

use super::*;
use crate::revision::{revision_hash, template_matches};
use emqx_crd::v2beta1::EMQX;
use serde_json::{Value, json};

/// Seed 003's object as the API server stores it (schema defaults applied).
fn seed_003(patch: Value) -> EMQX {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/tests/seeds/seed003-emqx-v2beta1.yaml"
    ))
    .expect("seed 003 manifest");
    let mut object: Value = serde_saphyr::from_str(&text).expect("seed YAML");
    json_patch::merge(&mut object, &patch);
    let defaulted = emqx_crd::dynamic::default_object(&object).expect("defaults");
    serde_json::from_value(defaulted).expect("an EMQX v2beta1")
}

fn cluster(emqx: &EMQX) -> Cluster<'_> {
    Cluster {
        api_version: "apps.emqx.io/v2beta1",
        kind: "EMQX",
        name: "emqx-ee",
        namespace: "default",
        uid: "0b6f1f3e-0000-4000-8000-000000000001",
        spec: &emqx.spec,
    }
}

fn template_json(emqx: &EMQX, role: DbRole) -> Value {
    serde_json::to_value(pod_template(&cluster(emqx), role)).expect("serialisable")
}

#[test]
fn the_core_container_carries_upstreams_env_in_order() {
    let emqx = seed_003(json!({}));
    let t = pod_template(&cluster(&emqx), DbRole::Core);
    let container = &t.spec.as_ref().expect("spec").containers[0];
    assert_eq!(container.name, "emqx");
    assert_eq!(container.image.as_deref(), Some("emqx/emqx:6.0.1"));
    let names: Vec<&str> = container
        .env
        .iter()
        .flatten()
        .map(|e| e.name.as_str())
        .collect();
    assert_eq!(
        names,
        [
            "POD_NAME",
            "EMQX_CLUSTER__DISCOVERY_STRATEGY",
            "EMQX_CLUSTER__DNS__RECORD_TYPE",
            "EMQX_CLUSTER__DNS__NAME",
            "EMQX_HOST",
            "EMQX_NODE__DATA_DIR",
            "EMQX_NODE__ROLE",
            "EMQX_NODE__COOKIE",
            "EMQX_API_KEY__BOOTSTRAP_FILE",
            "EMQX_DASHBOARD__LISTENERS__HTTP__BIND",
        ]
    );
    let dns = container
        .env
        .iter()
        .flatten()
        .find(|e| e.name == "EMQX_CLUSTER__DNS__NAME");
    assert_eq!(
        dns.and_then(|e| e.value.as_deref()),
        Some("emqx-ee-headless.default.svc.cluster.local")
    );
    // The schema's readiness probe default reaches the pod.
    let probe = container.readiness_probe.as_ref().expect("readiness probe");
    assert_eq!(
        probe.http_get.as_ref().map(|h| h.path.as_deref()),
        Some(Some("/status"))
    );
}

#[test]
fn the_seed_003_patch_makes_a_new_revision() {
    let before = template_json(&seed_003(json!({})), DbRole::Core);
    let after = template_json(
        &seed_003(json!({"spec": {"imagePullPolicy": "Never"}})),
        DbRole::Core,
    );
    assert!(template_matches(&before, &before));
    assert!(!template_matches(&after, &before));
    assert_ne!(revision_hash(&before), revision_hash(&after));
}

#[test]
fn rendering_is_deterministic() {
    let a = template_json(&seed_003(json!({})), DbRole::Core);
    let b = template_json(&seed_003(json!({})), DbRole::Core);
    assert_eq!(revision_hash(&a), revision_hash(&b));
}

#[test]
fn sets_select_their_revision_and_services_move_by_selector() {
    let emqx = seed_003(json!({}));
    let c = cluster(&emqx);
    let sts = core_set(&c, "54fc496fb4", 3);
    assert_eq!(
        sts.metadata.name.as_deref(),
        Some("emqx-ee-core-54fc496fb4")
    );
    let spec = sts.spec.as_ref().expect("spec");
    let selector = spec.selector.match_labels.as_ref().expect("labels");
    assert_eq!(
        selector
            .get(names::LABEL_POD_TEMPLATE_HASH)
            .map(String::as_str),
        Some("54fc496fb4")
    );
    let pod_labels = spec
        .template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.as_ref())
        .expect("pod labels");
    assert!(
        selector.iter().all(|(k, v)| pod_labels.get(k) == Some(v)),
        "selector matches its pods"
    );
    assert_eq!(spec.service_name.as_deref(), Some("emqx-ee-headless"));
    assert_eq!(spec.replicas, Some(3));

    let listeners = listeners_service(&c, DbRole::Core, "5d87d4c6bd").expect("enabled");
    let sel = listeners
        .spec
        .as_ref()
        .and_then(|s| s.selector.as_ref())
        .expect("selector");
    assert_eq!(
        sel.get(names::LABEL_POD_TEMPLATE_HASH).map(String::as_str),
        Some("5d87d4c6bd")
    );
    let headless = headless_service(&c);
    let sel = headless
        .spec
        .as_ref()
        .and_then(|s| s.selector.as_ref())
        .expect("selector");
    assert!(
        !sel.contains_key(names::LABEL_POD_TEMPLATE_HASH),
        "discovery spans revisions"
    );
    let owner = &sts.metadata.owner_references.as_ref().expect("owned")[0];
    assert_eq!(
        (owner.kind.as_str(), owner.controller),
        ("EMQX", Some(true))
    );
}

#[test]
fn a_disabled_service_is_not_rendered() {
    let emqx = seed_003(json!({"spec": {"dashboardServiceTemplate": {"enabled": false}}}));
    assert!(dashboard_service(&cluster(&emqx), "x").is_none());
}

#[test]
fn pdbs_default_to_one_node_down_and_honour_the_user() {
    let emqx = seed_003(json!({}));
    let pdb_core = pdb(&cluster(&emqx), DbRole::Core).expect("core pdb");
    let spec = pdb_core.spec.expect("spec");
    assert_eq!(spec.max_unavailable, Some(IntOrString::Int(1)));
    assert!(
        pdb(&cluster(&emqx), DbRole::Replicant).is_none(),
        "core-only cluster"
    );
    let emqx = seed_003(json!({"spec": {"coreTemplate": {"spec": {"minAvailable": 2}}}}));
    let spec = pdb(&cluster(&emqx), DbRole::Core)
        .and_then(|p| p.spec)
        .expect("spec");
    assert_eq!(
        (spec.min_available, spec.max_unavailable),
        (Some(IntOrString::Int(2)), None)
    );
}

#[test]
fn emqx_4_4_gets_the_v4_api_and_node_names() {
    let emqx = seed_003(json!({"spec": {"image": "emqx/emqx-ee:4.4.14"}}));
    let c = cluster(&emqx);
    assert_eq!(c.api(), ApiGeneration::V4);
    assert_eq!(
        node_name(&c, DbRole::Core, "emqx-ee-core-54fc496fb4-1", None).as_deref(),
        Some("emqx-ee@emqx-ee-core-54fc496fb4-1.emqx-ee-headless.default.svc.cluster.local")
    );
    let t = pod_template(&c, DbRole::Core);
    let ports: Vec<i32> = t.spec.expect("spec").containers[0]
        .ports
        .iter()
        .flatten()
        .map(|p| p.container_port)
        .collect();
    assert!(ports.contains(&8081));
}

#[test]
fn node_names_follow_the_container() {
    let emqx = seed_003(json!({}));
    let c = cluster(&emqx);
    assert_eq!(
        node_name(&c, DbRole::Core, "emqx-ee-core-a-0", None).as_deref(),
        Some("emqx@emqx-ee-core-a-0.emqx-ee-headless.default.svc.cluster.local")
    );
    assert_eq!(
        node_name(&c, DbRole::Replicant, "r", Some("127.1.0.4")).as_deref(),
        Some("emqx@127.1.0.4")
    );
    assert_eq!(
        node_name(&c, DbRole::Replicant, "r", None),
        None,
        "no IP yet, no name"
    );
    assert_eq!(api_of_image("emqx/emqx:latest"), ApiGeneration::V5);
}

/// The v1beta4 defaulting copies the object's annotations into the pod
/// template; the operator's own notes on the object must not reach the pods
/// (each would be a template change, i.e. another upgrade).
#[test]
fn operator_annotations_copied_into_the_template_do_not_change_the_pods() {
    let mut with_notes = EMQXSpec {
        image: "emqx/emqx-ee:4.4.14".into(),
        ..EMQXSpec::default()
    };
    let plain = with_notes.clone();
    with_notes.core_template =
        serde_json::from_value(serde_json::json!({"metadata": {"annotations": {
            "apps.emqx.io/blue-green-progress": "{\"x\":1}",
            "apps.emqx.io/reconcile-paused": "true",
            "apps.emqx.io/conversion-data": "{}",
            "kubectl.kubernetes.io/last-applied-configuration": "{}",
            "team": "a"
        }}}))
        .expect("template");
    let cluster = |spec| Cluster {
        api_version: "apps.emqx.io/v2beta1",
        kind: "EmqxEnterprise",
        name: "emqx-ee",
        namespace: "default",
        uid: "u",
        spec,
    };
    let annotations = pod_template(&cluster(&with_notes), DbRole::Core)
        .metadata
        .and_then(|m| m.annotations)
        .expect("annotations");
    assert_eq!(annotations.len(), 1, "{annotations:?}");
    assert_eq!(annotations.get("team").map(String::as_str), Some("a"));
    assert!(
        pod_template(&cluster(&plain), DbRole::Core)
            .metadata
            .and_then(|m| m.annotations)
            .is_none()
    );
}

/// The Go operator writes `volumeClaimTemplates: {resources: {}}` back into
/// every object and means "no persistence" by it: ours renders no claim
/// (which the API server would refuse) and an emptyDir data volume.
#[test]
fn gos_empty_claim_means_no_persistence() {
    let object: Value = serde_saphyr::from_str(include_str!(
        "../../tests/fixtures/go-operator-2.2.29/emqx.yaml"
    ))
    .expect("fixture");
    assert_eq!(
        object["spec"]["coreTemplate"]["spec"]["volumeClaimTemplates"],
        json!({"resources": {}})
    );
    let served = emqx_crd::dynamic::default_object(&object).expect("defaults");
    let emqx: EMQX = serde_json::from_value(served).expect("EMQX");
    let c = Cluster {
        name: "probe",
        ..cluster(&emqx)
    };
    let set = core_set(&c, "r", 3);
    let spec = set.spec.expect("spec");
    assert_eq!(spec.volume_claim_templates, None);
    let data = spec
        .template
        .spec
        .and_then(|s| s.volumes)
        .unwrap_or_default()
        .into_iter()
        .find(|v| v.name == "probe-data")
        .expect("a data volume");
    assert!(data.empty_dir.is_some(), "{data:?}");

    // A claim that asks for storage is still a claim.
    let mut persistent = object.clone();
    persistent["spec"]["coreTemplate"]["spec"]["volumeClaimTemplates"] =
        json!({"resources": {"requests": {"storage": "1Gi"}}});
    let served = emqx_crd::dynamic::default_object(&persistent).expect("defaults");
    let emqx: EMQX = serde_json::from_value(served).expect("EMQX");
    let c = Cluster {
        name: "probe",
        ..cluster(&emqx)
    };
    assert_eq!(
        core_set(&c, "r", 3)
            .spec
            .and_then(|s| s.volume_claim_templates)
            .map(|v| v.len()),
        Some(1)
    );
}

fn env_of(emqx: &EMQX, role: DbRole) -> Vec<EnvVar> {
    let t = pod_template(&cluster(emqx), role);
    t.spec.expect("spec").containers[0]
        .env
        .clone()
        .unwrap_or_default()
}

/// The Go operator 2.2.29 object of /work/shared/fixtures/go-operator-2.2.29
/// (emqx.yaml) with the HOCON-quoted form of the bootstrap path that
/// operator itself writes (statefulset.yaml): the set it renders carries the
/// name twice; ours carries it once, with the user's value, which is what
/// the container saw there (the later duplicate wins).
#[test]
fn a_user_env_entry_replaces_the_operators_own() {
    let quoted = "\"/opt/emqx/data/bootstrap_api_key\"";
    let emqx = seed_003(json!({"spec": {
        "coreTemplate": {"spec": {"env": [
            {"name": "EMQX_API_KEY__BOOTSTRAP_FILE", "value": quoted},
        ]}},
        "replicantTemplate": {"spec": {"replicas": 2, "env": [
            {"name": "EMQX_HOST", "value": "$(POD_NAME)"},
            {"name": "MY_SETTING", "value": "first"},
            {"name": "EMQX_HOST", "value": "$(POD_IP)-late"},
        ]}},
    }}));
    let core = env_of(&emqx, DbRole::Core);
    let bootstrap: Vec<&EnvVar> = core
        .iter()
        .filter(|e| e.name == "EMQX_API_KEY__BOOTSTRAP_FILE")
        .collect();
    assert_eq!(bootstrap.len(), 1, "{core:?}");
    assert_eq!(bootstrap[0].value.as_deref(), Some(quoted));
    // The user's entry comes after every operator entry, as upstream's did.
    assert_eq!(
        core.last().map(|e| e.name.as_str()),
        Some("EMQX_API_KEY__BOOTSTRAP_FILE")
    );
    let mut names: Vec<&str> = core.iter().map(|e| e.name.as_str()).collect();
    let count = names.len();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), count, "a name rendered twice: {core:?}");

    // A name the user lists twice: its first place, its last value.
    let replicant = env_of(&emqx, DbRole::Replicant);
    let user: Vec<(&str, Option<&str>)> = replicant
        .iter()
        .skip_while(|e| e.name != "EMQX_HOST" && e.name != "MY_SETTING")
        .map(|e| (e.name.as_str(), e.value.as_deref()))
        .collect();
    assert_eq!(
        user,
        [
            ("EMQX_HOST", Some("$(POD_IP)-late")),
            ("MY_SETTING", Some("first")),
        ]
    );
}

/// The renderer and validation's override warning share one list of the
/// operator's names; this keeps the list true to what is rendered.
#[test]
fn the_operator_set_names_are_the_rendered_ones() {
    for (image, emqx4) in [("emqx/emqx:6.0.1", false), ("emqx/emqx-ee:4.4.14", true)] {
        let emqx = seed_003(json!({"spec": {
            "image": image,
            "replicantTemplate": {"spec": {"replicas": 1}},
        }}));
        for role in [DbRole::Core, DbRole::Replicant] {
            let rendered: Vec<String> = env_of(&emqx, role).into_iter().map(|e| e.name).collect();
            assert_eq!(
                rendered,
                names::env::operator_set(emqx4, role),
                "{image} {role:?}"
            );
        }
    }
}
