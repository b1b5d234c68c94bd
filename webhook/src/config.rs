//! Command line and environment: everything the chart sets.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use emqx_certs::mode::InjectionTargets;
use emqx_certs::{CertMode, ServiceIdentity};

use crate::intake::{
    DEFAULT_BODY_LIMIT, DEFAULT_MAX_JSON_TOKENS, DEFAULT_SMALL_REVIEW_BYTES, RequestLimits,
    SmallLane,
};
use crate::server::ConnectionLimits;

/// Where the namespace comes from when neither flag nor env sets it.
const SERVICE_ACCOUNT_NAMESPACE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/namespace";

/// Certificate mode, as the chart's values name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CertModeArg {
    /// Generate, store, inject and rotate (default).
    SelfManaged,
    /// Read the Secret cert-manager maintains.
    CertManager,
    /// Read a provided Secret (`--cert-secret`) or directory (`--cert-dir`).
    Provided,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// `emqx-webhook`: admission and conversion webhook for apps.emqx.io.
#[derive(Debug, Clone, Parser)]
#[command(name = "emqx-webhook", version)]
pub struct Args {
    /// Address to serve HTTPS on.
    #[arg(long, env = "WEBHOOK_LISTEN", default_value = "0.0.0.0:9443")]
    pub listen: SocketAddr,
    /// Address to serve `/healthz`, `/readyz` and `/metrics` on, plain HTTP,
    /// with its own connection limits so a flood of the HTTPS port cannot
    /// fail the probes. Unset: they are served on the HTTPS port.
    #[arg(long, env = "WEBHOOK_HEALTH_LISTEN")]
    pub health_listen: Option<SocketAddr>,
    /// Certificate mode.
    #[arg(
        long,
        env = "WEBHOOK_CERT_MODE",
        value_enum,
        default_value = "self-managed"
    )]
    pub cert_mode: CertModeArg,
    /// Secret holding the certificate (self-managed: written; cert-manager and
    /// provided: read). In the webhook's namespace.
    #[arg(long, env = "WEBHOOK_CERT_SECRET", default_value = "emqx-webhook-tls")]
    pub cert_secret: String,
    /// Provided mode: read tls.crt/tls.key/ca.crt from this directory instead
    /// of a Secret (e.g. a mounted Secret volume).
    #[arg(long, env = "WEBHOOK_CERT_DIR")]
    pub cert_dir: Option<PathBuf>,
    /// How often the certificate is re-read (and, self-managed, rotated and re-injected).
    #[arg(long, env = "WEBHOOK_CERT_REFRESH_SECONDS", default_value_t = 30)]
    pub cert_refresh_seconds: u64,
    /// Namespace of the webhook (its Secret and Service). Defaults to the
    /// ServiceAccount's namespace.
    #[arg(long, env = "POD_NAMESPACE")]
    pub namespace: Option<String>,
    /// Name of the webhook's Service (the certificate names it).
    #[arg(long, env = "WEBHOOK_SERVICE_NAME", default_value = "emqx-webhook")]
    pub service_name: String,
    /// Cluster DNS domain.
    #[arg(long, env = "WEBHOOK_CLUSTER_DOMAIN", default_value = "cluster.local")]
    pub cluster_domain: String,
    /// More names for the self-managed serving certificate, comma separated:
    /// DNS names or IP addresses (e.g. when the webhook is registered by URL).
    #[arg(long = "extra-san", env = "WEBHOOK_EXTRA_SANS", value_delimiter = ',')]
    pub extra_sans: Vec<String>,
    /// ValidatingWebhookConfiguration to inject caBundle into (self-managed);
    /// empty to skip.
    #[arg(
        long,
        env = "WEBHOOK_VALIDATING_CONFIGURATION",
        default_value = "emqx-operator-validating"
    )]
    pub validating_configuration: String,
    /// MutatingWebhookConfiguration to inject caBundle into (self-managed);
    /// empty to skip.
    #[arg(
        long,
        env = "WEBHOOK_MUTATING_CONFIGURATION",
        default_value = "emqx-operator-mutating"
    )]
    pub mutating_configuration: String,
    /// CRDs whose conversion webhook gets the caBundle (self-managed), comma separated.
    #[arg(
        long,
        env = "WEBHOOK_CRDS",
        value_delimiter = ',',
        default_value = "emqxes.apps.emqx.io,emqxenterprises.apps.emqx.io"
    )]
    pub crds: Vec<String>,
    /// Largest accepted request body in bytes (the API server sends at most 3 MiB).
    #[arg(long, env = "WEBHOOK_MAX_BODY_BYTES", default_value_t = DEFAULT_BODY_LIMIT)]
    pub max_body_bytes: usize,
    /// Body bytes buffered by all requests together (at least --max-body-bytes).
    #[arg(long, env = "WEBHOOK_BODY_BUDGET_BYTES", default_value_t = 4 * DEFAULT_BODY_LIMIT)]
    pub body_budget_bytes: usize,
    /// Most JSON structural tokens (`{`, `[`, `,`) in one review; more → 413.
    /// A review's memory follows its values, not its bytes.
    #[arg(long, env = "WEBHOOK_MAX_JSON_TOKENS", default_value_t = DEFAULT_MAX_JSON_TOKENS)]
    pub max_json_tokens: usize,
    /// Tokens of all reviews being answered at once (at least --max-json-tokens).
    #[arg(long, env = "WEBHOOK_JSON_TOKEN_BUDGET", default_value_t = DEFAULT_MAX_JSON_TOKENS * 3 / 2)]
    pub json_token_budget: usize,
    /// Reviews answered at once; more wait (up to the request timeout, then 503).
    #[arg(long, env = "WEBHOOK_MAX_CONCURRENT_REVIEWS", default_value_t = 2)]
    pub max_concurrent_reviews: usize,
    /// Bodies up to this many bytes (declared, or sent so far) are reviewed
    /// in a lane of their own, with its own budget and slots, so they never
    /// wait behind large ones; 0 puts every review in one lane.
    #[arg(long, env = "WEBHOOK_SMALL_REVIEW_BYTES", default_value_t = DEFAULT_SMALL_REVIEW_BYTES)]
    pub small_review_bytes: usize,
    /// Seconds to receive a request body and get a review slot.
    #[arg(long, env = "WEBHOOK_REQUEST_TIMEOUT_SECONDS", default_value_t = 10)]
    pub request_timeout_seconds: u64,
    /// Milliseconds a client has to finish the TLS handshake.
    #[arg(long, env = "WEBHOOK_HANDSHAKE_TIMEOUT_MS", default_value_t = 2000)]
    pub handshake_timeout_ms: u64,
    /// Seconds a client has to send HTTP/1.1 request headers once started (slowloris).
    #[arg(long, env = "WEBHOOK_HEADER_READ_TIMEOUT_SECONDS", default_value_t = 5)]
    pub header_read_timeout_seconds: u64,
    /// Seconds a connection may stay open with no request in flight (also
    /// one that never sends a request; h2 gets a GOAWAY).
    #[arg(long, env = "WEBHOOK_IDLE_TIMEOUT_SECONDS", default_value_t = 15)]
    pub idle_timeout_seconds: u64,
    /// Most simultaneous connections; when full, an idle one makes room.
    #[arg(long, env = "WEBHOOK_MAX_CONNECTIONS", default_value_t = 1024)]
    pub max_connections: usize,
    /// Most simultaneous connections from one IP address.
    #[arg(long, env = "WEBHOOK_MAX_CONNECTIONS_PER_PEER", default_value_t = 256)]
    pub max_connections_per_peer: usize,
    /// Seconds in-flight requests may take to finish after SIGTERM.
    #[arg(long, env = "WEBHOOK_SHUTDOWN_GRACE_SECONDS", default_value_t = 20)]
    pub shutdown_grace_seconds: u64,
    /// Log format; the level comes from `RUST_LOG` (default `info`).
    #[arg(long, env = "WEBHOOK_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// Threads that serve connections and reviews. Fixed, not one per CPU
    /// the process sees: in a pod without a CPU limit that is every core of
    /// the node, each thread with its own allocator arena, while the reviews
    /// answered at once are bounded by `--max-concurrent-reviews` anyway.
    #[arg(
        long,
        env = "WEBHOOK_WORKER_THREADS",
        default_value_t = 2,
        value_parser = clap::value_parser!(u16).range(1..=1024)
    )]
    pub worker_threads: u16,
}

