//! The objects a cluster owns, rendered from the hub spec. Pure: the shell
//! server-side-applies them with one field manager.
//!
//! Names, labels and the container's environment follow the Go operator
//! (upstream-operator.md §1.8) so that clusters it created can be adopted.
//! Two differences, both deliberate: the listeners and dashboard Services
//! select a revision (one selector patch moves traffic; no readiness gate
//! is flipped pod by pod), and the dashboard port's env is part of the
//! template (upstream added it after hashing, so it never showed in diffs).

use crate::emqx_api::ApiGeneration;
use emqx_crd::image::is_emqx4;
use emqx_crd::names::{self, DbRole, env as var};
use emqx_crd::v2beta1::{EMQXReplicantTemplateSpec, EMQXSpec, ServiceTemplate};
use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetSpec, StatefulSet, StatefulSetSpec};
use k8s_openapi::api::core::v1::{
    ConfigMap, ConfigMapVolumeSource, Container, ContainerPort, EmptyDirVolumeSource, EnvVar,
    EnvVarSource, ObjectFieldSelector, PersistentVolumeClaim, PodSpec, PodTemplateSpec,
    SecretKeySelector, SecretVolumeSource, Service, ServicePort, ServiceSpec, Volume, VolumeMount,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use std::collections::BTreeMap;

/// The container name, as upstream.
pub const CONTAINER: &str = "emqx";
/// Where the bootstrap API-key file is mounted.
pub const BOOTSTRAP_FILE: &str = "/opt/emqx/data/bootstrap_api_key";
/// The user the operator calls EMQX as (a line in the bootstrap file).
pub use emqx_crd::bootstrap_keys::OPERATOR_API_KEY;

/// The object a cluster belongs to, and what rendering needs of it.
#[derive(Debug, Clone, Copy)]
pub struct Cluster<'a> {
    pub api_version: &'a str,
    pub kind: &'a str,
    pub name: &'a str,
    pub namespace: &'a str,
    pub uid: &'a str,
    pub spec: &'a EMQXSpec,
}

impl Cluster<'_> {
    fn headless_dns(&self) -> String {
        names::headless_dns_name(self.name, self.namespace, self.spec.cluster_domain())
    }

    /// The management API this cluster's image speaks.
    pub fn api(&self) -> ApiGeneration {
        api_of_image(&self.spec.image)
    }

    fn role_spec(&self, role: DbRole) -> Option<&EMQXReplicantTemplateSpec> {
        match role {
            DbRole::Core => self
                .spec
                .core_template
                .as_ref()
                .and_then(|t| t.spec.as_ref())
                .map(|s| &s.pod),
            DbRole::Replicant => self
                .spec
                .replicant_template
                .as_ref()
                .and_then(|t| t.spec.as_ref()),
        }
    }

    fn role_metadata(&self, role: DbRole) -> Option<&ObjectMeta> {
        match role {
            DbRole::Core => self.spec.core_template.as_ref()?.metadata.as_ref(),
            DbRole::Replicant => self.spec.replicant_template.as_ref()?.metadata.as_ref(),
        }
    }

    /// Desired replicas of a role (`None` when the cluster has no such role).
    pub fn replicas(&self, role: DbRole) -> Option<u32> {
        // The CRD's defaults, as emqx-crd applies them.
        let replicas = match role {
            DbRole::Core => Some(self.spec.core_replicas()),
            DbRole::Replicant => self.spec.replicant_replicas(),
        };
        replicas.map(|r| u32::try_from(r).unwrap_or(0))
    }
}

/// EMQX 4.x speaks `/api/v4`; 5.x and anything unparsable (`latest`, a
/// digest) `/api/v5`, the current API.
pub fn api_of_image(image: &str) -> ApiGeneration {
    if is_emqx4(image) {
        ApiGeneration::V4
    } else {
        ApiGeneration::V5
    }
}

