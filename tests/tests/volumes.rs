//! A pod's Secret, ConfigMap, downward-API and projected ServiceAccount token
//! volumes are materialised for its container, env references resolve, and a
//! changed ConfigMap reaches the running container's files without a restart.

#![allow(clippy::panic)]

mod support;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use sandbox::node::pod_env::image_repository;
use sandbox::{PodContext, PodHook, RunningPod, Sandbox, SandboxOptions};
use serde_json::json;
use support::{is_ready, wait_for};

/// The env and the mounts (mountPath → host directory) a container was given.
type Handed = (BTreeMap<String, String>, BTreeMap<String, PathBuf>);

/// Records what the kubelet hands to the container.
#[derive(Default)]
struct Recorder(Arc<Mutex<Option<Handed>>>);

struct Idle;

#[async_trait::async_trait]
impl RunningPod for Idle {
    async fn stop(self: Box<Self>, _grace: Duration) {}
}

#[async_trait::async_trait]
impl PodHook for Recorder {
    fn handles(&self, image: &str) -> bool {
        image_repository(image) == "test/recorder"
    }
    async fn start(&self, ctx: PodContext) -> anyhow::Result<Box<dyn RunningPod>> {
        *self.0.lock().map_err(|_| anyhow::anyhow!("poisoned"))? = Some((ctx.env, ctx.volumes));
        Ok(Box::new(Idle))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn volumes_and_env_are_materialised_and_refreshed() {
    support::init_tracing();
    let seen = Arc::new(Mutex::new(None));
    let sandbox = Sandbox::start(SandboxOptions::default().hook(Arc::new(Recorder(seen.clone()))))
        .await
        .expect("sandbox starts");
    let client = sandbox.client();
    let pp = PostParams::default();
    let cm: ConfigMap = serde_json::from_value(
        json!({"metadata": {"name": "conf"}, "data": {"app.conf": "v1", "mode": "fast"}}),
    )
    .expect("cm");
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    config_maps.create(&pp, &cm).await.expect("cm");
    let secret: Secret = serde_json::from_value(
        json!({"metadata": {"name": "tls"}, "stringData": {"tls.crt": "CERT", "tls.key": "KEY"}}),
    )
    .expect("secret");
    Api::<Secret>::namespaced(client.clone(), "default")
        .create(&pp, &secret)
        .await
        .expect("secret");
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "vols", "namespace": "default", "labels": {"tier": "x"}},
        "spec": {
            "containers": [{
                "name": "c", "image": "test/recorder:1",
                "env": [
                    {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "conf", "key": "mode"}}},
                    {"name": "CERT_FILE", "value": "/etc/tls/server.crt"}
                ],
                "volumeMounts": [
                    {"name": "conf", "mountPath": "/etc/app"},
                    {"name": "tls", "mountPath": "/etc/tls"},
                    {"name": "info", "mountPath": "/etc/podinfo"}
                ]
            }],
            "volumes": [
                {"name": "conf", "configMap": {"name": "conf"}},
                {"name": "tls", "secret": {"secretName": "tls", "items": [{"key": "tls.crt", "path": "server.crt"}]}},
                {"name": "info", "downwardAPI": {"items": [{"path": "labels-tier", "fieldRef": {"fieldPath": "metadata.labels['tier']"}}]}}
            ]
        }
    }))
    .expect("pod");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    pods.create(&pp, &pod).await.expect("pod");
    wait_for("the pod Ready", Duration::from_secs(60), || async {
        let p = pods.get("vols").await.map_err(|e| e.to_string())?;
        if is_ready(&p) {
            Ok(())
        } else {
            Err("not ready".into())
        }
    })
    .await;
    let (env, volumes) = seen.lock().expect("lock").clone().expect("hook started");
    assert_eq!(env["MODE"], "fast");
    let read = |mount: &str, file: &str| {
        std::fs::read_to_string(volumes[mount].join(file))
            .unwrap_or_else(|e| panic!("{mount}/{file}: {e}"))
    };
    assert_eq!(read("/etc/app", "app.conf"), "v1");
    assert_eq!(read("/etc/tls", "server.crt"), "CERT");
    assert!(
        !volumes["/etc/tls"].join("tls.key").exists(),
        "items select keys"
    );
    assert_eq!(read("/etc/podinfo", "labels-tier"), "x");
    // The admission plugin's kube-api-access volume: a real token of the pod's ServiceAccount.
    let token = read("/var/run/secrets/kubernetes.io/serviceaccount", "token");
    assert_eq!(token.split('.').count(), 3, "a JWT");
    assert!(
        read("/var/run/secrets/kubernetes.io/serviceaccount", "ca.crt")
            .contains("BEGIN CERTIFICATE")
    );
    assert_eq!(
        read("/var/run/secrets/kubernetes.io/serviceaccount", "namespace"),
        "default"
    );

    let patch = json!({"data": {"app.conf": "v2"}});
    config_maps
        .patch("conf", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("update cm");
    let path = volumes["/etc/app"].join("app.conf");
    wait_for(
        "the changed ConfigMap in the container's file",
        Duration::from_secs(40),
        || async {
            let now = std::fs::read_to_string(&path).map_err(|e| e.to_string())?;
            if now == "v2" { Ok(()) } else { Err(now) }
        },
    )
    .await;
    sandbox.stop().await.expect("stop");
}
