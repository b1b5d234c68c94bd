//! The Pod status the simulated kubelet reports, as a pure function of what it
//! knows: the Pod object (for readiness gates and earlier transition times),
//! its addresses, and each container's state and readiness.

use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::Pod;
use serde_json::{Value, json};

/// A container's state as the kubelet tracks it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContainerPhase {
    /// Not started yet (reason, message).
    Waiting(String, String),
    /// Running since the RFC 3339 time.
    Running(String),
    /// Exited (code, started, finished).
    Terminated(i32, String, String),
}

/// One container's view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerView {
    /// Container name.
    pub name: String,
    /// Image reference.
    pub image: String,
    /// Current state.
    pub phase: ContainerPhase,
    /// The readiness verdict (probe passed, or no probe and running).
    pub ready: bool,
    /// Restarts so far.
    pub restart_count: i32,
    /// The previous run, if it was restarted.
    pub last_terminated: Option<ContainerPhase>,
}

/// Inputs of [`desired_status`].
#[derive(Debug, Clone)]
pub struct StatusInput<'a> {
    /// The pod as last seen.
    pub pod: &'a Pod,
    /// Its address.
    pub pod_ip: Ipv4Addr,
    /// The node's address.
    pub host_ip: Ipv4Addr,
    /// When the kubelet accepted the pod (RFC 3339).
    pub start_time: &'a str,
    /// The containers, in spec order.
    pub containers: &'a [ContainerView],
    /// Now (RFC 3339), for changed conditions.
    pub now: &'a str,
    /// The status this kubelet last patched (`Null` before the first).
    pub last_sent: &'a Value,
}

/// Whether every readiness gate of `pod` has its condition `True`, and the
/// names of those that do not.
pub fn readiness_gates(pod: &Pod) -> Result<(), Vec<String>> {
    let conditions = pod.status.as_ref().and_then(|s| s.conditions.as_ref());
    let missing: Vec<String> = pod
        .spec
        .iter()
        .flat_map(|s| s.readiness_gates.iter().flatten())
        .filter(|gate| {
            !conditions
                .into_iter()
                .flatten()
                .any(|c| c.type_ == gate.condition_type && c.status == "True")
        })
        .map(|gate| gate.condition_type.clone())
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(missing)
    }
}

fn state_json(phase: &ContainerPhase) -> Value {
    match phase {
        ContainerPhase::Waiting(reason, message) => {
            json!({"waiting": {"reason": reason, "message": message}})
        }
        ContainerPhase::Running(started) => json!({"running": {"startedAt": started}}),
        ContainerPhase::Terminated(code, started, finished) => json!({"terminated": {
            "exitCode": code,
            "reason": if *code == 0 { "Completed" } else { "Error" },
            "startedAt": started,
            "finishedAt": finished,
        }}),
    }
}

