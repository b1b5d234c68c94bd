//! A container's environment as the kubelet computes it: `env` (literal,
//! `$(VAR)` references, downward-API `fieldRef`/`resourceFieldRef`, Secret and
//! ConfigMap keys) and `envFrom`. Pure: the Secrets and ConfigMaps are passed in.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::{Container, Pod};

use crate::node::capacity::{NODE_CPU, NODE_MEMORY_BYTES};

/// Secret and ConfigMap data of the pod's namespace that the pod refers to
/// (absent names are simply missing).
#[derive(Debug, Default, Clone)]
pub struct ObjectData {
    /// Secret name → key → bytes.
    pub secrets: BTreeMap<String, BTreeMap<String, Vec<u8>>>,
    /// ConfigMap name → key → bytes (`data` and `binaryData`).
    pub config_maps: BTreeMap<String, BTreeMap<String, Vec<u8>>>,
}

/// Why an environment cannot be built (the kubelet's `CreateContainerConfigError`).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EnvError {
    /// A referenced Secret or ConfigMap, or a key of it, does not exist.
    #[error("env {var}: {kind} {name:?} {detail}")]
    MissingSource {
        var: String,
        kind: &'static str,
        name: String,
        detail: String,
    },
    /// A `fieldRef`/`resourceFieldRef` this sandbox does not support.
    #[error("env {var}: unsupported {what} {path:?}")]
    Unsupported {
        var: String,
        what: &'static str,
        path: String,
    },
    /// A value is not UTF-8.
    #[error("env {var}: value from {kind} {name:?} is not UTF-8")]
    NotUtf8 {
        var: String,
        kind: &'static str,
        name: String,
    },
}

/// What the downward API may read besides the pod object.
#[derive(Debug, Clone, Copy)]
pub struct PodAddresses {
    /// The pod's IP.
    pub pod_ip: Ipv4Addr,
    /// The node's IP.
    pub host_ip: Ipv4Addr,
}

/// The image repository (no tag, no digest): `a/b:1.0` → `a/b`, `r:5000/a@sha256:..` → `r:5000/a`.
pub fn image_repository(image: &str) -> &str {
    let without_digest = image.split('@').next().unwrap_or(image);
    match without_digest.rfind(':') {
        Some(colon) if !without_digest[colon..].contains('/') => &without_digest[..colon],
        _ => without_digest,
    }
}

