//! Typed conversions between the served versions. These map every field that
//! has a counterpart; what has none is carried losslessly by
//! [`crate::conversion_data`] at the JSON level (the conversion webhook), so
//! these `From`s alone are lossy exactly there.
//!
//! v1beta4 ↔ v2beta1 (`EmqxEnterprise`): `blueGreenUpdate` ↔ `updateStrategy`
//! (`type: Recreate`), image parts ↔ image string + `imagePullPolicy`,
//! `replicas` ↔ `coreTemplate.spec.replicas`, `persistent.spec` ↔
//! `coreTemplate.spec.volumeClaimTemplates`, `serviceTemplate` ↔
//! `listenersServiceTemplate`, `emqxConfig` ↔ `config.data` (one
//! `key = "value"` line per entry), the EMQX container's fields ↔ the core
//! template's, status nodes/evacuations/revision ↔ their v2 counterparts.

use crate::image::split_image;
use crate::{v1beta4, v2alpha2, v2beta1};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use std::collections::BTreeMap;

// ---------------------------------------------------------------- EMQX v2alpha2 ↔ v2beta1

impl From<v2alpha2::EMQX> for v2beta1::EMQX {
    fn from(old: v2alpha2::EMQX) -> Self {
        let s = old.spec;
        let spec = v2beta1::EMQXSpec {
            image: s.image,
            image_pull_policy: s.image_pull_policy,
            image_pull_secrets: s.image_pull_secrets,
            service_account_name: s.service_account_name,
            bootstrap_api_keys: s.bootstrap_api_keys.map(|keys| {
                keys.into_iter()
                    .map(|k| v2beta1::BootstrapAPIKey {
                        key: Some(k.key),
                        secret: Some(k.secret),
                        secret_ref: None,
                    })
                    .collect()
            }),
            config: s.config.map(|c| v2beta1::Config {
                mode: c.mode.map(|m| match m.as_str() {
                    "merge" => "Merge".to_owned(),
                    "replace" => "Replace".to_owned(),
                    _ => m,
                }),
                data: c.data,
            }),
            cluster_domain: s.cluster_domain,
            revision_history_limit: None,
            update_strategy: s.update_strategy,
            core_template: s.core_template,
            replicant_template: s.replicant_template,
            dashboard_service_template: s.dashboard_service_template.map(service_to_template),
            listeners_service_template: s.listeners_service_template.map(service_to_template),
        };
        v2beta1::EMQX {
            metadata: old.metadata,
            spec,
            status: old.status.map(|st| v2beta1::EMQXStatus {
                conditions: st.conditions,
                core_nodes: st.core_nodes.map(nodes_from_v2alpha2),
                core_nodes_status: st.core_nodes_status,
                replicant_nodes: st.replicant_nodes.map(nodes_from_v2alpha2),
                replicant_nodes_status: st.replicant_nodes_status,
                node_evacuations_status: st.nod_evacuations_status,
            }),
        }
    }
}

impl From<v2beta1::EMQX> for v2alpha2::EMQX {
    fn from(hub: v2beta1::EMQX) -> Self {
        let s = hub.spec;
        let spec = v2alpha2::EMQXSpec {
            image: s.image,
            image_pull_policy: s.image_pull_policy,
            image_pull_secrets: s.image_pull_secrets,
            service_account_name: s.service_account_name,
            bootstrap_api_keys: s.bootstrap_api_keys.map(|keys| {
                keys.into_iter()
                    .map(|k| v2alpha2::BootstrapAPIKey {
                        key: k.key.unwrap_or_default(),
                        secret: k.secret.unwrap_or_default(),
                    })
                    .collect()
            }),
            config: s.config.map(|c| v2alpha2::Config {
                mode: c.mode.map(|m| match m.as_str() {
                    "Merge" => "merge".to_owned(),
                    "Replace" => "replace".to_owned(),
                    _ => m,
                }),
                data: c.data,
            }),
            cluster_domain: s.cluster_domain,
            update_strategy: s.update_strategy,
            dashboard_service_template: s.dashboard_service_template.map(template_to_service),
            listeners_service_template: s.listeners_service_template.map(template_to_service),
            core_template: s.core_template,
            replicant_template: s.replicant_template,
        };
        v2alpha2::EMQX {
            metadata: hub.metadata,
            spec,
            status: hub.status.map(|st| v2alpha2::EMQXStatus {
                conditions: st.conditions,
                core_nodes: st.core_nodes.map(nodes_to_v2alpha2),
                core_nodes_status: st.core_nodes_status,
                replicant_nodes: st.replicant_nodes.map(nodes_to_v2alpha2),
                replicant_nodes_status: st.replicant_nodes_status,
                nod_evacuations_status: st.node_evacuations_status,
            }),
        }
    }
}

