//! The one error type of this crate.

/// Why a certificate could not be produced, read, served or injected.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// Generating or signing a certificate failed.
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
    /// A PEM or DER value did not parse; `what` names the item (e.g. `tls.crt`).
    #[error("{what}: {message}")]
    Parse { what: String, message: String },
    /// A required Secret key or file is absent.
    #[error("{what} is missing")]
    Missing { what: String },
    /// A Kubernetes API call failed; `action` says which.
    #[error("{action}: {source}")]
    Kube {
        action: String,
        #[source]
        source: kube::Error,
    },
    /// Reading a certificate file failed.
    #[error("reading {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

impl CertError {
    pub(crate) fn parse(what: impl Into<String>, message: impl ToString) -> Self {
        CertError::Parse {
            what: what.into(),
            message: message.to_string(),
        }
    }

    pub(crate) fn kube(action: impl Into<String>, source: kube::Error) -> Self {
        CertError::Kube {
            action: action.into(),
            source,
        }
    }
}
