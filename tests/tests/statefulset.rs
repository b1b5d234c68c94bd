//! A StatefulSet of 3 with a readiness probe and a readiness gate becomes 3
//! Ready pods with distinct loopback addresses; a deleted pod is replaced.

mod support;

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use sandbox::node::echo_hook::EchoHook;
use sandbox::{Sandbox, SandboxOptions};
use serde_json::json;
use support::{is_ready, pod_condition, pod_ip, wait_for};

const GATE: &str = "sandbox.test/gate";

fn statefulset() -> StatefulSet {
    serde_json::from_value(json!({
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {
            "replicas": 3,
            "serviceName": "web",
            "podManagementPolicy": "Parallel",
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "readinessGates": [{"conditionType": GATE}],
                    "containers": [{
                        "name": "echo",
                        "image": "sandbox/echo:1",
                        "ports": [{"name": "http", "containerPort": 8080}],
                        "readinessProbe": {"httpGet": {"port": "http", "path": "/"}, "periodSeconds": 1, "failureThreshold": 1}
                    }]
                }
            }
        }
    }))
    .expect("statefulset")
}

async fn open_gates(pods: &Api<Pod>) {
    for pod in pods
        .list(&ListParams::default().labels("app=web"))
        .await
        .expect("list")
        .items
    {
        if pod_condition(&pod, GATE) != "True" && pod_condition(&pod, "ContainersReady") == "True" {
            let patch = json!({"status": {"conditions": [{"type": GATE, "status": "True"}]}});
            pods.patch_status(
                &pod.name_any(),
                &PatchParams::default(),
                &Patch::Strategic(&patch),
            )
            .await
            .expect("open gate");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statefulset_pods_become_ready_with_distinct_addresses_and_are_replaced() {
    support::init_tracing();
    let sandbox = Sandbox::start(SandboxOptions::default().hook(Arc::new(EchoHook)))
        .await
        .expect("sandbox starts");
    let client = sandbox.client();
    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    sets.create(&PostParams::default(), &statefulset())
        .await
        .expect("create statefulset");

    // The probe passes but the gate is not yet True: containers ready, pod not.
    let first = wait_for(
        "3 pods with ready containers",
        Duration::from_secs(60),
        || async {
            let list = pods
                .list(&ListParams::default().labels("app=web"))
                .await
                .map_err(|e| e.to_string())?;
            let ready = list
                .items
                .iter()
                .filter(|p| pod_condition(p, "ContainersReady") == "True")
                .count();
            if ready == 3 {
                Ok(list.items)
            } else {
                Err(format!("{ready} with ready containers"))
            }
        },
    )
    .await;
    for pod in &first {
        assert_eq!(
            pod_condition(pod, "Ready"),
            "False",
            "{} is Ready before its readiness gate is True",
            pod.name_any()
        );
    }

    let ready = wait_for("3 Ready pods", Duration::from_secs(60), || async {
        open_gates(&pods).await;
        let list = pods
            .list(&ListParams::default().labels("app=web"))
            .await
            .map_err(|e| e.to_string())?;
        let ready: Vec<Pod> = list.items.into_iter().filter(is_ready).collect();
        if ready.len() == 3 {
            Ok(ready)
        } else {
            Err(format!("{} ready", ready.len()))
        }
    })
    .await;
    let mut ips: Vec<_> = ready.iter().map(|p| pod_ip(p).expect("pod IP")).collect();
    for ip in &ips {
        assert!(
            ip.is_loopback() && *ip != std::net::Ipv4Addr::LOCALHOST,
            "{ip}"
        );
        assert!(
            !sandbox.addresses().is_service_ip(*ip),
            "{ip} is in the service range"
        );
    }
    ips.sort();
    ips.dedup();
    assert_eq!(ips.len(), 3, "pod addresses are not distinct: {ips:?}");
    // Each address really is that pod.
    for pod in &ready {
        let addr = std::net::SocketAddr::from((pod_ip(pod).expect("ip"), 8080));
        let reply = support::ask(addr, "hi").await.expect("pod answers");
        assert_eq!(reply, format!("{} hi", pod.name_any()));
        let status = pod.status.as_ref().expect("status");
        assert_eq!(status.phase.as_deref(), Some("Running"));
        assert_eq!(
            status.host_ip.as_deref(),
            Some(sandbox.addresses().node().to_string().as_str())
        );
        let container = &status
            .container_statuses
            .as_ref()
            .expect("container statuses")[0];
        assert!(
            container.ready
                && container
                    .state
                    .as_ref()
                    .and_then(|s| s.running.as_ref())
                    .is_some()
        );
    }

    // Delete web-1: the kubelet finishes the graceful deletion, the controller replaces it.
    let old = pods.get("web-1").await.expect("web-1");
    let old_uid = old.uid().expect("uid");
    pods.delete("web-1", &DeleteParams::default())
        .await
        .expect("delete web-1");
    wait_for(
        "web-1 replaced by a new Ready pod",
        Duration::from_secs(60),
        || async {
            open_gates(&pods).await;
            match pods.get_opt("web-1").await.map_err(|e| e.to_string())? {
                Some(p) if p.uid() != Some(old_uid.clone()) && is_ready(&p) => Ok(()),
                Some(p) => Err(format!("web-1 uid {:?} ready {}", p.uid(), is_ready(&p))),
                None => Err("web-1 absent".into()),
            }
        },
    )
    .await;
    sandbox.stop().await.expect("stop");
}
