//! The project's pods as real containers, failing for the reasons a real
//! cluster would make them fail (issue 11, item 4): the chart's pods run
//! with a read-only root filesystem, user 65532 and no capabilities and
//! still work, and reach the apiserver through their in-cluster
//! configuration only (as their ServiceAccounts, without a token mount
//! nothing works); `runAsNonRoot` refuses a container that would run as
//! root, as the kubelet refuses it.

#![allow(clippy::panic)]

mod support;

use std::time::Duration;

use emqx_images::Podman;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{ListParams, PostParams};
use kube::{Api, ResourceExt};
use sandbox::node::pod_container::SLOT_LABEL;
use sandbox::operator::chart::{NAMESPACE, helm_upgrade_install, wait_operator_available};
use sandbox::operator::project_image::{OperatorImages, build_operator_images};
use sandbox::{Sandbox, SandboxOptions};
use serde_json::{Value, json};
use support::wait_for;

const WEBHOOK_ACCOUNT: &str = "system:serviceaccount:emqx-operator-system:emqx-operator-webhook";
const RECONCILER_ACCOUNT: &str =
    "system:serviceaccount:emqx-operator-system:emqx-operator-reconciler";

async fn images() -> OperatorImages {
    tokio::task::spawn_blocking(build_operator_images)
        .await
        .expect("image build task")
        .expect("images/build")
}

/// `podman inspect` of the running container of the pod's `container`.
fn inspect(podman: &Podman, sandbox: &Sandbox, pod: &str, container: &str) -> Value {
    let slot = sandbox.addresses().slot;
    let names = podman
        .run(&[
            "ps",
            &format!("--filter=label={SLOT_LABEL}={slot}"),
            "--format",
            "{{.Names}}",
        ])
        .expect("podman ps");
    let prefix = format!("sandbox{slot}-{NAMESPACE}-{pod}-{container}-");
    let name = names
        .lines()
        .find(|n| n.starts_with(&prefix))
        .unwrap_or_else(|| panic!("no container {prefix}* in {names:?}"));
    let text = podman.run(&["inspect", name]).expect("podman inspect");
    let all: Value = serde_json::from_str(&text).expect("inspect JSON");
    all[0].clone()
}

