//! Thin I/O: the certificate Secret, certificate files, and `caBundle` patches.

use std::path::Path;
use std::time::SystemTime;

use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration,
};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Client, Resource};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::bundle::{CA_CRT, TLS_CRT, TLS_KEY};
use crate::injection::{
    Newer, crd_conversion_patch, crd_superseded, encode_ca_bundle, injected_in_crd,
    injected_in_webhook_configuration, webhook_configuration_patch,
    webhook_configuration_superseded,
};
use crate::mode::InjectionTargets;
use crate::recovery::{
    Guard, OVERLAP_UNTIL_ANNOTATION, SecretRead, format_deadline, parse_deadline,
};
use crate::{CertBundle, CertError};

/// A CustomResourceDefinition as far as `caBundle` injection reads it: its
/// metadata and `spec.conversion`. Each refresh reads both CRDs; ours are
/// ~250 KB of JSON each, mostly OpenAPI schema, and deserializing all of it
/// into k8s-openapi's types (then into a `serde_json::Value`) allocated
/// megabytes every `refreshSeconds` that the allocator kept. Fields not
/// named here are skipped by serde without being built.
#[derive(Resource, Clone, Debug, Serialize, Deserialize)]
#[resource(inherit = CustomResourceDefinition)]
pub struct CrdConversion {
    pub metadata: ObjectMeta,
    pub spec: CrdConversionSpec,
}

/// `spec.conversion` of a CustomResourceDefinition, as JSON.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct CrdConversionSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conversion: Option<serde_json::Value>,
}

/// A bundle read from a Secret with the `resourceVersion` it was read at, so a
/// rotation can replace exactly that version.
#[derive(Debug, Clone)]
pub struct StoredBundle {
    /// The certificate material.
    pub bundle: CertBundle,
    /// The Secret's `resourceVersion`.
    pub resource_version: Option<String>,
    /// When the old CAs after the current one are dropped (annotation
    /// [`OVERLAP_UNTIL_ANNOTATION`]; `None` if absent or not Unix seconds).
    pub overlap_until: Option<SystemTime>,
}

/// Reads Secret `name`. A Secret that exists but holds no usable bundle is
/// [`SecretRead::Unreadable`], with its `resourceVersion` so that replacing it
/// is guarded like any other write.
pub async fn read_secret(api: &Api<Secret>, name: &str) -> Result<SecretRead, CertError> {
    let Some(secret) = api
        .get_opt(name)
        .await
        .map_err(|e| CertError::kube(format!("get Secret {name}"), e))?
    else {
        return Ok(SecretRead::Absent);
    };
    Ok(classify_secret(name, secret))
}

/// [`SecretRead`] of a Secret as fetched (pure).
pub fn classify_secret(name: &str, secret: Secret) -> SecretRead {
    let resource_version = secret.metadata.resource_version;
    let overlap_until = secret
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(OVERLAP_UNTIL_ANNOTATION))
        .and_then(|v| parse_deadline(v));
    let data = secret.data.unwrap_or_default();
    // Only what cannot be a bundle at all is unreadable; a bundle whose leaf
    // or keys are broken is readable, and `plan_rotation` repairs it.
    match CertBundle::from_secret_data(&data) {
        Ok(bundle) => SecretRead::Readable(StoredBundle {
            bundle,
            resource_version,
            overlap_until,
        }),
        Err(e) => SecretRead::Unreadable {
            resource_version,
            reason: format!("Secret {name}: {e}"),
            ca_pem: data
                .get(CA_CRT)
                .and_then(|b| String::from_utf8(b.0.clone()).ok()),
        },
    }
}

/// The bundle of a Secret the user or cert-manager maintains: it must exist
/// and be readable.
pub async fn read_bundle(
    api: &Api<Secret>,
    namespace: &str,
    name: &str,
) -> Result<CertBundle, CertError> {
    match read_secret(api, name).await? {
        SecretRead::Readable(stored) => Ok(stored.bundle),
        SecretRead::Absent => Err(CertError::Missing {
            what: format!("Secret {namespace}/{name}"),
        }),
        SecretRead::Unreadable { reason, .. } => Err(CertError::Parse {
            what: format!("Secret {namespace}/{name}"),
            message: reason,
        }),
    }
}

