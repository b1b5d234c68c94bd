//! `apps.emqx.io/v2alpha2` `EMQX`: the version seed 001 documents. Upstream
//! renamed it to v2beta1 before release; we serve it so manifests copied from
//! that page apply. It differs from v2beta1 in: `config.mode` is lower-case
//! (`merge`/`replace`), bootstrap keys are inline only (secret 3–32 chars), the
//! Service templates are whole core/v1 Services without `enabled`, there is no
//! `revisionHistoryLimit`, and the status spells `nodEvacuationsStatus` (sic)
//! and reports each node's `uptime`. Pod templates reuse the v2beta1 types.

// The kube derive's printcolumn(...) lists repeat `type_ = ...` by design.
#![allow(clippy::duplicated_attributes)]

use crate::evacuation::NodeEvacuationStatus;
use crate::schema::{open_object, template_metadata};
use crate::v2beta1::{EMQXCoreTemplate, EMQXNodesStatus, EMQXReplicantTemplate, UpdateStrategy};
use k8s_openapi::api::core::v1::{LocalObjectReference, ServiceSpec, ServiceStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, ObjectMeta};
use kube::CustomResource;
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};

/// Desired state of an EMQX cluster, v2alpha2 shape.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "apps.emqx.io",
    version = "v2alpha2",
    kind = "EMQX",
    plural = "emqxes",
    shortname = "emqx",
    namespaced,
    status = "EMQXStatus",
    deprecated = "apps.emqx.io/v2alpha2 EMQX is deprecated; use apps.emqx.io/v2beta1",
    doc = "An EMQX cluster (v2alpha2, as documented by the upstream blue-green guide).",
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
        json_path = ".status.nodEvacuationsStatus[0].node",
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
    /// EMQX image.
    pub image: String,
    /// `Always`, `Never` or `IfNotPresent`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::v2beta1::pull_policy_schema")]
    pub image_pull_policy: Option<String>,
    /// Secrets for pulling the image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_secrets: Option<Vec<LocalObjectReference>>,
    /// ServiceAccount of the EMQX pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_name: Option<String>,
    /// API keys EMQX creates at boot.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        rename = "bootstrapAPIKeys"
    )]
    #[schemars(length(max = crate::limits::MAX_BOOTSTRAP_KEYS))]
    pub bootstrap_api_keys: Option<Vec<BootstrapAPIKey>>,
    /// EMQX configuration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<Config>,
    /// Kubernetes cluster domain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = "cluster.local"))]
    pub cluster_domain: Option<String>,
    /// Blue-green update strategy (same shape as v2beta1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "update_strategy_schema")]
    pub update_strategy: Option<UpdateStrategy>,
    /// The dashboard Service (a whole core/v1 Service).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "service_schema")]
    pub dashboard_service_template: Option<Service>,
    /// The listeners Service (a whole core/v1 Service).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "service_schema")]
    pub listeners_service_template: Option<Service>,
    /// Core nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "core_template_schema")]
    pub core_template: Option<EMQXCoreTemplate>,
    /// Replicant nodes; absent means core-only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicant_template: Option<EMQXReplicantTemplate>,
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
        serde_json::json!({"spec": {"replicas": 2}}),
    );
    schema
}

/// A core/v1 Service as v2alpha2 embeds it. Typed here (not k8s-openapi's
/// `Service`) so the schema stays small and `apiVersion`/`kind` stay optional.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Service {
    /// Usually `v1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    /// Usually `Service`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Labels and annotations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "template_metadata")]
    pub metadata: Option<ObjectMeta>,
    /// The Service spec.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec: Option<ServiceSpec>,
    /// Ignored; kept for compatibility.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "open_object")]
    pub status: Option<ServiceStatus>,
}

fn service_schema(generator: &mut SchemaGenerator) -> Schema {
    Service::json_schema(generator)
}

/// An inline bootstrap API key.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct BootstrapAPIKey {
    /// Key name.
    #[schemars(regex(pattern = r"^[a-zA-Z\d\-_]+$"), length(max = 128))]
    pub key: String,
    /// Key secret, 3 to 32 characters.
    #[schemars(length(min = 3, max = 32))]
    pub secret: String,
}

/// EMQX configuration (lower-case mode).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Config {
    /// `merge` or `replace`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "config_mode_schema")]
    pub mode: Option<String>,
    /// HOCON text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
}

fn config_mode_schema(_: &mut SchemaGenerator) -> Schema {
    json_schema!({"type": "string", "enum": ["merge", "replace"], "default": "merge"})
}

/// Observed state, v2alpha2 spelling.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EMQXStatus {
    /// Conditions (`metav1.Condition`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conditions: Option<Vec<Condition>>,
    /// Core nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub core_nodes: Option<Vec<EMQXNode>>,
    /// Core revisions and counts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub core_nodes_status: Option<EMQXNodesStatus>,
    /// Replicant nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicant_nodes: Option<Vec<EMQXNode>>,
    /// Replicant revisions and counts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicant_nodes_status: Option<EMQXNodesStatus>,
    /// Node evacuations; the misspelling is v2alpha2's own (seed 001).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        rename = "nodEvacuationsStatus"
    )]
    pub nod_evacuations_status: Option<Vec<NodeEvacuationStatus>>,
}

/// One EMQX node, v2alpha2 (adds `uptime`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct EMQXNode {
    /// UID of the owning set.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        rename = "controllerUID"
    )]
    pub controller_uid: Option<String>,
    /// UID of the pod.
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "podUID")]
    pub pod_uid: Option<String>,
    /// Node name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// Node status.
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
    /// Uptime in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uptime: Option<i64>,
    /// Sessions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connections: Option<i64>,
    /// Live connections.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub live_connections: Option<i64>,
}
