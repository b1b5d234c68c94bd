//! EMQX pods in the real control plane: the reconciler's own rendering of
//! seed 003's cluster runs as simulated EMQX nodes through the kubelet hook,
//! the pods become Ready through their readiness probe, and the nodes find
//! each other through the headless Service name, as the real container does.

mod support;

use std::time::Duration;

use emqx_crd::v2beta1::EMQX;
use emqx_reconciler::render::{self, Cluster};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret, Service};
use kube::Api;
use kube::api::{ListParams, PostParams};
use sandbox::{EmqxHook, Sandbox, SandboxOptions};
use serde_json::{Value, json};
use support::{is_ready, pod_ip, wait_for};

const OPERATOR_SECRET: &str = "s3cr3t0perat0r";

fn seed_003() -> EMQX {
    let object = sandbox::seed_003::seed_003_manifest().expect("seed 003");
    let defaulted = emqx_crd::dynamic::default_object(&object).expect("defaults");
    serde_json::from_value(defaulted).expect("EMQX")
}

/// Owned objects without owner references: the test has no EMQX object, and
/// the garbage collector would delete orphans whose owner does not exist.
fn unowned<T: serde::Serialize + serde::de::DeserializeOwned>(object: T) -> T {
    let mut value = serde_json::to_value(object).expect("serialisable");
    if let Some(meta) = value.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("ownerReferences");
    }
    serde_json::from_value(value).expect("same type")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rendered_core_pods_form_one_emqx_cluster() {
    support::init_tracing();
    let hook = EmqxHook::new();
    let sandbox = Sandbox::start(SandboxOptions::default().hook(hook.clone()))
        .await
        .expect("sandbox starts");
    let client = sandbox.client();
    let emqx = seed_003();
    let cluster = Cluster {
        api_version: "apps.emqx.io/v2beta1",
        kind: "EMQX",
        name: "emqx-ee",
        namespace: "default",
        uid: "00000000-0000-4000-8000-000000000003",
        spec: &emqx.spec,
    };
    let pp = PostParams::default();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "default");
    for (name, key, value) in [
        (
            "emqx-ee-bootstrap-api-key",
            "bootstrap_api_key",
            format!("emqx-operator-controller:{OPERATOR_SECRET}"),
        ),
        ("emqx-ee-node-cookie", "node_cookie", "cookie".to_owned()),
    ] {
        let secret: Secret = serde_json::from_value(json!({
            "metadata": {"name": name}, "stringData": {key: value}
        }))
        .expect("secret");
        secrets.create(&pp, &secret).await.expect("create secret");
    }
    Api::<ConfigMap>::namespaced(client.clone(), "default")
        .create(&pp, &unowned(render::config_map(&cluster)))
        .await
        .expect("configmap");
    Api::<Service>::namespaced(client.clone(), "default")
        .create(&pp, &unowned(render::headless_service(&cluster)))
        .await
        .expect("headless service");
    Api::<StatefulSet>::namespaced(client.clone(), "default")
        .create(&pp, &unowned(render::core_set(&cluster, "rev1", 3)))
        .await
        .expect("core statefulset");

    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let ready = wait_for("3 Ready EMQX core pods", Duration::from_secs(90), || {
        let pods = pods.clone();
        async move {
            let list = pods
                .list(&ListParams::default().labels("apps.emqx.io/instance=emqx-ee"))
                .await
                .map_err(|e| e.to_string())?;
            let ready: Vec<Pod> = list.items.into_iter().filter(is_ready).collect();
            if ready.len() == 3 {
                Ok(ready)
            } else {
                Err(format!("{} ready", ready.len()))
            }
        }
    })
    .await;

    // The operator's view: GET /api/v5/nodes on a pod, with its API key.
    let ip = pod_ip(&ready[0]).expect("pod IP");
    let http = reqwest::Client::new();
    let nodes: Value = wait_for("3 running members", Duration::from_secs(30), || {
        let http = http.clone();
        async move {
            let nodes: Value = http
                .get(format!("http://{ip}:18083/api/v5/nodes"))
                .basic_auth("emqx-operator-controller", Some(OPERATOR_SECRET))
                .send()
                .await
                .map_err(|e| e.to_string())?
                .json()
                .await
                .map_err(|e| e.to_string())?;
            let running = nodes.as_array().map_or(0, |a| {
                a.iter().filter(|n| n["node_status"] == "running").count()
            });
            if running == 3 {
                Ok(nodes)
            } else {
                Err(nodes.to_string())
            }
        }
    })
    .await;
    let mut names: Vec<String> = nodes
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|n| n["node"].as_str().map(str::to_owned))
        .collect();
    names.sort();
    let expected: Vec<String> = (0..3)
        .map(|i| {
            render::node_name(
                &cluster,
                emqx_crd::names::DbRole::Core,
                &format!("emqx-ee-core-rev1-{i}"),
                None,
            )
            .expect("core node name")
        })
        .collect();
    assert_eq!(
        names, expected,
        "node names are what the reconciler derives"
    );
    assert_eq!(hook.nodes().len(), 3);
    // Unauthenticated calls are refused as EMQX refuses them.
    let status = http
        .get(format!("http://{ip}:18083/api/v5/nodes"))
        .send()
        .await
        .expect("answer")
        .status();
    assert_eq!(status.as_u16(), 401);
    sandbox.stop().await.expect("sandbox stops");
}
