//! Where one blue-green upgrade's time goes, phase by phase, from its
//! [`UpgradeTimeline`] and the simulator's evacuation history: each phase
//! with its floor (what Kubernetes and EMQX need whatever the operator
//! does) and whose it is. Printed by `reconciler_bench` (one upgrade) and
//! `concurrent_upgrades_bench` (alone against many at once).

use std::collections::BTreeSet;
use std::time::Instant;

use anyhow::{Context, Result};

use crate::metrics_page::median;
use crate::upgrade_timeline::UpgradeTimeline;

/// Whose time a phase is: the floor of a phase that is wholly Kubernetes'
/// or EMQX's is what it took.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Whose {
    /// The operator decides when it ends: its floor is 0 (or EMQX's figure).
    Operator,
    /// Kubernetes or EMQX alone (pod start, readiness probe, termination):
    /// nothing the operator does changes it.
    Platform,
}

#[derive(Debug, Clone)]
pub struct Phase {
    pub name: String,
    pub measured: f64,
    pub floor: f64,
    pub whose: Whose,
}

/// The median of each phase over `runs` (rows line up: the same cluster
/// shape each run); empty when the runs' phases differ in number.
pub fn median_phases(runs: &[Vec<Phase>]) -> Vec<Phase> {
    let Some(first) = runs.first() else {
        return Vec::new();
    };
    if runs.iter().any(|r| r.len() != first.len()) {
        return Vec::new();
    }
    (0..first.len())
        .map(|k| Phase {
            name: first[k].name.clone(),
            measured: median(&runs.iter().map(|r| r[k].measured).collect::<Vec<_>>()),
            floor: median(&runs.iter().map(|r| r[k].floor).collect::<Vec<_>>()),
            whose: first[k].whose,
        })
        .collect()
}

/// Prints `phases` with their floors and overheads under `title`.
pub fn print_breakdown(title: &str, phases: &[Phase]) {
    println!(
        "== where the upgrade's time goes ({title}); floor: what Kubernetes and EMQX need whatever the operator does"
    );
    println!(
        "{:<58} {:>9} {:>9} {:>9}",
        "phase", "measured", "floor", "overhead"
    );
    let (mut m, mut f) = (0.0, 0.0);
    for p in phases {
        m += p.measured;
        f += p.floor;
        println!(
            "{:<58} {:>8.2}s {:>8.2}s {:>+8.2}s{}",
            p.name,
            p.measured,
            p.floor,
            p.measured - p.floor,
            if p.whose == Whose::Platform {
                "  (Kubernetes/EMQX)"
            } else {
                ""
            }
        );
    }
    println!(
        "{:<58} {:>8.2}s {:>8.2}s {:>+8.2}s  ({:.3}x floor)",
        "patch -> Ready",
        m,
        f,
        m - f,
        m / f
    );
}