fn meta(cluster: &Cluster<'_>, name: String, labels: BTreeMap<String, String>) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: Some(cluster.namespace.to_owned()),
        labels: Some(labels),
        owner_references: Some(vec![owner_reference(cluster)]),
        ..ObjectMeta::default()
    }
}

/// Owned objects go with the cluster (garbage collector), and are adopted by
/// nobody else.
pub fn owner_reference(cluster: &Cluster<'_>) -> OwnerReference {
    OwnerReference {
        api_version: cluster.api_version.to_owned(),
        kind: cluster.kind.to_owned(),
        name: cluster.name.to_owned(),
        uid: cluster.uid.to_owned(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

fn env(name: &str, value: impl Into<String>) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value: Some(value.into()),
        value_from: None,
    }
}

fn field_env(name: &str, path: &str) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value: None,
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: path.to_owned(),
                api_version: None,
            }),
            ..EnvVarSource::default()
        }),
    }
}

/// The container's environment: the operator's variables in upstream's order
/// (any difference would change the template of an adopted cluster), then
/// the user's. A user entry named like one of the operator's replaces it, as
/// it does under the Go operator, which emits both and lets the later win;
/// we emit each name once, because the API server's server-side apply
/// refuses a list with two entries of one key (`env` is a map keyed by name).
fn emqx_env(cluster: &Cluster<'_>, role: DbRole) -> Vec<EnvVar> {
    let operator = operator_env(cluster, role);
    let user = cluster
        .role_spec(role)
        .and_then(|s| s.env.clone())
        .unwrap_or_default();
    merge_env(operator, user)
}

/// The operator's own env entries, named from [`names::env`].
fn operator_env(cluster: &Cluster<'_>, role: DbRole) -> Vec<EnvVar> {
    match cluster.api() {
        ApiGeneration::V5 => {
            let host = match role {
                DbRole::Core => "$(POD_NAME).$(EMQX_CLUSTER__DNS__NAME)",
                DbRole::Replicant => "$(POD_IP)",
            };
            let mut v = vec![field_env(var::POD_NAME, "metadata.name")];
            if role == DbRole::Replicant {
                v.push(field_env(var::POD_IP, "status.podIP"));
            }
            v.extend([
                env(var::EMQX_CLUSTER__DISCOVERY_STRATEGY, "dns"),
                env(var::EMQX_CLUSTER__DNS__RECORD_TYPE, "srv"),
                env(var::EMQX_CLUSTER__DNS__NAME, cluster.headless_dns()),
                env(var::EMQX_HOST, host),
                env(var::EMQX_NODE__DATA_DIR, "data"),
                env(var::EMQX_NODE__ROLE, role.as_str()),
                EnvVar {
                    name: var::EMQX_NODE__COOKIE.into(),
                    value: None,
                    value_from: Some(EnvVarSource {
                        secret_key_ref: Some(SecretKeySelector {
                            name: names::node_cookie_secret_name(cluster.name),
                            key: names::NODE_COOKIE_KEY.into(),
                            optional: None,
                        }),
                        ..EnvVarSource::default()
                    }),
                },
                env(var::EMQX_API_KEY__BOOTSTRAP_FILE, BOOTSTRAP_FILE),
                env(var::EMQX_DASHBOARD__LISTENERS__HTTP__BIND, "18083"),
            ]);
            v
        }
        // EMQX 4.4 reads its settings from EMQX_* env (emqxConfig upstream).
        ApiGeneration::V4 => vec![
            field_env(var::POD_NAME, "metadata.name"),
            env(var::EMQX_NAME, cluster.name),
            env(
                var::EMQX_HOST,
                "$(POD_NAME).".to_owned() + &cluster.headless_dns(),
            ),
            env(var::EMQX_CLUSTER__DISCOVERY, "dns"),
            env(var::EMQX_CLUSTER__DNS__TYPE, "srv"),
            env(var::EMQX_CLUSTER__DNS__APP, cluster.name),
            env(var::EMQX_CLUSTER__DNS__NAME, cluster.headless_dns()),
            env(var::EMQX_LOG__TO, "console"),
            env(var::EMQX_MANAGEMENT__BOOTSTRAP_APPS_FILE, BOOTSTRAP_FILE),
        ],
    }
}

