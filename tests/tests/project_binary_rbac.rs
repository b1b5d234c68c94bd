//! A Deployment whose image maps to a project binary runs that binary as a
//! real process with the pod's ServiceAccount token: a call its RBAC allows
//! gets 200, one it does not allow gets 403 from the real apiserver.

#![allow(clippy::panic)]

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{ListParams, PostParams};
use kube::{Api, ResourceExt};
use sandbox::{Sandbox, SandboxOptions};
use serde_json::json;
use support::{is_ready, pod_ip, wait_for};

const IMAGE: &str = "emqx-operator/sandbox-probe";

fn deployment(name: &str, path: &str) -> Deployment {
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "serviceAccountName": "prober",
                    "containers": [{
                        "name": "probe",
                        "image": format!("{IMAGE}:0.1.0"),
                        "command": ["/sandbox-probe"],
                        "args": ["--listen", "$(POD_IP):8080", "--path", path],
                        "env": [
                            {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                            {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}}
                        ],
                        "ports": [{"name": "http", "containerPort": 8080}],
                        "readinessProbe": {"httpGet": {"port": "http"}, "periodSeconds": 1}
                    }]
                }
            }
        }
    }))
    .expect("deployment")
}

async fn http_get(addr: SocketAddr) -> Result<String, String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    stream
        .write_all(format!("GET / HTTP/1.1\r\nhost: {addr}\r\n\r\n").as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .await
        .map_err(|e| e.to_string())?;
    response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .ok_or_else(|| format!("not HTTP: {response:?}"))
}

async fn result_of(sandbox: &Sandbox, pods: &Api<Pod>, app: &str) -> (String, Pod) {
    let pod = wait_for(
        &format!("the {app} pod Ready"),
        Duration::from_secs(90),
        || async {
            let list = pods
                .list(&ListParams::default().labels(&format!("app={app}")))
                .await
                .map_err(|e| e.to_string())?;
            list.items
                .into_iter()
                .find(is_ready)
                .ok_or_else(|| "not ready".to_string())
        },
    )
    .await;
    let key = format!("default/{}/probe", pod.name_any());
    let pid = sandbox
        .pids()
        .into_iter()
        .find(|(name, _)| *name == key)
        .map(|(_, pid)| pid)
        .unwrap_or_else(|| panic!("no process for {key} in {:?}", sandbox.pids()));
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).expect("process alive");
    assert_eq!(
        exe,
        std::path::PathBuf::from(env!("CARGO_BIN_EXE_sandbox-probe")),
        "pid {pid} runs the mapped binary"
    );
    let addr = SocketAddr::from((pod_ip(&pod).expect("pod IP"), 8080));
    (http_get(addr).await.expect("probe result"), pod)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn project_binary_runs_with_its_service_account_rbac() {
    support::init_tracing();
    let options =
        SandboxOptions::default().project_binary(IMAGE, env!("CARGO_BIN_EXE_sandbox-probe"));
    let sandbox = Sandbox::start(options).await.expect("sandbox starts");
    let client = sandbox.client();
    let pp = PostParams::default();
    let account: ServiceAccount =
        serde_json::from_value(json!({"metadata": {"name": "prober"}})).expect("sa");
    Api::<ServiceAccount>::namespaced(client.clone(), "default")
        .create(&pp, &account)
        .await
        .expect("create sa");
    let role: Role = serde_json::from_value(json!({
        "metadata": {"name": "read-pods"},
        "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}]
    }))
    .expect("role");
    Api::<Role>::namespaced(client.clone(), "default")
        .create(&pp, &role)
        .await
        .expect("create role");
    let binding: RoleBinding = serde_json::from_value(json!({
        "metadata": {"name": "prober-reads-pods"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "read-pods"},
        "subjects": [{"kind": "ServiceAccount", "name": "prober", "namespace": "default"}]
    }))
    .expect("binding");
    Api::<RoleBinding>::namespaced(client.clone(), "default")
        .create(&pp, &binding)
        .await
        .expect("create binding");

    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    deployments
        .create(
            &pp,
            &deployment("denied", "/api/v1/namespaces/$(POD_NAMESPACE)/secrets"),
        )
        .await
        .expect("create denied");
    deployments
        .create(
            &pp,
            &deployment("allowed", "/api/v1/namespaces/$(POD_NAMESPACE)/pods"),
        )
        .await
        .expect("create allowed");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let (denied, pod) = result_of(&sandbox, &pods, "denied").await;
    assert_eq!(
        denied, "403",
        "listing secrets as system:serviceaccount:default:prober"
    );
    let (allowed, _) = result_of(&sandbox, &pods, "allowed").await;
    assert_eq!(allowed, "200", "listing pods, which the Role grants");
    // The process's log is where the kubelet put it.
    let log = sandbox
        .state_dir()
        .map(|d| {
            d.join("pods")
                .join(format!(
                    "default_{}_{}",
                    pod.name_any(),
                    &pod.uid().unwrap_or_default()[..8]
                ))
                .join("probe.log")
        })
        .expect("state dir");
    let text = std::fs::read_to_string(&log).expect("pod log");
    assert!(text.contains("-> 403"), "{text}");
    sandbox.stop().await.expect("stop");
}
