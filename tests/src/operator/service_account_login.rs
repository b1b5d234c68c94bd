//! A kubeconfig for a ServiceAccount with cluster-admin rights, for a
//! component run on the host (the reconciler binary in a benchmark, a
//! controller in process) whose requests must be told apart from the
//! sandbox's own: the kubelet, the service proxy and the tests all use the
//! admin certificate, while this login's requests carry the user
//! `system:serviceaccount:<namespace>:<name>` in the audit log
//! ([`crate::SandboxOptions::audit_requests_of`]).

use std::path::PathBuf;

use anyhow::{Context, Result};
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::flowcontrol::v1::FlowSchema;
use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, RoleRef, Subject};
use kube::Api;
use kube::api::{ObjectMeta, PostParams};

use crate::Sandbox;
use crate::control_plane::kubeconfig::{self, Credentials};

/// How long the token is valid: longer than any benchmark runs.
const TOKEN_SECONDS: i64 = 6 * 3600;

/// A ServiceAccount's login.
#[derive(Debug, Clone)]
pub struct ServiceAccountLogin {
    /// The user the apiserver sees: `system:serviceaccount:<ns>:<name>`.
    pub user: String,
    /// The kubeconfig file (owner-only).
    pub kubeconfig: PathBuf,
    /// The kubeconfig document, for [`kubeconfig::client`].
    pub document: serde_json::Value,
}

/// The user name the apiserver gives ServiceAccount `namespace/name`.
pub fn service_account_user(namespace: &str, name: &str) -> String {
    format!("system:serviceaccount:{namespace}:{name}")
}

/// Creates ServiceAccount `namespace/name`, binds it to `cluster-admin`,
/// puts its Lease requests in the `leader-election` priority level as the
/// chart does for the reconciler ([`lease_flow_schema`]), and writes a
/// kubeconfig with a token for it into the sandbox's state directory.
pub async fn cluster_admin_login(
    sandbox: &Sandbox,
    namespace: &str,
    name: &str,
) -> Result<ServiceAccountLogin> {
    let client = sandbox.client();
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), namespace);
    let account = ServiceAccount {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            ..ObjectMeta::default()
        },
        ..ServiceAccount::default()
    };
    accounts
        .create(&PostParams::default(), &account)
        .await
        .with_context(|| format!("creating ServiceAccount {namespace}/{name}"))?;
    let binding = ClusterRoleBinding {
        metadata: ObjectMeta {
            name: Some(format!("{namespace}-{name}-cluster-admin")),
            ..ObjectMeta::default()
        },
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "ClusterRole".into(),
            name: "cluster-admin".into(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".into(),
            name: name.to_owned(),
            namespace: Some(namespace.to_owned()),
            ..Subject::default()
        }]),
    };
    Api::<ClusterRoleBinding>::all(client.clone())
        .create(&PostParams::default(), &binding)
        .await
        .with_context(|| format!("binding {namespace}/{name} to cluster-admin"))?;
    Api::<FlowSchema>::all(client.clone())
        .create(&PostParams::default(), &lease_flow_schema(namespace, name)?)
        .await
        .with_context(|| format!("FlowSchema for the Leases of {namespace}/{name}"))?;
    let request = TokenRequest {
        spec: TokenRequestSpec {
            audiences: vec![crate::control_plane::ISSUER.to_string()],
            expiration_seconds: Some(TOKEN_SECONDS),
            bound_object_ref: None,
        },
        ..TokenRequest::default()
    };
    let token = accounts
        .create_token_request(name, &PostParams::default(), &request)
        .await
        .with_context(|| format!("TokenRequest for ServiceAccount {namespace}/{name}"))?
        .status
        .map(|s| s.token)
        .context("TokenRequest answered without a token")?;
    let document = kubeconfig::document(
        &sandbox.server(),
        &sandbox.ca_pem(),
        name,
        &Credentials::Token(token),
        namespace,
    );
    let dir = sandbox
        .state_dir()
        .context("the sandbox keeps no state directory")?;
    let path = dir.join(format!("{namespace}-{name}.kubeconfig"));
    kubeconfig::write(&path, &document)?;
    Ok(ServiceAccountLogin {
        user: service_account_user(namespace, name),
        kubeconfig: path,
        document,
    })
}

/// The FlowSchema of `charts/emqx-operator/templates/reconciler/flowschema.yaml`
/// for ServiceAccount `namespace/name` (the chart suite checks the chart's
/// own in the sandbox): its Lease requests are served in the apiserver's
/// `leader-election` priority level, not queued behind its other requests.
pub fn lease_flow_schema(namespace: &str, name: &str) -> Result<FlowSchema> {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "flowcontrol.apiserver.k8s.io/v1",
        "kind": "FlowSchema",
        "metadata": {"name": format!("{namespace}-{name}-lease")},
        "spec": {
            "priorityLevelConfiguration": {"name": "leader-election"},
            "matchingPrecedence": 250,
            "distinguisherMethod": {"type": "ByUser"},
            "rules": [{
                "subjects": [{
                    "kind": "ServiceAccount",
                    "serviceAccount": {"name": name, "namespace": namespace},
                }],
                "resourceRules": [{
                    "apiGroups": ["coordination.k8s.io"],
                    "resources": ["leases"],
                    "verbs": ["get", "create", "update"],
                    "namespaces": [namespace],
                }],
            }],
        },
    }))
    .context("the Lease FlowSchema")
}
