//! A pod's volumes made real as directories under the pod's directory:
//! Secret, ConfigMap, projected (Secret, ConfigMap, downward API and
//! ServiceAccount token sources), downward API, emptyDir; a
//! persistentVolumeClaim is a directory per claim that outlives the pod.
//! Other volume types become empty directories.
//!
//! Like the kubelet's periodic sync, the kubelet calls [`materialise`] again
//! every [`REFRESH_INTERVAL`], so changed Secrets and ConfigMaps (rotated
//! certificates) reach running processes without a restart.
//!
//! Containers of the project's images see these directories bind-mounted at
//! their `mountPath` ([`crate::node::pod_container`]). Host processes cannot
//! (there are no mount namespaces); see [`crate::node::pod_process`] for how
//! paths are handed to them. Files get the volume's `defaultMode` (0644
//! unless set; item modes are not applied) and, with a pod `fsGroup`, that
//! group with the owner's read bit, directories 0755, under a state directory
//! any user may traverse: a container's user 65532 reads its Secrets and
//! token exactly when a kubelet would let it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component, Path, PathBuf};

use anyhow::{Context, Result};
use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{ConfigMap, Container, KeyToPath, Pod, Secret, ServiceAccount};
use kube::Api;
use kube::api::PostParams;

use crate::node::pod_env::{ObjectData, PodAddresses, field_value};

/// How often volume contents are refreshed from the API.
pub const REFRESH_INTERVAL: std::time::Duration = std::time::Duration::from_secs(10);

/// Why a volume cannot be materialised.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VolumeError {
    /// A Secret/ConfigMap (or key) the volume needs is absent.
    #[error("volume {volume}: {what}")]
    Missing { volume: String, what: String },
    /// An item path escapes the volume (absolute, `..`) or is empty.
    #[error("volume {volume}: item path {path:?} must be a relative path without '..'")]
    BadPath { volume: String, path: String },
}

/// The files of a key-based source (Secret/ConfigMap data), honouring `items`.
pub fn key_files(
    volume: &str,
    entries: Option<&BTreeMap<String, Vec<u8>>>,
    items: Option<&[KeyToPath]>,
    optional: bool,
    what: &str,
) -> Result<Vec<(PathBuf, Vec<u8>)>, VolumeError> {
    let Some(entries) = entries else {
        return if optional {
            Ok(Vec::new())
        } else {
            Err(VolumeError::Missing {
                volume: volume.into(),
                what: format!("{what} not found"),
            })
        };
    };
    match items {
        None => entries
            .iter()
            .map(|(key, bytes)| Ok((safe_relative(volume, key)?, bytes.clone())))
            .collect(),
        Some(items) => {
            let mut files = Vec::new();
            for item in items {
                match entries.get(&item.key) {
                    Some(bytes) => files.push((safe_relative(volume, &item.path)?, bytes.clone())),
                    None if optional => {}
                    None => {
                        return Err(VolumeError::Missing {
                            volume: volume.into(),
                            what: format!("{what} has no key {:?}", item.key),
                        });
                    }
                }
            }
            Ok(files)
        }
    }
}

/// `path` as a relative path that stays inside its volume.
pub fn safe_relative(volume: &str, path: &str) -> Result<PathBuf, VolumeError> {
    let candidate = Path::new(path);
    let ok = !path.is_empty()
        && candidate
            .components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
    if ok {
        Ok(candidate.to_path_buf())
    } else {
        Err(VolumeError::BadPath {
            volume: volume.into(),
            path: path.into(),
        })
    }
}