fn service_to_template(service: v2alpha2::Service) -> v2beta1::ServiceTemplate {
    v2beta1::ServiceTemplate {
        enabled: None,
        metadata: service.metadata,
        spec: service.spec,
    }
}

fn template_to_service(template: v2beta1::ServiceTemplate) -> v2alpha2::Service {
    v2alpha2::Service {
        metadata: template.metadata,
        spec: template.spec,
        ..v2alpha2::Service::default()
    }
}

fn nodes_from_v2alpha2(nodes: Vec<v2alpha2::EMQXNode>) -> Vec<v2beta1::EMQXNode> {
    nodes
        .into_iter()
        .map(|n| v2beta1::EMQXNode {
            controller_uid: n.controller_uid,
            pod_uid: n.pod_uid,
            node: n.node,
            node_status: n.node_status,
            otp_release: n.otp_release,
            version: n.version,
            role: n.role,
            edition: n.edition,
            connections: n.connections,
            live_connections: n.live_connections,
        })
        .collect()
}

fn nodes_to_v2alpha2(nodes: Vec<v2beta1::EMQXNode>) -> Vec<v2alpha2::EMQXNode> {
    nodes
        .into_iter()
        .map(|n| v2alpha2::EMQXNode {
            controller_uid: n.controller_uid,
            pod_uid: n.pod_uid,
            node: n.node,
            node_status: n.node_status,
            otp_release: n.otp_release,
            version: n.version,
            role: n.role,
            edition: n.edition,
            uptime: None,
            connections: n.connections,
            live_connections: n.live_connections,
        })
        .collect()
}

// ---------------------------------------------------------------- EmqxEnterprise v2beta1 ↔ EMQX v2beta1

impl From<v2beta1::EmqxEnterprise> for v2beta1::EMQX {
    /// The hub view of an `EmqxEnterprise` v2beta1 object (same spec shape),
    /// so the reconciler handles both kinds with one engine.
    fn from(e: v2beta1::EmqxEnterprise) -> Self {
        v2beta1::EMQX {
            metadata: e.metadata,
            spec: e.spec.emqx,
            status: e.status,
        }
    }
}

impl From<v2beta1::EMQX> for v2beta1::EmqxEnterprise {
    fn from(e: v2beta1::EMQX) -> Self {
        v2beta1::EmqxEnterprise {
            metadata: e.metadata,
            spec: v2beta1::EmqxEnterpriseSpec { emqx: e.spec },
            status: e.status,
        }
    }
}

// ---------------------------------------------------------------- EmqxEnterprise v1beta4 ↔ v2beta1