/// The operator's entries the user does not override, in order, then the
/// user's in their order. A name the user lists twice keeps its first place
/// and its last value: what the container saw under the Go operator, where
/// the kubelet lets the later duplicate win.
fn merge_env(operator: Vec<EnvVar>, user: Vec<EnvVar>) -> Vec<EnvVar> {
    let mut merged: Vec<EnvVar> = operator
        .into_iter()
        .filter(|own| !user.iter().any(|u| u.name == own.name))
        .collect();
    let first_user = merged.len();
    for entry in user {
        match merged[first_user..]
            .iter_mut()
            .find(|e| e.name == entry.name)
        {
            Some(earlier) => *earlier = entry,
            None => merged.push(entry),
        }
    }
    merged
}

fn port(name: &str, number: i32) -> ContainerPort {
    ContainerPort {
        name: Some(name.to_owned()),
        container_port: number,
        ..ContainerPort::default()
    }
}

fn emqx_ports(cluster: &Cluster<'_>, role: DbRole) -> Vec<ContainerPort> {
    let mut ports = match cluster.api() {
        ApiGeneration::V5 => vec![port("dashboard", 18083), port("mqtt", 1883)],
        ApiGeneration::V4 => vec![
            port("management", 8081),
            port("dashboard", 18083),
            port("mqtt", 1883),
        ],
    };
    for extra in cluster
        .role_spec(role)
        .and_then(|s| s.ports.clone())
        .unwrap_or_default()
    {
        // A user port with a name or number we already declare replaces ours.
        ports.retain(|p| p.name != extra.name && p.container_port != extra.container_port);
        ports.push(extra);
    }
    ports
}

fn mount(name: &str, path: &str, sub_path: Option<&str>) -> VolumeMount {
    VolumeMount {
        name: name.to_owned(),
        mount_path: path.to_owned(),
        sub_path: sub_path.map(str::to_owned),
        read_only: sub_path.map(|_| true),
        ..VolumeMount::default()
    }
}

/// Whether core nodes keep their data on PersistentVolumeClaims.
fn persistent(cluster: &Cluster<'_>) -> bool {
    cluster
        .spec
        .core_template
        .as_ref()
        .and_then(|t| t.spec.as_ref())
        .and_then(|s| s.data_claim())
        .is_some()
}

fn data_volume_name(cluster: &Cluster<'_>) -> String {
    format!("{}-data", cluster.name)
}

/// The pod template of a role, without the revision label: what is compared
/// with live sets and hashed into a new revision's name.
/// Annotations that belong on the custom resource, never on pods: the
/// operator's own memory and controls, the conversion stash, kubectl's
/// last-applied copy. The v1beta4 defaulting (like upstream's) copies the
/// object's annotations into `.spec.template.metadata`; without this filter
/// every progress note the operator writes would change the pod template
/// and start another blue-green upgrade.
pub fn is_object_annotation(key: &str) -> bool {
    matches!(
        key,
        crate::memory::ANNOTATION_PROGRESS
            | crate::memory::ANNOTATION_PAUSED
            | crate::memory::ANNOTATION_PROGRESS_DEADLINE
            | names::ANNOTATION_CONVERSION_DATA
            | "kubectl.kubernetes.io/last-applied-configuration"
    )
}