/// Fetches the Secrets and ConfigMaps that `pod` refers to (env and volumes).
pub async fn fetch_object_data(client: &kube::Client, pod: &Pod) -> Result<ObjectData> {
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    let mut secrets = BTreeSet::new();
    let mut config_maps = BTreeSet::new();
    let spec = pod.spec.clone().unwrap_or_default();
    for container in spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
    {
        for source in container.env_from.iter().flatten() {
            if let Some(r) = &source.secret_ref {
                secrets.insert(r.name.clone());
            }
            if let Some(r) = &source.config_map_ref {
                config_maps.insert(r.name.clone());
            }
        }
        for var in container.env.iter().flatten() {
            if let Some(from) = &var.value_from {
                if let Some(k) = &from.secret_key_ref {
                    secrets.insert(k.name.clone());
                }
                if let Some(k) = &from.config_map_key_ref {
                    config_maps.insert(k.name.clone());
                }
            }
        }
    }
    for volume in spec.volumes.iter().flatten() {
        if let Some(s) = volume.secret.as_ref().and_then(|s| s.secret_name.clone()) {
            secrets.insert(s);
        }
        if let Some(c) = &volume.config_map {
            config_maps.insert(c.name.clone());
        }
        for source in volume
            .projected
            .iter()
            .flat_map(|p| p.sources.iter().flatten())
        {
            if let Some(s) = &source.secret {
                secrets.insert(s.name.clone());
            }
            if let Some(c) = &source.config_map {
                config_maps.insert(c.name.clone());
            }
        }
    }
    let mut data = ObjectData::default();
    let secret_api: Api<Secret> = Api::namespaced(client.clone(), &namespace);
    for name in secrets {
        if let Some(secret) = secret_api.get_opt(&name).await? {
            let mut entries: BTreeMap<String, Vec<u8>> = secret
                .data
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, v.0))
                .collect();
            for (k, v) in secret.string_data.unwrap_or_default() {
                entries.insert(k, v.into_bytes());
            }
            data.secrets.insert(name, entries);
        }
    }
    let cm_api: Api<ConfigMap> = Api::namespaced(client.clone(), &namespace);
    for name in config_maps {
        if let Some(cm) = cm_api.get_opt(&name).await? {
            let mut entries: BTreeMap<String, Vec<u8>> = cm
                .data
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, v.into_bytes()))
                .collect();
            for (k, v) in cm.binary_data.unwrap_or_default() {
                entries.insert(k, v.0);
            }
            data.config_maps.insert(name, entries);
        }
    }
    Ok(data)
}

/// Asks the apiserver for a token of the pod's ServiceAccount, bound to the pod.
pub async fn service_account_token(
    client: &kube::Client,
    pod: &Pod,
    audiences: Vec<String>,
    expiration_seconds: i64,
) -> Result<String> {
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    let account = pod
        .spec
        .as_ref()
        .and_then(|s| s.service_account_name.clone())
        .unwrap_or_else(|| "default".into());
    let api: Api<ServiceAccount> = Api::namespaced(client.clone(), &namespace);
    let request = TokenRequest {
        spec: TokenRequestSpec {
            audiences,
            expiration_seconds: Some(expiration_seconds),
            bound_object_ref: Some(BoundObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                name: pod.metadata.name.clone(),
                uid: pod.metadata.uid.clone(),
            }),
        },
        ..TokenRequest::default()
    };
    let response = api
        .create_token_request(&account, &PostParams::default(), &request)
        .await
        .with_context(|| format!("TokenRequest for ServiceAccount {namespace}/{account}"))?;
    response
        .status
        .map(|s| s.token)
        .context("TokenRequest answered without a token")
}

