//! The self-managed CA: issues the CA and the serving certificate (rcgen).

use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use time::OffsetDateTime;

use crate::rotation::parse_validity;
use crate::{CertBundle, CertError, ServiceIdentity};

const DAY: Duration = Duration::from_secs(24 * 60 * 60);
/// CA lifetime. Long, because replacing the CA means re-injecting `caBundle`.
pub const CA_LIFETIME: Duration = Duration::from_secs(10 * 365 * 24 * 60 * 60);
/// Serving-certificate lifetime. Reissued from the same CA, which is invisible
/// to the API server, so it can be short.
pub const SERVING_LIFETIME: Duration = Duration::from_secs(365 * 24 * 60 * 60);
/// Certificates start this far in the past so a node whose clock lags the
/// webhook's does not see a not-yet-valid certificate.
pub const BACKDATE: Duration = Duration::from_secs(60 * 60);

/// A fresh CA and serving certificate for `identity`. When `previous` holds a
/// CA that is still valid at `now`, it stays in the bundle after the new one,
/// so callers that still hold the old `caBundle` keep working during the switch.
pub fn new_bundle(
    identity: &ServiceIdentity,
    now: SystemTime,
    previous: Option<&CertBundle>,
) -> Result<CertBundle, CertError> {
    let keep: Vec<String> = previous
        .and_then(|p| still_valid_current_ca(p, now))
        .into_iter()
        .collect();
    new_bundle_keeping(identity, now, &keep)
}

/// A fresh CA and serving certificate for `identity`, with the PEM CAs of
/// `keep` after the new CA in the bundle (see `recovery.rs` for which and how
/// long).
pub fn new_bundle_keeping(
    identity: &ServiceIdentity,
    now: SystemTime,
    keep: &[String],
) -> Result<CertBundle, CertError> {
    let ca_key = KeyPair::generate()?;
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.distinguished_name = rcgen::DistinguishedName::new();
    ca.distinguished_name
        .push(DnType::CommonName, format!("{} CA", identity.service));
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    set_validity(&mut ca, now, CA_LIFETIME);
    let ca_cert = ca.self_signed(&ca_key)?;
    let ca_pem = ca_cert.pem();
    let ca_key_pem = ca_key.serialize_pem();

    let (cert_pem, key_pem) = issue_serving(&ca_pem, &ca_key_pem, identity, now)?;
    let mut ca_bundle = ca_pem;
    for old_ca in keep {
        ca_bundle.push_str(old_ca);
        if !old_ca.ends_with('\n') {
            ca_bundle.push('\n');
        }
    }
    Ok(CertBundle {
        ca_pem: ca_bundle,
        ca_key_pem: Some(ca_key_pem),
        cert_pem,
        key_pem,
    })
}

/// The same CA, a new serving certificate (the CA bundle is unchanged, so no
/// re-injection is needed).
pub fn reissue_serving(
    bundle: &CertBundle,
    identity: &ServiceIdentity,
    now: SystemTime,
) -> Result<CertBundle, CertError> {
    let ca_key_pem = bundle.ca_key_pem.as_deref().ok_or(CertError::Missing {
        what: "CA key (ca.key)".into(),
    })?;
    let ca_pem = first_pem_certificate(&bundle.ca_pem)
        .ok_or_else(|| CertError::parse("ca.crt", "no PEM certificate found"))?;
    let (cert_pem, key_pem) = issue_serving(&ca_pem, ca_key_pem, identity, now)?;
    Ok(CertBundle {
        cert_pem,
        key_pem,
        ..bundle.clone()
    })
}

fn issue_serving(
    ca_pem: &str,
    ca_key_pem: &str,
    identity: &ServiceIdentity,
    now: SystemTime,
) -> Result<(String, String), CertError> {
    let ca_key = KeyPair::from_pem(ca_key_pem)?;
    let ca_not_after = parse_validity(ca_pem)?.not_after;
    let issuer = Issuer::from_ca_cert_pem(ca_pem, ca_key)?;
    let names = identity.dns_names();
    let mut params = CertificateParams::new(identity.subject_alt_names())?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    if let Some(cn) = names.get(2).or(names.first()) {
        params
            .distinguished_name
            .push(DnType::CommonName, cn.clone());
    }
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    set_validity(&mut params, now, SERVING_LIFETIME);
    // A leaf must not outlive the CA that signs it.
    let ca_end = OffsetDateTime::from(ca_not_after);
    if params.not_after > ca_end {
        params.not_after = ca_end;
    }
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &issuer)?;
    Ok((cert.pem(), key.serialize_pem()))
}

fn set_validity(params: &mut CertificateParams, now: SystemTime, lifetime: Duration) {
    let start = now.checked_sub(BACKDATE).unwrap_or(now);
    params.not_before = OffsetDateTime::from(start);
    params.not_after = OffsetDateTime::from(now + lifetime);
}