pub fn pod_template(cluster: &Cluster<'_>, role: DbRole) -> PodTemplateSpec {
    let spec = cluster.role_spec(role).cloned().unwrap_or_default();
    let mut labels = names::role_labels(cluster.name, role);
    let mut annotations = BTreeMap::new();
    if let Some(m) = cluster.role_metadata(role) {
        for (k, v) in m.labels.iter().flatten() {
            labels.entry(k.clone()).or_insert_with(|| v.clone());
        }
        annotations.extend(
            m.annotations
                .clone()
                .unwrap_or_default()
                .into_iter()
                .filter(|(k, _)| !is_object_annotation(k)),
        );
    }
    let data = data_volume_name(cluster);
    let mut mounts = vec![
        mount(
            "bootstrap-api-key",
            BOOTSTRAP_FILE,
            Some(names::BOOTSTRAP_API_KEY_KEY),
        ),
        mount("log", "/opt/emqx/log", None),
        mount(&data, "/opt/emqx/data", None),
    ];
    if cluster.api() == ApiGeneration::V5 {
        mounts.insert(
            1,
            mount("config", "/opt/emqx/etc/emqx.conf", Some(names::CONFIG_KEY)),
        );
    }
    mounts.extend(spec.extra_volume_mounts.clone().unwrap_or_default());
    let mut volumes = vec![
        Volume {
            name: "bootstrap-api-key".into(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(names::bootstrap_api_key_secret_name(cluster.name)),
                ..SecretVolumeSource::default()
            }),
            ..Volume::default()
        },
        Volume {
            name: "config".into(),
            config_map: Some(ConfigMapVolumeSource {
                name: names::config_map_name(cluster.name),
                ..ConfigMapVolumeSource::default()
            }),
            ..Volume::default()
        },
        Volume {
            name: "log".into(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Volume::default()
        },
    ];
    if !(role == DbRole::Core && persistent(cluster)) {
        volumes.push(Volume {
            name: data,
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Volume::default()
        });
    }
    volumes.extend(spec.extra_volumes.clone().unwrap_or_default());
    let container = Container {
        name: CONTAINER.into(),
        image: Some(cluster.spec.image.clone()),
        image_pull_policy: cluster.spec.image_pull_policy.clone(),
        command: spec.command.clone(),
        args: spec.args.clone(),
        env: Some(emqx_env(cluster, role)),
        env_from: spec.env_from.clone(),
        ports: Some(emqx_ports(cluster, role)),
        resources: spec.resources.clone(),
        security_context: spec.container_security_context.clone(),
        liveness_probe: spec.liveness_probe.clone(),
        readiness_probe: spec.readiness_probe.clone(),
        startup_probe: spec.startup_probe.clone(),
        lifecycle: spec.lifecycle.clone(),
        volume_mounts: Some(mounts),
        ..Container::default()
    };
    let mut containers = vec![container];
    containers.extend(spec.extra_containers.clone().unwrap_or_default());
    let tolerations = spec.tolerations.clone().or(spec.tole_rations.clone());
    PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(labels),
            annotations: (!annotations.is_empty()).then_some(annotations),
            ..ObjectMeta::default()
        }),
        spec: Some(PodSpec {
            containers,
            init_containers: spec.init_containers.clone(),
            volumes: Some(volumes),
            image_pull_secrets: cluster.spec.image_pull_secrets.clone(),
            service_account_name: cluster.spec.service_account_name.clone(),
            security_context: spec.pod_security_context.clone(),
            node_selector: spec.node_selector.clone(),
            node_name: spec.node_name.clone(),
            affinity: spec.affinity.clone(),
            tolerations,
            topology_spread_constraints: spec.topology_spread_constraints.clone(),
            ..PodSpec::default()
        }),
    }
}

fn with_revision(mut template: PodTemplateSpec, revision: &str) -> PodTemplateSpec {
    if let Some(meta) = template.metadata.as_mut() {
        meta.labels
            .get_or_insert_with(BTreeMap::new)
            .insert(names::LABEL_POD_TEMPLATE_HASH.into(), revision.into());
    }
    template
}

