//! Taking over the cluster the Go EMQX Operator 2.2.29 created, from the
//! objects captured on a real API server (`tests/fixtures/go-operator-2.2.29/`),
//! never from our own rendering.

use super::*;
use crate::decide::{Action, Phase, decide};
use crate::gather::desired_spec;
use crate::live::{self, live_sets};
use crate::observed::{EmqxView, Member, Memory, Observed};
use crate::render::{Cluster, Rendered};
use emqx_crd::v2beta1::EMQX;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Pod, Service};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

const EMQX_YAML: &str = include_str!("../../tests/fixtures/go-operator-2.2.29/emqx.yaml");
const STS_YAML: &str = include_str!("../../tests/fixtures/go-operator-2.2.29/statefulset.yaml");
const POD_YAML: &str = include_str!("../../tests/fixtures/go-operator-2.2.29/pod.yaml");
const SVC_YAML: &str = include_str!("../../tests/fixtures/go-operator-2.2.29/service.yaml");

/// The revision the Go operator named and recorded in the object's status.
const GO_REVISION: &str = "57b88cb8f";

fn yaml<T: DeserializeOwned>(text: &str) -> T {
    serde_saphyr::from_str(text).expect("fixture YAML")
}

/// The object as our API server serves it once our CRDs are installed:
/// the Go operator's written-back spec plus our schema's defaults, with
/// `patch` merged in first (a user's edit).
fn emqx(patch: Value) -> EMQX {
    let mut object: Value = yaml(EMQX_YAML);
    json_patch::merge(&mut object, &patch);
    let defaulted = emqx_crd::dynamic::default_object(&object).expect("defaults");
    serde_json::from_value(defaulted).expect("an EMQX v2beta1")
}

fn cluster(emqx: &EMQX) -> Cluster<'_> {
    Cluster {
        api_version: "apps.emqx.io/v2beta1",
        kind: "EMQX",
        name: "probe",
        namespace: "default",
        uid: "0b6f1f3e-0000-4000-8000-000000000002",
        spec: &emqx.spec,
    }
}

fn statefulset() -> StatefulSet {
    yaml(STS_YAML)
}

/// The three pods: the captured `-0`, and `-1`, `-2` as the same pod with
/// its ordinal changed (the capture kept only `-0`).
fn pods(serving: bool) -> Vec<Pod> {
    let zero: Pod = yaml(POD_YAML);
    (0..3)
        .map(|i| {
            let mut pod = zero.clone();
            pod.metadata.name = Some(format!("probe-core-{GO_REVISION}-{i}"));
            if !serving {
                for c in pod
                    .status
                    .as_mut()
                    .and_then(|s| s.conditions.as_mut())
                    .expect("conditions")
                {
                    if c.type_ == READINESS_GATE_ON_SERVING || c.type_ == "Ready" {
                        c.status = "False".into();
                    }
                }
            }
            pod
        })
        .collect()
}

/// `listeners`, `dashboard` Services as the Go operator left them.
fn go_services() -> (Service, Service) {
    let docs: Vec<Service> = SVC_YAML.split("\n---\n").map(yaml::<Service>).collect();
    let named = |n: &str| {
        docs.iter()
            .find(|s| s.metadata.name.as_deref() == Some(n))
            .cloned()
            .expect("service in fixture")
    };
    (named("probe-listeners"), named("probe-dashboard"))
}

/// One pass's input for the fixture cluster, with every core a running
/// member of the EMQX cluster.
fn observe(emqx: &EMQX, pods: &[Pod]) -> (crate::observed::Spec, Observed, bool) {
    let cluster = cluster(emqx);
    let rendered = Rendered::new(cluster);
    let live = live_sets(&rendered.cluster, &[statefulset()], &[], pods);
    let spec = desired_spec(&rendered, &live, None);
    let adopted = runs_adopted_revision(&spec, &live);
    let members = live
        .iter()
        .flat_map(|s| &s.view.pods)
        .map(|p| Member {
            node: p.node.clone(),
            running: true,
        })
        .collect();
    let (listeners, dashboard) = go_services();
    let observed = Observed {
        now: 1_000,
        now_ms: 1_000_000,
        sets: live.into_iter().map(|s| s.view).collect(),
        emqx: Some(EmqxView {
            members,
            evacuations: Vec::new(),
            evacuation_api: true,
            figures: None,
            figures_unavailable: None,
        }),
        services: live::services(Some(&listeners), Some(&dashboard)),
        memory: Memory::default(),
    };
    (spec, observed, adopted)
}

/// Actions that write to the cluster or EMQX (not our own notes on the
/// object).
fn writes(actions: &[Action]) -> Vec<&Action> {
    actions
        .iter()
        .filter(|a| {
            !matches!(
                a,
                Action::RecordProgress { .. } | Action::RecordNewNodesReady { .. }
            )
        })
        .collect()
}

