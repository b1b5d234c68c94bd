//! The evacuation status answers, timed as EMQX times them.
//!
//! `global_status` asks every running node by RPC, one cluster-wide call
//! after another, and keeps the answers that came back
//! (`apps/emqx_node_rebalance/src/emqx_node_rebalance_status.erl`,
//! `global_status/0`):
//! - from 5.2.1 (`src/proto/emqx_node_rebalance_status_proto_v2.erl`, the
//!   same at e5.10.4 and 6.2.2): three `rpc:multicall`s (rebalance,
//!   evacuation, purge status), each with a 15 s timeout. A node slower
//!   than that is left out of that part of the answer, silently: its
//!   evacuation is simply not listed. So one slow node makes the call take
//!   up to 3 × 15 s.
//! - before (`…_proto_v1.erl`, e5.1.0): two multicalls without a timeout;
//!   the answer waits for the slowest node however long it takes. 4.4
//!   Enterprise's source is not public; it is given the same (unverified).
//!
//! The local `load_rebalance/status` asks only the node's own evacuation
//! process, so only that node's own slowness delays it.

use std::collections::BTreeSet;
use std::time::Duration;

use axum::http::StatusCode;
use axum::response::Response;

use super::api::ApiContext;
use super::payload;
use super::reply;
use super::route::Endpoint;
use crate::version::BrokerVersion;

/// `?TIMEOUT` of the status RPCs from 5.2.1.
pub const STATUS_RPC_TIMEOUT: Duration = Duration::from_secs(15);

/// How a `global_status` call goes, given each running node's delay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// How long the call takes before it answers.
    pub wait: Duration,
    /// Nodes whose RPC timed out: missing from the answer.
    pub dropped: BTreeSet<String>,
}

/// The timing of `global_status` on a node of `version`.
pub fn plan(version: &BrokerVersion, delays: &[(String, Duration)]) -> Plan {
    let bounded = *version
        >= (BrokerVersion {
            major: 5,
            minor: 2,
            patch: 1,
        });
    let phases: u32 = if bounded { 3 } else { 2 };
    let per_phase = delays
        .iter()
        .map(|(_, d)| {
            if bounded {
                (*d).min(STATUS_RPC_TIMEOUT)
            } else {
                *d
            }
        })
        .max()
        .unwrap_or_default();
    let dropped = delays
        .iter()
        .filter(|(_, d)| bounded && *d >= STATUS_RPC_TIMEOUT)
        .map(|(n, _)| n.clone())
        .collect();
    Plan {
        wait: per_phase * phases,
        dropped,
    }
}

/// Answers the two status endpoints after the delays EMQX would take;
/// `None` for any other endpoint.
pub async fn timed(ctx: &ApiContext, endpoint: &Endpoint) -> Option<Response> {
    match endpoint {
        Endpoint::GlobalStatus => {
            let plan = plan(&ctx.config.version, &ctx.cluster.rebalance_status_delays());
            tokio::time::sleep(plan.wait).await;
            Some(global(ctx, &plan.dropped))
        }
        Endpoint::RebalanceStatus => {
            tokio::time::sleep(ctx.faults.rebalance_status_delay()).await;
            Some(local(ctx))
        }
        _ => None,
    }
}

/// `global_status` without the nodes in `dropped`.
pub fn global(ctx: &ApiContext, dropped: &BTreeSet<String>) -> Response {
    let v = &ctx.config.version;
    let purges = (v.major, v.minor) >= (5, 2);
    let answered: Vec<_> = ctx
        .cluster
        .evacuation_statuses()
        .into_iter()
        .filter(|s| !dropped.contains(&s.node))
        .collect();
    reply::json(
        StatusCode::OK,
        payload::global_status(&answered, v.api(), purges),
    )
}

/// The node's own `load_rebalance/status`.
pub fn local(ctx: &ApiContext) -> Response {
    let node = &ctx.config.node_name;
    reply::json(
        StatusCode::OK,
        payload::local_status(ctx.cluster.evacuation_status(node).as_ref()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> BrokerVersion {
        BrokerVersion::parse(s).expect("version")
    }

    fn delays(secs: &[u64]) -> Vec<(String, Duration)> {
        secs.iter()
            .enumerate()
            .map(|(i, s)| (format!("emqx@n{i}"), Duration::from_secs(*s)))
            .collect()
    }

    #[test]
    fn three_phases_of_at_most_fifteen_seconds_drop_the_slow_node() {
        let p = plan(&v("5.8.9"), &delays(&[0, 8]));
        assert_eq!(p.wait, Duration::from_secs(24));
        assert!(p.dropped.is_empty());
        let p = plan(&v("6.0.1"), &delays(&[0, 40, 2]));
        assert_eq!(p.wait, Duration::from_secs(45));
        assert_eq!(p.dropped, BTreeSet::from(["emqx@n1".to_owned()]));
        let p = plan(&v("5.8.9"), &delays(&[0, 0]));
        assert_eq!(p.wait, Duration::ZERO);
    }

    #[test]
    fn before_5_2_1_two_phases_wait_without_bound() {
        let p = plan(&v("5.1.0"), &delays(&[0, 40]));
        assert_eq!(p.wait, Duration::from_secs(80));
        assert!(p.dropped.is_empty());
        assert_eq!(
            plan(&v("5.2.0"), &delays(&[20])).wait,
            Duration::from_secs(40)
        );
        assert_eq!(
            plan(&v("5.2.1"), &delays(&[20])).wait,
            Duration::from_secs(45)
        );
    }
}
