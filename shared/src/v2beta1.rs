//! `apps.emqx.io/v2beta1`: the hub. `EMQX` (storage version of `emqxes`) and
//! `EmqxEnterprise` v2beta1 (same spec and status) are what the reconciler
//! reconciles; every other version converts into this shape.

// The kube derive's printcolumn(...) lists repeat `type_ = ...` by design.
#![allow(clippy::duplicated_attributes)]

use crate::evacuation::{
    EvacuationStrategy, NodeEvacuationStatus, delay_schema, evacuation_strategy_schema,
};
use crate::limits::MAX_BOOTSTRAP_KEYS;
use crate::schema::{int_or_string, open_object, open_object_list, template_metadata};
use k8s_openapi::api::core::v1::{
    Affinity, Container, ContainerPort, EnvFromSource, EnvVar, Lifecycle, LocalObjectReference,
    PersistentVolumeClaimSpec, PodSecurityContext, Probe, ResourceRequirements, SecurityContext,
    ServiceSpec, Toleration, TopologySpreadConstraint, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::CustomResource;
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The desired state of an EMQX 5 cluster (`EMQX` v2beta1, and `EmqxEnterprise`
/// v2beta1 through [`EmqxEnterpriseSpec`]).
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "apps.emqx.io",
    version = "v2beta1",
    kind = "EMQX",
    plural = "emqxes",
    shortname = "emqx",
    namespaced,
    status = "EMQXStatus",
    doc = "An EMQX cluster upgraded blue-green with node evacuation.",
    scale(
        spec_replicas_path = ".spec.coreTemplate.spec.replicas",
        status_replicas_path = ".status.coreNodesStatus.replicas"
    ),
    printcolumn(
        name = "Status",
        type_ = "string",
        json_path = ".status.conditions[?(@.status==\"True\")].type"
    ),
    printcolumn(
        name = "Core",
        type_ = "integer",
        json_path = ".status.coreNodesStatus.readyReplicas",
        description = "ready core nodes"
    ),
    printcolumn(
        name = "Replicant",
        type_ = "integer",
        json_path = ".status.replicantNodesStatus.readyReplicas",
        description = "ready replicant nodes"
    ),
    printcolumn(
        name = "Evacuating",
        type_ = "string",
        json_path = ".status.nodeEvacuationsStatus[0].node",
        description = "node being evacuated"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "!has(oldSelf.bootstrapAPIKeys) || (has(self.bootstrapAPIKeys) && self.bootstrapAPIKeys == oldSelf.bootstrapAPIKeys)",
    "message": "bootstrapAPIKeys cannot be updated",
    "fieldPath": ".bootstrapAPIKeys",
}]))]
pub struct EMQXSpec {
    /// EMQX image, e.g. `emqx/emqx-enterprise:5.10.0`.
    pub image: String,
    /// `Always`, `Never` or `IfNotPresent`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "pull_policy_schema")]
    pub image_pull_policy: Option<String>,
    /// Secrets for pulling the image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_secrets: Option<Vec<LocalObjectReference>>,
    /// ServiceAccount of the EMQX pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_name: Option<String>,
    /// API keys EMQX creates at boot. Cannot be changed after creation.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        rename = "bootstrapAPIKeys"
    )]
    #[schemars(length(max = MAX_BOOTSTRAP_KEYS))]
    pub bootstrap_api_keys: Option<Vec<BootstrapAPIKey>>,
    /// EMQX configuration (HOCON), applied live.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<Config>,
    /// Kubernetes cluster domain (for the headless Service DNS names).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = "cluster.local"))]
    pub cluster_domain: Option<String>,
    /// How many old revisions (scaled-down sets) to keep.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = 3), range(min = 0, max = 100))]
    pub revision_history_limit: Option<i32>,
    /// How pod-template changes are rolled out (blue-green).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "update_strategy_schema")]
    pub update_strategy: Option<UpdateStrategy>,
    /// Core nodes (a StatefulSet per revision).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "core_template_schema")]
    pub core_template: Option<EMQXCoreTemplate>,
    /// Replicant nodes (a ReplicaSet per revision); absent means core-only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicant_template: Option<EMQXReplicantTemplate>,
    /// The dashboard Service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dashboard_service_template: Option<ServiceTemplate>,
    /// The MQTT listeners Service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listeners_service_template: Option<ServiceTemplate>,
}

