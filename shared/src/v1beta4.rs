//! `apps.emqx.io/v1beta4` `EmqxEnterprise` (storage version of
//! `emqxenterprises`): EMQX Enterprise 4.4 clusters, field for field as the Go
//! operator defines them, plus two deliberate changes (see API-DIFFERENCES.md):
//! `blueGreenUpdate` is defaulted, so objects upgrade blue-green unless told
//! otherwise, and `emqxContainer.name` exists (seed 000 patches it).

// The kube derive's printcolumn(...) lists repeat `type_ = ...` by design.
#![allow(clippy::duplicated_attributes)]

use crate::evacuation::{EvacuationStrategy, NodeEvacuationStatus, evacuation_strategy_schema};
use crate::limits::MAX_BOOTSTRAP_KEYS;
use crate::schema::{open_object, open_object_list, template_metadata};
use crate::v2beta1::{
    self, container_security_context_schema, initial_delay_schema, pod_security_context_schema,
    pull_policy_schema,
};
use k8s_openapi::api::core::v1::{
    Affinity, Container, ContainerPort, EnvFromSource, EnvVar, EphemeralContainer, Lifecycle,
    LocalObjectReference, PersistentVolumeClaimSpec, PodSecurityContext, Probe,
    ResourceRequirements, SecurityContext, ServiceSpec, Toleration, Volume, VolumeDevice,
    VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::CustomResource;
use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Desired state of an EMQX Enterprise 4.4 cluster.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "apps.emqx.io",
    version = "v1beta4",
    kind = "EmqxEnterprise",
    plural = "emqxenterprises",
    namespaced,
    status = "EmqxEnterpriseStatus",
    doc = "An EMQX Enterprise 4.4 cluster (v1beta4).",
    scale(
        spec_replicas_path = ".spec.replicas",
        status_replicas_path = ".status.replicas"
    ),
    printcolumn(
        name = "Status",
        type_ = "string",
        json_path = ".status.conditions[?(@.status==\"True\")].type"
    ),
    printcolumn(
        name = "Ready",
        type_ = "integer",
        json_path = ".status.readyReplicas",
        description = "ready nodes"
    ),
    printcolumn(
        name = "Evacuating",
        type_ = "string",
        json_path = ".status.blueGreenUpdateStatus.evacuationsStatus[0].node",
        description = "node being evacuated"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct EmqxEnterpriseSpec {
    /// Number of EMQX nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = 3), range(min = 0, max = 1000))]
    pub replicas: Option<i32>,
    /// Kubernetes cluster domain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = "cluster.local"))]
    pub cluster_domain: Option<String>,
    /// EMQX Enterprise license.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub license: Option<License>,
    /// Data volume claim template (`<name>-data`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persistent: Option<PersistentVolumeClaimTemplate>,
    /// Blue-green upgrade settings. Defaulted (unlike upstream), so every
    /// object upgrades blue-green with node evacuation.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        rename = "blueGreenUpdate"
    )]
    #[schemars(schema_with = "blue_green_update_schema")]
    pub blue_green_update: Option<BlueGreenUpdate>,
    /// Pod template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<EmqxTemplate>,
    /// The Service in front of the nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_template: Option<ServiceTemplate>,
}

fn blue_green_update_schema(generator: &mut SchemaGenerator) -> Schema {
    let mut schema = BlueGreenUpdate::json_schema(generator);
    schema.insert("default".into(), serde_json::json!({}));
    schema
}

/// License, given inline or by Secret.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct License {
    /// License file, base64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("format" = "byte"))]
    pub data: Option<String>,
    /// License file, plain text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub string_data: Option<String>,
    /// Secret holding the license.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_name: Option<String>,
}

/// A PersistentVolumeClaim template.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PersistentVolumeClaimTemplate {
    /// Labels and annotations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "template_metadata")]
    pub metadata: Option<ObjectMeta>,
    /// The claim spec.
    pub spec: PersistentVolumeClaimSpec,
}

