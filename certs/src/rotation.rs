//! When to replace a certificate. Pure: the caller passes the clock.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use x509_parser::prelude::*;

use crate::authority::first_pem_certificate;
use crate::{CertBundle, CertError, ServiceIdentity};

/// The part of a certificate that rotation looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertValidity {
    /// Start of validity.
    pub not_before: SystemTime,
    /// End of validity.
    pub not_after: SystemTime,
    /// Subject alternative names: DNS names, and IP addresses in text form.
    pub dns_names: Vec<String>,
}

/// Clock skew tolerated before a not-yet-valid certificate counts as broken.
const SKEW: Duration = Duration::from_secs(5 * 60);

/// Whether `cert` should be replaced at `now`: once less than a third of its
/// lifetime remains (about four months before expiry for the one-year serving
/// certificate, over three years for the ten-year CA), so a webhook that is
/// down for weeks still restarts with a valid certificate; also when it is
/// expired or not yet valid.
pub fn needs_rotation(now: SystemTime, cert: &CertValidity) -> bool {
    if now + SKEW < cert.not_before || now >= cert.not_after {
        return true;
    }
    let lifetime = cert
        .not_after
        .duration_since(cert.not_before)
        .unwrap_or_default();
    let remaining = cert.not_after.duration_since(now).unwrap_or_default();
    remaining < lifetime / 3
}

/// What the self-managed mode must do with the bundle it found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RotationPlan {
    /// Serve it as it is.
    Keep,
    /// Same CA, new serving certificate (no `caBundle` change).
    ReissueServing,
    /// New CA and serving certificate (`caBundle` must be re-injected).
    ReissueAll,
}

/// Decides what to do with a self-managed `bundle` at `now` for `identity`.
pub fn plan_rotation(
    now: SystemTime,
    bundle: &CertBundle,
    identity: &ServiceIdentity,
) -> RotationPlan {
    let ca = first_pem_certificate(&bundle.ca_pem).and_then(|pem| parse_validity(&pem).ok());
    // A CA key that does not parse cannot sign a new leaf: only a new CA helps.
    let ca_key_usable = |pem: &str| rcgen::KeyPair::from_pem(pem).is_ok();
    let ca = match (ca, &bundle.ca_key_pem) {
        (Some(ca), Some(key)) if !needs_rotation(now, &ca) && ca_key_usable(key) => ca,
        _ => return RotationPlan::ReissueAll,
    };
    let Ok(serving) = parse_validity(&bundle.cert_pem) else {
        return RotationPlan::ReissueServing;
    };
    // A leaf whose key is garbage or another certificate's cannot be served.
    if bundle.certified_key().is_err() {
        return RotationPlan::ReissueServing;
    }
    let names_match = identity
        .subject_alt_names()
        .iter()
        .all(|n| serving.dns_names.contains(n));
    if !names_match || needs_rotation(now, &serving) || serving.not_after > ca.not_after {
        RotationPlan::ReissueServing
    } else {
        RotationPlan::Keep
    }
}

