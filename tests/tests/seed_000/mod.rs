//! Seed 000's v1beta4 `EmqxEnterprise` (EMQX 4.4), for the end-to-end tests
//! that run it: the manifest, what its status says, and creating it until
//! it runs.

#![allow(dead_code)] // each test crate uses a different subset

use std::collections::BTreeSet;
use std::time::Duration;

use emqx_crd::v1beta4::{Condition, EmqxEnterprise};
use emqx_crd::v2beta1;
use kube::api::PostParams;
use kube::{Api, Client};
use sandbox::operator::webhook_process::WebhookProcess;
use sandbox::operator::{InProcessReconciler, install_crds};
use sandbox::{EmqxHook, Sandbox, SandboxOptions};
use serde_json::{Value, json};

use crate::support::wait_for;

/// The object's name in seed 000.
pub const NAME: &str = "emqx-ee";

/// Seed 000's manifest as the page shows it, in the default namespace,
/// with a readiness probe on the 4.4 management port that answers within a
/// second (the defaults wait 10 s before the first probe), and `image`
/// (repository, version) instead of the seed's when given.
pub fn manifest(image: Option<(&str, &str)>) -> Value {
    let text = include_str!("../../../shared/tests/seeds/seed000-emqxenterprise-v1beta4.yaml");
    let mut object: Value = serde_saphyr::from_str(text).expect("seed 000 manifest");
    let mut container = json!({
        "readinessProbe": {"httpGet": {"path": "/status", "port": 8081}, "periodSeconds": 1, "failureThreshold": 3}
    });
    if let Some((repository, version)) = image {
        container["image"] = json!({"repository": repository, "version": version});
    }
    json_patch::merge(
        &mut object,
        &json!({
            "metadata": {"namespace": "default"},
            "spec": {"template": {"spec": {"emqxContainer": container}}}
        }),
    );
    object
}

/// A sandbox with EMQX pods played by `hook`, the CRDs, the real
/// `emqx-webhook` converting v1beta4 ↔ v2beta1, and the reconciler (in
/// process) for `EmqxEnterprise` in the default namespace.
pub struct Stage {
    pub hook: std::sync::Arc<EmqxHook>,
    pub sandbox: Sandbox,
    pub webhook: WebhookProcess,
    pub reconciler: InProcessReconciler,
    pub client: Client,
    pub api: Api<EmqxEnterprise>,
}

impl Stage {
    pub async fn start() -> Stage {
        let hook = EmqxHook::new();
        let sandbox = Sandbox::start(SandboxOptions::default().hook(hook.clone()))
            .await
            .expect("sandbox starts");
        let client = sandbox.client();
        install_crds(&client).await.expect("CRDs installed");
        let webhook = WebhookProcess::start(&sandbox)
            .await
            .expect("emqx-webhook runs and is registered");
        let reconciler =
            InProcessReconciler::start_kind::<v2beta1::EmqxEnterprise>(client.clone(), "default");
        let api = Api::namespaced(client.clone(), "default");
        Stage {
            hook,
            sandbox,
            webhook,
            reconciler,
            client,
            api,
        }
    }
}

/// The v1beta4 condition of this type, if the status has it.
pub fn condition<'a>(e: &'a EmqxEnterprise, type_: &str) -> Option<&'a Condition> {
    e.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)
}

/// `Running=True`, as the Go operator sets it.
pub fn is_running(e: &EmqxEnterprise) -> bool {
    condition(e, "Running").is_some_and(|c| c.status == "True")
}

/// The nodes `.status.emqxNodes` lists as `Running`. (Removed 4.4 nodes
/// stay listed as `Stopped`: /api/v4 has no force_leave.)
pub fn running_nodes(e: &EmqxEnterprise) -> BTreeSet<String> {
    e.status
        .as_ref()
        .and_then(|s| s.emqx_nodes.as_ref())
        .into_iter()
        .flatten()
        .filter(|n| n.node_status.as_deref() == Some("Running"))
        .filter_map(|n| n.node.clone())
        .collect()
}

/// `.status.currentStatefulSetVersion`.
pub fn current_version(e: &EmqxEnterprise) -> Option<String> {
    e.status.as_ref()?.current_stateful_set_version.clone()
}

/// Creates `manifest` (retrying while the apiserver takes up a new webhook
/// configuration) and waits until it runs with three nodes; `what` names
/// the wait in a timeout's message.
pub async fn create_running(
    api: &Api<EmqxEnterprise>,
    manifest: Value,
    what: &str,
) -> EmqxEnterprise {
    let object: EmqxEnterprise = serde_json::from_value(manifest).expect("EmqxEnterprise");
    wait_for(
        "the v1beta4 object created",
        Duration::from_secs(30),
        || {
            let (api, object) = (api.clone(), object.clone());
            async move {
                api.create(&PostParams::default(), &object)
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            }
        },
    )
    .await;
    // kubectl get emqxenterprise emqx-ee -o json | jq ".status.emqxNodes"
    wait_for(what, Duration::from_secs(150), || {
        let api = api.clone();
        async move {
            let e = api.get(NAME).await.map_err(|e| e.to_string())?;
            if is_running(&e) && running_nodes(&e).len() == 3 {
                Ok(e)
            } else {
                Err(format!("{:?}", e.status))
            }
        }
    })
    .await
}
