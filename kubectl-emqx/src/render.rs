//! The status screen, as text, from a [`Snapshot`] alone (pure, so a known
//! state renders to a known screen): the phase and revisions, the sets and
//! their pods, the EMQX nodes, each evacuation in progress as bars
//! (connections and sessions left, rate, time left), the conditions, and
//! the last Events.

use std::fmt::Write as _;

use emqx_crd::evacuation::NodeEvacuationStatus;
use emqx_crd::v2beta1::{EMQXNode, EMQXNodesStatus};

use crate::snapshot::Snapshot;

/// Width of a progress bar, in cells.
const BAR: usize = 24;
/// Events shown, newest last.
const EVENTS: usize = 8;

/// The whole screen.
pub fn status(s: &Snapshot) -> String {
    let mut out = String::new();
    let o = &s.object;
    let status = o.status.clone().unwrap_or_default();
    let conditions = status.conditions.clone().unwrap_or_default();
    let phase = phase(o);
    let _ = writeln!(
        out,
        "Name:       {}/{}",
        o.metadata.namespace.as_deref().unwrap_or_default(),
        o.metadata.name.as_deref().unwrap_or_default()
    );
    let _ = writeln!(
        out,
        "Kind:       {} ({})",
        s.kind.name(),
        s.kind.api_version()
    );
    let _ = writeln!(out, "Image:      {}", o.spec.image);
    let _ = writeln!(out, "Status:     {phase}");
    for (role, nodes) in [
        ("Core", status.core_nodes_status.as_ref()),
        ("Replicant", status.replicant_nodes_status.as_ref()),
    ] {
        if let Some(n) = nodes {
            let _ = writeln!(out, "{:<11} {}", format!("{role}:"), revisions(n));
        }
    }

    let _ = writeln!(out, "\nSets:");
    if s.sets.is_empty() {
        let _ = writeln!(out, "  (none)");
    }
    let mut sets = s.sets.clone();
    sets.sort_by(|a, b| (&a.role, &a.name).cmp(&(&b.role, &b.name)));
    for set in &sets {
        let _ = writeln!(
            out,
            "  {:<10} {:<40} {:>2}/{:<2} ready  revision {}",
            set.role, set.name, set.ready, set.replicas, set.revision
        );
        let mut pods: Vec<_> = s
            .pods
            .iter()
            .filter(|p| p.revision == set.revision && p.name.starts_with(&set.name))
            .collect();
        pods.sort_by(|a, b| a.name.cmp(&b.name));
        for pod in pods {
            let mark = if pod.ready { "✔" } else { "·" };
            let _ = writeln!(out, "    {mark} {:<44} {}", pod.name, pod.phase);
        }
    }

    let nodes: Vec<&EMQXNode> = status
        .core_nodes
        .iter()
        .flatten()
        .chain(status.replicant_nodes.iter().flatten())
        .collect();
    if !nodes.is_empty() {
        let _ = writeln!(out, "\nEMQX nodes:");
        for n in nodes {
            let _ = writeln!(
                out,
                "  {:<56} {:<9} {:<9} {:>6} conns {:>6} sessions",
                n.node.as_deref().unwrap_or("?"),
                n.role.as_deref().unwrap_or("?"),
                n.node_status.as_deref().unwrap_or("?"),
                // 4.4 before 4.4.19 lists no live connections: shown as
                // unknown, not as none.
                n.live_connections
                    .map_or_else(|| "-".to_owned(), |c| c.to_string()),
                n.connections.unwrap_or(0),
            );
        }
    }

    let evacuations = status.node_evacuations_status.clone().unwrap_or_default();
    if !evacuations.is_empty() {
        let _ = writeln!(out, "\nEvacuations:");
        for e in &evacuations {
            out.push_str(&evacuation(e));
        }
    }

    if !conditions.is_empty() {
        let _ = writeln!(out, "\nConditions:");
        for c in &conditions {
            let _ = writeln!(
                out,
                "  {:<20} {:<6} {:<26} {}",
                c.type_, c.status, c.reason, c.message
            );
        }
    }

    if !s.events.is_empty() {
        let _ = writeln!(out, "\nEvents:");
        let from = s.events.len().saturating_sub(EVENTS);
        for e in &s.events[from..] {
            let _ = writeln!(
                out,
                "  {:>6}  {:<7} {:<18} {}",
                age(e.age_s),
                e.type_,
                e.reason,
                e.note
            );
        }
    }
    out
}

