//! Why a reconcile pass failed. Each variant has its own metric label, so
//! `emqx_reconciler_reconcile_errors_total` says what went wrong.

use crate::emqx_api::EmqxError;

/// Why a pass failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("EMQX API: {0}")]
    Emqx(#[from] EmqxError),
    /// The object lacks metadata every stored object has (a namespace, a uid).
    #[error("object has no {0}")]
    ObjectIncomplete(&'static str),
    /// A rendered object or patch did not serialise: a bug, not bad input.
    #[error("cannot render {what}: {source}")]
    Render {
        what: &'static str,
        source: serde_json::Error,
    },
    /// A bootstrap API key read through `secretRef` cannot be written into
    /// EMQX's bootstrap file (or its Secret is missing).
    #[error("bootstrap API key {0}")]
    BootstrapKey(#[from] crate::bootstrap::KeyError),
    /// A step names a set the pass did not observe (deleted meanwhile).
    #[error("set {0} is gone")]
    SetGone(String),
}

impl Error {
    /// Every value [`Error::label`] gives, so the error counter can start
    /// each series at zero: a rate over a series that appears with its
    /// first error misses that error, and a dashboard shows nothing where
    /// it should show 0.
    pub const LABELS: [&'static str; 6] = [
        "kube",
        "emqx",
        "object",
        "render",
        "set_gone",
        "bootstrap_key",
    ];

    /// The `error` label of the error counter.
    pub fn label(&self) -> &'static str {
        match self {
            Error::Kube(_) => "kube",
            Error::Emqx(_) => "emqx",
            Error::ObjectIncomplete(_) => "object",
            Error::Render { .. } => "render",
            Error::SetGone(_) => "set_gone",
            Error::BootstrapKey(_) => "bootstrap_key",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_of_failure_counts_under_its_own_label() {
        let render = serde_json::from_str::<u8>("x").map_err(|source| Error::Render {
            what: "a scale patch",
            source,
        });
        let errors = [
            Error::Emqx(EmqxError::NodeNotFound("emqx@a".into())),
            Error::ObjectIncomplete("uid"),
            render.expect_err("not a number"),
            Error::SetGone("emqx-core-a".into()),
        ];
        let labels: Vec<&str> = errors.iter().map(Error::label).collect();
        assert_eq!(labels, ["emqx", "object", "render", "set_gone"]);
        for label in labels {
            assert!(Error::LABELS.contains(&label), "{label} not in LABELS");
        }
    }

    #[test]
    fn error_series_start_at_zero_for_every_label() {
        let metrics = crate::metrics::Metrics::default();
        metrics.start_kind("EMQX");
        let text = metrics.encode();
        for label in Error::LABELS {
            let series = format!(
                "emqx_reconciler_reconcile_errors_total{{kind=\"EMQX\",error=\"{label}\"}} 0"
            );
            assert!(text.contains(&series), "{series} missing:\n{text}");
        }
        assert!(text.contains("emqx_reconciler_reconciles_total{kind=\"EMQX\"} 0"));
    }
}