/// Everything a pass writes from the object, rendered once per pass. Sets
/// and Services get their revision afterwards (a label, a selector): which
/// revision the spec means is found by comparing [`Rendered::template`] with
/// the live sets' templates.
#[derive(Debug, Clone)]
pub struct Rendered<'a> {
    pub cluster: Cluster<'a>,
    pub config_map: ConfigMap,
    pub headless_service: Service,
    pub pdbs: Vec<(DbRole, PodDisruptionBudget)>,
    core_template: PodTemplateSpec,
    /// `None` for a core-only cluster.
    replicant_template: Option<PodTemplateSpec>,
    /// The templates as JSON, for revision matching.
    core_template_json: serde_json::Value,
    replicant_template_json: serde_json::Value,
    /// Selectors not set yet; `None` when disabled.
    listeners_service: Option<Service>,
    dashboard_service: Option<Service>,
}

impl<'a> Rendered<'a> {
    /// Renders the cluster's objects.
    pub fn new(cluster: Cluster<'a>) -> Rendered<'a> {
        let core_template = pod_template(&cluster, DbRole::Core);
        let replicant_template = cluster
            .replicas(DbRole::Replicant)
            .map(|_| pod_template(&cluster, DbRole::Replicant));
        Rendered {
            config_map: config_map(&cluster),
            headless_service: headless_service(&cluster),
            pdbs: [DbRole::Core, DbRole::Replicant]
                .into_iter()
                .filter_map(|role| Some((role, pdb(&cluster, role)?)))
                .collect(),
            core_template_json: serde_json::to_value(&core_template).unwrap_or_default(),
            replicant_template_json: serde_json::to_value(&replicant_template).unwrap_or_default(),
            core_template,
            replicant_template,
            listeners_service: listeners_service(&cluster, DbRole::Core, ""),
            dashboard_service: dashboard_service(&cluster, ""),
            cluster,
        }
    }

    /// The desired pod template of `role` as JSON (`null` for a role the
    /// cluster does not have).
    pub fn template(&self, role: DbRole) -> &serde_json::Value {
        match role {
            DbRole::Core => &self.core_template_json,
            DbRole::Replicant => &self.replicant_template_json,
        }
    }

    /// The core StatefulSet of `revision`.
    pub fn core_set(&self, revision: &str, replicas: u32) -> StatefulSet {
        core_set_of(
            &self.cluster,
            self.core_template.clone(),
            revision,
            replicas,
        )
    }

    /// The replicant ReplicaSet of `revision`; `None` for a core-only
    /// cluster.
    pub fn replicant_set(&self, revision: &str, replicas: u32) -> Option<ReplicaSet> {
        let template = self.replicant_template.clone()?;
        Some(replicant_set_of(
            &self.cluster,
            template,
            revision,
            replicas,
        ))
    }

    /// Whether the listeners Service is enabled.
    pub fn listeners_enabled(&self) -> bool {
        self.listeners_service.is_some()
    }

    /// Whether the dashboard Service is enabled.
    pub fn dashboard_enabled(&self) -> bool {
        self.dashboard_service.is_some()
    }

    /// The listeners Service selecting `role` and `revision`; `None` when
    /// disabled.
    pub fn listeners_service(&self, role: DbRole, revision: &str) -> Option<Service> {
        let labels = names::revision_labels(self.cluster.name, role, revision);
        self.listeners_service
            .clone()
            .map(|s| with_selector(s, labels))
    }

    /// The dashboard Service selecting the cores of `revision`; `None` when
    /// disabled.
    pub fn dashboard_service(&self, revision: &str) -> Option<Service> {
        let labels = names::revision_labels(self.cluster.name, DbRole::Core, revision);
        self.dashboard_service
            .clone()
            .map(|s| with_selector(s, labels))
    }
}

fn with_selector(mut service: Service, selector: BTreeMap<String, String>) -> Service {
    if let Some(spec) = service.spec.as_mut() {
        spec.selector = Some(selector);
    }
    service
}

/// The core StatefulSet of `revision`.
pub fn core_set(cluster: &Cluster<'_>, revision: &str, replicas: u32) -> StatefulSet {
    core_set_of(
        cluster,
        pod_template(cluster, DbRole::Core),
        revision,
        replicas,
    )
}

fn core_set_of(
    cluster: &Cluster<'_>,
    template: PodTemplateSpec,
    revision: &str,
    replicas: u32,
) -> StatefulSet {
    let labels = names::revision_labels(cluster.name, DbRole::Core, revision);
    let claims = cluster
        .spec
        .core_template
        .as_ref()
        .and_then(|t| t.spec.as_ref())
        .and_then(|s| s.data_claim().cloned())
        .map(|spec| {
            vec![PersistentVolumeClaim {
                metadata: ObjectMeta {
                    name: Some(data_volume_name(cluster)),
                    labels: Some(names::instance_labels(cluster.name)),
                    ..ObjectMeta::default()
                },
                spec: Some(spec),
                status: None,
            }]
        });
    StatefulSet {
        metadata: meta(
            cluster,
            names::core_set_name(cluster.name, revision),
            labels.clone(),
        ),
        spec: Some(StatefulSetSpec {
            replicas: Some(i32::try_from(replicas).unwrap_or(i32::MAX)),
            selector: LabelSelector {
                match_labels: Some(labels),
                match_expressions: None,
            },
            service_name: Some(names::headless_service_name(cluster.name)),
            // All cores start together: they discover each other by DNS.
            pod_management_policy: Some("Parallel".into()),
            template: with_revision(template, revision),
            volume_claim_templates: claims,
            ..StatefulSetSpec::default()
        }),
        status: None,
    }
}

/// The replicant ReplicaSet of `revision`.
pub fn replicant_set(cluster: &Cluster<'_>, revision: &str, replicas: u32) -> ReplicaSet {
    replicant_set_of(
        cluster,
        pod_template(cluster, DbRole::Replicant),
        revision,
        replicas,
    )
}

fn replicant_set_of(
    cluster: &Cluster<'_>,
    template: PodTemplateSpec,
    revision: &str,
    replicas: u32,
) -> ReplicaSet {
    let labels = names::revision_labels(cluster.name, DbRole::Replicant, revision);
    ReplicaSet {
        metadata: meta(
            cluster,
            names::replicant_set_name(cluster.name, revision),
            labels.clone(),
        ),
        spec: Some(ReplicaSetSpec {
            replicas: Some(i32::try_from(replicas).unwrap_or(i32::MAX)),
            selector: LabelSelector {
                match_labels: Some(labels),
                match_expressions: None,
            },
            template: Some(with_revision(template, revision)),
            ..ReplicaSetSpec::default()
        }),
        status: None,
    }
}

fn service_port(name: &str, number: i32) -> ServicePort {
    ServicePort {
        name: Some(name.to_owned()),
        port: number,
        target_port: Some(IntOrString::Int(number)),
        protocol: Some("TCP".into()),
        ..ServicePort::default()
    }
}

/// `<name>-headless`: every core of every revision, ready or not, for DNS
/// discovery and Erlang distribution.
pub fn headless_service(cluster: &Cluster<'_>) -> Service {
    Service {
        metadata: meta(
            cluster,
            names::headless_service_name(cluster.name),
            names::instance_labels(cluster.name),
        ),
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".into()),
            publish_not_ready_addresses: Some(true),
            selector: Some(names::role_labels(cluster.name, DbRole::Core)),
            ports: Some(vec![
                service_port("erlang-dist", 4370),
                service_port("gen-rpc", 5369),
            ]),
            ..ServiceSpec::default()
        }),
        status: None,
    }
}

