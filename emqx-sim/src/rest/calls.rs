//! A count of the management API calls a node served, for benchmarks that
//! report how often the operator polls EMQX. Probes (`/status`) are not
//! calls of the API: the kubelet makes them, not the operator. Counting
//! changes no answer.

use std::sync::atomic::{AtomicU64, Ordering};

/// Calls under `/api/` a node received, reads (`GET`) and writes apart.
#[derive(Debug, Default)]
pub struct ApiCalls {
    reads: AtomicU64,
    writes: AtomicU64,
}

/// What [`ApiCalls`] held at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ApiCallCount {
    /// `GET` requests.
    pub reads: u64,
    /// Every other method.
    pub writes: u64,
}

impl ApiCallCount {
    /// Reads and writes together.
    pub fn total(&self) -> u64 {
        self.reads + self.writes
    }
}

impl ApiCalls {
    /// Counts one request to `path` with `method`, if it is a call of the
    /// management API: under `/api/` and not the status page (`/api/v5/status`
    /// is the v5 spelling of the probe's `/status`).
    pub fn record(&self, method: &axum::http::Method, path: &str) {
        if !is_api_call(path) {
            return;
        }
        let counter = if method == axum::http::Method::GET {
            &self.reads
        } else {
            &self.writes
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// The counts so far.
    pub fn count(&self) -> ApiCallCount {
        ApiCallCount {
            reads: self.reads.load(Ordering::Relaxed),
            writes: self.writes.load(Ordering::Relaxed),
        }
    }
}

fn is_api_call(path: &str) -> bool {
    path.starts_with("/api/") && path != "/api/v5/status"
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::Method;

    #[test]
    fn api_calls_are_counted_by_kind_and_probes_are_not() {
        let calls = ApiCalls::default();
        calls.record(&Method::GET, "/api/v5/nodes");
        calls.record(&Method::GET, "/api/v4/nodes");
        calls.record(
            &Method::POST,
            "/api/v5/load_rebalance/emqx@a/evacuation/start",
        );
        calls.record(&Method::PUT, "/api/v5/cluster/emqx@b/force_leave");
        calls.record(&Method::GET, "/status");
        calls.record(&Method::GET, "/api/v5/status");
        calls.record(&Method::GET, "/");
        assert_eq!(
            calls.count(),
            ApiCallCount {
                reads: 2,
                writes: 2
            }
        );
        assert_eq!(calls.count().total(), 4);
    }
}
