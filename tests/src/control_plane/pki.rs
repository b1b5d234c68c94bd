//! The sandbox's certificates and keys: one CA, the apiserver's serving
//! certificate, client certificates for the admin and the controller manager,
//! the kubelet's serving certificate and the apiserver's client certificate
//! for it (as kubeadm issues them), and the ServiceAccount token signing key. ECDSA P-256 throughout (the
//! apiserver accepts ES256 service-account keys). Generated fresh per sandbox.

use std::net::Ipv4Addr;

use anyhow::{Context, Result};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, SanType,
};

/// The user the apiserver is to kubelets (kubeadm's name for it); the
/// sandbox grants it `system:kubelet-api-admin`, as kubeadm does.
pub const KUBELET_CLIENT_USER: &str = "kube-apiserver-kubelet-client";

/// A certificate and its private key, PEM encoded.
#[derive(Debug, Clone)]
pub struct CertPair {
    /// Certificate, PEM.
    pub cert_pem: String,
    /// PKCS#8 private key, PEM.
    pub key_pem: String,
}

/// Everything the control plane needs.
#[derive(Debug, Clone)]
pub struct Pki {
    /// The cluster CA certificate, PEM.
    pub ca_pem: String,
    /// kube-apiserver serving certificate.
    pub apiserver: CertPair,
    /// `system:masters` client certificate for the sandbox itself, kubectl and helm.
    pub admin: CertPair,
    /// `system:kube-controller-manager` client certificate.
    pub controller_manager: CertPair,
    /// The simulated kubelet's serving certificate (the node's address).
    pub kubelet: CertPair,
    /// The apiserver's client certificate towards kubelets
    /// (`--kubelet-client-certificate`), user [`KUBELET_CLIENT_USER`].
    pub apiserver_kubelet_client: CertPair,
    /// ServiceAccount token signing key (PKCS#8 PEM) and its public key.
    pub service_account_key_pem: String,
    /// Public half of the signing key, PEM.
    pub service_account_pub_pem: String,
}

impl Pki {
    /// Generates a fresh PKI for an apiserver reachable at `apiserver_ip`,
    /// whose `kubernetes` Service has `service_ip`, and a node at `node_ip`.
    pub fn generate(
        apiserver_ip: Ipv4Addr,
        service_ip: Ipv4Addr,
        node_ip: Ipv4Addr,
    ) -> Result<Pki> {
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params.distinguished_name = name("sandbox-ca", None);
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate()?)
            .context("self-signing the sandbox CA")?;

        let mut serving = CertificateParams::new(vec![
            "kubernetes".to_string(),
            "kubernetes.default".to_string(),
            "kubernetes.default.svc".to_string(),
            "kubernetes.default.svc.cluster.local".to_string(),
            "localhost".to_string(),
        ])?;
        serving
            .subject_alt_names
            .push(SanType::IpAddress(apiserver_ip.into()));
        serving
            .subject_alt_names
            .push(SanType::IpAddress(service_ip.into()));
        serving.distinguished_name = name("kube-apiserver", None);
        serving.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let apiserver = sign(serving, &ca)?;

        let admin = client(&ca, "sandbox-admin", Some("system:masters"))?;
        let controller_manager = client(&ca, "system:kube-controller-manager", None)?;
        let apiserver_kubelet_client = client(&ca, KUBELET_CLIENT_USER, None)?;
        // The apiserver dials the node's InternalIP and checks it against the
        // certificate (`--kubelet-certificate-authority`).
        let mut kubelet_serving = CertificateParams::new(Vec::<String>::new())?;
        kubelet_serving
            .subject_alt_names
            .push(SanType::IpAddress(node_ip.into()));
        kubelet_serving.distinguished_name = name("sandbox-node", None);
        kubelet_serving.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let kubelet = sign(kubelet_serving, &ca)?;

        let sa_key = KeyPair::generate()?;
        Ok(Pki {
            ca_pem: ca.pem(),
            apiserver,
            admin,
            controller_manager,
            kubelet,
            apiserver_kubelet_client,
            service_account_key_pem: sa_key.serialize_pem(),
            service_account_pub_pem: sa_key.public_key_pem(),
        })
    }
}

fn name(common_name: &str, organization: Option<&str>) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    if let Some(org) = organization {
        dn.push(DnType::OrganizationName, org);
    }
    dn
}

fn client(ca: &CertifiedIssuer<'_, KeyPair>, user: &str, group: Option<&str>) -> Result<CertPair> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name = name(user, group);
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    sign(params, ca)
}

fn sign(params: CertificateParams, ca: &CertifiedIssuer<'_, KeyPair>) -> Result<CertPair> {
    let key = KeyPair::generate()?;
    let cert = params
        .signed_by(&key, &**ca)
        .context("signing a sandbox certificate")?;
    Ok(CertPair {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generates_distinct_pem_material() {
        let pki = Pki::generate(
            Ipv4Addr::new(127, 95, 0, 1),
            Ipv4Addr::new(127, 96, 0, 1),
            Ipv4Addr::new(127, 95, 0, 2),
        )
        .expect("pki");
        assert!(pki.ca_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(pki.admin.key_pem.contains("PRIVATE KEY"));
        assert_ne!(pki.admin.cert_pem, pki.controller_manager.cert_pem);
        assert_ne!(pki.kubelet.cert_pem, pki.apiserver.cert_pem);
        assert!(pki.service_account_pub_pem.contains("PUBLIC KEY"));
    }
}
