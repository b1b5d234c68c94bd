//! Where the serving certificate comes from.

use std::path::PathBuf;

use crate::ServiceIdentity;

/// The objects whose `caBundle` the self-managed mode keeps current.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InjectionTargets {
    /// ValidatingWebhookConfiguration name.
    pub validating: Option<String>,
    /// MutatingWebhookConfiguration name.
    pub mutating: Option<String>,
    /// CustomResourceDefinition names (`emqxes.apps.emqx.io`, ...).
    pub crds: Vec<String>,
}

/// The three certificate modes (the provided one with two sources).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertMode {
    /// Generate a CA and serving certificate, keep them in `secret` (in the
    /// webhook's namespace), inject the CA into `targets`, rotate before expiry.
    SelfManaged {
        /// Secret holding `tls.crt`, `tls.key`, `ca.crt`, `ca.key`.
        secret: String,
        /// The Service the certificate names.
        identity: ServiceIdentity,
        /// What to inject `caBundle` into.
        targets: InjectionTargets,
    },
    /// Read the Secret cert-manager maintains; cert-manager's CA injector
    /// patches `caBundle` (annotation `cert-manager.io/inject-ca-from`).
    CertManager {
        /// Secret named by the Certificate's `spec.secretName`.
        secret: String,
    },
    /// Read a Secret the user provides (e.g. the OpenShift service CA);
    /// `caBundle` is the user's to set.
    ProvidedSecret {
        /// Secret with `tls.crt` and `tls.key` (and optionally `ca.crt`).
        secret: String,
    },
    /// Read `tls.crt`/`tls.key` (and optionally `ca.crt`) from a directory,
    /// e.g. a mounted Secret volume, which the kubelet updates in place.
    ProvidedDir {
        /// Directory holding the files.
        dir: PathBuf,
    },
}

impl CertMode {
    /// Whether this mode talks to the Kubernetes API.
    pub fn needs_kube(&self) -> bool {
        !matches!(self, CertMode::ProvidedDir { .. })
    }

    /// Short name for logs and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            CertMode::SelfManaged { .. } => "self-managed",
            CertMode::CertManager { .. } => "cert-manager",
            CertMode::ProvidedSecret { .. } => "provided-secret",
            CertMode::ProvidedDir { .. } => "provided-dir",
        }
    }
}
