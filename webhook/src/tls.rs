//! rustls configuration: ring, TLS 1.2 and 1.3 only, h2 and http/1.1 by ALPN,
//! certificate from the swappable [`CertResolver`].

use std::sync::Arc;

use emqx_certs::CertResolver;
use rustls::ServerConfig;

/// Installs ring as the process-wide rustls provider, so every TLS user in
/// the process (the server and kube's client) agrees on one. Idempotent.
pub fn install_crypto_provider() {
    // Err only means a provider is already installed, which is what we want.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The server TLS configuration.
pub fn server_config(resolver: Arc<CertResolver>) -> Result<Arc<ServerConfig>, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
