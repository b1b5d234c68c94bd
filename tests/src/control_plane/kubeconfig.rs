//! Kubeconfig files: one for the admin (kubectl, helm, the sandbox itself) and
//! one per pod carrying its ServiceAccount token. Written as JSON, which every
//! kubeconfig reader accepts (JSON is YAML).

use std::path::Path;

use anyhow::{Context, Result};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use kube::config::{KubeConfigOptions, Kubeconfig};
use serde_json::{Value, json};

/// How a kubeconfig user authenticates.
#[derive(Debug, Clone)]
pub enum Credentials {
    /// Client certificate and key, PEM.
    ClientCert {
        /// Certificate PEM.
        cert_pem: String,
        /// Key PEM.
        key_pem: String,
    },
    /// A bearer token (a ServiceAccount token).
    Token(String),
}

/// The kubeconfig document for `server` (an `https://` URL) trusted through `ca_pem`.
pub fn document(
    server: &str,
    ca_pem: &str,
    user: &str,
    credentials: &Credentials,
    namespace: &str,
) -> Value {
    let user_entry = match credentials {
        Credentials::ClientCert { cert_pem, key_pem } => json!({
            "client-certificate-data": STANDARD.encode(cert_pem),
            "client-key-data": STANDARD.encode(key_pem),
        }),
        Credentials::Token(token) => json!({ "token": token }),
    };
    json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "sandbox", "cluster": {
            "server": server,
            "certificate-authority-data": STANDARD.encode(ca_pem),
        }}],
        "users": [{"name": user, "user": user_entry}],
        "contexts": [{"name": "sandbox", "context": {
            "cluster": "sandbox", "user": user, "namespace": namespace,
        }}],
        "current-context": "sandbox",
    })
}

/// Writes `document` to `path`, readable by the owner only (it holds secrets).
pub fn write(path: &Path, document: &Value) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    serde_json::to_writer_pretty(&mut file, document)?;
    Ok(())
}

/// A `kube::Client` for a kubeconfig document.
pub async fn client(document: &Value) -> Result<kube::Client> {
    let kubeconfig: Kubeconfig = serde_json::from_value(document.clone()).context("kubeconfig")?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .context("loading the sandbox kubeconfig")?;
    kube::Client::try_from(config).context("building a kube client")
}