/// Materialises every volume of `pod` under `pod_dir/volumes/<name>` (PVCs
/// under `claims_dir/<namespace>/<claim>`), returning volume name → directory.
pub async fn materialise(
    client: &kube::Client,
    pod: &Pod,
    data: &ObjectData,
    addresses: PodAddresses,
    pod_dir: &Path,
    claims_dir: &Path,
    ca_pem: &str,
) -> Result<BTreeMap<String, PathBuf>> {
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    let fs_group = pod
        .spec
        .as_ref()
        .and_then(|s| s.security_context.as_ref())
        .and_then(|s| s.fs_group)
        .and_then(|g| u32::try_from(g).ok());
    let mut dirs = BTreeMap::new();
    for volume in pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()) {
        let name = volume.name.as_str();
        let dir = if let Some(claim) = &volume.persistent_volume_claim {
            claims_dir
                .join(&namespace)
                .join(safe_relative(name, &claim.claim_name)?)
        } else {
            pod_dir
                .join("volumes")
                .join(safe_relative("volumes", name)?)
        };
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let mut files: Vec<(PathBuf, Vec<u8>)> = Vec::new();
        if let Some(secret) = &volume.secret {
            let secret_name = secret.secret_name.clone().unwrap_or_default();
            files.extend(key_files(
                name,
                data.secrets.get(&secret_name),
                secret.items.as_deref(),
                secret.optional == Some(true),
                &format!("Secret {secret_name:?}"),
            )?);
        }
        if let Some(cm) = &volume.config_map {
            files.extend(key_files(
                name,
                data.config_maps.get(&cm.name),
                cm.items.as_deref(),
                cm.optional == Some(true),
                &format!("ConfigMap {:?}", cm.name),
            )?);
        }
        if let Some(downward) = &volume.downward_api {
            for item in downward.items.iter().flatten() {
                if let Some(field) = &item.field_ref {
                    let value = field_value(pod, &field.field_path, addresses).unwrap_or_default();
                    files.push((safe_relative(name, &item.path)?, value.into_bytes()));
                }
            }
        }
        for source in volume
            .projected
            .iter()
            .flat_map(|p| p.sources.iter().flatten())
        {
            if let Some(secret) = &source.secret {
                files.extend(key_files(
                    name,
                    data.secrets.get(&secret.name),
                    secret.items.as_deref(),
                    secret.optional == Some(true),
                    &format!("Secret {:?}", secret.name),
                )?);
            }
            if let Some(cm) = &source.config_map {
                // The projected kube-root-ca.crt is the sandbox CA; serve it even
                // before the root-CA publisher has created the ConfigMap.
                let fallback: BTreeMap<String, Vec<u8>> =
                    [("ca.crt".to_string(), ca_pem.as_bytes().to_vec())].into();
                let entries = data
                    .config_maps
                    .get(&cm.name)
                    .or((cm.name == "kube-root-ca.crt").then_some(&fallback));
                files.extend(key_files(
                    name,
                    entries,
                    cm.items.as_deref(),
                    cm.optional == Some(true),
                    &format!("ConfigMap {:?}", cm.name),
                )?);
            }
            if let Some(downward) = &source.downward_api {
                for item in downward.items.iter().flatten() {
                    if let Some(field) = &item.field_ref {
                        let value =
                            field_value(pod, &field.field_path, addresses).unwrap_or_default();
                        files.push((safe_relative(name, &item.path)?, value.into_bytes()));
                    }
                }
            }
            if let Some(token) = &source.service_account_token {
                let expiration = token.expiration_seconds.unwrap_or(3600).max(600);
                let path = dir.join(safe_relative(name, &token.path)?);
                // Like the kubelet: a new token once 80% of the old one's life is over.
                let fresh = std::fs::metadata(&path)
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.elapsed().ok())
                    .is_some_and(|age| {
                        age.as_secs() < u64::try_from(expiration * 8 / 10).unwrap_or(0)
                    });
                if fresh {
                    continue;
                }
                let audiences = token
                    .audience
                    .clone()
                    .map(|a| vec![a])
                    .unwrap_or_else(|| vec![crate::control_plane::ISSUER.to_string()]);
                let value = service_account_token(client, pod, audiences, expiration).await?;
                files.push((path, value.into_bytes()));
            }
        }
        let mode = default_mode(volume);
        for (relative, bytes) in files {
            let path = dir.join(relative);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            write_atomically(&path, &bytes)?;
            apply_ownership(&path, mode, fs_group)?;
        }
        dirs.insert(name.to_string(), dir);
    }
    Ok(dirs)
}

/// The volume's `defaultMode` (Kubernetes' default 0644). Item modes
/// (`items[].mode`) are not applied.
pub fn default_mode(volume: &k8s_openapi::api::core::v1::Volume) -> u32 {
    volume
        .secret
        .as_ref()
        .and_then(|s| s.default_mode)
        .or(volume.config_map.as_ref().and_then(|c| c.default_mode))
        .or(volume.projected.as_ref().and_then(|p| p.default_mode))
        .or(volume.downward_api.as_ref().and_then(|d| d.default_mode))
        .and_then(|m| u32::try_from(m).ok())
        .map_or(0o644, |m| m & 0o777)
}

/// The file's mode with `fsGroup` applied as the kubelet's
/// `SetVolumeOwnership` applies it: the group may read what the owner may.
pub fn mode_with_fs_group(mode: u32, fs_group: Option<u32>) -> u32 {
    match fs_group {
        Some(_) => mode | ((mode & 0o400) >> 3),
        None => mode,
    }
}