/// The chart as installed: both Deployments available with the chart's
/// hardening applied to real containers (read-only root, user 65532, every
/// capability dropped, no privilege escalation), an environment without
/// `KUBECONFIG` but with the `kubernetes` Service's address, and every
/// apiserver request of theirs made as their own ServiceAccount. (That
/// they also serve and reconcile so: kubectl_logs and chart run seed 003
/// to Ready through these containers.) A SIGKILLed container exits 137 and
/// is restarted (restartCount 1).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chart_pods_run_hardened_and_use_their_in_cluster_configuration() {
    support::init_tracing();
    let images = images().await;
    let options = images.options(
        SandboxOptions::default()
            .audit_requests_of(WEBHOOK_ACCOUNT)
            .audit_requests_of(RECONCILER_ACCOUNT),
    );
    let sandbox = Sandbox::start(options).await.expect("sandbox starts");
    let client = sandbox.client();
    helm_upgrade_install(&sandbox, &[])
        .await
        .expect("helm install");
    wait_operator_available(&client, Duration::from_secs(120))
        .await
        .expect("operator available");
    let podman = Podman::new(&images.out);
    let pods: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
    let kubernetes = format!(
        "KUBERNETES_SERVICE_HOST={}",
        sandbox.addresses().kubernetes_service()
    );
    let mut started = Vec::new();
    for (component, container) in [("webhook", "webhook"), ("reconciler", "reconciler")] {
        let list = pods
            .list(
                &ListParams::default().labels(&format!("app.kubernetes.io/component={component}")),
            )
            .await
            .expect("pods");
        assert!(!list.items.is_empty(), "no {component} pod");
        for pod in list.items {
            let found = inspect(&podman, &sandbox, &pod.name_any(), container);
            let what = format!("{component} {}", pod.name_any());
            started.push(found["Name"].as_str().unwrap_or_default().to_owned());
            assert_eq!(found["HostConfig"]["ReadonlyRootfs"], json!(true), "{what}");
            assert_eq!(found["Config"]["User"], json!("65532:65532"), "{what}");
            let dropped = found["HostConfig"]["CapDrop"]
                .as_array()
                .map(Vec::len)
                .unwrap_or(0);
            assert!(
                dropped >= 14,
                "{what}: dropped {:?}",
                found["HostConfig"]["CapDrop"]
            );
            let added = &found["HostConfig"]["CapAdd"];
            assert!(
                added.as_array().is_none_or(Vec::is_empty),
                "{what}: {added}"
            );
            let options = found["HostConfig"]["SecurityOpt"].to_string();
            assert!(options.contains("no-new-privileges"), "{what}: {options}");
            let env: Vec<String> = found["Config"]["Env"]
                .as_array()
                .expect("Env")
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect();
            assert!(
                !env.iter().any(|e| e.starts_with("KUBECONFIG=")),
                "{what}: {env:?}"
            );
            assert!(env.contains(&kubernetes), "{what}: {env:?}");
            let mounts = found["Mounts"].to_string();
            assert!(
                mounts.contains("/var/run/secrets/kubernetes.io/serviceaccount"),
                "{what}: {mounts}"
            );
        }
    }
    // A container whose process is SIGKILLed exits 137 and is restarted by
    // the pod's restart policy, as on a node.
    let reconciler = pods
        .list(&ListParams::default().labels("app.kubernetes.io/component=reconciler"))
        .await
        .expect("pods")
        .items
        .remove(0)
        .name_any();
    let key = format!("{NAMESPACE}/{reconciler}/reconciler");
    let pid = sandbox
        .pids()
        .into_iter()
        .find(|(name, _)| *name == key)
        .map(|(_, pid)| pid)
        .unwrap_or_else(|| panic!("no pid for {key} in {:?}", sandbox.pids()));
    let cmdline = std::fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    assert!(
        cmdline.starts_with("/emqx-reconciler"),
        "{pid}: {cmdline:?}"
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(pid).expect("pid")),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("SIGKILL");
    wait_for(
        "the reconciler restarted",
        Duration::from_secs(60),
        || async {
            let pod = pods.get(&reconciler).await.map_err(|e| e.to_string())?;
            let status = pod
                .status
                .and_then(|s| s.container_statuses)
                .and_then(|c| c.into_iter().next())
                .ok_or("no container status")?;
            let code = status
                .last_state
                .and_then(|s| s.terminated)
                .map(|t| t.exit_code);
            match (
                status.restart_count,
                code,
                status.state.and_then(|s| s.running),
            ) {
                (1, Some(137), Some(_)) => Ok(()),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;
    wait_operator_available(&client, Duration::from_secs(60))
        .await
        .expect("operator available again");
    // Their requests arrive as their ServiceAccounts: the token of the
    // projected volume, through the kubernetes Service.
    let requests = sandbox.audited_requests().expect("audit log");
    for account in [WEBHOOK_ACCOUNT, RECONCILER_ACCOUNT] {
        let answered = requests
            .iter()
            .filter(|r| r.user == account && r.code < 300)
            .count();
        assert!(answered > 0, "no answered request of {account}");
    }
    sandbox.stop().await.expect("sandbox stops");
    // Nothing the sandbox started is left, running or not.
    for name in started {
        let exists = podman
            .output(&["container", "exists", &name])
            .expect("podman container exists");
        assert!(
            !exists.status.success(),
            "{name} left after the sandbox stopped"
        );
    }
}

fn webhook_pod(name: &str, security: Value, extra: Value) -> Pod {
    let mut pod = json!({
        "metadata": {"name": name},
        "spec": {
            "restartPolicy": "Never",
            "securityContext": security,
            "containers": [{
                "name": "webhook",
                "image": "emqx-operator/emqx-webhook:0.1.0",
                "args": ["--version"],
                "securityContext": {"readOnlyRootFilesystem": true, "capabilities": {"drop": ["ALL"]}},
            }],
        },
    });
    json_patch::merge(&mut pod, &extra);
    serde_json::from_value(pod).expect("pod")
}

/// A pod whose container would run as root while `runAsNonRoot` is set is
/// refused before it starts (CreateContainerConfigError, the kubelet's
/// message); the same pod as user 65532, or with the image's own user,
/// runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_as_non_root_refuses_root_and_runs_65532() {
    support::init_tracing();
    let images = images().await;
    let sandbox = Sandbox::start(images.options(SandboxOptions::default()))
        .await
        .expect("sandbox starts");
    let pods: Api<Pod> = Api::namespaced(sandbox.client(), "default");
    let pp = PostParams::default();
    pods.create(
        &pp,
        &webhook_pod(
            "as-root",
            json!({"runAsNonRoot": true, "runAsUser": 0}),
            json!({}),
        ),
    )
    .await
    .expect("create as-root");
    for (name, security) in [
        (
            "as-65532",
            json!({"runAsNonRoot": true, "runAsUser": 65532}),
        ),
        ("as-image-user", json!({"runAsNonRoot": true})),
    ] {
        pods.create(&pp, &webhook_pod(name, security, json!({})))
            .await
            .expect("create");
    }
    let message = wait_for("as-root refused", Duration::from_secs(60), || async {
        let pod = pods.get("as-root").await.map_err(|e| e.to_string())?;
        let waiting = pod
            .status
            .as_ref()
            .and_then(|s| s.container_statuses.as_ref())
            .and_then(|c| c.first())
            .and_then(|c| c.state.as_ref())
            .and_then(|s| s.waiting.clone());
        match waiting {
            Some(w) if w.reason.as_deref() == Some("CreateContainerConfigError") => {
                Ok(w.message.unwrap_or_default())
            }
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    assert!(
        message.starts_with("container's runAsUser breaks non-root policy"),
        "{message}"
    );
    for name in ["as-65532", "as-image-user"] {
        wait_for(
            &format!("{name} Succeeded"),
            Duration::from_secs(60),
            || async {
                let pod = pods.get(name).await.map_err(|e| e.to_string())?;
                match pod.status.and_then(|s| s.phase).as_deref() {
                    Some("Succeeded") => Ok(()),
                    other => Err(format!("{other:?}")),
                }
            },
        )
        .await;
        let log = sandbox
            .container_log("default", name, "webhook")
            .expect("log");
        assert!(log.contains("emqx-webhook"), "{name}: {log}");
    }
    // Still refused, never started.
    let pod = pods.get("as-root").await.expect("as-root");
    assert_eq!(pod.status.and_then(|s| s.phase).as_deref(), Some("Pending"));
    sandbox.stop().await.expect("sandbox stops");
}

/// Without the ServiceAccount token mount the reconciler has no way to the
/// apiserver: no `KUBECONFIG` is handed to it, so it exits with its own
/// error naming what is missing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_token_mount_the_reconciler_fails_clearly() {
    support::init_tracing();
    let images = images().await;
    let sandbox = Sandbox::start(images.options(SandboxOptions::default()))
        .await
        .expect("sandbox starts");
    let pods: Api<Pod> = Api::namespaced(sandbox.client(), "default");
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "no-token"},
        "spec": {
            "restartPolicy": "Never",
            "automountServiceAccountToken": false,
            "securityContext": {"runAsNonRoot": true, "runAsUser": 65532, "runAsGroup": 65532},
            "containers": [{
                "name": "reconciler",
                "image": "emqx-operator/emqx-reconciler:0.1.0",
                "command": ["/emqx-reconciler"],
                "args": ["--metrics-addr=$(POD_IP):0", "--watch-namespace=default"],
                "env": [{"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}],
                "securityContext": {"readOnlyRootFilesystem": true, "allowPrivilegeEscalation": false,
                                    "capabilities": {"drop": ["ALL"]}},
            }],
        },
    }))
    .expect("pod");
    pods.create(&PostParams::default(), &pod)
        .await
        .expect("create");
    let code = wait_for("no-token Failed", Duration::from_secs(60), || async {
        let pod = pods.get("no-token").await.map_err(|e| e.to_string())?;
        let terminated = pod
            .status
            .as_ref()
            .and_then(|s| s.container_statuses.as_ref())
            .and_then(|c| c.first())
            .and_then(|c| c.state.as_ref())
            .and_then(|s| s.terminated.clone());
        match (pod.status.and_then(|s| s.phase).as_deref(), terminated) {
            (Some("Failed"), Some(t)) => Ok(t.exit_code),
            (phase, t) => Err(format!("{phase:?} {t:?}")),
        }
    })
    .await;
    assert_ne!(code, 0);
    let log = sandbox
        .container_log("default", "no-token", "reconciler")
        .expect("log");
    assert!(
        log.contains("no Kubernetes client configuration")
            && log.contains("/var/run/secrets/kubernetes.io/serviceaccount"),
        "{log}"
    );
    sandbox.stop().await.expect("sandbox stops");
}
