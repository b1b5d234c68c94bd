//! Which node makes `global_status` slow. EMQX's answer waits for the
//! slowest node, up to 15 s per cluster-wide RPC, and then leaves that node
//! out without a word ([`crate::emqx_api::may_leave_out_nodes`]). So when
//! the answer came that late, or not at all, the pass does not trust it:
//! it asks each running node for its own evacuation status (an answer that
//! needs no other node), names those that do not answer in time, and
//! reports EMQX as unavailable with them. `decide` then touches no old
//! node, which is right: a missing evacuation may be one that runs.

use crate::emqx_api::{ApiGeneration, EmqxError};
use crate::emqx_client::EmqxClient;
use std::time::Duration;

/// A node to ask: its EMQX name and the base URL of its own API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub node: String,
    pub base: String,
}

/// How the operator authenticates, shared by every probe.
#[derive(Debug, Clone, Copy)]
pub struct Credentials<'a> {
    pub api: ApiGeneration,
    pub key: &'a str,
    pub secret: &'a str,
}

/// Asks every target's `load_rebalance/status` at once; the nodes that did
/// not answer within `timeout`, sorted. A node that answers with an error
/// is not slow (it answered), and neither is one that refuses connections.
pub async fn probe(targets: Vec<Target>, auth: Credentials<'_>, timeout: Duration) -> Vec<String> {
    let mut probes = tokio::task::JoinSet::new();
    for target in targets {
        let client = EmqxClient::new(target.base, auth.api, auth.key, auth.secret, timeout);
        probes.spawn(async move {
            let slow = match client {
                Ok(client) => client
                    .local_evacuation_status()
                    .await
                    .err()
                    .is_some_and(|e| e.is_timeout()),
                Err(_) => false,
            };
            (target.node, slow)
        });
    }
    let mut slow = Vec::new();
    while let Some(joined) = probes.join_next().await {
        if let Ok((node, true)) = joined {
            slow.push(node);
        }
    }
    slow.sort();
    slow
}

/// Whether a `global_status` call must not be trusted: it timed out, or it
/// took long enough for EMQX to have dropped a node.
pub fn untrusted(answer: Result<(), &EmqxError>, took: Duration) -> bool {
    match answer {
        Ok(()) => crate::emqx_api::may_leave_out_nodes(took),
        Err(e) => e.is_timeout(),
    }
}

/// The condition message for an untrusted `global_status`.
pub fn message(
    answer: Result<(), &EmqxError>,
    took: Duration,
    slow: &[String],
    probe_timeout: Duration,
) -> String {
    let what = match answer {
        Ok(()) => format!(
            "load_rebalance/global_status took {}s; EMQX leaves out nodes that do not answer \
             its status RPC within {}s, so evacuations may be missing from it",
            took.as_secs(),
            crate::emqx_api::STATUS_RPC_TIMEOUT.as_secs()
        ),
        Err(e) => e.to_string(),
    };
    let probe = probe_timeout.as_secs_f32();
    if slow.is_empty() {
        format!("{what}; every running node answered its own evacuation status within {probe}s")
    } else {
        format!(
            "{what}; slow to report their own evacuation status (no answer within {probe}s): {}",
            slow.join(", ")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timeout() -> EmqxError {
        EmqxError::Transport {
            call: "GET global_status",
            detail: "no answer within 50s (timed out)".into(),
        }
    }

    #[test]
    fn late_or_missing_answers_are_not_trusted() {
        assert!(!untrusted(Ok(()), Duration::from_secs(14)));
        assert!(untrusted(Ok(()), Duration::from_secs(15)));
        assert!(untrusted(Err(&timeout()), Duration::from_secs(50)));
        let refused = EmqxError::Transport {
            call: "GET global_status",
            detail: "connection refused".into(),
        };
        assert!(!untrusted(Err(&refused), Duration::from_millis(1)));
    }

    #[test]
    fn the_message_names_the_slow_nodes() {
        let m = message(
            Ok(()),
            Duration::from_secs(45),
            &["emqx@b".into(), "emqx@c".into()],
            Duration::from_secs(5),
        );
        assert!(
            m.starts_with("load_rebalance/global_status took 45s"),
            "{m}"
        );
        assert!(m.ends_with("(no answer within 5s): emqx@b, emqx@c"), "{m}");
        let m = message(
            Err(&timeout()),
            Duration::from_secs(50),
            &[],
            Duration::from_secs(5),
        );
        assert!(
            m.contains("timed out") && m.contains("every running node answered"),
            "{m}"
        );
    }
}