fn secret_for(
    name: &str,
    bundle: &CertBundle,
    resource_version: Option<String>,
    overlap_until: Option<SystemTime>,
) -> Secret {
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
            annotations: overlap_until.map(|until| {
                [(OVERLAP_UNTIL_ANNOTATION.to_owned(), format_deadline(until))].into()
            }),
            ..ObjectMeta::default()
        },
        type_: Some("kubernetes.io/tls".to_owned()),
        data: Some(bundle.to_secret_data()),
        ..Secret::default()
    }
}

/// Writes `bundle` to Secret `name` under `guard`: created only if absent, or
/// replaced only at the `resourceVersion` read. When another replica wrote
/// first (409 AlreadyExists or Conflict), its bundle wins and is returned, so
/// every replica serves the same pair and none overwrites another's CA.
pub async fn write_secret(
    api: &Api<Secret>,
    name: &str,
    guard: &Guard,
    bundle: &CertBundle,
    overlap_until: Option<SystemTime>,
) -> Result<StoredBundle, CertError> {
    let written = match guard {
        Guard::Create => {
            api.create(
                &PostParams::default(),
                &secret_for(name, bundle, None, overlap_until),
            )
            .await
        }
        Guard::Replace { resource_version } => {
            api.replace(
                name,
                &PostParams::default(),
                &secret_for(name, bundle, Some(resource_version.clone()), overlap_until),
            )
            .await
        }
    };
    match written {
        Ok(secret) => Ok(StoredBundle {
            bundle: bundle.clone(),
            resource_version: secret.metadata.resource_version,
            overlap_until,
        }),
        Err(kube::Error::Api(status)) if status.is_already_exists() || status.is_conflict() => {
            tracing::info!(%name, "another replica wrote the certificate Secret first; using theirs");
            winner(api, name).await
        }
        Err(e) => Err(CertError::kube(format!("write Secret {name}"), e)),
    }
}

async fn winner(api: &Api<Secret>, name: &str) -> Result<StoredBundle, CertError> {
    match read_secret(api, name).await? {
        SecretRead::Readable(stored) => Ok(stored),
        SecretRead::Absent => Err(CertError::Missing {
            what: format!("Secret {name} (deleted right after another replica wrote it)"),
        }),
        SecretRead::Unreadable { reason, .. } => Err(CertError::Parse {
            what: format!("Secret {name} (as written by another replica)"),
            message: reason,
        }),
    }
}

/// The PEM text of every `caBundle` injected into `targets` now (the CAs the
/// API server trusts for this webhook). Missing targets add nothing.
pub async fn injected_ca_bundles(
    client: &Client,
    targets: &InjectionTargets,
) -> Result<Vec<String>, CertError> {
    let mut out = Vec::new();
    if let Some(name) = &targets.validating {
        let api: Api<ValidatingWebhookConfiguration> = Api::all(client.clone());
        out.extend(live_bundles(&api, name, injected_in_webhook_configuration).await?);
    }
    if let Some(name) = &targets.mutating {
        let api: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
        out.extend(live_bundles(&api, name, injected_in_webhook_configuration).await?);
    }
    for name in &targets.crds {
        let api: Api<CrdConversion> = Api::all(client.clone());
        out.extend(live_bundles(&api, name, injected_in_crd).await?);
    }
    Ok(out)
}

async fn live_bundles<K>(
    api: &Api<K>,
    name: &str,
    extract: impl Fn(&serde_json::Value) -> Vec<String>,
) -> Result<Vec<String>, CertError>
where
    K: Resource + Clone + DeserializeOwned + Serialize + std::fmt::Debug,
    K::DynamicType: Default,
{
    Ok(live_json(api, name)
        .await?
        .map(|(_, live)| extract(&live))
        .unwrap_or_default())
}

/// Object `name` as JSON with its kind (for messages); `None` if it does
/// not exist.
async fn live_json<K>(
    api: &Api<K>,
    name: &str,
) -> Result<Option<(String, serde_json::Value)>, CertError>
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
        return Ok(None);
    };
    let live =
        serde_json::to_value(&live).map_err(|e| CertError::parse(format!("{kind} {name}"), e))?;
    Ok(Some((kind, live)))
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

/// What one injection pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Injected {
    /// Objects patched (0 in the steady state).
    pub patched: usize,
    /// Objects left alone because they carry a newer bundle than ours
    /// ([`crate::injection::supersedes`]); only counted under [`Newer::Yield`].
    pub superseded: usize,
}