/// The `status` object to patch (strategic merge: conditions are merged by
/// type, so conditions owned by others, readiness gates included, are kept).
pub fn desired_status(input: &StatusInput<'_>) -> Value {
    let containers_ready = input.containers.iter().all(|c| c.ready);
    let gates = readiness_gates(input.pod);
    let terminating = input.pod.metadata.deletion_timestamp.is_some();
    let ready = containers_ready && gates.is_ok() && !terminating;
    let all_terminated = !input.containers.is_empty()
        && input
            .containers
            .iter()
            .all(|c| matches!(c.phase, ContainerPhase::Terminated(..)));
    let any_running = input
        .containers
        .iter()
        .any(|c| matches!(c.phase, ContainerPhase::Running(_)));
    let phase = if all_terminated {
        if input
            .containers
            .iter()
            .all(|c| matches!(c.phase, ContainerPhase::Terminated(0, ..)))
        {
            "Succeeded"
        } else {
            "Failed"
        }
    } else if any_running {
        "Running"
    } else {
        "Pending"
    };
    let not_ready: Vec<&str> = input
        .containers
        .iter()
        .filter(|c| !c.ready)
        .map(|c| c.name.as_str())
        .collect();
    // A condition's transition time is the one this kubelet last sent
    // while its status was the same, like the kubelet's status manager,
    // which compares with its own cache (pkg/kubelet/status/
    // status_manager.go, updateLastTransitionTime): the watched pod may be
    // older than the last patch, and reading it alone made the times flap
    // and the status be patched again on every probe under load. The pod
    // is the fallback, after this kubelet restarted.
    let previous = |type_: &str, status: &str| -> String {
        let sent = input.last_sent["conditions"]
            .as_array()
            .and_then(|cs| cs.iter().find(|c| c["type"] == type_));
        if let Some(sent) = sent {
            let kept = (sent["status"] == status)
                .then(|| sent["lastTransitionTime"].as_str())
                .flatten();
            return kept.unwrap_or(input.now).to_owned();
        }
        input
            .pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|cs| cs.iter().find(|c| c.type_ == type_))
            .filter(|c| c.status == status)
            .and_then(|c| c.last_transition_time.as_ref())
            .map(|t| t.0.to_string())
            .unwrap_or_else(|| input.now.to_string())
    };
    let condition = |type_: &str, ok: bool, reason: &str, message: String| -> Value {
        let status = if ok { "True" } else { "False" };
        let mut c = json!({"type": type_, "status": status, "lastTransitionTime": previous(type_, status), "lastProbeTime": null});
        if !ok {
            c["reason"] = json!(reason);
            c["message"] = json!(message);
        }
        c
    };
    let containers_message = format!("containers with unready status: [{}]", not_ready.join(" "));
    let ready_message = match (&gates, containers_ready) {
        (_, false) => containers_message.clone(),
        (Err(missing), true) => format!(
            "corresponding condition of pod readiness gate \"{}\" does not exist or is not True",
            missing.join("\", \"")
        ),
        (Ok(()), true) => "the pod is terminating".into(),
    };
    let ready_reason = if containers_ready && gates.is_err() {
        "ReadinessGatesNotReady"
    } else {
        "ContainersNotReady"
    };
    let uid = input.pod.metadata.uid.clone().unwrap_or_default();
    let statuses: Vec<Value> = input
        .containers
        .iter()
        .map(|c| {
            let mut s = json!({
                "name": c.name,
                "image": c.image,
                "imageID": format!("sandbox://{}", c.image),
                "containerID": format!("sandbox://{uid}/{}/{}", c.name, c.restart_count),
                "ready": c.ready,
                "started": matches!(c.phase, ContainerPhase::Running(_)),
                "restartCount": c.restart_count,
                "state": state_json(&c.phase),
            });
            if let Some(last) = &c.last_terminated {
                s["lastState"] = state_json(last);
            }
            s
        })
        .collect();
    json!({
        "phase": phase,
        "hostIP": input.host_ip.to_string(),
        "hostIPs": [{"ip": input.host_ip.to_string()}],
        "podIP": input.pod_ip.to_string(),
        "podIPs": [{"ip": input.pod_ip.to_string()}],
        "startTime": input.start_time,
        "qosClass": input.pod.status.as_ref().and_then(|s| s.qos_class.clone()).unwrap_or_else(|| "BestEffort".into()),
        "conditions": [
            condition("PodReadyToStartContainers", true, "", String::new()),
            condition("Initialized", true, "", String::new()),
            condition("ContainersReady", containers_ready, "ContainersNotReady", containers_message),
            condition("Ready", ready, ready_reason, ready_message),
            condition("PodScheduled", true, "", String::new()),
        ],
        "containerStatuses": statuses,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(extra_status: Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "p", "uid": "u"},
            "spec": {"containers": [{"name": "c"}], "readinessGates": [{"conditionType": "example.com/gate"}]},
            "status": extra_status,
        }))
        .expect("pod")
    }

    fn view(ready: bool) -> ContainerView {
        ContainerView {
            name: "c".into(),
            image: "img:1".into(),
            phase: ContainerPhase::Running("2026-01-01T00:00:00Z".into()),
            ready,
            restart_count: 0,
            last_terminated: None,
        }
    }

    fn ready_of(status: &Value) -> &str {
        status["conditions"]
            .as_array()
            .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready"))
            .and_then(|c| c["status"].as_str())
            .unwrap_or("missing")
    }

    fn status(p: &Pod, containers: &[ContainerView]) -> Value {
        status_after(p, containers, "2026-01-01T00:00:05Z", &Value::Null)
    }

    fn status_after(p: &Pod, containers: &[ContainerView], now: &str, last_sent: &Value) -> Value {
        desired_status(&StatusInput {
            pod: p,
            pod_ip: Ipv4Addr::new(127, 100, 0, 1),
            host_ip: Ipv4Addr::new(127, 95, 0, 2),
            start_time: "2026-01-01T00:00:00Z",
            containers,
            now,
            last_sent,
        })
    }

    fn ready_condition(status: &Value) -> Value {
        status["conditions"]
            .as_array()
            .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready"))
            .cloned()
            .unwrap_or_default()
    }

    #[test]
    fn a_stale_pod_does_not_move_the_transition_time_sent_last() {
        // The watch has not yet delivered the pod with the last patch: its
        // Ready is still False. The time sent with Ready=True stays.
        let stale = pod(
            json!({"conditions": [{"type": "example.com/gate", "status": "True"},
            {"type": "Ready", "status": "False", "lastTransitionTime": "2025-12-31T00:00:00Z"}]}),
        );
        let sent = json!({"conditions": [
            {"type": "Ready", "status": "True", "lastTransitionTime": "2026-01-01T00:00:02Z"}]});
        let again = status_after(&stale, &[view(true)], "2026-01-01T00:00:09Z", &sent);
        assert_eq!(
            ready_condition(&again)["lastTransitionTime"],
            "2026-01-01T00:00:02Z"
        );
        // A change of status is a transition now.
        let down = status_after(&stale, &[view(false)], "2026-01-01T00:00:09Z", &sent);
        assert_eq!(ready_condition(&down)["status"], "False");
        assert_eq!(
            ready_condition(&down)["lastTransitionTime"],
            "2026-01-01T00:00:09Z"
        );
    }

    #[test]
    fn ready_needs_probe_and_every_gate() {
        let gate_false =
            pod(json!({"conditions": [{"type": "example.com/gate", "status": "False"}]}));
        let gate_true =
            pod(json!({"conditions": [{"type": "example.com/gate", "status": "True"}]}));
        assert_eq!(ready_of(&status(&pod(json!({})), &[view(true)])), "False");
        assert_eq!(ready_of(&status(&gate_false, &[view(true)])), "False");
        assert_eq!(ready_of(&status(&gate_true, &[view(false)])), "False");
        let ok = status(&gate_true, &[view(true)]);
        assert_eq!(ready_of(&ok), "True");
        assert_eq!(ok["phase"], "Running");
        assert_eq!(ok["podIP"], "127.100.0.1");
        let msg = status(&gate_false, &[view(true)]);
        let ready = ready_condition(&msg);
        assert_eq!(ready["reason"], "ReadinessGatesNotReady");
    }

    #[test]
    fn transition_time_kept_while_status_unchanged() {
        let p = pod(
            json!({"conditions": [{"type": "example.com/gate", "status": "True"},
            {"type": "Ready", "status": "True", "lastTransitionTime": "2025-12-31T00:00:00Z"}]}),
        );
        let s = status(&p, &[view(true)]);
        let ready = ready_condition(&s);
        assert_eq!(ready["lastTransitionTime"], "2025-12-31T00:00:00Z");
        let s = status(&p, &[view(false)]);
        let ready = ready_condition(&s);
        assert_eq!(ready["lastTransitionTime"], "2026-01-01T00:00:05Z");
    }

    #[test]
    fn phases() {
        let p = pod(json!({}));
        let mut done = view(false);
        done.phase = ContainerPhase::Terminated(0, "a".into(), "b".into());
        assert_eq!(status(&p, &[done.clone()])["phase"], "Succeeded");
        done.phase = ContainerPhase::Terminated(2, "a".into(), "b".into());
        assert_eq!(status(&p, &[done])["phase"], "Failed");
        let mut waiting = view(false);
        waiting.phase = ContainerPhase::Waiting("CreateContainerConfigError".into(), "x".into());
        assert_eq!(status(&p, &[waiting])["phase"], "Pending");
    }
}
