//! The console log of a simulated EMQX container: what `kubectl logs` shows
//! for an EMQX pod. EMQX 5 writes two kinds of console lines, and these are
//! written the same way from what the simulated node does:
//!
//! - plain boot lines (`?ULOG`, no timestamp): `Listener tcp:default on
//!   <addr> started.` (`apps/emqx/src/emqx_listeners.erl`), the dashboard's
//!   (`apps/emqx_dashboard/src/emqx_dashboard.erl`) and `EMQX Enterprise
//!   5.8.0 is running now!` (`apps/emqx_machine/src/emqx_machine_boot.erl`);
//! - structured log lines (`?SLOG`, `apps/emqx/src/emqx_logger_textfmt.erl`):
//!   an RFC 3339 time in microseconds, the level in brackets, then
//!   `msg: <msg>, <key>: <value>, ...`. The evacuation lines carry the `msg`s
//!   of `apps/emqx_node_rebalance/src/emqx_node_rebalance_evacuation.erl`
//!   (emqx v5.8.9) for the state each simulated step enters, and a stopping
//!   node logs `stopping_emqx_apps` (`emqx_machine_boot.erl`).
//!
//! Cluster membership changes are logged by EMQX's database layer (mria), not
//! reproduced line for line here: the `cluster_node_up`/`cluster_node_down`
//! lines are the simulator's own wording in EMQX's line format.
//!
//! The decisions are pure ([`boot_lines`], [`Console::observe`]); the EMQX
//! hook polls the node and appends what they return to the container's log.

use std::collections::BTreeSet;
use std::net::SocketAddr;

use chrono::{DateTime, Utc};
use emqx_sim::cluster::EvacuationEvent;

/// `2026-12-02T13:49:18.123456+00:00`, as EMQX's text formatter writes time.
pub fn timestamp(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%dT%H:%M:%S%.6f+00:00").to_string()
}

/// One structured line: `<time> [<level>] msg: <msg>, <key>: <value>...`.
pub fn slog(at: DateTime<Utc>, level: &str, msg: &str, fields: &[(&str, String)]) -> String {
    let mut line = format!("{} [{level}] msg: {msg}", timestamp(at));
    for (key, value) in fields {
        line.push_str(&format!(", {key}: {value}"));
    }
    line.push('\n');
    line
}

/// What a node prints as it boots: its listeners, then that it runs.
pub fn boot_lines(
    enterprise: bool,
    version: &str,
    mqtt: SocketAddr,
    dashboard: SocketAddr,
) -> Vec<String> {
    let description = if enterprise {
        "EMQX Enterprise"
    } else {
        "EMQX"
    };
    vec![
        format!("Listener tcp:default on {mqtt} started.\n"),
        format!("Listener http:dashboard on {dashboard} started.\n"),
        format!("{description} {version} is running now!\n"),
    ]
}

/// The line a node logs when it is asked to stop.
pub fn stopping_line(at: DateTime<Utc>) -> String {
    slog(at, "notice", "stopping_emqx_apps", &[])
}

/// What the console has already told, so each change is told once.
#[derive(Debug, Default)]
pub struct Console {
    peers: BTreeSet<String>,
    evacuation_steps: usize,
    evacuation_state: Option<&'static str>,
}

impl Console {
    /// The lines for what changed since the last call: peers that came up or
    /// went down (`running` is every running node of the cluster, this one
    /// included), and this node's new evacuation steps (`history` is all of
    /// them so far).
    pub fn observe(
        &mut self,
        node: &str,
        running: &[String],
        history: &[EvacuationEvent],
        at: DateTime<Utc>,
    ) -> Vec<String> {
        let mut lines = Vec::new();
        let peers: BTreeSet<String> = running.iter().filter(|n| *n != node).cloned().collect();
        for up in peers.difference(&self.peers) {
            lines.push(slog(at, "info", "cluster_node_up", &[("node", up.clone())]));
        }
        for down in self.peers.difference(&peers) {
            lines.push(slog(
                at,
                "warning",
                "cluster_node_down",
                &[("node", down.clone())],
            ));
        }
        self.peers = peers;
        for step in history.iter().skip(self.evacuation_steps) {
            let entered = self.evacuation_state != Some(step.state);
            if let Some(msg) = evacuation_msg(step, entered) {
                lines.push(slog(at, "warning", msg, &[]));
            }
            self.evacuation_state = Some(step.state);
        }
        self.evacuation_steps = self.evacuation_steps.max(history.len());
        lines
    }
}