/// `emqxConfig` as `config.data`: one `key = "value"` line per entry, sorted
/// by key, values quoted as JSON strings (valid HOCON).
pub fn emqx_config_to_data(config: &BTreeMap<String, String>) -> String {
    config
        .iter()
        .map(|(k, v)| format!("{k} = {}", serde_json::Value::String(v.clone())))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The inverse of [`emqx_config_to_data`]; `None` if `data` is not in that form.
pub fn data_to_emqx_config(data: &str) -> Option<BTreeMap<String, String>> {
    let mut config = BTreeMap::new();
    for line in data.split('\n') {
        let (key, value) = line.split_once(" = ")?;
        let value: String = serde_json::from_str(value).ok()?;
        if key.is_empty() || key.contains(char::is_whitespace) {
            return None;
        }
        config.insert(key.to_owned(), value);
    }
    Some(config)
}

fn none_if_default<T: Default + PartialEq>(value: T) -> Option<T> {
    (value != T::default()).then_some(value)
}

impl From<v1beta4::EmqxEnterprise> for v2beta1::EmqxEnterprise {
    fn from(old: v1beta4::EmqxEnterprise) -> Self {
        let s = old.spec;
        let template = s.template.unwrap_or_default();
        let pod = template.spec.unwrap_or_default();
        let container = pod.emqx_container.unwrap_or_default();
        let image = container.image;
        let core_spec = v2beta1::EMQXCoreTemplateSpec {
            pod: v2beta1::EMQXReplicantTemplateSpec {
                node_selector: pod.node_selector,
                node_name: pod.node_name,
                affinity: pod.affinity,
                tolerations: pod.tolerations,
                replicas: s.replicas,
                command: container.command,
                args: container.args,
                ports: container.ports,
                env: container.env,
                env_from: container.env_from,
                resources: container.resources,
                pod_security_context: pod.pod_security_context,
                container_security_context: container.security_context,
                init_containers: pod.init_containers,
                extra_containers: pod.extra_containers,
                extra_volumes: pod.volumes,
                extra_volume_mounts: container.volume_mounts,
                liveness_probe: container.liveness_probe,
                readiness_probe: container.readiness_probe,
                startup_probe: container.startup_probe,
                lifecycle: container.lifecycle,
                ..Default::default()
            },
            volume_claim_templates: s.persistent.map(|p| p.spec),
        };
        let core_template = none_if_default(v2beta1::EMQXCoreTemplate {
            metadata: template.metadata,
            spec: none_if_default(core_spec),
        });
        let emqx = v2beta1::EMQXSpec {
            image: image.reference(),
            image_pull_policy: image.pull_policy,
            image_pull_secrets: pod.image_pull_secrets,
            service_account_name: pod.service_account_name,
            bootstrap_api_keys: container.bootstrap_api_keys.map(|keys| {
                keys.into_iter()
                    .map(|k| v2beta1::BootstrapAPIKey {
                        key: Some(k.key),
                        secret: Some(k.secret),
                        secret_ref: None,
                    })
                    .collect()
            }),
            config: container.emqx_config.map(|c| v2beta1::Config {
                mode: None,
                data: Some(emqx_config_to_data(&c)),
            }),
            cluster_domain: s.cluster_domain,
            revision_history_limit: None,
            update_strategy: s.blue_green_update.map(|b| v2beta1::UpdateStrategy {
                type_: Some("Recreate".to_owned()),
                initial_delay_seconds: b.initial_delay_seconds,
                evacuation_strategy: b.evacuation_strategy,
                // What the Go operator does, and what the hub's default
                // says: so a defaulted v2beta1 strategy converts to v1beta4
                // and back without a conversion-data entry, and only
                // `Manual` (which v1beta4 cannot say) is stashed.
                promotion: Some(v2beta1::PROMOTION_AUTOMATIC.to_owned()),
                // Likewise the guard's defaults: only a changed guard
                // (which v1beta4 cannot say) is stashed.
                guard: Some(crate::guard::Guard::defaulted()),
            }),
            core_template,
            replicant_template: None,
            dashboard_service_template: None,
            listeners_service_template: s.service_template.map(|t| v2beta1::ServiceTemplate {
                enabled: None,
                metadata: t.metadata,
                spec: t.spec,
            }),
        };
        v2beta1::EmqxEnterprise {
            metadata: old.metadata,
            spec: v2beta1::EmqxEnterpriseSpec { emqx },
            status: old.status.map(status_v1beta4_to_v2),
        }
    }
}

impl From<v2beta1::EmqxEnterprise> for v1beta4::EmqxEnterprise {
    fn from(new: v2beta1::EmqxEnterprise) -> Self {
        let s = new.spec.emqx;
        let core = s.core_template.unwrap_or_default();
        let core_spec = core.spec.unwrap_or_default();
        let p = core_spec.pod;
        let parts = split_image(&s.image);
        let container = v1beta4::EmqxContainer {
            name: None,
            image: v1beta4::EmqxImage {
                registry: parts.registry,
                repository: parts.repository,
                version: parts.version,
                prefix: parts.prefix,
                suffix: parts.suffix,
                pull_policy: s.image_pull_policy,
            },
            command: p.command,
            args: p.args,
            ports: p.ports,
            env_from: p.env_from,
            env: p.env,
            resources: p.resources,
            volume_mounts: p.extra_volume_mounts,
            liveness_probe: p.liveness_probe,
            readiness_probe: p.readiness_probe,
            startup_probe: p.startup_probe,
            lifecycle: p.lifecycle,
            security_context: p.container_security_context,
            emqx_config: s
                .config
                .and_then(|c| c.data)
                .and_then(|d| data_to_emqx_config(&d)),
            bootstrap_api_keys: s.bootstrap_api_keys.map(|keys| {
                keys.into_iter()
                    .map(|k| v1beta4::BootstrapAPIKey {
                        key: k.key.unwrap_or_default(),
                        secret: k.secret.unwrap_or_default(),
                    })
                    .collect()
            }),
            ..Default::default()
        };
        let pod = v1beta4::EmqxTemplateSpec {
            service_account_name: s.service_account_name,
            reloader_image: None,
            image_pull_secrets: s.image_pull_secrets,
            emqx_container: Some(container),
            extra_containers: p.extra_containers,
            init_containers: p.init_containers,
            ephemeral_containers: None,
            volumes: p.extra_volumes,
            pod_security_context: p.pod_security_context,
            node_selector: p.node_selector,
            node_name: p.node_name,
            affinity: p.affinity,
            tolerations: p.tolerations,
        };
        let spec = v1beta4::EmqxEnterpriseSpec {
            replicas: p.replicas,
            cluster_domain: s.cluster_domain,
            license: None,
            persistent: core_spec.volume_claim_templates.map(|spec| {
                v1beta4::PersistentVolumeClaimTemplate {
                    metadata: None,
                    spec,
                }
            }),
            blue_green_update: s.update_strategy.map(|u| v1beta4::BlueGreenUpdate {
                initial_delay_seconds: u.initial_delay_seconds,
                evacuation_strategy: u.evacuation_strategy,
            }),
            template: Some(v1beta4::EmqxTemplate {
                metadata: core.metadata,
                spec: Some(pod),
            }),
            service_template: s
                .listeners_service_template
                .map(|t| v1beta4::ServiceTemplate {
                    metadata: t.metadata,
                    spec: t.spec,
                }),
        };
        v1beta4::EmqxEnterprise {
            metadata: new.metadata,
            spec,
            status: new.status.map(status_v2_to_v1beta4),
        }
    }
}

fn status_v1beta4_to_v2(st: v1beta4::EmqxEnterpriseStatus) -> v2beta1::EMQXStatus {
    let derived_nodes_status = v2beta1::EMQXNodesStatus {
        replicas: st.replicas,
        ready_replicas: st.ready_replicas,
        current_revision: st.current_stateful_set_version,
        ..Default::default()
    };
    let derived_nodes = st.emqx_nodes.map(|nodes| {
        nodes
            .into_iter()
            .map(|n| v2beta1::EMQXNode {
                node: n.node,
                node_status: n.node_status,
                otp_release: n.otp_release,
                version: n.version,
                connections: n.connections,
                ..Default::default()
            })
            .collect()
    });
    v2beta1::EMQXStatus {
        conditions: st.conditions.map(|cs| {
            cs.into_iter()
                .map(|c| Condition {
                    type_: c.type_,
                    status: c.status,
                    reason: c.reason.unwrap_or_default(),
                    message: c.message.unwrap_or_default(),
                    last_transition_time: c
                        .last_transition_time
                        .unwrap_or(Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH)),
                    observed_generation: c.observed_generation,
                })
                .collect()
        }),
        // The v2 fields win where the v1beta4 status carries them (written
        // through v2beta1); otherwise they are derived from upstream's fields.
        core_nodes: st.core_nodes.or(derived_nodes),
        core_nodes_status: st
            .core_nodes_status
            .or_else(|| none_if_default(derived_nodes_status)),
        replicant_nodes: st.replicant_nodes,
        replicant_nodes_status: st.replicant_nodes_status,
        node_evacuations_status: st
            .blue_green_update_status
            .and_then(|b| b.evacuations_status),
    }
}

