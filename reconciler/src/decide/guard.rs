//! The upgrade guard (`updateStrategy.guard`), pure: from EMQX's figures
//! and what was remembered, whether the evicted clients came back and the
//! new nodes accept them. [`crate::decide`] asks it once per pass of an
//! upgrade past the Service switch, and holds the next node until the
//! window after the last eviction has passed.
//!
//! - **Recovery**: within `windowSeconds` after a node's connection eviction
//!   ended (its evacuation left `evicting_conns`; on brokers without the
//!   evacuation API, the fallback drain's removal of the node once its
//!   `waitTakeover` passed, when its clients are cut off and reconnect
//!   elsewhere), the cluster's live
//!   connections must be back to at least `minPercent` of the total just
//!   before the switch, and stay so while the upgrade runs (a dip during
//!   the next node's eviction, clients in flight, is not judged). Until
//!   they are back and have stayed back [`SETTLE_S`] (every pass in
//!   between seeing them so), the next node waits (nothing is removed or
//!   evicted), so at most one node's clients are moved into nodes that
//!   lose them; the settling runs while the emptied node waits out
//!   `waitTakeover`, so a good upgrade is not slowed. A pass without
//!   EMQX's figures moves nothing either: the guard never fails open.
//! - **Connect failures**: the new nodes' `packets.connack.error` (every
//!   CONNACK that is not a success: bad credentials, not authorised, any
//!   refusal) may grow by at most `maxPerMinute` within a minute's window.

use super::Action;
use crate::observed::{
    EvacuationState, Figures, GuardMemory, GuardSpec, Observed, Revision, Seconds,
};

/// The failure window: one minute.
const FAILURE_WINDOW_S: Seconds = 60;

/// How long the connections must stay back after an eviction before the
/// next node moves: a few passes, shorter than a usual `waitTakeover`
/// (during which the node being emptied holds the upgrade anyway), so a
/// good upgrade does not wait for it.
pub const SETTLE_S: Seconds = 3;

/// The guard's figures of this pass, for the metrics.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Gauges {
    /// Live connections as a percent of the baseline.
    pub connections_percent: f64,
    /// Refused CONNECTs of the new nodes per minute in the current window.
    pub failures_per_minute: f64,
}

/// What the guard says this pass.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    /// Bookkeeping to record (arming, an eviction's end, a new window).
    pub actions: Vec<Action>,
    /// Why the upgrade must be aborted, with the figures.
    pub trip: Option<String>,
    /// The figures, once armed.
    pub gauges: Option<Gauges>,
    /// The clients of the last evicted node are not back yet and the
    /// window still runs: seconds left and why; the next node waits.
    pub hold_s: Option<(Seconds, String)>,
}

/// Sum of `packets.connack.error` over `nodes`.
fn errors_of(figures: &Figures, nodes: &[String]) -> u64 {
    nodes
        .iter()
        .filter_map(|n| figures.connack_errors.get(n))
        .sum()
}

/// Arms the guard for upgrade `revision` just before the Service switch:
/// the connection total and the new nodes' refusals so far.
pub fn arm(
    revision: &Revision,
    figures: Option<&Figures>,
    new_nodes: &[String],
    now: Seconds,
) -> Option<Action> {
    let figures = figures?;
    Some(Action::ArmGuard {
        revision: revision.clone(),
        baseline: figures.live_connections,
        failures: errors_of(figures, new_nodes),
        at: now,
    })
}

/// The old node whose fallback drain (no evacuation API, `decide`'s
/// `drain_without_api`) reached its removal: its `waitTakeover` has passed,
/// so this pass removes it, or did, and its clients are cut off. Only a
/// drain of a node of this upgrade's old sets counts; one remembered from
/// an earlier upgrade names a node that is gone.
fn fallback_removal<'o>(
    obs: &'o Observed,
    old_nodes: &[String],
    wait_takeover_s: Seconds,
) -> Option<&'o str> {
    let drain = obs.memory.drain.as_ref()?;
    (old_nodes.contains(&drain.node) && obs.now >= drain.started_at.saturating_add(wait_takeover_s))
        .then_some(drain.node.as_str())
}