pub(crate) fn pull_policy_schema(_: &mut SchemaGenerator) -> Schema {
    json_schema!({"type": "string", "enum": ["Always", "Never", "IfNotPresent"]})
}

fn update_strategy_schema(generator: &mut SchemaGenerator) -> Schema {
    let mut schema = UpdateStrategy::json_schema(generator);
    schema.insert(
        "default".into(),
        serde_json::json!({
            "type": "Recreate",
            "initialDelaySeconds": 10,
            "evacuationStrategy": {"waitTakeover": 10, "connEvictRate": 1000, "sessEvictRate": 1000}
        }),
    );
    schema
}

fn core_template_schema(generator: &mut SchemaGenerator) -> Schema {
    let mut schema = EMQXCoreTemplate::json_schema(generator);
    schema.insert(
        "default".into(),
        serde_json::json!({"spec": {"replicas": 1}}),
    );
    schema
}

/// An API key EMQX creates at boot, given inline or by Secret reference.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BootstrapAPIKey {
    /// Key name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[a-zA-Z\d\-_]+$"), length(max = 128))]
    pub key: Option<String>,
    /// Key secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 3, max = 128))]
    pub secret: Option<String>,
    /// Key and secret from Secrets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<SecretRef>,
}

/// Where a bootstrap key's name and secret are read from.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretRef {
    /// The key name.
    pub key: KeyRef,
    /// The key secret.
    pub secret: KeyRef,
}

/// One entry of a Secret.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KeyRef {
    /// Secret name.
    #[schemars(length(max = 253))]
    pub secret_name: String,
    /// Key in the Secret.
    #[schemars(regex(pattern = r"^[a-zA-Z\d\-_]+$"), length(max = 253))]
    pub secret_key: String,
}

/// EMQX configuration.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Config {
    /// `Merge` into or `Replace` the running configuration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "config_mode_schema")]
    pub mode: Option<String>,
    /// HOCON text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
}

fn config_mode_schema(_: &mut SchemaGenerator) -> Schema {
    json_schema!({"type": "string", "enum": ["Merge", "Replace"], "default": "Merge"})
}

/// The blue-green update strategy.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UpdateStrategy {
    /// `Recreate` (blue-green): the only value.
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "type")]
    #[schemars(schema_with = "update_type_schema")]
    pub type_: Option<String>,
    /// Seconds between all new nodes being ready and the Service switch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "initial_delay_schema")]
    pub initial_delay_seconds: Option<i32>,
    /// How old nodes are evacuated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "evacuation_strategy_schema")]
    pub evacuation_strategy: Option<EvacuationStrategy>,
    /// `Automatic`: traffic moves as soon as the new nodes are ready and
    /// joined and `initialDelaySeconds` passed. `Manual`: the upgrade stops
    /// before the Service switch (condition `AwaitingPromotion`) until the
    /// object is annotated `apps.emqx.io/promote=<revision>`;
    /// `apps.emqx.io/abort=<revision>` goes back to the old nodes instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "promotion_schema")]
    pub promotion: Option<String>,
    /// Checks, from EMQX's own figures, that evicted clients come back and
    /// that the new nodes do not refuse them; aborts the upgrade (as
    /// `apps.emqx.io/abort` does) when they do not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::guard::guard_schema")]
    pub guard: Option<crate::guard::Guard>,
}

fn update_type_schema(_: &mut SchemaGenerator) -> Schema {
    json_schema!({"type": "string", "enum": ["Recreate"], "default": "Recreate"})
}

