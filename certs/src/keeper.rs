//! The refresh loop: fetch the bundle the mode prescribes, rotate and inject
//! in self-managed mode, and install it into the resolver.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use k8s_openapi::api::core::v1::Secret;
use kube::{Api, Client};

use crate::authority::{new_bundle, reissue_serving};
use crate::rotation::{RotationPlan, plan_rotation};
use crate::store::{self, StoredBundle};
use crate::{CertBundle, CertError, CertMode, CertResolver};

/// Keeps the served certificate current for one [`CertMode`].
pub struct CertKeeper {
    mode: CertMode,
    resolver: Arc<CertResolver>,
    /// Required by every mode except `ProvidedDir`.
    client: Option<Client>,
    /// Namespace of the certificate Secret.
    namespace: String,
}

/// What one refresh did, for logs and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refreshed {
    /// The served certificate changed.
    pub installed: bool,
    /// The rotation decision (self-managed mode only).
    pub plan: Option<RotationPlan>,
    /// How many objects got a new `caBundle`.
    pub injected: usize,
}

impl CertKeeper {
    /// A keeper for `mode`; `client` must be set when `mode.needs_kube()`.
    pub fn new(
        mode: CertMode,
        resolver: Arc<CertResolver>,
        client: Option<Client>,
        namespace: String,
    ) -> Self {
        Self {
            mode,
            resolver,
            client,
            namespace,
        }
    }

    fn secrets(&self) -> Result<Api<Secret>, CertError> {
        let client = self.client.clone().ok_or(CertError::Missing {
            what: format!(
                "Kubernetes client (needed by cert mode {})",
                self.mode.name()
            ),
        })?;
        Ok(Api::namespaced(client, &self.namespace))
    }

    /// Fetches, rotates if due, injects, and installs — once.
    pub async fn refresh(&self, now: SystemTime) -> Result<Refreshed, CertError> {
        let (bundle, plan, injected) = match &self.mode {
            CertMode::ProvidedDir { dir } => (store::read_dir(dir)?, None, 0),
            CertMode::CertManager { secret } | CertMode::ProvidedSecret { secret } => {
                let stored = store::read_secret(&self.secrets()?, secret)
                    .await?
                    .ok_or_else(|| CertError::Missing {
                        what: format!("Secret {}/{secret}", self.namespace),
                    })?;
                (stored.bundle, None, 0)
            }
            CertMode::SelfManaged {
                secret,
                identity,
                targets,
            } => {
                let api = self.secrets()?;
                let (stored, plan) = match store::read_secret(&api, secret).await {
                    Ok(Some(stored)) => {
                        let plan = plan_rotation(now, &stored.bundle, identity);
                        (
                            self.rotate(&api, secret, stored, plan, identity, now)
                                .await?,
                            plan,
                        )
                    }
                    Ok(None) => {
                        let fresh = new_bundle(identity, now, None)?;
                        (
                            store::create_or_adopt(&api, secret, &fresh).await?,
                            RotationPlan::ReissueAll,
                        )
                    }
                    // A Secret that exists but cannot be read as a bundle
                    // (edited by hand, truncated) is replaced, not served.
                    Err(CertError::Parse { what, message }) => {
                        tracing::warn!(%what, %message, "certificate Secret unreadable; replacing it");
                        let fresh = new_bundle(identity, now, None)?;
                        (
                            store::replace(&api, secret, None, &fresh).await?,
                            RotationPlan::ReissueAll,
                        )
                    }
                    Err(e) => return Err(e),
                };
                // Every refresh, not only after a rotation: a `helm upgrade`
                // that re-applies the configurations wipes `caBundle`.
                let injected = match &self.client {
                    Some(client) => {
                        store::inject_ca_bundle(client, targets, &stored.bundle.ca_pem).await?
                    }
                    None => 0,
                };
                (stored.bundle, Some(plan), injected)
            }
        };
        let installed = self.resolver.install(&bundle)?;
        if installed {
            tracing::info!(mode = self.mode.name(), "serving certificate installed");
        }
        Ok(Refreshed {
            installed,
            plan,
            injected,
        })
    }

    async fn rotate(
        &self,
        api: &Api<Secret>,
        secret: &str,
        stored: StoredBundle,
        plan: RotationPlan,
        identity: &crate::ServiceIdentity,
        now: SystemTime,
    ) -> Result<StoredBundle, CertError> {
        let next: CertBundle = match plan {
            RotationPlan::Keep => return Ok(stored),
            RotationPlan::ReissueServing => reissue_serving(&stored.bundle, identity, now)?,
            RotationPlan::ReissueAll => new_bundle(identity, now, Some(&stored.bundle))?,
        };
        tracing::info!(?plan, "rotating webhook certificate");
        store::replace(api, secret, stored.resource_version, &next).await
    }

    /// Refreshes every `interval` until `shutdown` resolves. Failures are
    /// logged and retried; a certificate already served stays served.
    pub async fn run(self, interval: Duration, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = &mut shutdown => return,
                _ = ticker.tick() => {}
            }
            match self.refresh(SystemTime::now()).await {
                Ok(r) => tracing::debug!(?r, "certificate refresh"),
                Err(e) => {
                    tracing::warn!(error = %e, mode = self.mode.name(), "certificate refresh failed")
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ServiceIdentity, store};

    #[tokio::test]
    async fn provided_dir_mode_installs_and_picks_up_a_replaced_certificate() {
        let dir = std::env::temp_dir().join(format!("emqx-certs-keeper-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("mkdir");
        let id = ServiceIdentity {
            service: "w".into(),
            namespace: "n".into(),
            cluster_domain: String::new(),
            extra_names: Vec::new(),
        };
        let resolver = Arc::new(CertResolver::new());
        let keeper = CertKeeper::new(
            CertMode::ProvidedDir { dir: dir.clone() },
            resolver.clone(),
            None,
            "n".into(),
        );
        assert!(
            keeper.refresh(SystemTime::now()).await.is_err(),
            "empty dir"
        );
        assert!(!resolver.is_loaded());
        let a = new_bundle(&id, SystemTime::now(), None).expect("a");
        store::write_dir(&dir, &a).expect("write a");
        assert!(
            keeper
                .refresh(SystemTime::now())
                .await
                .expect("a")
                .installed
        );
        assert!(
            !keeper
                .refresh(SystemTime::now())
                .await
                .expect("again")
                .installed
        );
        let b = new_bundle(&id, SystemTime::now(), None).expect("b");
        store::write_dir(&dir, &b).expect("write b");
        assert!(
            keeper
                .refresh(SystemTime::now())
                .await
                .expect("b")
                .installed
        );
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[tokio::test]
    async fn secret_modes_without_a_client_fail_with_a_reason() {
        let keeper = CertKeeper::new(
            CertMode::CertManager { secret: "s".into() },
            Arc::new(CertResolver::new()),
            None,
            "n".into(),
        );
        let err = keeper
            .refresh(SystemTime::now())
            .await
            .expect_err("no client");
        assert!(err.to_string().contains("cert-manager"), "{err}");
    }
}
