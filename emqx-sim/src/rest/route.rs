//! Which endpoint a request names, decided from method and path alone, so
//! unknown paths get their 404 before any authentication (as in EMQX).

use axum::http::Method;

use crate::version::{ApiGeneration, BrokerVersion, Edition};

/// A known endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// `GET /nodes`.
    Nodes,
    /// `GET /nodes/{node}`.
    Node(String),
    /// `GET /cluster` (5.x).
    Cluster,
    /// `DELETE /cluster/{node}/force_leave` (5.x).
    ForceLeave(String),
    /// `GET /stats`.
    Stats,
    /// `GET /metrics`: each running node's counters.
    Metrics,
    /// `GET /prometheus/stats` (5.x).
    Prometheus,
    /// `GET /listeners` (4.4).
    Listeners,
    /// `GET /load_rebalance/status`.
    RebalanceStatus,
    /// `GET /load_rebalance/global_status`.
    GlobalStatus,
    /// `GET /load_rebalance/availability_check`.
    AvailabilityCheck,
    /// `POST /load_rebalance/{node}/evacuation/start`.
    EvacuationStart(String),
    /// `POST /load_rebalance/{node}/evacuation/stop`.
    EvacuationStop(String),
    /// `GET /node_eviction/status` (5.x).
    NodeEvictionStatus,
    /// `GET /configs` (5.x): the listeners and dashboard configuration.
    Configs,
}

/// Routing result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// Path unknown to this version/edition.
    Unknown,
    /// Path known, method not.
    MethodNotAllowed,
    /// A known endpoint and whether it needs no authentication.
    Known {
        /// The endpoint.
        endpoint: Endpoint,
        /// Public (no auth).
        public: bool,
    },
}

/// Routes `method path` for a node of `version`/`edition`.
pub fn route(version: &BrokerVersion, edition: Edition, method: &Method, path: &str) -> Route {
    let api = version.api();
    let Some(rest) = path.strip_prefix(api.prefix()) else {
        return Route::Unknown;
    };
    let segments: Vec<String> = rest
        .split('/')
        .filter(|s| !s.is_empty())
        .map(percent_decode)
        .collect();
    let seg: Vec<&str> = segments.iter().map(String::as_str).collect();
    let v5 = api == ApiGeneration::V5;
    // The node_eviction and load_rebalance apps ship together.
    let evacuation = version.has_evacuation(edition);
    // availability_check became public in e5.4.0 / 4.4.24.
    let check_public = if v5 {
        (version.major, version.minor) >= (5, 4)
    } else {
        version.patch >= 24
    };
    let (endpoint, want, public) = match seg.as_slice() {
        ["nodes"] => (Endpoint::Nodes, Method::GET, false),
        ["nodes", n] => (Endpoint::Node((*n).to_string()), Method::GET, false),
        ["cluster"] if v5 => (Endpoint::Cluster, Method::GET, false),
        ["cluster", n, "force_leave"] if v5 => (
            Endpoint::ForceLeave((*n).to_string()),
            Method::DELETE,
            false,
        ),
        ["stats"] => (Endpoint::Stats, Method::GET, false),
        ["metrics"] => (Endpoint::Metrics, Method::GET, false),
        ["prometheus", "stats"] if v5 => (Endpoint::Prometheus, Method::GET, true),
        ["listeners"] if !v5 => (Endpoint::Listeners, Method::GET, false),
        ["configs"] if v5 => (Endpoint::Configs, Method::GET, false),
        ["node_eviction", "status"] if v5 && evacuation => {
            (Endpoint::NodeEvictionStatus, Method::GET, false)
        }
        ["load_rebalance", "status"] if evacuation => {
            (Endpoint::RebalanceStatus, Method::GET, false)
        }
        ["load_rebalance", "global_status"] if evacuation => {
            (Endpoint::GlobalStatus, Method::GET, false)
        }
        ["load_rebalance", "availability_check"] if evacuation => {
            (Endpoint::AvailabilityCheck, Method::GET, check_public)
        }
        ["load_rebalance", n, "evacuation", "start"] if evacuation => (
            Endpoint::EvacuationStart((*n).to_string()),
            Method::POST,
            false,
        ),
        ["load_rebalance", n, "evacuation", "stop"] if evacuation => (
            Endpoint::EvacuationStop((*n).to_string()),
            Method::POST,
            false,
        ),
        _ => return Route::Unknown,
    };
    if *method == want {
        Route::Known { endpoint, public }
    } else {
        Route::MethodNotAllowed
    }
}

/// Decodes `%XX` escapes; invalid escapes stay as they are.
pub(crate) fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push(h * 16 + l);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> BrokerVersion {
        BrokerVersion::parse(s).expect("valid")
    }

    #[test]
    fn routes_by_edition_and_version() {
        let ee = Edition::Enterprise;
        let r = route(
            &v("5.8.9"),
            ee,
            &Method::POST,
            "/api/v5/load_rebalance/emqx%4010.0.0.1/evacuation/start",
        );
        assert_eq!(
            r,
            Route::Known {
                endpoint: Endpoint::EvacuationStart("emqx@10.0.0.1".into()),
                public: false
            }
        );
        assert_eq!(
            route(
                &v("5.8.9"),
                Edition::Opensource,
                &Method::GET,
                "/api/v5/load_rebalance/status"
            ),
            Route::Unknown
        );
        assert_eq!(
            route(
                &v("5.8.9"),
                ee,
                &Method::GET,
                "/api/v5/load_rebalance/x/purge/start"
            ),
            Route::Unknown
        );
        assert_eq!(
            route(&v("5.8.9"), ee, &Method::POST, "/api/v5/nodes"),
            Route::MethodNotAllowed
        );
        assert!(matches!(
            route(
                &v("5.3.0"),
                ee,
                &Method::GET,
                "/api/v5/load_rebalance/availability_check"
            ),
            Route::Known { public: false, .. }
        ));
        assert!(matches!(
            route(
                &v("5.4.0"),
                ee,
                &Method::GET,
                "/api/v5/load_rebalance/availability_check"
            ),
            Route::Known { public: true, .. }
        ));
        assert_eq!(
            route(&v("4.4.19"), ee, &Method::GET, "/api/v5/nodes"),
            Route::Unknown
        );
        assert!(matches!(
            route(&v("4.4.19"), ee, &Method::GET, "/api/v4/listeners"),
            Route::Known { .. }
        ));
        assert_eq!(percent_decode("a%zz%4"), "a%zz%4");
        assert_eq!(percent_decode("%41%"), "A%");
    }
}