/// The values of `updateStrategy.promotion`.
pub const PROMOTIONS: &[&str] = &[PROMOTION_AUTOMATIC, PROMOTION_MANUAL];
/// `updateStrategy.promotion`: traffic moves without asking (the default).
pub const PROMOTION_AUTOMATIC: &str = "Automatic";
/// `updateStrategy.promotion`: traffic moves when the user promotes.
pub const PROMOTION_MANUAL: &str = "Manual";

fn promotion_schema(_: &mut SchemaGenerator) -> Schema {
    json_schema!({"type": "string", "enum": PROMOTIONS, "default": PROMOTION_AUTOMATIC})
}

pub(crate) fn initial_delay_schema(_: &mut SchemaGenerator) -> Schema {
    delay_schema("initialDelaySeconds")
}

/// Core node template.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EMQXCoreTemplate {
    /// Labels and annotations for the core pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "template_metadata")]
    pub metadata: Option<ObjectMeta>,
    /// Core pod settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec: Option<EMQXCoreTemplateSpec>,
}

/// Replicant node template.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EMQXReplicantTemplate {
    /// Labels and annotations for the replicant pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "template_metadata")]
    pub metadata: Option<ObjectMeta>,
    /// Replicant pod settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec: Option<EMQXReplicantTemplateSpec>,
}

/// Core pod settings: the replicant settings plus storage.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "!(has(self.minAvailable) && has(self.maxUnavailable))",
    "message": "minAvailable cannot be set when maxUnavailable is specified. These fields are mutually exclusive in PodDisruptionBudget.",
}]))]
pub struct EMQXCoreTemplateSpec {
    /// Settings shared with replicants.
    #[serde(flatten)]
    pub pod: EMQXReplicantTemplateSpec,
    /// The PersistentVolumeClaimSpec of the data volume (named
    /// `volumeClaimTemplates` upstream, but one spec). Empty means emptyDir.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_claim_templates: Option<PersistentVolumeClaimSpec>,
}

impl EMQXCoreTemplateSpec {
    /// The claim of the data volume, if the cores persist their data. An
    /// all-empty spec is no claim: the Go operator writes
    /// `volumeClaimTemplates: {resources: {}}` back into every object it
    /// reconciles and reads it as "no persistence" (`IsZero()` in its
    /// `add_emqx_core.go`, tag 2.2.29), so it must mean emptyDir here too,
    /// not a claim without storage that the API server refuses (422).
    pub fn data_claim(&self) -> Option<&PersistentVolumeClaimSpec> {
        self.volume_claim_templates
            .as_ref()
            .filter(|claim| !is_zero_claim(claim))
    }
}

/// A claim spec that says nothing: no field set, or only empty resources.
fn is_zero_claim(claim: &PersistentVolumeClaimSpec) -> bool {
    let PersistentVolumeClaimSpec {
        access_modes,
        data_source,
        data_source_ref,
        resources,
        selector,
        storage_class_name,
        volume_attributes_class_name,
        volume_mode,
        volume_name,
    } = claim;
    let no_resources = resources.as_ref().is_none_or(|r| {
        r.limits.as_ref().is_none_or(BTreeMap::is_empty)
            && r.requests.as_ref().is_none_or(BTreeMap::is_empty)
    });
    access_modes.as_ref().is_none_or(Vec::is_empty)
        && data_source.is_none()
        && data_source_ref.is_none()
        && no_resources
        && selector.is_none()
        && storage_class_name.is_none()
        && volume_attributes_class_name.is_none()
        && volume_mode.is_none()
        && volume_name.is_none()
}