/// A setting that cannot work, named.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    /// Secret modes need to know the namespace.
    #[error("--namespace (POD_NAMESPACE) is required for cert mode {0} outside a pod")]
    NoNamespace(&'static str),
    /// An `--extra-san` that is neither an IP address nor a DNS name.
    #[error("--extra-san {0:?} is neither an IP address nor a DNS name")]
    BadSan(String),
    /// A zero duration or limit would make the server useless.
    #[error("{0} must be greater than 0")]
    Zero(&'static str),
    /// A budget that cannot hold one largest body would refuse it forever.
    #[error("--body-budget-bytes ({budget}) must be at least --max-body-bytes ({max_body})")]
    BudgetBelowBody {
        /// The budget.
        budget: usize,
        /// The body limit.
        max_body: usize,
    },
}

impl Args {
    /// The certificate mode these arguments describe.
    pub fn cert_mode(&self) -> Result<CertMode, ConfigError> {
        let non_empty = |s: &str| (!s.is_empty()).then(|| s.to_owned());
        if let Some(bad) = self.extra_sans.iter().find(|s| !is_san(s)) {
            return Err(ConfigError::BadSan(bad.clone()));
        }
        Ok(match self.cert_mode {
            CertModeArg::SelfManaged => CertMode::SelfManaged {
                secret: self.cert_secret.clone(),
                identity: ServiceIdentity {
                    service: self.service_name.clone(),
                    namespace: self.namespace_or_default("self-managed")?,
                    cluster_domain: self.cluster_domain.clone(),
                    extra_names: self.extra_sans.clone(),
                },
                targets: InjectionTargets {
                    validating: non_empty(&self.validating_configuration),
                    mutating: non_empty(&self.mutating_configuration),
                    crds: self
                        .crds
                        .iter()
                        .filter(|c| !c.is_empty())
                        .cloned()
                        .collect(),
                },
            },
            CertModeArg::CertManager => CertMode::CertManager {
                secret: self.cert_secret.clone(),
            },
            CertModeArg::Provided => match &self.cert_dir {
                Some(dir) => CertMode::ProvidedDir { dir: dir.clone() },
                None => CertMode::ProvidedSecret {
                    secret: self.cert_secret.clone(),
                },
            },
        })
    }

    /// The namespace from the flag/env, else the ServiceAccount mount.
    pub fn namespace_or_default(&self, mode: &'static str) -> Result<String, ConfigError> {
        if let Some(ns) = self.namespace.as_ref().filter(|n| !n.is_empty()) {
            return Ok(ns.clone());
        }
        std::fs::read_to_string(SERVICE_ACCOUNT_NAMESPACE)
            .ok()
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .ok_or(ConfigError::NoNamespace(mode))
    }

    /// Request-level limits.
    pub fn request_limits(&self) -> Result<RequestLimits, ConfigError> {
        let max_body = positive(self.max_body_bytes as u64, "--max-body-bytes")? as usize;
        if self.body_budget_bytes < max_body {
            return Err(ConfigError::BudgetBelowBody {
                budget: self.body_budget_bytes,
                max_body,
            });
        }
        Ok(RequestLimits {
            max_body_bytes: max_body,
            request_timeout: Duration::from_secs(positive(
                self.request_timeout_seconds,
                "--request-timeout-seconds",
            )?),
            max_concurrent_reviews: positive(
                self.max_concurrent_reviews as u64,
                "--max-concurrent-reviews",
            )? as usize,
            body_budget_bytes: self.body_budget_bytes,
            max_json_tokens: positive(self.max_json_tokens as u64, "--max-json-tokens")? as usize,
            json_token_budget: self.json_token_budget.max(self.max_json_tokens),
            small: SmallLane {
                max_bytes: self.small_review_bytes,
                ..SmallLane::default()
            },
        })
    }

    /// Connection-level limits.
    pub fn connection_limits(&self) -> Result<ConnectionLimits, ConfigError> {
        Ok(ConnectionLimits {
            handshake_timeout: Duration::from_millis(positive(
                self.handshake_timeout_ms,
                "--handshake-timeout-ms",
            )?),
            header_read_timeout: Duration::from_secs(positive(
                self.header_read_timeout_seconds,
                "--header-read-timeout-seconds",
            )?),
            idle_timeout: Duration::from_secs(positive(
                self.idle_timeout_seconds,
                "--idle-timeout-seconds",
            )?),
            max_connections: positive(self.max_connections as u64, "--max-connections")? as usize,
            max_connections_per_peer: positive(
                self.max_connections_per_peer as u64,
                "--max-connections-per-peer",
            )? as usize,
            shutdown_grace: Duration::from_secs(self.shutdown_grace_seconds),
        })
    }

    /// Certificate refresh period.
    pub fn cert_refresh(&self) -> Result<Duration, ConfigError> {
        Ok(Duration::from_secs(positive(
            self.cert_refresh_seconds,
            "--cert-refresh-seconds",
        )?))
    }
}

/// An IP address, or a DNS name of letters, digits, `-` and `.` (at most 253).
fn is_san(name: &str) -> bool {
    name.parse::<std::net::IpAddr>().is_ok()
        || (!name.is_empty()
            && name.len() <= 253
            && !name.starts_with(['.', '-'])
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.'))
}

fn positive(v: u64, name: &'static str) -> Result<u64, ConfigError> {
    if v == 0 {
        Err(ConfigError::Zero(name))
    } else {
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Args {
        Args::try_parse_from(std::iter::once("emqx-webhook").chain(args.iter().copied()))
            .expect("parse")
    }

    #[test]
    fn defaults_select_self_managed_with_both_crds() {
        let a = parse(&["--namespace", "emqx-system"]);
        let CertMode::SelfManaged {
            secret,
            identity,
            targets,
        } = a.cert_mode().expect("mode")
        else {
            unreachable!("not self-managed");
        };
        assert_eq!(secret, "emqx-webhook-tls");
        assert_eq!(identity.namespace, "emqx-system");
        assert!(identity.extra_names.is_empty());
        assert_eq!(
            targets.crds,
            ["emqxes.apps.emqx.io", "emqxenterprises.apps.emqx.io"]
        );
        assert_eq!(
            targets.validating.as_deref(),
            Some("emqx-operator-validating")
        );
    }

    #[test]
    fn extra_sans_reach_the_identity() {
        let a = parse(&["--namespace", "n", "--extra-san", "127.0.0.1,webhook.test"]);
        let Ok(CertMode::SelfManaged { identity, .. }) = a.cert_mode() else {
            unreachable!("not self-managed");
        };
        assert_eq!(identity.extra_names, ["127.0.0.1", "webhook.test"]);
        let a = parse(&["--namespace", "n", "--extra-san", "not a name"]);
        assert_eq!(
            a.cert_mode().err(),
            Some(ConfigError::BadSan("not a name".into()))
        );
    }

    #[test]
    fn provided_mode_reads_a_directory_or_a_secret() {
        let a = parse(&["--cert-mode", "provided", "--cert-dir", "/certs"]);
        assert!(matches!(a.cert_mode(), Ok(CertMode::ProvidedDir { .. })));
        let a = parse(&["--cert-mode", "provided", "--cert-secret", "mine"]);
        assert_eq!(
            a.cert_mode(),
            Ok(CertMode::ProvidedSecret {
                secret: "mine".into()
            })
        );
    }

    #[test]
    fn empty_names_skip_injection_and_zero_limits_are_refused() {
        let a = parse(&[
            "--namespace",
            "n",
            "--validating-configuration",
            "",
            "--crds",
            "",
        ]);
        let Ok(CertMode::SelfManaged { targets, .. }) = a.cert_mode() else {
            unreachable!("not self-managed");
        };
        assert_eq!(targets.validating, None);
        assert!(targets.crds.is_empty());
        let a = parse(&["--max-body-bytes", "0"]);
        assert_eq!(
            a.request_limits().err(),
            Some(ConfigError::Zero("--max-body-bytes"))
        );
        let a = parse(&["--max-body-bytes", "100", "--body-budget-bytes", "99"]);
        assert_eq!(
            a.request_limits().err(),
            Some(ConfigError::BudgetBelowBody {
                budget: 99,
                max_body: 100
            })
        );
        let lanes = |args: &[&str]| parse(args).request_limits().map(|l| l.small.max_bytes);
        assert_eq!(lanes(&[]), Ok(64 * 1024));
        assert_eq!(lanes(&["--small-review-bytes", "0"]), Ok(0));
        assert!(Args::try_parse_from(["emqx-webhook", "--cert-mode", "bogus"]).is_err());
        assert!(Args::try_parse_from(["emqx-webhook", "--listen", "nowhere"]).is_err());
    }
}