#[test]
fn the_go_statefulset_is_recognised_and_read_in_our_spelling() {
    let live = serde_json::to_value(statefulset().spec.expect("spec").template).expect("json");
    assert!(is_go_template(&live));
    let ours = as_ours(&live, "probe", Role::Core);
    let env: Vec<&str> = ours["spec"]["containers"][0]["env"]
        .as_array()
        .expect("env")
        .iter()
        .filter_map(env_named)
        .collect();
    // Go's own (quoted) bootstrap entry is overridden by the user's, which
    // ours renders once, last; the dashboard bind sits where ours has it.
    assert_eq!(env[0], "POD_NAME");
    assert_eq!(env[8], DASHBOARD_BIND);
    assert_eq!(env[9], BOOTSTRAP_ENV, "the user's entry stays last");
    assert_eq!(env.len(), 10, "{env:?}");
    assert_eq!(
        ours["spec"]["containers"][0]["env"][9]["value"],
        BOOTSTRAP_FILE
    );
    let volumes: Vec<&str> = ours["spec"]["volumes"]
        .as_array()
        .expect("volumes")
        .iter()
        .filter_map(|v| v["name"].as_str())
        .collect();
    assert_eq!(
        volumes,
        ["bootstrap-api-key", "config", "log", "probe-data"]
    );
    assert!(
        ours["spec"]["readinessGates"]
            .as_array()
            .expect("gates")
            .is_empty()
    );
}

#[test]
fn a_template_that_is_not_gos_is_left_alone() {
    let e = emqx(json!({}));
    let ours =
        serde_json::to_value(crate::render::pod_template(&cluster(&e), Role::Core)).expect("json");
    assert!(!is_go_template(&ours));
    assert_eq!(as_ours(&ours, "probe", Role::Core), ours);
}

#[test]
fn an_unchanged_go_cluster_is_taken_over_without_a_write() {
    let e = emqx(json!({}));
    let (spec, observed, adopted) = observe(&e, &pods(true));
    assert_eq!(spec.core.revision, GO_REVISION, "the Go revision is kept");
    assert!(adopted, "base objects are left as Go wrote them");
    // The node names we derive are the ones EMQX reported to Go (its
    // status), so membership is read right.
    let mut ours: Vec<&str> = observed.sets[0]
        .pods
        .iter()
        .map(|p| p.node.as_str())
        .collect();
    let mut reported: Vec<&str> = e
        .status
        .as_ref()
        .and_then(|s| s.core_nodes.as_ref())
        .expect("coreNodes")
        .iter()
        .filter_map(|n| n.node.as_deref())
        .collect();
    ours.sort_unstable();
    reported.sort_unstable();
    assert_eq!(ours, reported);
    let decision = decide(&spec, &observed);
    assert_eq!(decision.phase, Phase::Ready);
    assert_eq!(writes(&decision.actions), Vec::<&Action>::new());
    assert_eq!(decision.wait, None);

    // The status says so, at Go's revision, over Go's own status.
    let previous = e.status.clone();
    let status = crate::status::status(&crate::status::StatusInput {
        generation: 2,
        now: observed.now,
        spec: &spec,
        sets: &observed.sets,
        decision: &decision,
        wait: None,
        traffic_on_desired: crate::decide::traffic_on_desired(&spec, &observed),
        nodes: None,
        evacuations: None,
        evacuation_unsupported: false,
        previous: previous.as_ref(),
    });
    let core = status.core_nodes_status.expect("coreNodesStatus");
    assert_eq!(core.current_revision.as_deref(), Some(GO_REVISION));
    assert_eq!(core.update_revision.as_deref(), Some(GO_REVISION));
    let ready = status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "Ready")
        .expect("Ready condition");
    assert_eq!(ready.status, "True", "{ready:?}");
}

#[test]
fn a_restarted_go_pod_gets_its_gate_from_us() {
    let e = emqx(json!({}));
    let mut pods = pods(true);
    // Pod -1 restarted: containers ready, joined, gate not set (Go is gone).
    for c in pods[1]
        .status
        .as_mut()
        .and_then(|s| s.conditions.as_mut())
        .expect("conditions")
    {
        if c.type_ == READINESS_GATE_ON_SERVING || c.type_ == "Ready" {
            c.status = "False".into();
        }
    }
    let (spec, observed, _) = observe(&e, &pods);
    let decision = decide(&spec, &observed);
    assert_eq!(
        writes(&decision.actions),
        vec![&Action::MarkServing {
            pod: format!("probe-core-{GO_REVISION}-1")
        }]
    );
}

#[test]
fn an_unjoined_go_pod_is_not_marked_serving() {
    let e = emqx(json!({}));
    let (spec, mut observed, _) = observe(&e, &pods(false));
    if let Some(emqx) = observed.emqx.as_mut() {
        emqx.members.clear();
    }
    let decision = decide(&spec, &observed);
    assert!(
        !decision
            .actions
            .iter()
            .any(|a| matches!(a, Action::MarkServing { .. }))
    );
}

