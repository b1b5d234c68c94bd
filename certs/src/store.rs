//! Thin I/O: the certificate Secret, certificate files, and `caBundle` patches.

use std::path::Path;

use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration,
};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Client, Resource};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::bundle::{CA_CRT, TLS_CRT, TLS_KEY};
use crate::injection::{crd_conversion_patch, encode_ca_bundle, webhook_configuration_patch};
use crate::mode::InjectionTargets;
use crate::{CertBundle, CertError};

/// A bundle read from a Secret with the `resourceVersion` it was read at, so a
/// rotation can replace exactly that version.
#[derive(Debug, Clone)]
pub struct StoredBundle {
    /// The certificate material.
    pub bundle: CertBundle,
    /// The Secret's `resourceVersion`.
    pub resource_version: Option<String>,
}

/// Reads the bundle from Secret `name`; `Ok(None)` when the Secret does not exist.
pub async fn read_secret(api: &Api<Secret>, name: &str) -> Result<Option<StoredBundle>, CertError> {
    let Some(secret) = api
        .get_opt(name)
        .await
        .map_err(|e| CertError::kube(format!("get Secret {name}"), e))?
    else {
        return Ok(None);
    };
    let bundle = CertBundle::from_secret_data(&secret.data.unwrap_or_default())
        .map_err(|e| CertError::parse(format!("Secret {name}"), e))?;
    Ok(Some(StoredBundle {
        bundle,
        resource_version: secret.metadata.resource_version,
    }))
}

fn secret_for(name: &str, bundle: &CertBundle, resource_version: Option<String>) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            resource_version,
            labels: Some(
                [(
                    "app.kubernetes.io/managed-by".to_owned(),
                    "emqx-webhook".to_owned(),
                )]
                .into(),
            ),
            ..ObjectMeta::default()
        },
        type_: Some("kubernetes.io/tls".to_owned()),
        data: Some(bundle.to_secret_data()),
        ..Secret::default()
    }
}

/// Creates Secret `name` holding `bundle` unless it exists. When another
/// replica created it first (409 AlreadyExists), its bundle wins and is
/// returned, so every replica serves the same pair.
pub async fn create_or_adopt(
    api: &Api<Secret>,
    name: &str,
    bundle: &CertBundle,
) -> Result<StoredBundle, CertError> {
    match api
        .create(&PostParams::default(), &secret_for(name, bundle, None))
        .await
    {
        Ok(created) => Ok(StoredBundle {
            bundle: bundle.clone(),
            resource_version: created.metadata.resource_version,
        }),
        Err(kube::Error::Api(status)) if status.is_already_exists() => winner(api, name).await,
        Err(e) => Err(CertError::kube(format!("create Secret {name}"), e)),
    }
}

/// Replaces the Secret at exactly `resource_version` with `bundle`. When
/// another replica rotated it first (409 Conflict), its bundle wins.
pub async fn replace(
    api: &Api<Secret>,
    name: &str,
    resource_version: Option<String>,
    bundle: &CertBundle,
) -> Result<StoredBundle, CertError> {
    match api
        .replace(
            name,
            &PostParams::default(),
            &secret_for(name, bundle, resource_version),
        )
        .await
    {
        Ok(replaced) => Ok(StoredBundle {
            bundle: bundle.clone(),
            resource_version: replaced.metadata.resource_version,
        }),
        Err(kube::Error::Api(status)) if status.is_conflict() => winner(api, name).await,
        Err(e) => Err(CertError::kube(format!("replace Secret {name}"), e)),
    }
}

async fn winner(api: &Api<Secret>, name: &str) -> Result<StoredBundle, CertError> {
    read_secret(api, name)
        .await?
        .ok_or_else(|| CertError::Missing {
            what: format!("Secret {name} (deleted while being created)"),
        })
}