fn status_v2_to_v1beta4(st: v2beta1::EMQXStatus) -> v1beta4::EmqxEnterpriseStatus {
    let core = st.core_nodes_status.clone().unwrap_or_default();
    v1beta4::EmqxEnterpriseStatus {
        conditions: st.conditions.map(|cs| {
            cs.into_iter()
                .map(|c| v1beta4::Condition {
                    type_: c.type_,
                    status: c.status,
                    last_update_time: None,
                    last_transition_time: Some(c.last_transition_time),
                    reason: Some(c.reason),
                    message: Some(c.message),
                    observed_generation: c.observed_generation,
                })
                .collect()
        }),
        emqx_nodes: st.core_nodes.as_ref().map(|nodes| {
            nodes
                .iter()
                .map(|n| v1beta4::EmqxNode {
                    node: n.node.clone(),
                    node_status: n.node_status.clone(),
                    otp_release: n.otp_release.clone(),
                    version: n.version.clone(),
                    connections: n.connections,
                })
                .collect()
        }),
        replicas: core.replicas,
        ready_replicas: core.ready_replicas,
        current_stateful_set_version: core.current_revision,
        blue_green_update_status: st.node_evacuations_status.map(|e| {
            v1beta4::BlueGreenUpdateStatus {
                evacuations_status: Some(e),
                ..Default::default()
            }
        }),
        core_nodes: st.core_nodes,
        core_nodes_status: st.core_nodes_status,
        replicant_nodes: st.replicant_nodes,
        replicant_nodes_status: st.replicant_nodes_status,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emqx_config_travels_as_config_lines() {
        let config = BTreeMap::from([
            ("name".to_owned(), "emqx-ee".to_owned()),
            (
                "listener.tcp.external".to_owned(),
                "0.0.0.0:1883 \"x\"".to_owned(),
            ),
        ]);
        let data = emqx_config_to_data(&config);
        assert_eq!(
            data,
            "listener.tcp.external = \"0.0.0.0:1883 \\\"x\\\"\"\nname = \"emqx-ee\""
        );
        assert_eq!(data_to_emqx_config(&data), Some(config));
        assert_eq!(data_to_emqx_config("license { key = 1 }"), None);
    }

    #[test]
    fn v1beta4_blue_green_image_and_replicas_map_to_the_hub() {
        let old = v1beta4::EmqxEnterprise::new(
            "emqx-ee",
            v1beta4::EmqxEnterpriseSpec {
                replicas: Some(3),
                blue_green_update: Some(v1beta4::BlueGreenUpdate {
                    initial_delay_seconds: Some(5),
                    evacuation_strategy: Some(crate::evacuation::EvacuationStrategy {
                        wait_takeover: Some(5),
                        conn_evict_rate: Some(10),
                        sess_evict_rate: Some(10),
                    }),
                }),
                template: Some(v1beta4::EmqxTemplate {
                    metadata: None,
                    spec: Some(v1beta4::EmqxTemplateSpec {
                        emqx_container: Some(v1beta4::EmqxContainer {
                            image: v1beta4::EmqxImage {
                                registry: Some("docker.io".into()),
                                repository: Some("emqx/emqx-ee".into()),
                                version: "4.4.14".into(),
                                pull_policy: Some("Never".into()),
                                ..Default::default()
                            },
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                }),
                ..Default::default()
            },
        );
        let hub: v2beta1::EMQX = v2beta1::EmqxEnterprise::from(old.clone()).into();
        assert_eq!(hub.spec.image, "docker.io/emqx/emqx-ee:4.4.14");
        assert_eq!(hub.spec.image_pull_policy.as_deref(), Some("Never"));
        let strategy = hub.spec.update_strategy.clone().unwrap_or_default();
        assert_eq!(strategy.type_.as_deref(), Some("Recreate"));
        assert_eq!(strategy.initial_delay_seconds, Some(5));
        assert_eq!(
            strategy.evacuation_strategy.and_then(|e| e.conn_evict_rate),
            Some(10)
        );
        let core = hub
            .spec
            .core_template
            .clone()
            .and_then(|t| t.spec)
            .unwrap_or_default();
        assert_eq!(core.pod.replicas, Some(3));
        let back: v1beta4::EmqxEnterprise = v2beta1::EmqxEnterprise::from(hub).into();
        assert_eq!(back.spec.replicas, Some(3));
        assert_eq!(back.spec.blue_green_update, old.spec.blue_green_update);
        let image = back
            .spec
            .template
            .and_then(|t| t.spec)
            .and_then(|s| s.emqx_container)
            .map(|c| c.image);
        assert_eq!(image.and_then(|i| i.registry).as_deref(), Some("docker.io"));
    }

    #[test]
    fn status_written_through_v2_survives_v1beta4() {
        let status = v2beta1::EMQXStatus {
            core_nodes_status: Some(v2beta1::EMQXNodesStatus {
                replicas: Some(6),
                update_revision: Some("5d87d4c6bd".into()),
                current_revision: Some("54fc496fb4".into()),
                ..Default::default()
            }),
            replicant_nodes_status: Some(v2beta1::EMQXNodesStatus {
                ready_replicas: Some(2),
                ..Default::default()
            }),
            ..Default::default()
        };
        let stored = status_v2_to_v1beta4(status.clone());
        assert_eq!(
            stored.current_stateful_set_version.as_deref(),
            Some("54fc496fb4")
        );
        assert_eq!(status_v1beta4_to_v2(stored), status);
    }
}
