//! The real ReplicaSet controller, on the simulated node, removes the pod with
//! the lowest `controller.kubernetes.io/pod-deletion-cost` when scaled down.

mod support;

use std::time::Duration;

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use sandbox::{Sandbox, SandboxOptions};
use serde_json::json;
use support::{is_ready, wait_for};

const COST: &str = "controller.kubernetes.io/pod-deletion-cost";

async fn ready_pods(pods: &Api<Pod>, count: usize) -> Vec<String> {
    wait_for(
        &format!("{count} Ready pods, none terminating"),
        Duration::from_secs(60),
        || async {
            let list = pods
                .list(&ListParams::default().labels("app=rs"))
                .await
                .map_err(|e| e.to_string())?;
            let mut names: Vec<String> = list
                .items
                .iter()
                .filter(|p| p.metadata.deletion_timestamp.is_none() && is_ready(p))
                .map(|p| p.name_any())
                .collect();
            names.sort();
            if names.len() == count && list.items.len() == count {
                Ok(names)
            } else {
                Err(format!("{names:?} of {}", list.items.len()))
            }
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicaset_scales_down_the_pod_with_the_lowest_deletion_cost() {
    support::init_tracing();
    let sandbox = Sandbox::start(SandboxOptions::default())
        .await
        .expect("sandbox starts");
    let client = sandbox.client();
    let sets: Api<ReplicaSet> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let rs: ReplicaSet = serde_json::from_value(json!({
        "metadata": {"name": "rs", "namespace": "default"},
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": "rs"}},
            "template": {"metadata": {"labels": {"app": "rs"}},
                "spec": {"containers": [{"name": "c", "image": "sandbox/inert:1"}]}}
        }
    }))
    .expect("replicaset");
    sets.create(&PostParams::default(), &rs)
        .await
        .expect("create");

    // Two rounds with a different victim each time: by chance both would be 1 in 6.
    for (replicas, victim_index) in [(2, 1usize), (1, 0usize)] {
        let names = ready_pods(&pods, replicas + 1).await;
        let victim = names[victim_index].clone();
        for name in &names {
            let cost = if *name == victim { "-100" } else { "100" };
            let patch = json!({"metadata": {"annotations": {COST: cost}}});
            pods.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .expect("annotate");
        }
        let scale = json!({"spec": {"replicas": replicas}});
        sets.patch("rs", &PatchParams::default(), &Patch::Merge(&scale))
            .await
            .expect("scale");
        let remaining = ready_pods(&pods, replicas).await;
        assert!(
            !remaining.contains(&victim),
            "{victim} (lowest deletion cost) survived; remaining {remaining:?}"
        );
        assert_eq!(remaining.len(), replicas);
        wait_for(
            &format!("{victim} gone"),
            Duration::from_secs(30),
            || async {
                match pods.get_opt(&victim).await.map_err(|e| e.to_string())? {
                    None => Ok(()),
                    Some(_) => Err("still there".into()),
                }
            },
        )
        .await;
    }
    sandbox.stop().await.expect("stop");
}