/// Sets a volume file's mode (`defaultMode`) and, with an `fsGroup`, its
/// group, so a container user reads it exactly when the kubelet would let it.
fn apply_ownership(path: &Path, mode: u32, fs_group: Option<u32>) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    if let Some(group) = fs_group {
        std::os::unix::fs::chown(path, None, Some(group))
            .with_context(|| format!("fsGroup {group} on {}", path.display()))?;
    }
    std::fs::set_permissions(
        path,
        std::fs::Permissions::from_mode(mode_with_fs_group(mode, fs_group)),
    )
    .with_context(|| format!("mode of {}", path.display()))?;
    Ok(())
}

/// Replaces `path` by a complete new file (write + rename), so a process that
/// re-reads a refreshed Secret never sees half a certificate.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    if std::fs::read(path).is_ok_and(|old| old == bytes) {
        return Ok(());
    }
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let temporary = path.with_file_name(format!(".{file_name}.tmp"));
    std::fs::write(&temporary, bytes)
        .with_context(|| format!("writing {}", temporary.display()))?;
    std::fs::rename(&temporary, path).with_context(|| format!("replacing {}", path.display()))?;
    Ok(())
}

/// The container's mounts: mountPath → host path (with `subPath` applied).
pub fn mounts(
    container: &Container,
    volumes: &BTreeMap<String, PathBuf>,
) -> Result<BTreeMap<String, PathBuf>, VolumeError> {
    let mut mounts = BTreeMap::new();
    for mount in container.volume_mounts.iter().flatten() {
        let Some(dir) = volumes.get(&mount.name) else {
            return Err(VolumeError::Missing {
                volume: mount.name.clone(),
                what: format!("mounted at {} but not defined in the pod", mount.mount_path),
            });
        };
        let path = match mount.sub_path.as_deref().filter(|s| !s.is_empty()) {
            Some(sub) => dir.join(safe_relative(&mount.name, sub)?),
            None => dir.clone(),
        };
        mounts.insert(mount.mount_path.trim_end_matches('/').to_string(), path);
    }
    Ok(mounts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_mode_and_fs_group_decide_who_reads() {
        let volume: k8s_openapi::api::core::v1::Volume =
            serde_json::from_value(serde_json::json!({"name": "v", "secret": {"secretName": "s"}}))
                .expect("volume");
        assert_eq!(default_mode(&volume), 0o644);
        let volume: k8s_openapi::api::core::v1::Volume = serde_json::from_value(
            serde_json::json!({"name": "v", "secret": {"secretName": "s", "defaultMode": 0o400}}),
        )
        .expect("volume");
        assert_eq!(default_mode(&volume), 0o400);
        assert_eq!(mode_with_fs_group(0o400, None), 0o400);
        assert_eq!(mode_with_fs_group(0o400, Some(2000)), 0o440);
        assert_eq!(mode_with_fs_group(0o644, Some(2000)), 0o644);
    }

    #[test]
    fn item_paths_cannot_escape_the_volume() {
        for bad in ["", "/etc/passwd", "../x", "a/../../b"] {
            assert!(safe_relative("v", bad).is_err(), "{bad}");
        }
        assert_eq!(
            safe_relative("v", "a/b.crt").expect("ok"),
            PathBuf::from("a/b.crt")
        );
    }

    #[test]
    fn key_files_honour_items_and_optional() {
        let entries: BTreeMap<String, Vec<u8>> = [("tls.crt".to_string(), b"c".to_vec())].into();
        let all = key_files("v", Some(&entries), None, false, "Secret s").expect("all");
        assert_eq!(all, vec![(PathBuf::from("tls.crt"), b"c".to_vec())]);
        let items = vec![KeyToPath {
            key: "tls.crt".into(),
            path: "certs/server.crt".into(),
            mode: None,
        }];
        let mapped =
            key_files("v", Some(&entries), Some(&items), false, "Secret s").expect("items");
        assert_eq!(mapped[0].0, PathBuf::from("certs/server.crt"));
        assert!(
            key_files("v", None, None, true, "Secret s")
                .expect("optional")
                .is_empty()
        );
        let err = key_files("v", None, None, false, "Secret s").expect_err("missing");
        assert!(err.to_string().contains("volume v") && err.to_string().contains("Secret s"));
        let missing_key = vec![KeyToPath {
            key: "nope".into(),
            path: "x".into(),
            mode: None,
        }];
        assert!(key_files("v", Some(&entries), Some(&missing_key), false, "Secret s").is_err());
        let hostile = BTreeMap::from([("../../escape".to_string(), b"x".to_vec())]);
        assert!(key_files("v", Some(&hostile), None, false, "Secret s").is_err());
    }
}