/// Kubernetes `$(VAR)` expansion: defined references are replaced, undefined
/// ones kept verbatim, `$$` is a literal `$`.
pub fn expand(value: &str, vars: &BTreeMap<String, String>) -> String {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(stripped) = after.strip_prefix('$') {
            out.push('$');
            rest = stripped;
        } else if let Some(inner) = after.strip_prefix('(') {
            match inner.find(')') {
                Some(end) => {
                    let name = &inner[..end];
                    match vars.get(name) {
                        Some(v) => out.push_str(v),
                        None => {
                            out.push_str("$(");
                            out.push_str(name);
                            out.push(')');
                        }
                    }
                    rest = &inner[end + 1..];
                }
                None => {
                    out.push_str("$(");
                    rest = inner;
                }
            }
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// The container's environment, in definition order (later entries win).
pub fn resolve_env(
    pod: &Pod,
    container: &Container,
    addresses: PodAddresses,
    data: &ObjectData,
) -> Result<Vec<(String, String)>, EnvError> {
    let mut vars: BTreeMap<String, String> = BTreeMap::new();
    let mut order: Vec<String> = Vec::new();
    let mut set = |vars: &mut BTreeMap<String, String>, name: String, value: String| {
        if vars.insert(name.clone(), value).is_none() {
            order.push(name);
        }
    };
    for source in container.env_from.iter().flatten() {
        let prefix = source.prefix.clone().unwrap_or_default();
        let (kind, name, optional, found) = if let Some(r) = &source.config_map_ref {
            (
                "ConfigMap",
                r.name.clone(),
                r.optional,
                data.config_maps.get(&r.name),
            )
        } else if let Some(r) = &source.secret_ref {
            (
                "Secret",
                r.name.clone(),
                r.optional,
                data.secrets.get(&r.name),
            )
        } else {
            continue;
        };
        match found {
            Some(entries) => {
                for (key, bytes) in entries {
                    let value =
                        String::from_utf8(bytes.clone()).map_err(|_| EnvError::NotUtf8 {
                            var: format!("{prefix}{key}"),
                            kind,
                            name: name.clone(),
                        })?;
                    set(&mut vars, format!("{prefix}{key}"), value);
                }
            }
            None if optional == Some(true) => {}
            None => {
                return Err(EnvError::MissingSource {
                    var: "envFrom".into(),
                    kind,
                    name,
                    detail: "not found".into(),
                });
            }
        }
    }
    for var in container.env.iter().flatten() {
        let value = if let Some(value) = &var.value {
            Some(expand(value, &vars))
        } else if let Some(from) = &var.value_from {
            if let Some(field) = &from.field_ref {
                Some(
                    field_value(pod, &field.field_path, addresses).ok_or_else(|| {
                        EnvError::Unsupported {
                            var: var.name.clone(),
                            what: "fieldRef",
                            path: field.field_path.clone(),
                        }
                    })?,
                )
            } else if let Some(resource) = &from.resource_field_ref {
                Some(
                    resource_value(container, &resource.resource).ok_or_else(|| {
                        EnvError::Unsupported {
                            var: var.name.clone(),
                            what: "resourceFieldRef",
                            path: resource.resource.clone(),
                        }
                    })?,
                )
            } else if let Some(key) = &from.secret_key_ref {
                key_value(
                    &var.name,
                    "Secret",
                    &key.name,
                    &key.key,
                    key.optional,
                    data.secrets.get(&key.name),
                )?
            } else if let Some(key) = &from.config_map_key_ref {
                key_value(
                    &var.name,
                    "ConfigMap",
                    &key.name,
                    &key.key,
                    key.optional,
                    data.config_maps.get(&key.name),
                )?
            } else {
                Some(String::new())
            }
        } else {
            Some(String::new())
        };
        if let Some(value) = value {
            set(&mut vars, var.name.clone(), value);
        }
    }
    Ok(order
        .into_iter()
        .filter_map(|name| vars.get(&name).map(|v| (name.clone(), v.clone())))
        .collect())
}

fn key_value(
    var: &str,
    kind: &'static str,
    name: &str,
    key: &str,
    optional: Option<bool>,
    entries: Option<&BTreeMap<String, Vec<u8>>>,
) -> Result<Option<String>, EnvError> {
    let missing = |detail: String| EnvError::MissingSource {
        var: var.to_string(),
        kind,
        name: name.to_string(),
        detail,
    };
    match entries.map(|e| e.get(key)) {
        Some(Some(bytes)) => {
            String::from_utf8(bytes.clone())
                .map(Some)
                .map_err(|_| EnvError::NotUtf8 {
                    var: var.to_string(),
                    kind,
                    name: name.to_string(),
                })
        }
        _ if optional == Some(true) => Ok(None),
        Some(None) => Err(missing(format!("has no key {key:?}"))),
        None => Err(missing("not found".into())),
    }
}

/// The downward-API value of `path` for `pod`.
pub fn field_value(pod: &Pod, path: &str, addresses: PodAddresses) -> Option<String> {
    let meta = &pod.metadata;
    let spec = pod.spec.as_ref();
    let map_entry =
        |path: &str, prefix: &str, map: Option<&BTreeMap<String, String>>| -> Option<String> {
            let key = path.strip_prefix(prefix)?.strip_suffix("']")?;
            Some(map.and_then(|m| m.get(key)).cloned().unwrap_or_default())
        };
    match path {
        "metadata.name" => meta.name.clone(),
        "metadata.namespace" => meta.namespace.clone(),
        "metadata.uid" => meta.uid.clone(),
        "spec.nodeName" => spec.and_then(|s| s.node_name.clone()),
        "spec.serviceAccountName" => Some(
            spec.and_then(|s| s.service_account_name.clone())
                .unwrap_or_else(|| "default".into()),
        ),
        "status.podIP" | "status.podIPs" => Some(addresses.pod_ip.to_string()),
        "status.hostIP" | "status.hostIPs" => Some(addresses.host_ip.to_string()),
        p if p.starts_with("metadata.labels['") => {
            map_entry(p, "metadata.labels['", meta.labels.as_ref())
        }
        p if p.starts_with("metadata.annotations['") => {
            map_entry(p, "metadata.annotations['", meta.annotations.as_ref())
        }
        _ => None,
    }
}

/// `resourceFieldRef` with divisor 1: the container's own request/limit, or
/// the node's capacity for an unset limit (what the kubelet reports).
fn resource_value(container: &Container, resource: &str) -> Option<String> {
    let resources = container.resources.as_ref();
    let (section, name) = resource.split_once('.')?;
    let map = match section {
        "limits" => resources.and_then(|r| r.limits.as_ref()),
        "requests" => resources.and_then(|r| r.requests.as_ref()),
        _ => return None,
    };
    if let Some(quantity) = map.and_then(|m| m.get(name)) {
        return Some(quantity.0.clone());
    }
    match (section, name) {
        ("limits", "cpu") => Some(NODE_CPU.to_string()),
        ("limits", "memory") => Some(NODE_MEMORY_BYTES.to_string()),
        ("requests", "cpu" | "memory") => Some("0".into()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod() -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "p-0", "namespace": "ns", "uid": "u1", "labels": {"app": "x"}},
            "spec": {"nodeName": "n", "containers": [{"name": "c"}]}
        }))
        .expect("pod")
    }

    fn container(env: serde_json::Value) -> Container {
        serde_json::from_value(json!({"name": "c", "env": env})).expect("container")
    }

    const ADDR: PodAddresses = PodAddresses {
        pod_ip: Ipv4Addr::new(127, 100, 0, 7),
        host_ip: Ipv4Addr::new(127, 95, 0, 2),
    };

    #[test]
    fn repository_strips_tag_and_digest_but_not_registry_port() {
        assert_eq!(
            image_repository("emqx-operator/emqx-webhook:0.1.0"),
            "emqx-operator/emqx-webhook"
        );
        assert_eq!(
            image_repository("emqx-operator/emqx-webhook"),
            "emqx-operator/emqx-webhook"
        );
        assert_eq!(image_repository("reg:5000/a/b"), "reg:5000/a/b");
        assert_eq!(image_repository("reg:5000/a/b:1@sha256:00"), "reg:5000/a/b");
        assert_eq!(image_repository(""), "");
        assert_eq!(image_repository(":::"), "::");
    }

    #[test]
    fn expansion_follows_kubernetes_rules() {
        let vars: BTreeMap<String, String> = [("A".to_string(), "1".to_string())].into();
        assert_eq!(expand("x$(A)y", &vars), "x1y");
        assert_eq!(expand("$(B)", &vars), "$(B)");
        assert_eq!(expand("$$(A)", &vars), "$(A)");
        assert_eq!(expand("$(A", &vars), "$(A");
        assert_eq!(expand("$", &vars), "$");
        assert_eq!(expand("a$b", &vars), "a$b");
    }

    #[test]
    fn downward_api_and_references_resolve() {
        let c = container(json!([
            {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            {"name": "NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
            {"name": "ADDR", "value": "$(NAME).$(POD_IP)"},
            {"name": "PASS", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}},
        ]));
        let mut data = ObjectData::default();
        data.secrets
            .insert("s".into(), [("k".to_string(), b"v".to_vec())].into());
        let env = resolve_env(&pod(), &c, ADDR, &data).expect("env");
        let map: BTreeMap<_, _> = env.into_iter().collect();
        assert_eq!(map["POD_IP"], "127.100.0.7");
        assert_eq!(map["ADDR"], "p-0.127.100.0.7");
        assert_eq!(map["APP"], "x");
        assert_eq!(map["PASS"], "v");
    }

    #[test]
    fn missing_or_hostile_references_are_errors_naming_the_variable() {
        let c = container(
            json!([{"name": "PASS", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}]),
        );
        let err = resolve_env(&pod(), &c, ADDR, &ObjectData::default()).expect_err("missing");
        assert!(err.to_string().contains("PASS") && err.to_string().contains("\"s\""));
        let optional = container(
            json!([{"name": "P", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k", "optional": true}}}]),
        );
        assert!(
            resolve_env(&pod(), &optional, ADDR, &ObjectData::default())
                .expect("optional")
                .is_empty()
        );
        let weird = container(
            json!([{"name": "X", "valueFrom": {"fieldRef": {"fieldPath": "spec.containers[0]"}}}]),
        );
        let err =
            resolve_env(&pod(), &weird, ADDR, &ObjectData::default()).expect_err("unsupported");
        assert!(err.to_string().contains("X"));
        let mut data = ObjectData::default();
        data.config_maps
            .insert("cm".into(), [("k".to_string(), vec![0xff, 0xfe])].into());
        let binary = container(
            json!([{"name": "B", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "k"}}}]),
        );
        assert_eq!(
            resolve_env(&pod(), &binary, ADDR, &data),
            Err(EnvError::NotUtf8 {
                var: "B".into(),
                kind: "ConfigMap",
                name: "cm".into()
            })
        );
    }
}
