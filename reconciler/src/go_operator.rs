//! Clusters the Go EMQX Operator 2.2.x created: recognising its sets and
//! reading their pod templates in our spelling, so that such a cluster is
//! taken over as it runs.
//!
//! **The adoption rule.** A live set whose pod template carries the
//! `apps.emqx.io/on-serving` readiness gate was rendered by the Go operator
//! (ours never renders that gate). Its template is translated by
//! [`as_ours`] — Go's spellings of the same pod replaced by ours — and then
//! compared with what we render from the spec *now*, by the same
//! [`crate::revision::template_matches`] as any set. When they match, the
//! set is the desired revision: it keeps its name and its
//! `apps.emqx.io/pod-template-hash`, and `decide` sees a cluster at its
//! desired revision (no create, no scale, no Service move). When the spec
//! changed since the Go operator's last reconcile, the translated template
//! differs and the usual blue-green upgrade to our rendering follows.
//!
//! Why not trust the revision the Go operator recorded in the object's
//! status (`coreNodesStatus.updateRevision`)? The Go operator records no
//! `observedGeneration`, so its status cannot tell whether the spec changed
//! after its last pass (a user may edit the object while no manager runs);
//! the template can, field by field. And why translate rather than render
//! what Go would render? The differences are few, fixed and captured from a
//! real Go-created cluster (`tests/fixtures/go-operator-2.2.29/`): the
//! translation touches only them, so everything the spec controls (image,
//! user env, probes, resources, scheduling, extra volumes) is still
//! compared as is. Where Go renders something the translation does not
//! cover (an HTTPS-only dashboard, user ports colliding with ours), the
//! templates differ and the cluster is upgraded to our rendering: the rule
//! fails towards a safe blue-green, never towards adopting a pod that says
//! something else than the spec.
//!
//! The translation (facts from the fixtures and upstream's
//! `controllers/apps/v2beta1/add_emqx_core.go` at tag 2.2.29):
//! - Go prepends `EMQX_DASHBOARD__LISTENERS__HTTP__BIND` to the env; ours
//!   puts it right after `EMQX_API_KEY__BOOTSTRAP_FILE`;
//! - Go writes that bootstrap path HOCON-quoted (`"\"/opt/…\""`);
//! - Go's replicants take `EMQX_HOST` from `status.podIP` without
//!   `POD_NAME`/`POD_IP` (ours: both, and `EMQX_HOST=$(POD_IP)`; the node
//!   name is `emqx@<pod IP>` either way). Read from upstream's source, not
//!   captured: the capture is a core-only cluster;
//! - Go names the volumes `bootstrap-config`, `<name>-<role>-log` and
//!   `<name>-<role>-data` (ours: `config`, `log`, `<name>-data`) and puts an
//!   emptyDir data volume first (ours: after `log`);
//! - Go declares no `mqtt` container port (informational only);
//! - Go adds the readiness gate `apps.emqx.io/on-serving`. The gate stays on
//!   the live pods, so ours manages that pod condition from then on
//!   (`decide`'s [`crate::decide::Action::MarkServing`]).

use crate::live::LiveSet;
use crate::observed::{Role, Spec};
use crate::render::{BOOTSTRAP_FILE, CONTAINER};
use emqx_crd::names::READINESS_GATE_ON_SERVING;
use serde_json::{Value, json};

const DASHBOARD_BIND: &str = "EMQX_DASHBOARD__LISTENERS__HTTP__BIND";
const BOOTSTRAP_ENV: &str = "EMQX_API_KEY__BOOTSTRAP_FILE";

/// The template carries the Go operator's readiness gate.
pub fn is_go_template(template: &Value) -> bool {
    template
        .pointer("/spec/readinessGates")
        .and_then(Value::as_array)
        .is_some_and(|gates| gates.iter().any(is_on_serving_gate))
}

fn is_on_serving_gate(gate: &Value) -> bool {
    gate.get("conditionType").and_then(Value::as_str) == Some(READINESS_GATE_ON_SERVING)
}

/// A Go-rendered pod template of cluster `name`, in our spelling (see the
/// module documentation for each change). A template that is not Go's is
/// returned unchanged.
pub fn as_ours(template: &Value, name: &str, role: Role) -> Value {
    if !is_go_template(template) {
        return template.clone();
    }
    let mut t = template.clone();
    if let Some(spec) = t.get_mut("spec").and_then(Value::as_object_mut) {
        if let Some(gates) = spec.get_mut("readinessGates").and_then(Value::as_array_mut) {
            gates.retain(|g| !is_on_serving_gate(g));
        }
        let renamed = |volume: &str| -> Option<String> {
            match volume {
                "bootstrap-config" => Some("config".into()),
                v if v == format!("{name}-{}-log", role.as_str()) => Some("log".into()),
                v if v == format!("{name}-{}-data", role.as_str()) => Some(format!("{name}-data")),
                _ => None,
            }
        };
        if let Some(volumes) = spec.get_mut("volumes").and_then(Value::as_array_mut) {
            rename_all(volumes, &renamed);
            move_leading_data_volume(volumes, &format!("{name}-data"));
        }
        if let Some(container) = spec
            .get_mut("containers")
            .and_then(Value::as_array_mut)
            .and_then(|cs| {
                cs.iter_mut()
                    .find(|c| c.get("name").and_then(Value::as_str) == Some(CONTAINER))
            })
        {
            if let Some(mounts) = container
                .get_mut("volumeMounts")
                .and_then(Value::as_array_mut)
            {
                rename_all(mounts, &renamed);
            }
            if let Some(env) = container.get_mut("env").and_then(Value::as_array_mut) {
                reorder_env(env);
                if role == Role::Replicant {
                    replicant_host_env(env);
                }
            }
            if let Some(ports) = container.get_mut("ports").and_then(Value::as_array_mut) {
                add_mqtt_port(ports);
            }
        }
    }
    t
}

