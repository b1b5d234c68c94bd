//! Structured logs with `tracing`, in the convention both binaries share
//! ([`emqx_crd::logging`]): level from `RUST_LOG` (default `info`), text or
//! flat JSON lines on stderr, each JSON key once.

use crate::config::LogFormat;
use emqx_crd::logging;

/// Installs the global subscriber.
pub fn init(format: LogFormat) {
    logging::init(match format {
        LogFormat::Text => logging::LogFormat::Text,
        LogFormat::Json => logging::LogFormat::Json,
    });
}