fn templated_service(
    cluster: &Cluster<'_>,
    name: String,
    template: Option<&ServiceTemplate>,
    selector: BTreeMap<String, String>,
    default_ports: Vec<ServicePort>,
) -> Option<Service> {
    if template.and_then(|t| t.enabled) == Some(false) {
        return None;
    }
    let mut labels = names::instance_labels(cluster.name);
    let mut metadata_annotations = None;
    if let Some(m) = template.and_then(|t| t.metadata.as_ref()) {
        for (k, v) in m.labels.iter().flatten() {
            labels.entry(k.clone()).or_insert_with(|| v.clone());
        }
        metadata_annotations.clone_from(&m.annotations);
    }
    let mut spec = template.and_then(|t| t.spec.clone()).unwrap_or_default();
    spec.selector = Some(selector);
    if spec.ports.as_ref().is_none_or(Vec::is_empty) {
        spec.ports = Some(default_ports);
    }
    let mut metadata = meta(cluster, name, labels);
    metadata.annotations = metadata_annotations;
    Some(Service {
        metadata,
        spec: Some(spec),
        status: None,
    })
}

/// `<name>-listeners`: MQTT clients, selecting one role and revision.
pub fn listeners_service(cluster: &Cluster<'_>, role: DbRole, revision: &str) -> Option<Service> {
    templated_service(
        cluster,
        names::listeners_service_name(cluster.name),
        cluster.spec.listeners_service_template.as_ref(),
        names::revision_labels(cluster.name, role, revision),
        vec![service_port("tcp-default", 1883)],
    )
}

