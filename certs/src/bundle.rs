//! The certificate material the webhook serves, and its Secret/file layout.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::ByteString;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;

use crate::CertError;

/// Secret/file key of the serving certificate chain (PEM), as cert-manager and
/// `kubernetes.io/tls` Secrets name it.
pub const TLS_CRT: &str = "tls.crt";
/// Secret/file key of the serving private key (PEM).
pub const TLS_KEY: &str = "tls.key";
/// Secret/file key of the CA bundle (PEM, one or more certificates) the API
/// server must trust.
pub const CA_CRT: &str = "ca.crt";
/// Secret key of the CA private key; only self-managed Secrets carry it, so
/// any replica can reissue the serving certificate from the same CA.
pub const CA_KEY: &str = "ca.key";

/// A serving certificate, its key, and the CA bundle that verifies it.
#[derive(Clone, PartialEq, Eq)]
pub struct CertBundle {
    /// PEM CA certificates to put in `caBundle`; the current CA first. During a
    /// CA rotation the previous CA follows, so clients holding the old bundle
    /// and servers holding the new certificate overlap.
    pub ca_pem: String,
    /// PEM CA private key (self-managed mode only).
    pub ca_key_pem: Option<String>,
    /// PEM serving certificate (leaf first, then any intermediates).
    pub cert_pem: String,
    /// PEM serving private key.
    pub key_pem: String,
}

impl std::fmt::Debug for CertBundle {
    // Keys never reach logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertBundle")
            .field("ca_pem", &self.ca_pem)
            .field("cert_pem", &self.cert_pem)
            .finish_non_exhaustive()
    }
}

impl CertBundle {
    /// Reads a bundle from Secret data. `ca.crt` may be absent (a provided
    /// Secret of type `kubernetes.io/tls`); then the bundle's CA is empty.
    pub fn from_secret_data(data: &BTreeMap<String, ByteString>) -> Result<Self, CertError> {
        let text = |key: &str| -> Result<Option<String>, CertError> {
            match data.get(key) {
                None => Ok(None),
                Some(bytes) => String::from_utf8(bytes.0.clone())
                    .map(Some)
                    .map_err(|e| CertError::parse(key, e)),
            }
        };
        let required = |key: &str| -> Result<String, CertError> {
            text(key)?.ok_or_else(|| CertError::Missing {
                what: format!("Secret key {key}"),
            })
        };
        Ok(CertBundle {
            ca_pem: text(CA_CRT)?.unwrap_or_default(),
            ca_key_pem: text(CA_KEY)?,
            cert_pem: required(TLS_CRT)?,
            key_pem: required(TLS_KEY)?,
        })
    }

    /// The Secret data that [`CertBundle::from_secret_data`] reads back.
    pub fn to_secret_data(&self) -> BTreeMap<String, ByteString> {
        let mut data = BTreeMap::new();
        let mut put = |key: &str, value: &str| {
            data.insert(key.to_owned(), ByteString(value.as_bytes().to_vec()));
        };
        put(TLS_CRT, &self.cert_pem);
        put(TLS_KEY, &self.key_pem);
        put(CA_CRT, &self.ca_pem);
        if let Some(ca_key) = &self.ca_key_pem {
            put(CA_KEY, ca_key);
        }
        data
    }

    /// Parses the serving pair into what rustls serves.
    pub fn certified_key(&self) -> Result<Arc<CertifiedKey>, CertError> {
        let chain = CertificateDer::pem_slice_iter(self.cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| CertError::parse(TLS_CRT, e))?;
        if chain.is_empty() {
            return Err(CertError::parse(TLS_CRT, "no PEM certificate found"));
        }
        let key = PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes())
            .map_err(|e| CertError::parse(TLS_KEY, e))?;
        let signing_key = rustls::crypto::ring::sign::any_supported_type(&key)
            .map_err(|e| CertError::parse(TLS_KEY, e))?;
        let certified = CertifiedKey::new(chain, signing_key);
        // Catches a tls.key that belongs to another certificate before it is served.
        certified
            .keys_match()
            .map_err(|e| CertError::parse(TLS_KEY, format!("does not match {TLS_CRT}: {e}")))?;
        Ok(Arc::new(certified))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ServiceIdentity;
    use crate::authority;
    use std::time::SystemTime;

    fn bundle() -> CertBundle {
        let id = ServiceIdentity {
            service: "w".into(),
            namespace: "n".into(),
            cluster_domain: "cluster.local".into(),
            extra_names: Vec::new(),
        };
        authority::new_bundle(&id, SystemTime::now(), None).expect("bundle")
    }

    #[test]
    fn secret_data_round_trips_and_parses_for_rustls() {
        let b = bundle();
        let back = CertBundle::from_secret_data(&b.to_secret_data()).expect("parse");
        assert_eq!(back, b);
        assert!(back.certified_key().is_ok());
    }

    #[test]
    fn missing_key_is_named() {
        let mut data = bundle().to_secret_data();
        data.remove(TLS_KEY);
        let err = CertBundle::from_secret_data(&data).expect_err("must fail");
        assert!(err.to_string().contains("tls.key"), "{err}");
    }

    #[test]
    fn garbage_and_mismatched_keys_are_rejected_not_served() {
        let mut b = bundle();
        b.cert_pem = "not pem".into();
        assert!(b.certified_key().is_err());
        let mut b = bundle();
        b.key_pem = bundle().key_pem;
        let err = b.certified_key().expect_err("mismatch");
        assert!(err.to_string().contains("does not match"), "{err}");
        let mut data = bundle().to_secret_data();
        data.insert(TLS_CRT.into(), ByteString(vec![0xff, 0xfe]));
        assert!(CertBundle::from_secret_data(&data).is_err());
    }
}