fn rename_all(items: &mut [Value], renamed: &dyn Fn(&str) -> Option<String>) {
    for item in items {
        let new = item.get("name").and_then(Value::as_str).and_then(renamed);
        if let Some(new) = new {
            item["name"] = Value::String(new);
        }
    }
}

/// Go prepends the emptyDir data volume; ours renders it after `log`.
fn move_leading_data_volume(volumes: &mut Vec<Value>, data: &str) {
    let leading = volumes
        .first()
        .is_some_and(|v| v.get("name").and_then(Value::as_str) == Some(data));
    let after_log = volumes
        .iter()
        .position(|v| v.get("name").and_then(Value::as_str) == Some("log"));
    if let (true, Some(log)) = (leading, after_log) {
        let volume = volumes.remove(0);
        volumes.insert(log, volume);
    }
}

fn env_named(var: &Value) -> Option<&str> {
    var.get("name").and_then(Value::as_str)
}

/// Unquotes Go's HOCON-quoted bootstrap path and moves its leading
/// dashboard bind right after it. Only Go's own entries move: the user's
/// env (after them) is compared as it is, order included.
fn reorder_env(env: &mut Vec<Value>) {
    let quoted = format!("\"{BOOTSTRAP_FILE}\"");
    if let Some(bootstrap) = env.iter().position(|v| {
        env_named(v) == Some(BOOTSTRAP_ENV)
            && v.get("value").and_then(Value::as_str) == Some(&quoted)
    }) {
        env[bootstrap]["value"] = Value::String(BOOTSTRAP_FILE.into());
        if env.first().and_then(env_named) == Some(DASHBOARD_BIND) && bootstrap > 0 {
            let bind = env.remove(0);
            // The bootstrap entry moved up by one; insert right after it.
            env.insert(bootstrap, bind);
        }
    }
    drop_overridden(env);
}

/// Go renders its own entry and then the user's entry of the same name (the
/// kubelet lets the later one win); ours renders the user's entry only, in
/// the user's place (`render.rs`). Dropping every entry that a later entry
/// of the same name overrides gives ours.
fn drop_overridden(env: &mut Vec<Value>) {
    let mut seen = std::collections::BTreeSet::new();
    let mut kept: Vec<Value> = Vec::with_capacity(env.len());
    for var in env.drain(..).rev() {
        let first_from_the_end = match env_named(&var) {
            Some(name) => seen.insert(name.to_owned()),
            None => true,
        };
        if first_from_the_end {
            kept.push(var);
        }
    }
    kept.reverse();
    *env = kept;
}

/// Go's replicants take `EMQX_HOST` straight from `status.podIP`; ours
/// declare `POD_NAME` and `POD_IP` first and set `EMQX_HOST=$(POD_IP)`
/// (`add_emqx_repl.go`, tag 2.2.29). Either way the node is `emqx@<pod IP>`.
fn replicant_host_env(env: &mut Vec<Value>) {
    let field = |name: &str, path: &str| json!({"name": name, "valueFrom": {"fieldRef": {"fieldPath": path}}});
    let pod_ip_host = |v: &Value| {
        env_named(v) == Some("EMQX_HOST")
            && v.pointer("/valueFrom/fieldRef/fieldPath")
                .and_then(Value::as_str)
                == Some("status.podIP")
    };
    let Some(host) = env.iter().position(pod_ip_host) else {
        return;
    };
    if env.iter().any(|v| env_named(v) == Some("POD_NAME")) {
        return;
    }
    env[host] = json!({"name": "EMQX_HOST", "value": "$(POD_IP)"});
    env.splice(
        0..0,
        [
            field("POD_NAME", "metadata.name"),
            field("POD_IP", "status.podIP"),
        ],
    );
}

/// Ours declares the MQTT port after the dashboard's; Go declares none.
fn add_mqtt_port(ports: &mut Vec<Value>) {
    let has_mqtt = ports.iter().any(|p| {
        p.get("name").and_then(Value::as_str) == Some("mqtt")
            || p.get("containerPort").and_then(Value::as_i64) == Some(1883)
    });
    let dashboard = ports
        .iter()
        .position(|p| p.get("name").and_then(Value::as_str) == Some("dashboard"));
    if let (false, Some(i)) = (has_mqtt, dashboard) {
        ports.insert(
            i + 1,
            json!({"name": "mqtt", "containerPort": 1883, "protocol": "TCP"}),
        );
    }
}

/// The cluster runs a Go-created set as its desired revision: it was taken
/// over as it is, and no upgrade has replaced it yet. Its base objects
/// (ConfigMap, headless Service, PDBs) are then left as the Go operator
/// wrote them ([`crate::base::ensure`]).
pub fn runs_adopted_revision(spec: &Spec, sets: &[LiveSet]) -> bool {
    sets.iter()
        .any(|s| s.go_made && s.view.is_desired(spec) && s.view.replicas > 0)
}

#[cfg(test)]
mod tests;