/// Reads `tls.crt`, `tls.key` and (if present) `ca.crt` from `dir`.
pub fn read_dir(dir: &Path) -> Result<CertBundle, CertError> {
    let read = |file: &str| -> Result<Option<String>, CertError> {
        let path = dir.join(file);
        match std::fs::read_to_string(&path) {
            Ok(text) => Ok(Some(text)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(CertError::Io {
                path: path.display().to_string(),
                source,
            }),
        }
    };
    let required = |file: &str| -> Result<String, CertError> {
        read(file)?.ok_or_else(|| CertError::Missing {
            what: dir.join(file).display().to_string(),
        })
    };
    Ok(CertBundle {
        ca_pem: read(CA_CRT)?.unwrap_or_default(),
        ca_key_pem: None,
        cert_pem: required(TLS_CRT)?,
        key_pem: required(TLS_KEY)?,
    })
}

/// Writes `bundle` into `dir` as `tls.crt`, `tls.key`, `ca.crt` (used by the
/// benchmark and tests to stand in for a mounted Secret).
pub fn write_dir(dir: &Path, bundle: &CertBundle) -> Result<(), CertError> {
    for (file, text) in [
        (TLS_CRT, &bundle.cert_pem),
        (TLS_KEY, &bundle.key_pem),
        (CA_CRT, &bundle.ca_pem),
    ] {
        let path = dir.join(file);
        std::fs::write(&path, text).map_err(|source| CertError::Io {
            path: path.display().to_string(),
            source,
        })?;
    }
    Ok(())
}

/// Patches `ca_pem` as `caBundle` into every target that lacks it. Returns how
/// many objects were patched (0 in the steady state). A target that does not
/// exist yet is skipped: the next refresh tries again.
pub async fn inject_ca_bundle(
    client: &Client,
    targets: &InjectionTargets,
    ca_pem: &str,
) -> Result<usize, CertError> {
    let ca = encode_ca_bundle(ca_pem);
    let mut patched = 0;
    if let Some(name) = &targets.validating {
        let api: Api<ValidatingWebhookConfiguration> = Api::all(client.clone());
        patched += patch_one(&api, name, |v| webhook_configuration_patch(v, &ca)).await?;
    }
    if let Some(name) = &targets.mutating {
        let api: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
        patched += patch_one(&api, name, |v| webhook_configuration_patch(v, &ca)).await?;
    }
    for name in &targets.crds {
        let api: Api<CustomResourceDefinition> = Api::all(client.clone());
        patched += patch_one(&api, name, |v| crd_conversion_patch(v, &ca)).await?;
    }
    Ok(patched)
}

async fn patch_one<K>(
    api: &Api<K>,
    name: &str,
    plan: impl Fn(&serde_json::Value) -> json_patch::Patch,
) -> Result<usize, CertError>
where
    K: Resource + Clone + DeserializeOwned + Serialize + std::fmt::Debug,
    K::DynamicType: Default,
{
    let kind = K::kind(&K::DynamicType::default()).to_string();
    let Some(live) = api
        .get_opt(name)
        .await
        .map_err(|e| CertError::kube(format!("get {kind} {name}"), e))?
    else {
        tracing::warn!(%kind, %name, "caBundle target does not exist (yet)");
        return Ok(0);
    };
    let live =
        serde_json::to_value(&live).map_err(|e| CertError::parse(format!("{kind} {name}"), e))?;
    let patch = plan(&live);
    if patch.0.is_empty() {
        return Ok(0);
    }
    api.patch(name, &PatchParams::default(), &Patch::<()>::Json(patch))
        .await
        .map_err(|e| CertError::kube(format!("patch caBundle into {kind} {name}"), e))?;
    tracing::info!(%kind, %name, "caBundle injected");
    Ok(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ServiceIdentity, authority};

    #[test]
    fn a_directory_round_trips_and_missing_files_are_named() {
        let dir = std::env::temp_dir().join(format!("emqx-certs-dir-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("mkdir");
        let err = read_dir(&dir).expect_err("empty dir");
        assert!(err.to_string().contains("tls.crt"), "{err}");
        let id = ServiceIdentity {
            service: "w".into(),
            namespace: "n".into(),
            cluster_domain: String::new(),
            extra_names: Vec::new(),
        };
        let b = authority::new_bundle(&id, std::time::SystemTime::now(), None).expect("bundle");
        write_dir(&dir, &b).expect("write");
        let back = read_dir(&dir).expect("read");
        assert_eq!(back.cert_pem, b.cert_pem);
        assert_eq!(back.ca_pem, b.ca_pem);
        assert!(back.ca_key_pem.is_none(), "the CA key never goes to disk");
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
}
