//! The service proxy: a connection to a Service's ClusterIP reaches a Ready
//! pod it selects; after a selector change new connections reach the new pods
//! while an established connection to an old pod stays open and working.

mod support;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use sandbox::node::echo_hook::EchoHook;
use sandbox::{Sandbox, SandboxOptions};
use serde_json::json;
use support::{ask, is_ready, wait_for};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

fn deployment(color: &str) -> Deployment {
    serde_json::from_value(json!({
        "metadata": {"name": color, "namespace": "default"},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "svc", "color": color}},
            "template": {
                "metadata": {"labels": {"app": "svc", "color": color}},
                "spec": {"containers": [{
                    "name": "echo", "image": "sandbox/echo:1",
                    "ports": [{"name": "tcp", "containerPort": 7000}],
                    "readinessProbe": {"tcpSocket": {"port": "tcp"}, "periodSeconds": 1}
                }]}
            }
        }
    }))
    .expect("deployment")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn selector_change_moves_new_connections_and_keeps_open_ones() {
    support::init_tracing();
    let sandbox = Sandbox::start(SandboxOptions::default().hook(Arc::new(EchoHook)))
        .await
        .expect("sandbox starts");
    let client = sandbox.client();
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    for color in ["blue", "green"] {
        deployments
            .create(&PostParams::default(), &deployment(color))
            .await
            .expect("create deployment");
    }
    let service: Service = serde_json::from_value(json!({
        "metadata": {"name": "svc", "namespace": "default"},
        "spec": {"selector": {"app": "svc", "color": "blue"}, "ports": [{"port": 80, "targetPort": "tcp"}]}
    }))
    .expect("service");
    let created = services
        .create(&PostParams::default(), &service)
        .await
        .expect("create service");
    let cluster_ip: std::net::Ipv4Addr = created
        .spec
        .and_then(|s| s.cluster_ip)
        .expect("ClusterIP")
        .parse()
        .expect("ClusterIP is an IPv4 address");
    assert!(
        sandbox.addresses().is_service_ip(cluster_ip),
        "{cluster_ip} is not in the sandbox's loopback service range"
    );
    let frontend = SocketAddr::from((cluster_ip, 80));

    let names = |color: &'static str| {
        let pods = pods.clone();
        async move {
            let list = pods
                .list(&ListParams::default().labels(&format!("color={color}")))
                .await
                .map_err(|e| e.to_string())?;
            let ready: BTreeSet<String> = list
                .items
                .iter()
                .filter(|p| is_ready(p))
                .filter_map(|p| p.metadata.name.clone())
                .collect();
            if ready.len() == 2 {
                Ok(ready)
            } else {
                Err(format!("{ready:?}"))
            }
        }
    };
    let blue = wait_for("2 Ready blue pods", Duration::from_secs(60), || {
        names("blue")
    })
    .await;
    let green = wait_for("2 Ready green pods", Duration::from_secs(60), || {
        names("green")
    })
    .await;

    // An established connection to a blue pod.
    let open = wait_for(
        "a connection through the ClusterIP",
        Duration::from_secs(30),
        || async {
            tokio::net::TcpStream::connect(frontend)
                .await
                .map_err(|e| e.to_string())
        },
    )
    .await;
    let (read, mut write) = open.into_split();
    let mut lines = BufReader::new(read).lines();
    write.write_all(b"one\n").await.expect("write");
    let first = lines.next_line().await.expect("read").expect("reply");
    let (old_pod, _) = first.split_once(' ').expect("reply format");
    assert!(
        blue.contains(old_pod),
        "first connection reached {old_pod}, not a blue pod {blue:?}"
    );

    // New connections before the change all reach blue pods.
    for i in 0..4 {
        let reply = ask(frontend, &format!("b{i}")).await.expect("ask");
        let pod = reply.split(' ').next().unwrap_or_default();
        assert!(blue.contains(pod), "{reply}");
    }

    let patch = json!({"spec": {"selector": {"app": "svc", "color": "green"}}});
    services
        .patch("svc", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("switch selector");
    wait_for(
        "a new connection reaching a green pod",
        Duration::from_secs(30),
        || async {
            let reply = ask(frontend, "probe").await?;
            let pod = reply.split(' ').next().unwrap_or_default().to_string();
            if green.contains(&pod) {
                Ok(())
            } else {
                Err(reply)
            }
        },
    )
    .await;
    let mut reached = BTreeSet::new();
    for i in 0..6 {
        let reply = ask(frontend, &format!("g{i}")).await.expect("ask");
        let pod = reply.split(' ').next().unwrap_or_default().to_string();
        assert!(
            green.contains(&pod),
            "after the switch a new connection reached {pod}"
        );
        reached.insert(pod);
    }
    assert_eq!(
        reached, green,
        "new connections are spread over the selected pods"
    );

    // The old connection is still open, still to the same blue pod.
    write
        .write_all(b"two\n")
        .await
        .expect("old connection still writable");
    let reply = tokio::time::timeout(Duration::from_secs(3), lines.next_line())
        .await
        .expect("old connection answers")
        .expect("read")
        .expect("old connection not closed");
    assert_eq!(reply, format!("{old_pod} two"));
    sandbox.stop().await.expect("stop");
}