#[test]
fn a_changed_spec_upgrades_to_a_set_of_ours() {
    for patch in [
        json!({"spec": {"image": "emqx/emqx:6.0.2"}}),
        json!({"spec": {"coreTemplate": {"spec": {"env": [
            {"name": "EMQX_API_KEY__BOOTSTRAP_FILE", "value": "/opt/emqx/data/bootstrap_api_key"},
            {"name": "EMQX_LOG__CONSOLE__LEVEL", "value": "debug"}]}}}}),
        json!({"spec": {"coreTemplate": {"spec": {"resources": {"limits": {"cpu": "1"}}}}}}),
    ] {
        let e = emqx(patch.clone());
        let (spec, observed, adopted) = observe(&e, &pods(true));
        assert_ne!(spec.core.revision, GO_REVISION, "{patch}");
        assert!(!adopted, "ours writes its base objects for the upgrade");
        let decision = decide(&spec, &observed);
        assert_eq!(
            writes(&decision.actions),
            vec![&Action::CreateSet {
                role: Role::Core,
                revision: spec.core.revision.clone(),
                replicas: 3,
            }],
            "{patch}"
        );
    }
}

#[test]
fn a_scaled_spec_scales_the_adopted_set_in_place() {
    let e = emqx(json!({"spec": {"coreTemplate": {"spec": {"replicas": 4}}}}));
    let (spec, observed, adopted) = observe(&e, &pods(true));
    assert_eq!(spec.core.revision, GO_REVISION);
    assert!(adopted);
    let decision = decide(&spec, &observed);
    assert_eq!(
        writes(&decision.actions),
        vec![&Action::ScaleSet {
            name: format!("probe-core-{GO_REVISION}"),
            from: 3,
            to: 4,
        }]
    );
}

#[test]
fn gos_role_selectors_count_as_pointed_only_while_one_revision_runs() {
    let e = emqx(json!({"spec": {"image": "emqx/emqx:6.0.2"}}));
    let (spec, mut observed, _) = observe(&e, &pods(true));
    // The new set of ours exists beside Go's: the role selector selects
    // both, so it points at neither.
    let mut new = observed.sets[0].clone();
    new.name = format!("probe-core-{}", spec.core.revision);
    new.revision = spec.core.revision.clone();
    observed.sets.push(new);
    let services = crate::decide::effective_services(&spec, &observed);
    assert_eq!(services.listeners, None);
    assert_eq!(services.dashboard, None);
}

/// Not captured (the capture is core-only): the captured core template
/// changed the way Go 2.2.29 renders replicants instead
/// (`controllers/apps/v2beta1/add_emqx_repl.go`): no `POD_NAME`,
/// `EMQX_HOST` from `status.podIP`, role `replicant`, `<name>-replicant-*`
/// volumes with the data volume after the log volume.
#[test]
fn a_go_replicant_template_reads_as_ours() {
    let mut go = serde_json::to_value(statefulset().spec.expect("spec").template).expect("json");
    go["metadata"]["labels"]["apps.emqx.io/db-role"] = json!("replicant");
    let container = &mut go["spec"]["containers"][0];
    let env = container["env"].as_array_mut().expect("env");
    env.retain(|v| env_named(v) != Some("POD_NAME"));
    for v in env.iter_mut() {
        match env_named(v) {
            Some("EMQX_HOST") => {
                *v = json!({"name": "EMQX_HOST", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "status.podIP"}}});
            }
            Some("EMQX_NODE__ROLE") => v["value"] = json!("replicant"),
            _ => {}
        }
    }
    let rename = |items: &mut Value| {
        for item in items.as_array_mut().expect("list") {
            let name = item["name"].as_str().unwrap_or_default().to_owned();
            if let Some(rest) = name.strip_prefix("probe-core-") {
                item["name"] = json!(format!("probe-replicant-{rest}"));
            }
        }
    };
    rename(&mut container["volumeMounts"]);
    rename(&mut go["spec"]["volumes"]);
    let volumes = go["spec"]["volumes"].as_array_mut().expect("volumes");
    let data = volumes.remove(0);
    volumes.push(data);

    let e = emqx(
        json!({"spec": {"replicantTemplate": {"spec": {"replicas": 2, "env": [
        {"name": "EMQX_API_KEY__BOOTSTRAP_FILE", "value": "/opt/emqx/data/bootstrap_api_key"}]}}}}),
    );
    let ours = serde_json::to_value(crate::render::pod_template(&cluster(&e), Role::Replicant))
        .expect("json");
    assert!(!crate::revision::template_matches(&ours, &go));
    assert!(crate::revision::template_matches(
        &ours,
        &as_ours(&go, "probe", Role::Replicant)
    ));
}