/// `Ready`, or the reason of the `Progressing` condition (`Evacuating`,
/// `AwaitingPromotion`, `UpgradeAborted`, …), or `Unknown`.
pub fn phase(o: &emqx_crd::v2beta1::EMQX) -> String {
    let conditions = o
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    let condition = |t: &str| conditions.iter().find(|c| c.type_ == t);
    match (condition("Ready"), condition("Progressing")) {
        (Some(r), _) if r.status == "True" => "Ready".to_owned(),
        (_, Some(p)) => p.reason.clone(),
        _ => "Unknown".to_owned(),
    }
}

/// `current → update`, or one revision when they agree, with the ready
/// pods of every revision and the replicas the spec wants (during an
/// upgrade the old and the new pods are both ready, so ready may exceed
/// wanted).
fn revisions(n: &EMQXNodesStatus) -> String {
    let current = n.current_revision.as_deref().unwrap_or("?");
    let update = n.update_revision.as_deref().unwrap_or("?");
    let counts = format!(
        "{} ready, {} wanted",
        n.ready_replicas.unwrap_or(0),
        n.replicas.unwrap_or(0)
    );
    if current == update {
        format!("revision {current}, {counts}")
    } else {
        format!("revision {current} → {update}, {counts}")
    }
}

/// One node's evacuation: a bar each for connections and sessions moved,
/// with what is left, the rate and the time left at that rate.
fn evacuation(e: &NodeEvacuationStatus) -> String {
    let stats = e.stats.clone().unwrap_or_default();
    let mut out = format!(
        "  {} ({})\n",
        e.node.as_deref().unwrap_or("?"),
        e.state.as_deref().unwrap_or("?")
    );
    for (what, initial, current, rate) in [
        (
            "connections",
            stats.initial_connected,
            stats.current_connected,
            e.connection_eviction_rate,
        ),
        (
            "sessions",
            stats.initial_sessions,
            stats.current_sessions,
            e.session_eviction_rate,
        ),
    ] {
        let initial = i64::from(initial.unwrap_or(0).max(0));
        let left = i64::from(current.unwrap_or(0).max(0)).min(initial);
        let rate = i64::from(rate.unwrap_or(0).max(0));
        let eta = if left == 0 {
            "done".to_owned()
        } else if rate > 0 {
            format!("~{} left", age((left + rate - 1) / rate))
        } else {
            "?".to_owned()
        };
        let _ = writeln!(
            out,
            "    {:<11} {} {:>6} of {:<6} left  {:>5}/s  {eta}",
            what,
            bar(initial - left, initial),
            left,
            initial,
            rate
        );
    }
    out
}

/// `[█████·····]`: `done` of `total` cells filled; an empty total is done.
pub fn bar(done: i64, total: i64) -> String {
    let filled = if total <= 0 {
        BAR
    } else {
        // In i128: a count near i64::MAX times the width must not overflow.
        let cells = i128::from(done.clamp(0, total)) * BAR as i128 / i128::from(total);
        usize::try_from(cells).unwrap_or(BAR)
    };
    format!("[{}{}]", "█".repeat(filled), "·".repeat(BAR - filled))
}

/// `42s`, `3m10s`, `2h5m`, `3d`.
pub fn age(seconds: i64) -> String {
    let s = seconds.max(0);
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{}s", s / 60, s % 60),
        3600..86400 => format!("{}h{}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d", s / 86400),
    }
}