/// Pod settings of one role.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "!(has(self.minAvailable) && has(self.maxUnavailable))",
    "message": "minAvailable cannot be set when maxUnavailable is specified. These fields are mutually exclusive in PodDisruptionBudget.",
}]))]
pub struct EMQXReplicantTemplateSpec {
    /// Node selector.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<BTreeMap<String, String>>,
    /// Node name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_name: Option<String>,
    /// Affinity (core/v1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "open_object")]
    pub affinity: Option<Affinity>,
    /// Legacy misspelling of `tolerations`, still accepted.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        rename = "toleRations"
    )]
    pub tole_rations: Option<Vec<Toleration>>,
    /// Tolerations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tolerations: Option<Vec<Toleration>>,
    /// Topology spread constraints (core/v1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "open_object_list")]
    pub topology_spread_constraints: Option<Vec<TopologySpreadConstraint>>,
    /// Number of nodes of this role.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = 2), range(min = 0, max = 1000))]
    pub replicas: Option<i32>,
    /// PodDisruptionBudget `minAvailable`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "int_or_string")]
    pub min_available: Option<IntOrString>,
    /// PodDisruptionBudget `maxUnavailable`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "int_or_string")]
    pub max_unavailable: Option<IntOrString>,
    /// Container entrypoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    /// Container arguments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args: Option<Vec<String>>,
    /// Extra container ports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ports: Option<Vec<ContainerPort>>,
    /// Extra environment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<Vec<EnvVar>>,
    /// Environment from ConfigMaps/Secrets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env_from: Option<Vec<EnvFromSource>>,
    /// Container resources.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Pod security context.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "pod_security_context_schema")]
    pub pod_security_context: Option<PodSecurityContext>,
    /// EMQX container security context.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "container_security_context_schema")]
    pub container_security_context: Option<SecurityContext>,
    /// Init containers (core/v1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "open_object_list")]
    pub init_containers: Option<Vec<Container>>,
    /// Sidecar containers (core/v1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "open_object_list")]
    pub extra_containers: Option<Vec<Container>>,
    /// Extra volumes (core/v1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "open_object_list")]
    pub extra_volumes: Option<Vec<Volume>>,
    /// Extra volume mounts of the EMQX container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extra_volume_mounts: Option<Vec<VolumeMount>>,
    /// Liveness probe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "liveness_probe_schema")]
    pub liveness_probe: Option<Probe>,
    /// Readiness probe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "readiness_probe_schema")]
    pub readiness_probe: Option<Probe>,
    /// Startup probe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub startup_probe: Option<Probe>,
    /// Lifecycle hooks (core/v1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "open_object")]
    pub lifecycle: Option<Lifecycle>,
}

fn with_default(mut schema: Schema, default: serde_json::Value) -> Schema {
    schema.insert("default".into(), default);
    schema
}

pub(crate) fn pod_security_context_schema(generator: &mut SchemaGenerator) -> Schema {
    with_default(
        generator.subschema_for::<PodSecurityContext>(),
        serde_json::json!({"runAsUser": 1000, "runAsGroup": 1000, "fsGroup": 1000,
            "fsGroupChangePolicy": "Always", "supplementalGroups": [1000]}),
    )
}

pub(crate) fn container_security_context_schema(generator: &mut SchemaGenerator) -> Schema {
    with_default(
        generator.subschema_for::<SecurityContext>(),
        serde_json::json!({"runAsUser": 1000, "runAsGroup": 1000, "runAsNonRoot": true}),
    )
}

fn liveness_probe_schema(generator: &mut SchemaGenerator) -> Schema {
    with_default(
        generator.subschema_for::<Probe>(),
        serde_json::json!({"initialDelaySeconds": 60, "periodSeconds": 30, "failureThreshold": 3,
            "httpGet": {"path": "/status", "port": "dashboard"}}),
    )
}

fn readiness_probe_schema(generator: &mut SchemaGenerator) -> Schema {
    with_default(
        generator.subschema_for::<Probe>(),
        serde_json::json!({"initialDelaySeconds": 10, "periodSeconds": 5, "failureThreshold": 12,
            "httpGet": {"path": "/status", "port": "dashboard"}}),
    )
}