/// Blue-green upgrade settings.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BlueGreenUpdate {
    /// Seconds between the new nodes being ready and the first evacuation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "initial_delay_schema")]
    pub initial_delay_seconds: Option<i32>,
    /// How old nodes are evacuated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "evacuation_strategy_schema")]
    pub evacuation_strategy: Option<EvacuationStrategy>,
}

/// Pod template.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct EmqxTemplate {
    /// Labels and annotations of the pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "template_metadata")]
    pub metadata: Option<ObjectMeta>,
    /// Pod settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec: Option<EmqxTemplateSpec>,
}

/// Pod settings.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EmqxTemplateSpec {
    /// ServiceAccount of the pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_name: Option<String>,
    /// Config reloader sidecar image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = "emqx/emqx-operator-reloader:0.0.2"))]
    pub reloader_image: Option<String>,
    /// Secrets for pulling images.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_secrets: Option<Vec<LocalObjectReference>>,
    /// The EMQX container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub emqx_container: Option<EmqxContainer>,
    /// Sidecars (core/v1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "open_object_list")]
    pub extra_containers: Option<Vec<Container>>,
    /// Init containers (core/v1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "open_object_list")]
    pub init_containers: Option<Vec<Container>>,
    /// Ephemeral containers (core/v1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "open_object_list")]
    pub ephemeral_containers: Option<Vec<EphemeralContainer>>,
    /// Volumes (core/v1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "open_object_list")]
    pub volumes: Option<Vec<Volume>>,
    /// Pod security context.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "pod_security_context_schema")]
    pub pod_security_context: Option<PodSecurityContext>,
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
    /// Tolerations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tolerations: Option<Vec<Toleration>>,
}

/// The EMQX container.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "!has(oldSelf.bootstrapAPIKeys) || (has(self.bootstrapAPIKeys) && self.bootstrapAPIKeys == oldSelf.bootstrapAPIKeys)",
    "message": "bootstrap APIKey cannot be updated",
    "fieldPath": ".bootstrapAPIKeys",
}]))]
pub struct EmqxContainer {
    /// Container name (default `emqx`). Not in the Go operator's schema, where
    /// the seed's `kubectl patch` of it was pruned; kept so the patch works.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The EMQX image, in parts.
    pub image: EmqxImage,
    /// Entrypoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    /// Arguments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args: Option<Vec<String>>,
    /// Working directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    /// Container ports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ports: Option<Vec<ContainerPort>>,
    /// Environment from ConfigMaps/Secrets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env_from: Option<Vec<EnvFromSource>>,
    /// Environment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<Vec<EnvVar>>,
    /// Resources.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Volume mounts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_mounts: Option<Vec<VolumeMount>>,
    /// Volume devices.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_devices: Option<Vec<VolumeDevice>>,
    /// Liveness probe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub liveness_probe: Option<Probe>,
    /// Readiness probe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub readiness_probe: Option<Probe>,
    /// Startup probe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub startup_probe: Option<Probe>,
    /// Lifecycle hooks (core/v1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "open_object")]
    pub lifecycle: Option<Lifecycle>,
    /// Termination message path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub termination_message_path: Option<String>,
    /// Termination message policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub termination_message_policy: Option<String>,
    /// Security context.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "container_security_context_schema")]
    pub security_context: Option<SecurityContext>,
    /// Keep stdin open.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdin: Option<bool>,
    /// Close stdin after the first attach.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdin_once: Option<bool>,
    /// Allocate a TTY.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tty: Option<bool>,
    /// EMQX 4 configuration; each key becomes `EMQX_<KEY>`.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        rename = "emqxConfig"
    )]
    pub emqx_config: Option<BTreeMap<String, String>>,
    /// EMQX 4 ACL rules.
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "emqxACL")]
    pub emqx_acl: Option<Vec<String>>,
    /// API keys created at boot.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        rename = "bootstrapAPIKeys"
    )]
    #[schemars(length(max = MAX_BOOTSTRAP_KEYS))]
    pub bootstrap_api_keys: Option<Vec<BootstrapAPIKey>>,
}

