//! A rustls certificate resolver whose certificate can be swapped while serving.

use std::sync::Arc;

use arc_swap::ArcSwapOption;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::{CertBundle, CertError};

/// Serves whatever certificate was installed last. New handshakes see a new
/// certificate at once; established connections keep theirs.
#[derive(Debug, Default)]
pub struct CertResolver {
    current: ArcSwapOption<Installed>,
}

#[derive(Debug)]
struct Installed {
    /// What was installed, to skip re-parsing an unchanged bundle.
    cert_pem: String,
    key_pem: String,
    /// The CA bundle that came with it: after the Secret is lost, the CAs
    /// clients were trusting for this replica (see `recovery.rs`).
    ca_pem: String,
    key: Arc<CertifiedKey>,
}

impl CertResolver {
    /// An empty resolver: handshakes fail until a certificate is installed.
    pub fn new() -> Self {
        Self::default()
    }

    /// Installs `bundle` unless it is what is already served. Returns whether
    /// the served certificate changed. A bundle that does not parse leaves the
    /// current certificate in place.
    pub fn install(&self, bundle: &CertBundle) -> Result<bool, CertError> {
        if let Some(cur) = self.current.load().as_ref()
            && cur.cert_pem == bundle.cert_pem
            && cur.key_pem == bundle.key_pem
        {
            if cur.ca_pem != bundle.ca_pem {
                // Same leaf, CA bundle changed (old CAs dropped): remember it.
                self.current.store(Some(Arc::new(Installed {
                    ca_pem: bundle.ca_pem.clone(),
                    cert_pem: cur.cert_pem.clone(),
                    key_pem: cur.key_pem.clone(),
                    key: cur.key.clone(),
                })));
            }
            return Ok(false);
        }
        let key = bundle.certified_key()?;
        self.current.store(Some(Arc::new(Installed {
            cert_pem: bundle.cert_pem.clone(),
            key_pem: bundle.key_pem.clone(),
            ca_pem: bundle.ca_pem.clone(),
            key,
        })));
        Ok(true)
    }

    /// The PEM certificate being served, if any (for logs and tests).
    pub fn served_cert_pem(&self) -> Option<String> {
        self.current.load().as_ref().map(|i| i.cert_pem.clone())
    }

    /// The CA bundle (PEM) installed with the served certificate, if any.
    pub fn served_ca_pem(&self) -> Option<String> {
        self.current.load().as_ref().map(|i| i.ca_pem.clone())
    }

    /// Whether a certificate is being served (what `/readyz` reports).
    pub fn is_loaded(&self) -> bool {
        self.current.load().is_some()
    }
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current.load().as_ref().map(|i| i.key.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ServiceIdentity, authority};
    use std::time::SystemTime;

    fn bundle() -> CertBundle {
        let id = ServiceIdentity {
            service: "w".into(),
            namespace: "n".into(),
            cluster_domain: String::new(),
            extra_names: Vec::new(),
        };
        authority::new_bundle(&id, SystemTime::now(), None).expect("bundle")
    }

    #[test]
    fn installs_swaps_and_ignores_unchanged_or_broken_bundles() {
        let r = CertResolver::new();
        assert!(!r.is_loaded());
        let a = bundle();
        assert!(r.install(&a).expect("install a"));
        assert!(r.is_loaded());
        assert!(!r.install(&a).expect("same again"));
        let b = bundle();
        assert!(r.install(&b).expect("install b"));
        let mut broken = bundle();
        broken.key_pem = "garbage".into();
        assert!(r.install(&broken).is_err());
        // The broken bundle did not replace b.
        assert!(!r.install(&b).expect("b still served"));
    }
}