/// Reads validity and DNS names of the first certificate in `pem_text`.
pub fn parse_validity(pem_text: &str) -> Result<CertValidity, CertError> {
    let (_, pem) =
        parse_x509_pem(pem_text.as_bytes()).map_err(|e| CertError::parse("certificate PEM", e))?;
    let cert = pem
        .parse_x509()
        .map_err(|e| CertError::parse("certificate DER", e))?;
    let at = |t: ASN1Time| -> SystemTime {
        let secs = t.timestamp();
        if secs >= 0 {
            UNIX_EPOCH + Duration::from_secs(secs.unsigned_abs())
        } else {
            UNIX_EPOCH
                .checked_sub(Duration::from_secs(secs.unsigned_abs()))
                .unwrap_or(UNIX_EPOCH)
        }
    };
    let dns_names = match cert.subject_alternative_name() {
        Ok(Some(ext)) => ext
            .value
            .general_names
            .iter()
            .filter_map(|n| match n {
                GeneralName::DNSName(d) => Some((*d).to_owned()),
                GeneralName::IPAddress(bytes) => ip_text(bytes),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    Ok(CertValidity {
        not_before: at(cert.validity().not_before),
        not_after: at(cert.validity().not_after),
        dns_names,
    })
}

fn ip_text(bytes: &[u8]) -> Option<String> {
    let ip = match bytes.len() {
        4 => std::net::IpAddr::from(<[u8; 4]>::try_from(bytes).ok()?),
        16 => std::net::IpAddr::from(<[u8; 16]>::try_from(bytes).ok()?),
        _ => return None,
    };
    Some(ip.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authority::{self, CA_LIFETIME, SERVING_LIFETIME};
    use proptest::prelude::*;

    const DAY: Duration = Duration::from_secs(86_400);

    fn validity(start: SystemTime, days: u64) -> CertValidity {
        CertValidity {
            not_before: start,
            not_after: start + DAY * days as u32,
            dns_names: vec![],
        }
    }

    fn id() -> ServiceIdentity {
        ServiceIdentity {
            service: "w".into(),
            namespace: "n".into(),
            cluster_domain: "cluster.local".into(),
            extra_names: Vec::new(),
        }
    }

    #[test]
    fn a_year_long_certificate_rotates_four_months_before_expiry() {
        let t0 = UNIX_EPOCH + DAY * 20_000;
        let cert = validity(t0, 365);
        assert!(!needs_rotation(t0, &cert));
        assert!(!needs_rotation(t0 + DAY * 240, &cert));
        assert!(needs_rotation(t0 + DAY * 245, &cert));
        assert!(needs_rotation(t0 + DAY * 365, &cert), "expired");
        assert!(needs_rotation(t0 - DAY, &cert), "not yet valid");
        assert!(
            !needs_rotation(t0 - Duration::from_secs(60), &cert),
            "within skew"
        );
    }

    proptest! {
        #[test]
        fn rotation_happens_before_expiry_and_never_in_the_first_half(
            days in 1u64..10_000, offset_secs in 0u64..(10_000 * 86_400)
        ) {
            let t0 = UNIX_EPOCH + DAY * 20_000;
            let cert = validity(t0, days);
            let now = t0 + Duration::from_secs(offset_secs);
            let lifetime = DAY * days as u32;
            if now >= cert.not_after {
                prop_assert!(needs_rotation(now, &cert));
            }
            if now < t0 + lifetime / 2 {
                prop_assert!(!needs_rotation(now, &cert));
            }
        }
    }

    #[test]
    fn plan_keeps_a_fresh_bundle_and_reissues_as_it_ages() {
        let now = SystemTime::now();
        let b = authority::new_bundle(&id(), now, None).expect("bundle");
        assert_eq!(plan_rotation(now, &b, &id()), RotationPlan::Keep);
        let later = now + SERVING_LIFETIME - DAY * 30;
        assert_eq!(
            plan_rotation(later, &b, &id()),
            RotationPlan::ReissueServing
        );
        let much_later = now + CA_LIFETIME - DAY * 30;
        assert_eq!(
            plan_rotation(much_later, &b, &id()),
            RotationPlan::ReissueAll
        );
    }

    #[test]
    fn plan_reissues_for_a_renamed_service_or_a_broken_bundle() {
        let now = SystemTime::now();
        let b = authority::new_bundle(&id(), now, None).expect("bundle");
        let mut renamed = id();
        renamed.namespace = "other".into();
        assert_eq!(
            plan_rotation(now, &b, &renamed),
            RotationPlan::ReissueServing
        );
        let mut with_ip = id();
        with_ip.extra_names = vec!["127.0.0.9".into()];
        assert_eq!(
            plan_rotation(now, &b, &with_ip),
            RotationPlan::ReissueServing
        );
        let mut broken = b.clone();
        broken.cert_pem = "junk".into();
        assert_eq!(
            plan_rotation(now, &broken, &id()),
            RotationPlan::ReissueServing
        );
        let mut no_ca_key = b.clone();
        no_ca_key.ca_key_pem = None;
        assert_eq!(
            plan_rotation(now, &no_ca_key, &id()),
            RotationPlan::ReissueAll
        );
        let mut no_ca = b;
        no_ca.ca_pem = String::new();
        assert_eq!(plan_rotation(now, &no_ca, &id()), RotationPlan::ReissueAll);
    }

    #[test]
    fn parse_validity_reads_names_and_rejects_garbage() {
        let b = authority::new_bundle(&id(), SystemTime::now(), None).expect("bundle");
        let v = parse_validity(&b.cert_pem).expect("parse");
        assert_eq!(v.dns_names, id().dns_names());
        assert!(parse_validity("").is_err());
        assert!(
            parse_validity("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
                .is_err()
        );
    }
}