/// The image, in the parts v1beta4 spells out:
/// `registry/repository:prefix+version+suffix`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EmqxImage {
    /// Registry host, e.g. `docker.io`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registry: Option<String>,
    /// Repository, e.g. `emqx/emqx-ee`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = "emqx/emqx-ee"))]
    pub repository: Option<String>,
    /// EMQX version, e.g. `4.4.14`.
    #[schemars(length(min = 1, max = 128))]
    pub version: String,
    /// Tag prefix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// Tag suffix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suffix: Option<String>,
    /// `Always`, `Never` or `IfNotPresent`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "pull_policy_default_schema")]
    pub pull_policy: Option<String>,
}

impl EmqxImage {
    /// The image as one reference, as the v2beta1 object it is served as
    /// carries it (`convert.rs`) and as the renderer sees it.
    pub fn reference(&self) -> String {
        crate::image::join_image(&crate::image::ImageParts {
            registry: self.registry.clone(),
            repository: self.repository.clone(),
            prefix: self.prefix.clone(),
            version: self.version.clone(),
            suffix: self.suffix.clone(),
        })
    }
}

fn pull_policy_default_schema(generator: &mut SchemaGenerator) -> Schema {
    let mut schema = pull_policy_schema(generator);
    schema.insert("default".into(), serde_json::json!("IfNotPresent"));
    schema
}

/// An inline bootstrap API key (EMQX 4).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct BootstrapAPIKey {
    /// Key name.
    #[schemars(regex(pattern = r"^[a-zA-Z\d_]+$"), length(max = 128))]
    pub key: String,
    /// Key secret, 3 to 32 characters.
    #[schemars(length(min = 3, max = 32))]
    pub secret: String,
}

/// The Service template.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ServiceTemplate {
    /// Labels and annotations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "template_metadata")]
    pub metadata: Option<ObjectMeta>,
    /// The Service spec.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec: Option<ServiceSpec>,
}

/// Observed state of a v1beta4 cluster.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EmqxEnterpriseStatus {
    /// `Running`, `BlueGreenUpdating` (v1beta4's own condition shape).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conditions: Option<Vec<Condition>>,
    /// Nodes as EMQX's `api/v4/nodes` reports them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub emqx_nodes: Option<Vec<EmqxNode>>,
    /// Pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i32>,
    /// Ready pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_replicas: Option<i32>,
    /// Revision of the serving StatefulSet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_stateful_set_version: Option<String>,
    /// Progress of a running blue-green upgrade.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blue_green_update_status: Option<BlueGreenUpdateStatus>,
    /// Not upstream: the v2 status fields, so status written through
    /// `EmqxEnterprise` v2beta1 survives v1beta4 storage (status writes cannot
    /// carry the conversion-data annotation). Core nodes, v2 shape.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub core_nodes: Option<Vec<v2beta1::EMQXNode>>,
    /// Not upstream: core revisions and counts (v2 shape).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub core_nodes_status: Option<v2beta1::EMQXNodesStatus>,
    /// Not upstream: replicant nodes (v2 shape).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicant_nodes: Option<Vec<v2beta1::EMQXNode>>,
    /// Not upstream: replicant revisions and counts (v2 shape).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicant_nodes_status: Option<v2beta1::EMQXNodesStatus>,
}

/// v1beta4's condition (not `metav1.Condition`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// `Running`, `BlueGreenUpdating`, ...
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False`, `Unknown`.
    pub status: String,
    /// Last update.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_update_time: Option<Time>,
    /// Last status change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<Time>,
    /// CamelCase reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Human-readable message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Not upstream: the generation the condition was computed for (kept so
    /// v2 conditions survive v1beta4 storage).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// One node as EMQX 4 reports it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct EmqxNode {
    /// Node name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// `Running` / `Stopped`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_status: Option<String>,
    /// Erlang/OTP release.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub otp_release: Option<String>,
    /// EMQX version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Connections.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connections: Option<i64>,
}

/// Progress of a blue-green upgrade.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BlueGreenUpdateStatus {
    /// The old StatefulSet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin_stateful_set: Option<String>,
    /// The new StatefulSet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_stateful_set: Option<String>,
    /// When the initial delay started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Time>,
    /// EMQX's `global_status.evacuations`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evacuations_status: Option<Vec<NodeEvacuationStatus>>,
}
