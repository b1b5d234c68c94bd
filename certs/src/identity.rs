//! Which DNS names the serving certificate must carry.

/// The webhook Service the API server dials, which the certificate must name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServiceIdentity {
    /// Service name, e.g. `emqx-operator-webhook`.
    pub service: String,
    /// Namespace the Service lives in.
    pub namespace: String,
    /// Cluster DNS domain, usually `cluster.local`.
    pub cluster_domain: String,
    /// More DNS names or IP addresses to certify, e.g. the loopback address
    /// a test cluster registers the webhook under by URL.
    pub extra_names: Vec<String>,
}

impl ServiceIdentity {
    /// The names a client may use for the Service, shortest first. The API
    /// server uses `<svc>.<ns>.svc`; the others cover in-cluster callers.
    pub fn dns_names(&self) -> Vec<String> {
        let svc = &self.service;
        let ns = &self.namespace;
        let mut names = vec![
            svc.clone(),
            format!("{svc}.{ns}"),
            format!("{svc}.{ns}.svc"),
        ];
        let domain = self.cluster_domain.trim_matches('.');
        if !domain.is_empty() {
            names.push(format!("{svc}.{ns}.svc.{domain}"));
        }
        names
    }

    /// Every subject alternative name the serving certificate carries: the
    /// Service names, then the extra names (IP addresses become IP SANs).
    pub fn subject_alt_names(&self) -> Vec<String> {
        let mut names = self.dns_names();
        for extra in &self.extra_names {
            let extra = extra.trim();
            if !extra.is_empty() && !names.iter().any(|n| n == extra) {
                names.push(extra.to_owned());
            }
        }
        names
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_cover_every_form_of_the_service_address() {
        let id = ServiceIdentity {
            service: "emqx-webhook".into(),
            namespace: "emqx-system".into(),
            cluster_domain: "cluster.local".into(),
            extra_names: Vec::new(),
        };
        assert_eq!(
            id.dns_names(),
            [
                "emqx-webhook",
                "emqx-webhook.emqx-system",
                "emqx-webhook.emqx-system.svc",
                "emqx-webhook.emqx-system.svc.cluster.local",
            ]
        );
    }

    #[test]
    fn extra_names_follow_the_service_names_once() {
        let id = ServiceIdentity {
            service: "w".into(),
            namespace: "n".into(),
            cluster_domain: String::new(),
            extra_names: vec![
                "127.0.0.1".into(),
                "w".into(),
                " ".into(),
                "webhook.test".into(),
            ],
        };
        assert_eq!(
            id.subject_alt_names(),
            ["w", "w.n", "w.n.svc", "127.0.0.1", "webhook.test"]
        );
    }

    #[test]
    fn an_empty_or_dotted_cluster_domain_adds_no_trailing_dot_name() {
        let mut id = ServiceIdentity {
            service: "w".into(),
            namespace: "n".into(),
            cluster_domain: String::new(),
            extra_names: Vec::new(),
        };
        assert_eq!(id.dns_names(), ["w", "w.n", "w.n.svc"]);
        id.cluster_domain = ".corp.example.".into();
        assert_eq!(
            id.dns_names().last().map(String::as_str),
            Some("w.n.svc.corp.example")
        );
    }
}
