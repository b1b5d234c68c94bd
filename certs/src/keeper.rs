//! The refresh loop: fetch the bundle the mode prescribes, rotate and inject
//! in self-managed mode, and install it into the resolver.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use k8s_openapi::api::core::v1::Secret;
use kube::{Api, Client};

use crate::authority::{new_bundle_keeping, reissue_serving};
use crate::injection::Newer;
use crate::mode::InjectionTargets;
use crate::recovery::{self, Change, Decision, OVERLAP_WINDOW, SecretRead};
use crate::rotation::RotationPlan;
use crate::store;
use crate::{CertBundle, CertError, CertMode, CertResolver, ServiceIdentity};

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
    /// What was written to the Secret (self-managed mode), even if another
    /// replica's write won.
    pub written: Option<Change>,
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
        let (bundle, plan, injected, written) = match &self.mode {
            CertMode::ProvidedDir { dir } => (store::read_dir(dir)?, None, 0, None),
            CertMode::CertManager { secret } | CertMode::ProvidedSecret { secret } => (
                store::read_bundle(&self.secrets()?, &self.namespace, secret).await?,
                None,
                0,
                None,
            ),
            CertMode::SelfManaged {
                secret,
                identity,
                targets,
            } => {
                let api = self.secrets()?;
                let read = store::read_secret(&api, secret).await?;
                let plan = recovery::rotation_for(now, &read, identity);
                match &read {
                    SecretRead::Absent if self.resolver.is_loaded() => tracing::warn!(
                        %secret,
                        "certificate Secret deleted; making a new CA that keeps the old ones trusted"
                    ),
                    SecretRead::Unreadable { reason, .. } => tracing::warn!(
                        %reason,
                        "certificate Secret unreadable; replacing it, old CAs kept trusted"
                    ),
                    _ => {}
                }
                // Only a new CA needs to know what clients trust now, so the
                // steady state makes no extra API reads.
                let trusted = if plan == RotationPlan::ReissueAll {
                    self.trusted_elsewhere(targets).await?
                } else {
                    Vec::new()
                };
                let decision = recovery::decide(now, &read, plan, &trusted)?;
                let (stored, written) = match (decision, read) {
                    (Decision::Serve, SecretRead::Readable(stored)) => (stored, None),
                    (Decision::Serve, _) => {
                        return Err(CertError::Missing {
                            what: format!("a readable Secret {secret} to serve"),
                        });
                    }
                    (Decision::Write(write), read) => {
                        let next = build(&write.change, &read, identity, now)?;
                        tracing::info!(?plan, change = ?write.change, "writing the certificate Secret");
                        let stored = store::write_secret(
                            &api,
                            secret,
                            &write.guard,
                            &next,
                            write.overlap_until,
                        )
                        .await?;
                        (stored, Some(write.change))
                    }
                };
                // Every refresh, not only after a rotation: a `helm upgrade`
                // that re-applies the configurations wipes `caBundle`. Injected
                // before the new leaf is installed below, so the API server
                // learns the new CA before this replica presents its leaf.
                let injected = match &self.client {
                    Some(client) => self.inject(client, &api, secret, targets, &stored).await?,
                    None => 0,
                };
                (stored.bundle, Some(plan), injected, written)
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
            written,
        })
    }

    /// Injects the bundle of `stored`. Where a target already carries a
    /// newer bundle (ours as its old CA), our read of the Secret may be
    /// stale: putting ours back would make the API server reject the leaf
    /// another replica just started serving. So such targets are left alone,
    /// unless a fresh read shows the Secret still holds our bundle (an older
    /// CA restored on purpose), then they are overwritten.
    async fn inject(
        &self,
        client: &Client,
        api: &Api<Secret>,
        secret: &str,
        targets: &InjectionTargets,
        stored: &store::StoredBundle,
    ) -> Result<usize, CertError> {
        let ca_pem = &stored.bundle.ca_pem;
        let first = store::inject_ca_bundle(client, targets, ca_pem, Newer::Yield).await?;
        if first.superseded == 0 {
            return Ok(first.patched);
        }
        match store::read_secret(api, secret).await? {
            SecretRead::Readable(fresh) if fresh.bundle.ca_pem == *ca_pem => {
                tracing::info!(
                    "the certificate Secret holds an older CA than caBundle; injecting it"
                );
                let again =
                    store::inject_ca_bundle(client, targets, ca_pem, Newer::Overwrite).await?;
                Ok(first.patched + again.patched)
            }
            _ => {
                tracing::info!(
                    "a newer CA was injected by another replica; this replica follows on its next refresh"
                );
                Ok(first.patched)
            }
        }
    }

    /// The CA bundles clients may trust besides the Secret: the one this
    /// replica serves, and every injected `caBundle`.
    async fn trusted_elsewhere(
        &self,
        targets: &InjectionTargets,
    ) -> Result<Vec<String>, CertError> {
        let mut trusted: Vec<String> = self.resolver.served_ca_pem().into_iter().collect();
        if let Some(client) = &self.client {
            trusted.extend(store::injected_ca_bundles(client, targets).await?);
        }
        Ok(trusted)
    }

    /// Refreshes every `interval` until `shutdown` resolves. Failures are
    /// logged and retried; a certificate already served stays served.
    pub async fn run(self, interval: Duration, shutdown: impl std::future::Future<Output = ()>) {
        if interval > OVERLAP_WINDOW / 4 {
            tracing::warn!(
                ?interval,
                window = ?OVERLAP_WINDOW,
                "certificate refresh period is long: after a CA change, a replica may still serve the old leaf when the old CA stops being trusted"
            );
        }
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

/// The bundle `change` asks for, from the Secret as `read`.
fn build(
    change: &Change,
    read: &SecretRead,
    identity: &ServiceIdentity,
    now: SystemTime,
) -> Result<CertBundle, CertError> {
    let current = match read {
        SecretRead::Readable(stored) => Some(&stored.bundle),
        SecretRead::Absent | SecretRead::Unreadable { .. } => None,
    };
    match (change, current) {
        (Change::NewCa { keep }, _) => new_bundle_keeping(identity, now, keep),
        (Change::ReissueServing, Some(b)) => reissue_serving(b, identity, now),
        (Change::DropOverlap, Some(b)) => Ok(CertBundle {
            ca_pem: recovery::without_old_cas(&b.ca_pem),
            ..b.clone()
        }),
        (Change::StartOverlapClock, Some(b)) => Ok(b.clone()),
        (_, None) => Err(CertError::Missing {
            what: "a readable certificate Secret to change".into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authority::new_bundle;

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