/// A Service the operator creates.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceTemplate {
    /// Whether the Service exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = true))]
    pub enabled: Option<bool>,
    /// Labels and annotations of the Service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "template_metadata")]
    pub metadata: Option<ObjectMeta>,
    /// The Service spec; the operator sets the selector.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec: Option<ServiceSpec>,
}

/// Observed state of the cluster.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EMQXStatus {
    /// `Initialized`, `CoreNodesProgressing`, `CoreNodesReady`,
    /// `ReplicantNodesProgressing`, `ReplicantNodesReady`, `Available`, `Ready`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conditions: Option<Vec<Condition>>,
    /// Core nodes as EMQX reports them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub core_nodes: Option<Vec<EMQXNode>>,
    /// Core set revisions and counts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub core_nodes_status: Option<EMQXNodesStatus>,
    /// Replicant nodes as EMQX reports them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicant_nodes: Option<Vec<EMQXNode>>,
    /// Replicant set revisions and counts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicant_nodes_status: Option<EMQXNodesStatus>,
    /// Running node evacuations (EMQX `global_status.evacuations`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_evacuations_status: Option<Vec<NodeEvacuationStatus>>,
}

/// Revisions and replica counts of one role.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EMQXNodesStatus {
    /// All pods of the role, every revision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i32>,
    /// Ready pods of the role.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_replicas: Option<i32>,
    /// Pod-template hash of the revision serving now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_revision: Option<String>,
    /// Pods of the current revision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_replicas: Option<i32>,
    /// Pod-template hash of the desired revision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update_revision: Option<String>,
    /// Pods of the update revision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update_replicas: Option<i32>,
    /// Hash collisions seen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collision_count: Option<i32>,
}

/// One EMQX node (snake_case fields are EMQX's own names).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct EMQXNode {
    /// UID of the owning StatefulSet/ReplicaSet.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        rename = "controllerUID"
    )]
    pub controller_uid: Option<String>,
    /// UID of the pod.
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "podUID")]
    pub pod_uid: Option<String>,
    /// Node name, `emqx@...`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// `running` / `stopped`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_status: Option<String>,
    /// Erlang/OTP release.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub otp_release: Option<String>,
    /// EMQX version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// `core` / `replicant`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// `Opensource` / `Enterprise`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edition: Option<String>,
    /// EMQX's session count (EMQX calls it `connections`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connections: Option<i64>,
    /// Live connections.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub live_connections: Option<i64>,
}

/// `EmqxEnterprise` v2beta1: the `EMQX` v2beta1 spec under the
/// `EmqxEnterprise` kind, the way v1beta4 objects move to the v2 API.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "apps.emqx.io",
    version = "v2beta1",
    kind = "EmqxEnterprise",
    root = "EmqxEnterprise",
    plural = "emqxenterprises",
    namespaced,
    status = "EMQXStatus",
    doc = "An EMQX Enterprise cluster in the v2 shape (same spec as EMQX v2beta1).",
    scale(
        spec_replicas_path = ".spec.coreTemplate.spec.replicas",
        status_replicas_path = ".status.coreNodesStatus.replicas"
    ),
    printcolumn(
        name = "Status",
        type_ = "string",
        json_path = ".status.conditions[?(@.status==\"True\")].type"
    ),
    printcolumn(
        name = "Core",
        type_ = "integer",
        json_path = ".status.coreNodesStatus.readyReplicas",
        description = "ready core nodes"
    ),
    printcolumn(
        name = "Replicant",
        type_ = "integer",
        json_path = ".status.replicantNodesStatus.readyReplicas",
        description = "ready replicant nodes"
    ),
    printcolumn(
        name = "Evacuating",
        type_ = "string",
        json_path = ".status.nodeEvacuationsStatus[0].node",
        description = "node being evacuated"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
pub struct EmqxEnterpriseSpec {
    /// The `EMQX` v2beta1 spec.
    #[serde(flatten)]
    pub emqx: EMQXSpec,
}