/// The phases of one upgrade from its timeline: `t0` is the patch, `old`
/// the old nodes with their pods, `new` the new ones; `rate` EMQX's
/// eviction rates, `takeover` `waitTakeover`, `delay`
/// `initialDelaySeconds`.
#[allow(clippy::too_many_arguments)]
pub fn breakdown(
    timeline: &UpgradeTimeline,
    cluster: &emqx_sim::cluster::BrokerCluster,
    t0: Instant,
    old: &[(String, String)],
    new: &[(String, String)],
    rate: f64,
    takeover: f64,
    delay: f64,
) -> Result<Vec<Phase>> {
    let at = |key: String| timeline.at(&key).with_context(|| format!("no mark {key}"));
    let latest = |keys: Vec<String>| -> Result<Instant> {
        let mut out = t0;
        for k in keys {
            out = out.max(at(k)?);
        }
        Ok(out)
    };
    let secs = |a: Instant, b: Instant| b.saturating_duration_since(a).as_secs_f64();
    let mut phases = Vec::new();
    let mut push = |name: String, from: Instant, to: Instant, floor: Option<f64>| {
        let measured = secs(from, to);
        phases.push(Phase {
            name,
            measured,
            floor: floor.unwrap_or(measured),
            whose: if floor.is_none() {
                Whose::Platform
            } else {
                Whose::Operator
            },
        });
    };
    // The reconciler's part (its pass creates the set), then
    // kube-controller-manager's (its StatefulSet controller creates the
    // pods, at its client's 20 requests a second by default).
    let sets: BTreeSet<String> = new
        .iter()
        .filter_map(|(p, _)| p.rsplit_once('-').map(|(set, _)| format!("set:{set}")))
        .collect();
    let set = latest(sets.into_iter().collect())?;
    push("patch -> new StatefulSet".into(), t0, set, Some(0.0));
    let created = latest(new.iter().map(|(p, _)| format!("created:{p}")).collect())?.max(set);
    push(
        "-> new pods created (StatefulSet controller)".into(),
        set,
        created,
        None,
    );
    let ready = latest(new.iter().map(|(p, _)| format!("ready:{p}")).collect())?;
    push(
        "new pods created -> Ready (start, readiness probe)".into(),
        created,
        ready,
        None,
    );
    let joined = latest(new.iter().map(|(_, n)| format!("joined:{n}")).collect())?.max(ready);
    push(
        "-> joined (GET nodes lists them running)".into(),
        ready,
        joined,
        Some(0.0),
    );
    let switch = at("switch".into())?;
    push(
        "-> Service switch (initialDelaySeconds)".into(),
        joined,
        switch,
        Some(delay),
    );
    // Old nodes in the order their evacuations started.
    let mut order: Vec<(
        Instant,
        &String,
        &String,
        Vec<emqx_sim::cluster::EvacuationEvent>,
    )> = Vec::new();
    for (pod, node) in old {
        let history = cluster.evacuation_history(node);
        let first = history
            .first()
            .context("an old node never evacuated")?
            .at
            .into_std();
        order.push((first, pod, node, history));
    }
    order.sort_by_key(|o| o.0);
    let mut previous = switch;
    for (i, (start, pod, node, history)) in order.iter().enumerate() {
        let n = i + 1;
        let state_at = |state: &str| {
            history
                .iter()
                .find(|e| e.state == state)
                .map(|e| e.at.into_std())
        };
        let evicted: u64 = history.iter().map(|e| e.evicted).sum();
        let migrated: u64 = history.iter().map(|e| e.migrated).sum();
        let takeover_at = state_at("waiting_takeover").context("no waiting_takeover")?;
        let sessions_at = state_at("evicting_sessions").context("no evicting_sessions")?;
        let prohibiting = state_at("prohibiting").context("no prohibiting")?;
        push(
            format!(
                "node {n}: evacuation start (after {})",
                if i == 0 {
                    "the switch"
                } else {
                    "the last node left"
                }
            ),
            previous,
            *start,
            Some(0.0),
        );
        // EMQX evicts a batch of `connEvictRate` at once every second and
        // moves on at the first tick that finds none left: ⌈c / rate⌉ s.
        push(
            format!("node {n}: evicting {evicted} connections"),
            *start,
            takeover_at,
            Some((evicted as f64 / rate).ceil()),
        );
        push(
            format!("node {n}: waitTakeover"),
            takeover_at,
            sessions_at,
            Some(takeover),
        );
        push(
            format!("node {n}: evicting {migrated} sessions"),
            sessions_at,
            prohibiting,
            Some((migrated as f64 / rate).ceil()),
        );
        let deleting = at(format!("deleting:{pod}"))?;
        push(
            format!("node {n}: prohibiting -> pod deleted (scaled away)"),
            prohibiting,
            deleting,
            Some(0.0),
        );
        let gone = at(format!("gone:{pod}"))?;
        push(
            format!("node {n}: pod deleted -> gone (termination)"),
            deleting,
            gone,
            None,
        );
        let left = at(format!("left:{node}"))?;
        push(
            format!("node {n}: pod gone -> left GET nodes (force_leave)"),
            gone,
            left.max(gone),
            Some(0.0),
        );
        previous = left.max(gone);
    }
    let done = at("ready".into())?;
    push(
        "last node left -> Ready condition".into(),
        previous,
        done,
        Some(0.0),
    );
    Ok(phases)
}
