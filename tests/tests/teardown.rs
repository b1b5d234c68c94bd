//! After `stop()`, no process of the sandbox remains (control plane and pod
//! processes) and its state directory is gone. (The project's images as
//! containers: `containers.rs` checks that none is left after `stop()`.)

mod support;

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::PostParams;
use sandbox::control_plane::process::{processes_mentioning, running};
use sandbox::{Sandbox, SandboxOptions};
use serde_json::json;
use support::wait_for;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_leaves_no_sandbox_process_behind() {
    support::init_tracing();
    let options = SandboxOptions::default().project_binary(
        "emqx-operator/sandbox-probe",
        env!("CARGO_BIN_EXE_sandbox-probe"),
    );
    let sandbox = Sandbox::start(options).await.expect("sandbox starts");
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "lonely", "namespace": "default"},
        "spec": {"containers": [{
            "name": "probe", "image": "emqx-operator/sandbox-probe:1",
            "args": ["--listen", "$(POD_IP):8080", "--path", "/version"],
            "env": [{"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}]
        }]}
    }))
    .expect("pod");
    Api::<Pod>::namespaced(sandbox.client(), "default")
        .create(&PostParams::default(), &pod)
        .await
        .expect("create pod");
    let pids = wait_for(
        "the pod's process and the control plane running",
        Duration::from_secs(60),
        || async {
            let pids = sandbox.pids();
            if pids.iter().any(|(name, _)| name == "default/lonely/probe") && pids.len() == 4 {
                Ok(pids)
            } else {
                Err(format!("{pids:?}"))
            }
        },
    )
    .await;
    let state = sandbox.state_dir().expect("state").to_path_buf();
    // The admin kubeconfig works for the real kubectl and helm.
    let ip = wait_for(
        "kubectl showing the pod IP",
        Duration::from_secs(30),
        || async {
            let out = sandbox
                .kubectl()
                .args(["get", "pod", "lonely", "-o", "jsonpath={.status.podIP}"])
                .output()
                .await
                .map_err(|e| e.to_string())?;
            let ip = String::from_utf8_lossy(&out.stdout).to_string();
            if out.status.success() && !ip.is_empty() {
                Ok(ip)
            } else {
                Err(String::from_utf8_lossy(&out.stderr).to_string())
            }
        },
    )
    .await;
    assert!(ip.starts_with("127."), "kubectl sees pod IP {ip:?}");
    let helm = sandbox
        .helm()
        .args(["list", "--all-namespaces"])
        .output()
        .await
        .expect("helm runs");
    assert!(
        helm.status.success(),
        "helm: {}",
        String::from_utf8_lossy(&helm.stderr)
    );
    for (name, pid) in &pids {
        assert!(
            running(*pid),
            "{name} ({pid}) should be running before stop"
        );
    }
    sandbox.stop().await.expect("stop");
    for (name, pid) in &pids {
        assert!(!running(*pid), "{name} ({pid}) still runs after stop");
    }
    let left = processes_mentioning(&state.display().to_string());
    assert!(
        left.is_empty(),
        "processes still mention {}: {left:?}",
        state.display()
    );
    assert!(!state.exists(), "{} not removed", state.display());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_without_stop_also_ends_every_process() {
    support::init_tracing();
    let options = SandboxOptions::default().project_binary(
        "emqx-operator/sandbox-probe",
        env!("CARGO_BIN_EXE_sandbox-probe"),
    );
    let sandbox = Sandbox::start(options).await.expect("sandbox starts");
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "dropped", "namespace": "default"},
        "spec": {"containers": [{
            "name": "probe", "image": "emqx-operator/sandbox-probe:1",
            "args": ["--listen", "$(POD_IP):8080", "--path", "/version"],
            "env": [{"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}]
        }]}
    }))
    .expect("pod");
    Api::<Pod>::namespaced(sandbox.client(), "default")
        .create(&PostParams::default(), &pod)
        .await
        .expect("create pod");
    let pids = wait_for(
        "the pod's process running",
        Duration::from_secs(60),
        || async {
            let pids = sandbox.pids();
            if pids.iter().any(|(name, _)| name == "default/dropped/probe") {
                Ok(pids)
            } else {
                Err(format!("{pids:?}"))
            }
        },
    )
    .await;
    let state = sandbox.state_dir().expect("state").to_path_buf();
    drop(sandbox);
    // The pod's process is killed when its (aborted) kubelet task is dropped,
    // which the runtime does shortly after.
    wait_for(
        "every sandbox process gone after drop",
        Duration::from_secs(10),
        || async {
            let left: Vec<_> = pids.iter().filter(|(_, pid)| running(*pid)).collect();
            if left.is_empty() {
                Ok(())
            } else {
                Err(format!("{left:?}"))
            }
        },
    )
    .await;
    assert!(!state.exists(), "{} not removed", state.display());
}

/// Every control-plane process is recorded in its slot with its command
/// line, so that if this test process dies without its Drop (an abort),
/// the next sandbox in the slot ends it before binding the same addresses.
/// An empty record is never acted on: kube-apiserver's records were empty
/// (read before the kernel had set its arguments), and one aborted test
/// left its apiserver holding the slot's address for every later test.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_control_plane_process_is_recorded_with_its_command_line() {
    support::init_tracing();
    let sandbox = Sandbox::start(SandboxOptions::default())
        .await
        .expect("sandbox starts");
    let dir = sandbox::network::addresses::slot_record_dir(sandbox.addresses().slot);
    let control_plane: Vec<(String, u32)> = sandbox
        .pids()
        .into_iter()
        .filter(|(name, _)| {
            ["etcd", "kube-apiserver", "kube-controller-manager"].contains(&name.as_str())
        })
        .collect();
    assert_eq!(control_plane.len(), 3, "{:?}", sandbox.pids());
    for (name, pid) in &control_plane {
        let recorded = std::fs::read(dir.join(format!("{pid}.pid"))).unwrap_or_default();
        let current = std::fs::read(format!("/proc/{pid}/cmdline")).expect("its command line");
        assert!(
            !recorded.is_empty() && recorded == current,
            "{name} (pid {pid}) recorded as {:?}",
            String::from_utf8_lossy(&recorded)
        );
    }
    sandbox.stop().await.expect("stop");
}