/// Judges one pass after the switch. `memory` is the guard's memory for
/// this upgrade; `old_nodes` are the nodes of the old sets (whose
/// evacuations end their connection eviction, or whose fallback drain's
/// removal after `wait_takeover_s` does), `new_nodes` those of the desired
/// sets.
pub fn judge(
    guard: &GuardSpec,
    memory: &GuardMemory,
    obs: &Observed,
    old_nodes: &[String],
    new_nodes: &[String],
    wait_takeover_s: Seconds,
) -> Verdict {
    let mut verdict = Verdict {
        actions: Vec::new(),
        trip: None,
        gauges: None,
        hold_s: None,
    };
    let Some(emqx) = &obs.emqx else {
        return verdict;
    };
    let now = obs.now;
    // The latest eviction that ended: an old node's evacuation past
    // `evicting_conns`, or without the evacuation API the fallback drain's
    // removal of its node; first seen now unless remembered.
    let by_evacuation = emqx
        .evacuations
        .iter()
        .find(|e| {
            old_nodes.contains(&e.node)
                && !matches!(
                    e.state,
                    EvacuationState::WaitingHealthCheck | EvacuationState::EvictingConns
                )
        })
        .map(|e| e.node.as_str());
    let ended = by_evacuation.or_else(|| fallback_removal(obs, old_nodes, wait_takeover_s));
    let mut evicted = memory.evicted.clone();
    // The fallback's removal is the eviction itself: on the pass that
    // removes the node its clients are still connected, so there is no
    // recovery to judge yet (and the removal must not wait for one).
    let mut removing = false;
    if let Some(ended) = ended
        && evicted.as_ref().is_none_or(|(node, _)| node != ended)
    {
        evicted = Some((ended.to_owned(), now));
        removing = by_evacuation.is_none();
        verdict.actions.push(Action::RecordEviction {
            node: ended.to_owned(),
            at: now,
        });
    }
    // While a node's connections are being evicted its clients are in
    // flight between nodes: a dip then says nothing yet.
    let evicting = emqx.evacuations.iter().any(|e| {
        old_nodes.contains(&e.node)
            && matches!(
                e.state,
                EvacuationState::WaitingHealthCheck | EvacuationState::EvictingConns
            )
    });
    let Some(figures) = &emqx.figures else {
        // Blind: nothing more is moved until EMQX's figures are read again
        // (a guard that let the upgrade go on whenever a call failed would
        // fail open exactly when EMQX is in trouble).
        if let Some((node, _)) = evicted.as_ref().filter(|_| !evicting && !removing) {
            let why = emqx
                .figures_unavailable
                .as_deref()
                .map(|why| format!(" ({why})"))
                .unwrap_or_default();
            verdict.hold_s = Some((
                1,
                format!(
                    "upgrade guard: EMQX's connection figures were not read this pass{why}; nothing moves after {node} until they are"
                ),
            ));
        }
        return verdict;
    };
    let total = figures.live_connections;
    let percent = if memory.baseline == 0 {
        100.0
    } else {
        total as f64 * 100.0 / memory.baseline as f64
    };
    // Refusals in the current window, a counter that fell (a restarted
    // node) starting a new one.
    let errors = errors_of(figures, new_nodes);
    let (since, at_start) = memory.failures;
    let elapsed = now.saturating_sub(since);
    let delta = errors.saturating_sub(at_start);
    let per_minute = delta as f64 * 60.0 / elapsed.max(FAILURE_WINDOW_S) as f64;
    if errors < at_start || elapsed >= FAILURE_WINDOW_S {
        verdict.actions.push(Action::RecordFailureWindow {
            at: now,
            count: errors,
        });
    }
    verdict.gauges = Some(Gauges {
        connections_percent: percent,
        failures_per_minute: per_minute,
    });
    if per_minute > guard.max_failures_per_minute as f64 {
        verdict.trip = Some(format!(
            "the new nodes refused {delta} CONNECTs in {elapsed} s ({per_minute:.0} per minute > {} per minute, packets.connack.error)",
            guard.max_failures_per_minute
        ));
        return verdict;
    }
    let Some((node, at)) = evicted else {
        return verdict;
    };
    if evicting || removing {
        return verdict;
    }
    // A recovery seen for an earlier eviction does not count for this one.
    let recovered = if memory.evicted.as_ref() == Some(&(node.clone(), at)) {
        memory.recovered
    } else {
        None
    };
    let low = total.saturating_mul(100) < memory.baseline.saturating_mul(guard.min_percent);
    if low {
        if recovered.is_some() {
            verdict.actions.push(Action::RecordRecovery { at: None });
        }
        let until = at.saturating_add(guard.window_s);
        if now < until {
            verdict.hold_s = Some((
                until - now,
                format!(
                    "upgrade guard: waiting {}s for the clients evicted from {node} to come back before the next node (connections {total} of {} before the upgrade, {percent:.0}%)",
                    until - now,
                    memory.baseline
                ),
            ));
        } else {
            verdict.trip = Some(format!(
                "connections {total} of {} before the upgrade ({percent:.0}% < {}%) {} s after evicting {node}",
                memory.baseline,
                guard.min_percent,
                now - at
            ));
        }
        return verdict;
    }
    // Back: the next node goes once they have stayed back `SETTLE_S`, every
    // pass in between seeing them so; one sample taken while clients the
    // new nodes drop again happen to be connected is not a recovery.
    let since = recovered.unwrap_or_else(|| {
        verdict
            .actions
            .push(Action::RecordRecovery { at: Some(now) });
        now
    });
    let settled_at = since.saturating_add(SETTLE_S);
    if now < settled_at {
        verdict.hold_s = Some((
            settled_at - now,
            format!(
                "upgrade guard: the clients evicted from {node} are back (connections {total} of {} before the upgrade, {percent:.0}%); the next node goes once they stay back {SETTLE_S}s",
                memory.baseline
            ),
        ));
    }
    verdict
}
