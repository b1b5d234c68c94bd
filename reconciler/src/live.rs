//! Live Kubernetes objects → the [`crate::observed`] model: which sets
//! exist, their pods and EMQX node names, where the Services point. Pure;
//! [`crate::gather`] lists the objects and calls these.

use crate::go_operator;
use crate::observed::{NodeSet, Pod as PodView, Revision, Role, Seconds, Services};
use crate::render::{self, Cluster};
use crate::revision::LiveTemplate;
use emqx_crd::names;
use k8s_openapi::api::apps::v1::{ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::Value;

/// The value of `controller.kubernetes.io/pod-deletion-cost` we put on the
/// replicant chosen for removal (upstream's value, so its choices are ours).
pub const VICTIM_DELETION_COST: &str = "-99999";

fn seconds(meta: &ObjectMeta) -> Seconds {
    meta.creation_timestamp
        .as_ref()
        .and_then(|t| u64::try_from(t.0.as_second()).ok())
        .unwrap_or(0)
}

fn label<'a>(meta: &'a ObjectMeta, key: &str) -> Option<&'a str> {
    meta.labels.as_ref()?.get(key).map(String::as_str)
}

fn role_of(meta: &ObjectMeta) -> Option<Role> {
    match label(meta, names::LABEL_DB_ROLE)? {
        "core" => Some(Role::Core),
        "replicant" => Some(Role::Replicant),
        _ => None,
    }
}

fn condition_true(pod: &Pod, type_: &str) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == type_ && c.status == "True"))
}

fn pod_ready(pod: &Pod) -> bool {
    condition_true(pod, "Ready")
}

/// For a pod with the Go operator's `apps.emqx.io/on-serving` readiness
/// gate: whether that condition is True. `None` for a pod without the gate.
fn serving_gate(pod: &Pod) -> Option<bool> {
    let gated = pod
        .spec
        .as_ref()
        .and_then(|s| s.readiness_gates.as_ref())
        .is_some_and(|gates| {
            gates
                .iter()
                .any(|g| g.condition_type == names::READINESS_GATE_ON_SERVING)
        });
    gated.then(|| condition_true(pod, names::READINESS_GATE_ON_SERVING))
}

/// Whether `pod` waits for its containers to start: none of them runs or
/// ran (no container status yet, or every one `waiting`). A Secret the pod
/// needs that is missing keeps it so (`ContainerCreating` while the volume
/// cannot be mounted, `CreateContainerConfigError` for an env reference);
/// a crash-looping container waits too, which costs a refused create at
/// most. A terminating pod waits for nothing.
pub fn waits_to_start(pod: &Pod) -> bool {
    if pod.metadata.deletion_timestamp.is_some() {
        return false;
    }
    let statuses = pod
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.as_deref())
        .unwrap_or_default();
    statuses.iter().all(|c| {
        c.state
            .as_ref()
            .is_none_or(|state| state.running.is_none() && state.terminated.is_none())
    })
}

/// The ordinal of a StatefulSet pod (`<set>-<n>`).
fn ordinal(set_name: &str, pod_name: &str) -> Option<u32> {
    pod_name
        .strip_prefix(set_name)?
        .strip_prefix('-')?
        .parse()
        .ok()
}

fn pod_view(cluster: &Cluster<'_>, role: Role, set_name: &str, pod: &Pod) -> Option<PodView> {
    let name = pod.metadata.name.clone()?;
    let ip = pod.status.as_ref().and_then(|s| s.pod_ip.as_deref());
    let node = render::node_name(cluster, role, &name, ip).unwrap_or_default();
    Some(PodView {
        ordinal: match role {
            Role::Core => ordinal(set_name, &name),
            Role::Replicant => None,
        },
        created_at: seconds(&pod.metadata),
        ready: pod_ready(pod),
        containers_ready: condition_true(pod, "ContainersReady"),
        serving_gate: serving_gate(pod),
        terminating: pod.metadata.deletion_timestamp.is_some(),
        node,
        marked_for_deletion: pod
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(names::ANNOTATION_POD_DELETION_COST))
            .is_some_and(|v| v == VICTIM_DELETION_COST),
        name,
    })
}

/// One set, described for `decide` and for revision matching.
#[derive(Debug, Clone)]
pub struct LiveSet {
    pub view: NodeSet,
    /// The pod template, a Go-rendered one in our spelling
    /// ([`go_operator::as_ours`]), for revision matching.
    pub template: Value,
    /// Rendered by the Go EMQX Operator ([`go_operator::is_go_template`]).
    pub go_made: bool,
    pub uid: Option<String>,
    /// Pod name → pod IP, for reaching EMQX's API on a pod.
    pub pod_ips: std::collections::BTreeMap<String, String>,
}