/// EMQX's message for an evacuation step: the one logged on entering its
/// state, or for the work done in it.
fn evacuation_msg(step: &EvacuationEvent, entered: bool) -> Option<&'static str> {
    match (step.state, entered) {
        ("waiting_health_check", true) => Some("node_evacuation_started"),
        ("evicting_conns", _) if step.evicted > 0 => Some("node_evacuation_evict_conns"),
        ("waiting_takeover", true) => Some("node_evacuation_evict_conns_done"),
        ("evicting_sessions", _) if step.migrated > 0 => Some("node_evacuation_evict_sessions"),
        ("evicting_sessions", true) => Some("node_evacuation_waiting_takeover_done"),
        ("prohibiting", true) => Some("node_evacuation_evict_sessions_over"),
        ("disabled", true) => Some("node_evacuation_stopped"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 2, 13, 49, 18)
            .single()
            .expect("time")
            + chrono::Duration::microseconds(42)
    }

    fn step(state: &'static str, evicted: u64, migrated: u64) -> EvacuationEvent {
        EvacuationEvent {
            at: tokio::time::Instant::now(),
            state,
            evicted,
            migrated,
        }
    }

    #[test]
    fn lines_have_emqx_5s_console_format() {
        assert_eq!(
            slog(at(), "warning", "node_evacuation_started", &[]),
            "2026-12-02T13:49:18.000042+00:00 [warning] msg: node_evacuation_started\n"
        );
        assert_eq!(
            slog(
                at(),
                "info",
                "cluster_node_up",
                &[("node", "emqx@a".into())]
            ),
            "2026-12-02T13:49:18.000042+00:00 [info] msg: cluster_node_up, node: emqx@a\n"
        );
        let boot = boot_lines(
            true,
            "5.8.0",
            "127.100.0.3:1883".parse().expect("addr"),
            "127.100.0.3:18083".parse().expect("addr"),
        );
        assert_eq!(
            boot[0],
            "Listener tcp:default on 127.100.0.3:1883 started.\n"
        );
        assert_eq!(boot[2], "EMQX Enterprise 5.8.0 is running now!\n");
    }

    #[test]
    fn each_change_is_told_once() {
        let mut console = Console::default();
        let me = "emqx@a";
        let lines = console.observe(me, &[me.into()], &[], at());
        assert!(lines.is_empty(), "{lines:?}");
        let lines = console.observe(me, &[me.into(), "emqx@b".into()], &[], at());
        assert_eq!(lines.len(), 1);
        assert!(lines[0].contains("cluster_node_up, node: emqx@b"));
        assert!(
            console
                .observe(me, &[me.into(), "emqx@b".into()], &[], at())
                .is_empty()
        );
        let mut history = vec![
            step("waiting_health_check", 0, 0),
            step("evicting_conns", 0, 0),
        ];
        let lines = console.observe(me, &[me.into(), "emqx@b".into()], &history, at());
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(lines[0].contains("[warning] msg: node_evacuation_started"));
        history.extend([
            step("evicting_conns", 5, 0),
            step("waiting_takeover", 0, 0),
            step("evicting_sessions", 0, 0),
            step("evicting_sessions", 0, 3),
            step("prohibiting", 0, 0),
        ]);
        let lines = console.observe(me, &[me.into()], &history, at());
        let msgs: Vec<&str> = lines
            .iter()
            .filter_map(|l| l.split("msg: ").nth(1))
            .map(str::trim_end)
            .collect();
        assert_eq!(
            msgs,
            [
                "cluster_node_down, node: emqx@b",
                "node_evacuation_evict_conns",
                "node_evacuation_evict_conns_done",
                "node_evacuation_waiting_takeover_done",
                "node_evacuation_evict_sessions",
                "node_evacuation_evict_sessions_over",
            ]
        );
        assert!(console.observe(me, &[me.into()], &history, at()).is_empty());
    }
}