/// `<name>-dashboard`: the dashboard of the cores of one revision.
pub fn dashboard_service(cluster: &Cluster<'_>, revision: &str) -> Option<Service> {
    templated_service(
        cluster,
        names::dashboard_service_name(cluster.name),
        cluster.spec.dashboard_service_template.as_ref(),
        names::revision_labels(cluster.name, DbRole::Core, revision),
        vec![service_port("dashboard", 18083)],
    )
}

/// `<name>-configs` with `emqx.conf`.
pub fn config_map(cluster: &Cluster<'_>) -> ConfigMap {
    let data = cluster
        .spec
        .config
        .as_ref()
        .and_then(|c| c.data.clone())
        .unwrap_or_default();
    ConfigMap {
        metadata: meta(
            cluster,
            names::config_map_name(cluster.name),
            names::instance_labels(cluster.name),
        ),
        data: Some(BTreeMap::from([(names::CONFIG_KEY.to_owned(), data)])),
        ..ConfigMap::default()
    }
}

/// The PodDisruptionBudget of a role: the user's `minAvailable` or
/// `maxUnavailable`, else at most one node down at a time.
pub fn pdb(cluster: &Cluster<'_>, role: DbRole) -> Option<PodDisruptionBudget> {
    cluster.replicas(role)?;
    let spec = cluster.role_spec(role);
    let min_available = spec.and_then(|s| s.min_available.clone());
    let max_unavailable = spec
        .and_then(|s| s.max_unavailable.clone())
        .or_else(|| min_available.is_none().then_some(IntOrString::Int(1)));
    Some(PodDisruptionBudget {
        metadata: meta(
            cluster,
            names::pdb_name(cluster.name, role),
            names::role_labels(cluster.name, role),
        ),
        spec: Some(PodDisruptionBudgetSpec {
            selector: Some(LabelSelector {
                match_labels: Some(names::role_labels(cluster.name, role)),
                match_expressions: None,
            }),
            min_available,
            max_unavailable,
            ..PodDisruptionBudgetSpec::default()
        }),
        status: None,
    })
}

/// The EMQX node name of a pod, as the container derives it from its env.
pub fn node_name(
    cluster: &Cluster<'_>,
    role: DbRole,
    pod_name: &str,
    pod_ip: Option<&str>,
) -> Option<String> {
    match (cluster.api(), role) {
        (ApiGeneration::V5, DbRole::Core) => {
            Some(format!("emqx@{pod_name}.{}", cluster.headless_dns()))
        }
        (ApiGeneration::V5, DbRole::Replicant) => pod_ip.map(|ip| format!("emqx@{ip}")),
        (ApiGeneration::V4, _) => Some(format!(
            "{}@{pod_name}.{}",
            cluster.name,
            cluster.headless_dns()
        )),
    }
}

#[cfg(test)]
mod tests;
