//! Saying so when new nodes die of EMQX's single-node licence. On EMQX 5.9
//! and later (6.x) without a licence key, the second node to join a cluster
//! fails its licence app and shuts down (`apps/emqx_license/src/
//! emqx_license_app.erl`, `emqx_license_checker.erl` `no_violation/1`,
//! `apps/emqx_machine/src/emqx_machine_boot.erl`, at 6.0.1 and 6.2.2; see
//! [`emqx_crd::licence`]). Its pod restarts, again and again; a blue-green
//! then waits for new nodes forever, and the generic "waiting for new
//! nodes" hides why.
//!
//! The diagnosis uses only what the pass observes, and all of it:
//! - the spec runs EMQX ≥ 5.9 and sets no licence key (nor
//!   `EMQX_LICENSE__KEY`);
//! - EMQX answers, so some node runs;
//! - pods whose container has restarted, are not ready, and whose node
//!   EMQX does not list as running (a core that joined and died is listed
//!   `stopped`; a replicant is not listed at all).
//!
//! A key set through the dashboard reaches joining nodes from the cluster's
//! configuration, and then nodes do not die this way; if they die anyway
//! with such a key, the spec still says "no key" and the condition would
//! blame the licence. The message says what it rests on, so a reader can
//! tell.

use crate::decide::WaitReason;
use crate::explain::Explained;
use emqx_crd::licence::{SpecLicence, has_single_node_licence};

/// The condition reason.
pub const LICENSE_NODE_LIMIT: &str = "LicenseNodeLimit";

/// What one pod shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodEvidence {
    /// The EMQX node the pod runs.
    pub node: String,
    /// Restarts of its containers.
    pub restarts: i32,
    /// The pod's Ready condition.
    pub ready: bool,
}

/// Nodes that die of the single-node licence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeLimit {
    /// Their EMQX names, sorted.
    pub nodes: Vec<String>,
    /// The image's tag, for the message.
    pub version: String,
}

/// The diagnosis; `running` is the nodes EMQX lists as running, `None`
/// when EMQX could not be read.
pub fn diagnose(
    image: &str,
    licence: &SpecLicence,
    pods: &[PodEvidence],
    running: Option<&[String]>,
) -> Option<NodeLimit> {
    let running = running.filter(|r| !r.is_empty())?;
    if !has_single_node_licence(image) || !licence.single_node() {
        return None;
    }
    let mut nodes: Vec<String> = pods
        .iter()
        .filter(|p| p.restarts > 0 && !p.ready && !running.contains(&p.node))
        .map(|p| p.node.clone())
        .collect();
    nodes.sort();
    nodes.dedup();
    if nodes.is_empty() {
        return None;
    }
    let version = emqx_crd::image::split_tag(image)
        .1
        .unwrap_or_default()
        .to_owned();
    Some(NodeLimit { nodes, version })
}

/// The wait as the conditions tell it: a wait for nodes to come up, while
/// nodes die of the licence, is told as [`LICENSE_NODE_LIMIT`]; anything
/// else is left as it was.
pub fn explain(explained: Option<Explained>, limit: Option<&NodeLimit>) -> Option<Explained> {
    let (Some(explained), Some(limit)) = (explained.clone(), limit) else {
        return explained;
    };
    let waits_for_nodes = [
        WaitReason::WaitingForNewNodes,
        WaitReason::CreatingNodes,
        WaitReason::WaitingForNodes,
        WaitReason::WaitingForCoreNodes,
    ]
    .iter()
    .any(|r| r.as_str() == explained.reason);
    if !waits_for_nodes {
        return Some(explained);
    }
    Some(Explained {
        reason: LICENSE_NODE_LIMIT,
        message: format!(
            "node(s) {} keep restarting and are not running in the EMQX cluster: EMQX {} shuts \
             down every node that joins a running node on the default single-node licence \
             (SINGLE_NODE_LICENSE), and spec.config.data sets no license.key; set \
             license {{ key = \"...\" }} there (was: {})",
            limit.nodes.join(", "),
            limit.version,
            explained.message
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(node: &str, restarts: i32, ready: bool) -> PodEvidence {
        PodEvidence {
            node: node.into(),
            restarts,
            ready,
        }
    }

    fn running() -> Vec<String> {
        vec!["emqx@old-0".into()]
    }

    #[test]
    fn restarting_new_nodes_beside_a_running_one_are_named() {
        let pods = [
            pod("emqx@old-0", 0, true),
            pod("emqx@new-1", 3, false),
            pod("emqx@new-0", 1, false),
            pod("emqx@new-2", 0, false),
        ];
        let r = running();
        let limit =
            diagnose("emqx/emqx:6.0.1", &SpecLicence::Missing, &pods, Some(&r)).expect("named");
        assert_eq!(limit.nodes, ["emqx@new-0", "emqx@new-1"]);
        assert_eq!(limit.version, "6.0.1");
    }

    #[test]
    fn without_all_the_evidence_nothing_is_claimed() {
        let pods = [pod("emqx@new-0", 2, false)];
        let r = running();
        // A licence key, an older EMQX, EMQX unreadable or with no running
        // node, or a pod that has not restarted: no claim.
        assert!(diagnose("emqx/emqx:6.0.1", &SpecLicence::Key, &pods, Some(&r)).is_none());
        assert!(diagnose("emqx/emqx:5.8.9", &SpecLicence::Missing, &pods, Some(&r)).is_none());
        assert!(diagnose("emqx/emqx:6.0.1", &SpecLicence::Missing, &pods, None).is_none());
        assert!(diagnose("emqx/emqx:6.0.1", &SpecLicence::Missing, &pods, Some(&[])).is_none());
        let fresh = [pod("emqx@new-0", 0, false)];
        assert!(diagnose("emqx/emqx:6.0.1", &SpecLicence::Missing, &fresh, Some(&r)).is_none());
        // A restarted pod whose node runs is not dying.
        let back = [pod("emqx@old-0", 4, false)];
        assert!(diagnose("emqx/emqx:6.0.1", &SpecLicence::Default, &back, Some(&r)).is_none());
    }

    #[test]
    fn only_a_wait_for_nodes_is_retold() {
        let limit = NodeLimit {
            nodes: vec!["emqx@new-0".into()],
            version: "6.0.1".into(),
        };
        let waiting = Explained {
            reason: "WaitingForNewNodes",
            message: "waiting for 2 new core nodes to be ready".into(),
        };
        let told = explain(Some(waiting.clone()), Some(&limit)).expect("a wait");
        assert_eq!(told.reason, LICENSE_NODE_LIMIT);
        assert!(told.message.contains("emqx@new-0"), "{}", told.message);
        assert!(told.message.contains("license.key"), "{}", told.message);
        assert_eq!(explain(Some(waiting.clone()), None), Some(waiting));
        let evacuating = Explained {
            reason: "EvacuatingNode",
            message: "x".into(),
        };
        assert_eq!(
            explain(Some(evacuating.clone()), Some(&limit)),
            Some(evacuating)
        );
        assert_eq!(explain(None, Some(&limit)), None);
    }
}