fn live_set(
    cluster: &Cluster<'_>,
    meta: &ObjectMeta,
    replicas: Option<i32>,
    template: Option<&PodTemplateSpec>,
    pods: &[Pod],
) -> Option<LiveSet> {
    let name = meta.name.clone()?;
    let role = role_of(meta)?;
    let revision = label(meta, names::LABEL_POD_TEMPLATE_HASH)?.to_owned();
    let members: Vec<&Pod> = pods
        .iter()
        .filter(|p| {
            role_of(&p.metadata) == Some(role)
                && label(&p.metadata, names::LABEL_POD_TEMPLATE_HASH) == Some(revision.as_str())
        })
        .collect();
    let pod_ips = members
        .iter()
        .filter_map(|p| {
            let ip = p.status.as_ref()?.pod_ip.clone()?;
            Some((p.metadata.name.clone()?, ip))
        })
        .collect();
    let raw_template = serde_json::to_value(template).unwrap_or(Value::Null);
    let mine: Vec<PodView> = members
        .iter()
        .filter_map(|p| pod_view(cluster, role, &name, p))
        .collect();
    Some(LiveSet {
        view: NodeSet {
            role,
            revision,
            replicas: replicas.and_then(|r| u32::try_from(r).ok()).unwrap_or(0),
            created_at: seconds(meta),
            pods: mine,
            name,
        },
        template: go_operator::as_ours(&raw_template, cluster.name, role),
        go_made: go_operator::is_go_template(&raw_template),
        uid: meta.uid.clone(),
        pod_ips,
    })
}

/// The cluster's sets of both roles with their pods. Sets without a role or
/// revision label are not ours and are ignored.
pub fn live_sets(
    cluster: &Cluster<'_>,
    stateful_sets: &[StatefulSet],
    replica_sets: &[ReplicaSet],
    pods: &[Pod],
) -> Vec<LiveSet> {
    let cores = stateful_sets.iter().filter_map(|s| {
        let spec = s.spec.as_ref();
        live_set(
            cluster,
            &s.metadata,
            spec.and_then(|s| s.replicas),
            spec.map(|s| &s.template),
            pods,
        )
    });
    let replicants = replica_sets.iter().filter_map(|s| {
        let spec = s.spec.as_ref();
        live_set(
            cluster,
            &s.metadata,
            spec.and_then(|s| s.replicas),
            spec.and_then(|s| s.template.as_ref()),
            pods,
        )
    });
    cores.chain(replicants).collect()
}

/// The live templates of one role, for [`crate::revision::resolve_revision`].
pub fn live_templates(sets: &[LiveSet], role: Role) -> Vec<LiveTemplate<'_>> {
    sets.iter()
        .filter(|s| s.view.role == role)
        .map(|s| LiveTemplate {
            revision: &s.view.revision,
            replicas: s.view.replicas,
            created_at: s.view.created_at,
            template: &s.template,
        })
        .collect()
}

fn selected_revision(service: Option<&Service>) -> Option<(Role, Revision)> {
    let selector = service?.spec.as_ref()?.selector.as_ref()?;
    let role = match selector.get(names::LABEL_DB_ROLE)?.as_str() {
        "core" => Role::Core,
        "replicant" => Role::Replicant,
        _ => return None,
    };
    Some((role, selector.get(names::LABEL_POD_TEMPLATE_HASH)?.clone()))
}

/// The role a Service selects when its selector names a role and no
/// revision (the Go operator's Services).
fn selected_role(service: Option<&Service>) -> Option<Role> {
    let selector = service?.spec.as_ref()?.selector.as_ref()?;
    if selector.contains_key(names::LABEL_POD_TEMPLATE_HASH) {
        return None;
    }
    match selector.get(names::LABEL_DB_ROLE)?.as_str() {
        "core" => Some(Role::Core),
        "replicant" => Some(Role::Replicant),
        _ => None,
    }
}

/// Where the listeners and dashboard Services send new connections. A
/// Service that selects a whole role (the Go operator's) is reported as
/// such; `decide` counts it as pointing at a revision only while that is
/// the one revision of the role that runs.
pub fn services(listeners: Option<&Service>, dashboard: Option<&Service>) -> Services {
    Services {
        listeners: selected_revision(listeners),
        dashboard: selected_revision(dashboard).map(|(_, r)| r),
        listeners_role_wide: selected_role(listeners),
        dashboard_role_wide: selected_role(dashboard) == Some(Role::Core),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(status: serde_json::Value) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": "p"}, "status": status})).expect("a pod")
    }

    #[test]
    fn a_pod_waits_to_start_until_a_container_runs_or_ran() {
        // Just created, or held by a Secret that cannot be mounted.
        assert!(waits_to_start(&pod(json!({"phase": "Pending"}))));
        assert!(waits_to_start(&pod(json!({"containerStatuses": [
            {"name": "emqx", "image": "i", "imageID": "", "ready": false, "restartCount": 0,
             "state": {"waiting": {"reason": "CreateContainerConfigError"}}}
        ]}))));
        let running = pod(json!({"containerStatuses": [
            {"name": "emqx", "image": "i", "imageID": "", "ready": false, "restartCount": 0,
             "state": {"running": {"startedAt": "2026-12-03T05:00:00Z"}}}
        ]}));
        assert!(!waits_to_start(&running));
        let exited = pod(json!({"containerStatuses": [
            {"name": "emqx", "image": "i", "imageID": "", "ready": false, "restartCount": 0,
             "state": {"terminated": {"exitCode": 0}}}
        ]}));
        assert!(!waits_to_start(&exited));
        let terminating: Pod = serde_json::from_value(json!({
            "metadata": {"name": "p", "deletionTimestamp": "2026-12-03T05:00:00Z"},
            "status": {"phase": "Pending"}
        }))
        .expect("a pod");
        assert!(!waits_to_start(&terminating));
    }
}