/// Patches `ca_pem` as `caBundle` into every target that lacks it. A target
/// that does not exist yet is skipped: the next refresh tries again.
pub async fn inject_ca_bundle(
    client: &Client,
    targets: &InjectionTargets,
    ca_pem: &str,
    newer: Newer,
) -> Result<Injected, CertError> {
    let ca = encode_ca_bundle(ca_pem);
    let yielding = newer == Newer::Yield;
    let mut out = Injected::default();
    let mut add = |(patched, superseded): (bool, bool)| {
        out.patched += usize::from(patched);
        out.superseded += usize::from(superseded && yielding);
    };
    if let Some(name) = &targets.validating {
        let api: Api<ValidatingWebhookConfiguration> = Api::all(client.clone());
        add(patch_one(
            &api,
            name,
            |v| webhook_configuration_patch(v, &ca, newer),
            |v| webhook_configuration_superseded(v, &ca),
        )
        .await?);
    }
    if let Some(name) = &targets.mutating {
        let api: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
        add(patch_one(
            &api,
            name,
            |v| webhook_configuration_patch(v, &ca, newer),
            |v| webhook_configuration_superseded(v, &ca),
        )
        .await?);
    }
    for name in &targets.crds {
        let api: Api<CrdConversion> = Api::all(client.clone());
        add(patch_one(
            &api,
            name,
            |v| crd_conversion_patch(v, &ca, newer),
            |v| crd_superseded(v, &ca),
        )
        .await?);
    }
    Ok(out)
}

/// (patched, carries a newer bundle than ours)
async fn patch_one<K>(
    api: &Api<K>,
    name: &str,
    plan: impl Fn(&serde_json::Value) -> json_patch::Patch,
    superseded: impl Fn(&serde_json::Value) -> bool,
) -> Result<(bool, bool), CertError>
where
    K: Resource + Clone + DeserializeOwned + Serialize + std::fmt::Debug,
    K::DynamicType: Default,
{
    let Some((kind, live)) = live_json(api, name).await? else {
        let kind = K::kind(&K::DynamicType::default()).to_string();
        tracing::warn!(%kind, %name, "caBundle target does not exist (yet)");
        return Ok((false, false));
    };
    let newer = superseded(&live);
    let patch = plan(&live);
    if patch.0.is_empty() {
        return Ok((false, newer));
    }
    api.patch(name, &PatchParams::default(), &Patch::<()>::Json(patch))
        .await
        .map_err(|e| CertError::kube(format!("patch caBundle into {kind} {name}"), e))?;
    tracing::info!(%kind, %name, "caBundle injected");
    Ok((true, newer))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ServiceIdentity, authority};

    #[test]
    fn the_partial_crd_keeps_what_injection_reads_and_drops_the_schemas() {
        let crd = serde_json::json!({
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": {"name": "emqxes.apps.emqx.io", "resourceVersion": "7"},
            "spec": {
                "group": "apps.emqx.io",
                "names": {"kind": "EMQX", "plural": "emqxes"},
                "scope": "Namespaced",
                "versions": [{"name": "v2beta1", "served": true, "storage": true,
                    "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                        "spec": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}}}],
                "conversion": {"strategy": "Webhook", "webhook": {
                    "conversionReviewVersions": ["v1"],
                    "clientConfig": {"service": {"name": "w", "namespace": "n", "path": "/convert"}}}}
            }
        });
        let partial: CrdConversion = serde_json::from_value(crd.clone()).expect("deserializes");
        let seen = serde_json::to_value(&partial).expect("serializes");
        assert!(seen.pointer("/spec/versions").is_none(), "{seen}");
        assert_eq!(seen.pointer("/metadata/resourceVersion"), Some(&"7".into()));
        // Injection plans the same patch from the partial view as from the
        // whole object.
        let ca = encode_ca_bundle("-----BEGIN CERTIFICATE-----\nMA==\n-----END CERTIFICATE-----\n");
        let from_partial = crd_conversion_patch(&seen, &ca, Newer::Yield);
        assert!(!from_partial.0.is_empty());
        assert_eq!(from_partial, crd_conversion_patch(&crd, &ca, Newer::Yield));
        assert_eq!(
            <CrdConversion as Resource>::kind(&()),
            "CustomResourceDefinition"
        );
        assert_eq!(
            <CrdConversion as Resource>::url_path(&(), None),
            "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
        );
    }

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