/// The first PEM certificate block of a bundle (the current CA).
pub(crate) fn first_pem_certificate(bundle: &str) -> Option<String> {
    const END: &str = "-----END CERTIFICATE-----";
    let start = bundle.find("-----BEGIN CERTIFICATE-----")?;
    let end = bundle[start..].find(END)? + start + END.len();
    Some(format!("{}\n", &bundle[start..end]))
}

/// Most PEM blocks looked at in one bundle: a hostile `caBundle` of
/// thousands of certificates costs no more than this.
const MAX_PEM_BLOCKS: usize = 64;

/// Every PEM certificate block of `bundle`, in order, each ending in a
/// newline; text between blocks is ignored. Blocks are not parsed here.
pub(crate) fn pem_certificates(bundle: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut rest = bundle;
    while blocks.len() < MAX_PEM_BLOCKS {
        let Some(block) = first_pem_certificate(rest) else {
            break;
        };
        // first_pem_certificate found both markers, so both finds succeed.
        let start = rest.find("-----BEGIN CERTIFICATE-----").unwrap_or(0);
        rest = &rest[start + block.len() - 1..];
        blocks.push(block);
    }
    blocks
}

fn still_valid_current_ca(previous: &CertBundle, now: SystemTime) -> Option<String> {
    let ca = first_pem_certificate(&previous.ca_pem)?;
    let validity = parse_validity(&ca).ok()?;
    (validity.not_after > now + DAY).then_some(ca)
}

#[cfg(test)]
mod tests {
    use super::*;
    use x509_parser::prelude::*;

    fn id() -> ServiceIdentity {
        ServiceIdentity {
            service: "emqx-webhook".into(),
            namespace: "emqx".into(),
            cluster_domain: "cluster.local".into(),
            extra_names: Vec::new(),
        }
    }

    fn sans(pem_text: &str) -> Vec<String> {
        let (_, pem) = parse_x509_pem(pem_text.as_bytes()).expect("pem");
        let cert = pem.parse_x509().expect("x509");
        let ext = cert
            .subject_alternative_name()
            .expect("ext")
            .expect("has SAN");
        ext.value
            .general_names
            .iter()
            .filter_map(|n| match n {
                GeneralName::DNSName(d) => Some((*d).to_owned()),
                _ => None,
            })
            .collect()
    }

    fn verifies(ca_pem: &str, cert_pem: &str) -> bool {
        let (_, ca) = parse_x509_pem(ca_pem.as_bytes()).expect("ca pem");
        let ca = ca.parse_x509().expect("ca");
        let (_, leaf) = parse_x509_pem(cert_pem.as_bytes()).expect("leaf pem");
        let leaf = leaf.parse_x509().expect("leaf");
        leaf.verify_signature(Some(ca.public_key())).is_ok()
    }

    #[test]
    fn serving_certificate_names_the_service_and_is_signed_by_the_ca() {
        let b = new_bundle(&id(), SystemTime::now(), None).expect("bundle");
        assert_eq!(sans(&b.cert_pem), id().dns_names());
        assert!(verifies(&b.ca_pem, &b.cert_pem));
        assert!(b.ca_key_pem.is_some());
    }

    #[test]
    fn extra_ip_addresses_become_ip_sans() {
        let mut with_ip = id();
        with_ip.extra_names = vec!["127.0.0.1".into()];
        let b = new_bundle(&with_ip, SystemTime::now(), None).expect("bundle");
        let v = crate::rotation::parse_validity(&b.cert_pem).expect("parse");
        assert_eq!(v.dns_names, with_ip.subject_alt_names());
    }

    #[test]
    fn reissue_keeps_the_ca_and_changes_the_leaf() {
        let b = new_bundle(&id(), SystemTime::now(), None).expect("bundle");
        let r = reissue_serving(&b, &id(), SystemTime::now()).expect("reissue");
        assert_eq!(r.ca_pem, b.ca_pem);
        assert_ne!(r.cert_pem, b.cert_pem);
        assert!(verifies(&b.ca_pem, &r.cert_pem));
    }

    #[test]
    fn ca_rotation_keeps_the_previous_ca_in_the_bundle_once() {
        let now = SystemTime::now();
        let a = new_bundle(&id(), now, None).expect("a");
        let b = new_bundle(&id(), now, Some(&a)).expect("b");
        assert_eq!(b.ca_pem.matches("BEGIN CERTIFICATE").count(), 2);
        assert!(b.ca_pem.ends_with(&a.ca_pem));
        let c = new_bundle(&id(), now, Some(&b)).expect("c");
        // Only the immediately previous CA is carried, never a growing chain.
        assert_eq!(c.ca_pem.matches("BEGIN CERTIFICATE").count(), 2);
        assert!(!c.ca_pem.contains(&a.ca_pem));
    }

    #[test]
    fn reissue_without_a_ca_key_is_an_error_not_a_panic() {
        let mut b = new_bundle(&id(), SystemTime::now(), None).expect("bundle");
        b.ca_key_pem = None;
        assert!(reissue_serving(&b, &id(), SystemTime::now()).is_err());
        b.ca_key_pem = Some("junk".into());
        assert!(reissue_serving(&b, &id(), SystemTime::now()).is_err());
    }
}
