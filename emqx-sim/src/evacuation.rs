//! The node-evacuation state machine of EMQX (`emqx_node_rebalance_evacuation`),
//! as a pure value stepped with the time and what the node observes.

use std::time::Duration;

use tokio::time::Instant;

/// Validated options of `POST …/evacuation/start`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvacuationOptions {
    /// Delay before eviction starts (default 60 s).
    pub wait_health_check: Duration,
    /// Connections evicted per tick (default 500).
    pub conn_evict_rate: u32,
    /// Sessions migrated per tick (default 500).
    pub sess_evict_rate: u32,
    /// Intended MQTT 5 Server-Reference.
    pub redirect_to: Option<String>,
    /// Pause between "no connections" and session migration (default 60 s).
    pub wait_takeover: Duration,
    /// Session recipients; `None` means every other available node.
    pub migrate_to: Option<Vec<String>>,
}

impl Default for EvacuationOptions {
    fn default() -> Self {
        EvacuationOptions {
            wait_health_check: Duration::from_secs(60),
            conn_evict_rate: 500,
            sess_evict_rate: 500,
            redirect_to: None,
            wait_takeover: Duration::from_secs(60),
            migrate_to: None,
        }
    }
}

/// States after `disabled` (which is the absence of an [`Evacuation`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EvacuationState {
    /// Waiting `wait_health_check`; connections still accepted.
    WaitingHealthCheck,
    /// Evicting live connections at `conn_evict_rate` per tick.
    EvictingConns,
    /// Waiting `wait_takeover` for clients to take their sessions over.
    WaitingTakeover,
    /// Migrating sessions at `sess_evict_rate` per tick.
    EvictingSessions,
    /// Done; refuses connections until stopped.
    Prohibiting,
}

impl EvacuationState {
    /// EMQX's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            EvacuationState::WaitingHealthCheck => "waiting_health_check",
            EvacuationState::EvictingConns => "evicting_conns",
            EvacuationState::WaitingTakeover => "waiting_takeover",
            EvacuationState::EvictingSessions => "evicting_sessions",
            EvacuationState::Prohibiting => "prohibiting",
        }
    }

    /// New CONNECTs are refused from `evicting_conns` on.
    pub fn refuses_connections(self) -> bool {
        self != EvacuationState::WaitingHealthCheck
    }
}

/// `stats` of the status payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EvacuationStats {
    /// Live connections at start.
    pub initial_connected: u64,
    /// Live connections seen at the latest tick, before its batch.
    pub current_connected: u64,
    /// Sessions (live and disconnected) at start.
    pub initial_sessions: u64,
    /// Sessions seen at the latest `evicting_sessions` tick.
    pub current_sessions: u64,
}

/// What the node sees when a step runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Observed {
    /// Live (connected) clients on the node.
    pub live_connections: u64,
    /// Sessions owned by the node, connected or not.
    pub sessions: u64,
    /// Whether at least one session recipient is available.
    pub has_recipient: bool,
}

/// Work a step asks the node to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Work {
    /// Nothing this time.
    Idle,
    /// Disconnect this many live connections.
    EvictConnections(u64),
    /// Hand this many sessions to random recipients.
    MigrateSessions(u64),
}

/// A running evacuation.
#[derive(Debug, Clone)]
pub struct Evacuation {
    /// Options it was started with.
    pub options: EvacuationOptions,
    /// Current state.
    pub state: EvacuationState,
    /// Lazy stats as EMQX reports them.
    pub stats: EvacuationStats,
    next_due: Option<Instant>,
    entered: Vec<EvacuationState>,
}

impl Evacuation {
    /// Starts in `waiting_health_check`; `observed` gives the initial stats.
    pub fn start(options: EvacuationOptions, observed: Observed, now: Instant) -> Evacuation {
        let stats = EvacuationStats {
            initial_connected: observed.live_connections,
            current_connected: observed.live_connections,
            initial_sessions: observed.sessions,
            current_sessions: observed.sessions,
        };
        let next_due = Some(now + options.wait_health_check);
        Evacuation {
            options,
            state: EvacuationState::WaitingHealthCheck,
            stats,
            next_due,
            entered: Vec::new(),
        }
    }

    /// A node booting with a persisted evacuation (§5.5): straight to
    /// `evicting_conns` (connections refused, first tick now), all nodes as
    /// recipients. Only rates, `wait_takeover` and the server reference survive.
    pub fn resume(persisted: &EvacuationOptions, observed: Observed, now: Instant) -> Evacuation {
        let options = EvacuationOptions {
            wait_health_check: Duration::ZERO,
            migrate_to: None,
            ..persisted.clone()
        };
        let mut e = Evacuation::start(options, observed, now);
        e.next_due = Some(now);
        e.enter(EvacuationState::EvictingConns);
        e
    }

    /// States entered since the last call, in order (a step may pass through
    /// `evicting_sessions` straight to `prohibiting`).
    pub fn take_entered(&mut self) -> Vec<EvacuationState> {
        std::mem::take(&mut self.entered)
    }

    fn enter(&mut self, state: EvacuationState) {
        self.state = state;
        self.entered.push(state);
    }

    /// When [`Evacuation::step`] next has something to do; `None` in `prohibiting`.
    pub fn next_due(&self) -> Option<Instant> {
        self.next_due
    }

    /// Advances the machine at `now`. Does nothing before [`Evacuation::next_due`].
    /// `tick` is the tick length (1 s in EMQX); `retry` the pause when no
    /// recipient is available (30 s).
    pub fn step(
        &mut self,
        now: Instant,
        observed: Observed,
        tick: Duration,
        retry: Duration,
    ) -> Work {
        match self.next_due {
            Some(due) if now >= due => {}
            _ => return Work::Idle,
        }
        match self.state {
            EvacuationState::WaitingHealthCheck => {
                self.enter(EvacuationState::EvictingConns);
                self.conn_tick(now, observed, tick)
            }
            EvacuationState::EvictingConns => self.conn_tick(now, observed, tick),
            EvacuationState::WaitingTakeover => {
                self.enter(EvacuationState::EvictingSessions);
                self.session_tick(now, observed, tick, retry)
            }
            EvacuationState::EvictingSessions => self.session_tick(now, observed, tick, retry),
            EvacuationState::Prohibiting => {
                self.next_due = None;
                Work::Idle
            }
        }
    }

    fn conn_tick(&mut self, now: Instant, observed: Observed, tick: Duration) -> Work {
        let live = observed.live_connections;
        if live == 0 {
            self.stats.current_connected = 0;
            self.enter(EvacuationState::WaitingTakeover);
            self.next_due = Some(now + self.options.wait_takeover);
            return Work::Idle;
        }
        self.stats.current_connected = live;
        self.next_due = Some(now + tick);
        Work::EvictConnections(live.min(u64::from(self.options.conn_evict_rate)))
    }

    fn session_tick(
        &mut self,
        now: Instant,
        observed: Observed,
        tick: Duration,
        retry: Duration,
    ) -> Work {
        let sessions = observed.sessions;
        if sessions == 0 {
            self.stats.current_sessions = 0;
            self.stats.current_connected = 0;
            self.enter(EvacuationState::Prohibiting);
            self.next_due = None;
            return Work::Idle;
        }
        self.stats.current_sessions = sessions;
        if !observed.has_recipient {
            self.next_due = Some(now + retry);
            return Work::Idle;
        }
        self.next_due = Some(now + tick);
        Work::MigrateSessions(sessions.min(u64::from(self.options.sess_evict_rate)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TICK: Duration = Duration::from_secs(1);
    const RETRY: Duration = Duration::from_secs(30);

    fn obs(live: u64, sessions: u64) -> Observed {
        Observed {
            live_connections: live,
            sessions,
            has_recipient: true,
        }
    }

    #[test]
    fn doc_example_100_at_30() {
        let t0 = Instant::now();
        let options = EvacuationOptions {
            wait_health_check: Duration::ZERO,
            conn_evict_rate: 30,
            wait_takeover: Duration::from_secs(5),
            ..EvacuationOptions::default()
        };
        let mut e = Evacuation::start(options, obs(100, 100), t0);
        assert_eq!(e.state, EvacuationState::WaitingHealthCheck);
        // Tick 0 fires immediately on entering evicting_conns.
        assert_eq!(
            e.step(t0, obs(100, 100), TICK, RETRY),
            Work::EvictConnections(30)
        );
        assert_eq!(e.stats.current_connected, 100);
        assert_eq!(e.stats.current_sessions, 100, "frozen");
        // Not yet due half a tick later.
        assert_eq!(e.step(t0 + TICK / 2, obs(70, 100), TICK, RETRY), Work::Idle);
        let mut t = t0 + TICK;
        for (live, evict) in [(70, 30), (40, 30), (10, 10)] {
            assert_eq!(
                e.step(t, obs(live, 100), TICK, RETRY),
                Work::EvictConnections(evict)
            );
            assert_eq!(e.stats.current_connected, live);
            t += TICK;
        }
        assert_eq!(e.step(t, obs(0, 100), TICK, RETRY), Work::Idle);
        assert_eq!(e.state, EvacuationState::WaitingTakeover);
        assert_eq!(e.stats.current_connected, 0);
        assert_eq!(e.stats.current_sessions, 100);
        assert_eq!(e.next_due(), Some(t + Duration::from_secs(5)));
        t += Duration::from_secs(5);
        assert_eq!(
            e.step(t, obs(0, 100), TICK, RETRY),
            Work::MigrateSessions(100)
        );
        assert_eq!(e.state, EvacuationState::EvictingSessions);
        t += TICK;
        assert_eq!(e.step(t, obs(0, 0), TICK, RETRY), Work::Idle);
        assert_eq!(e.state, EvacuationState::Prohibiting);
        assert_eq!(
            e.take_entered(),
            vec![
                EvacuationState::EvictingConns,
                EvacuationState::WaitingTakeover,
                EvacuationState::EvictingSessions,
                EvacuationState::Prohibiting
            ]
        );
        assert_eq!(e.stats.current_sessions, 0);
        assert_eq!(e.next_due(), None);
        assert_eq!(e.step(t + RETRY, obs(0, 0), TICK, RETRY), Work::Idle);
        assert_eq!(e.state, EvacuationState::Prohibiting, "terminal");
    }

    #[test]
    fn no_recipient_retries_after_30s() {
        let t0 = Instant::now();
        let options = EvacuationOptions {
            wait_health_check: Duration::ZERO,
            wait_takeover: Duration::ZERO,
            ..EvacuationOptions::default()
        };
        let mut e = Evacuation::start(options, obs(0, 5), t0);
        let none = Observed {
            has_recipient: false,
            ..obs(0, 5)
        };
        assert_eq!(e.step(t0, none, TICK, RETRY), Work::Idle);
        assert_eq!(e.state, EvacuationState::WaitingTakeover);
        assert_eq!(e.step(t0, none, TICK, RETRY), Work::Idle);
        assert_eq!(e.state, EvacuationState::EvictingSessions);
        assert_eq!(e.next_due(), Some(t0 + RETRY));
        assert_eq!(
            e.step(t0 + RETRY, obs(0, 5), TICK, RETRY),
            Work::MigrateSessions(5)
        );
    }

    #[test]
    fn health_check_wait_is_honoured() {
        let t0 = Instant::now();
        let options = EvacuationOptions {
            wait_health_check: Duration::from_secs(10),
            ..EvacuationOptions::default()
        };
        let mut e = Evacuation::start(options, obs(3, 3), t0);
        assert_eq!(
            e.step(t0 + Duration::from_secs(9), obs(3, 3), TICK, RETRY),
            Work::Idle
        );
        assert!(!e.state.refuses_connections());
        assert_eq!(
            e.step(t0 + Duration::from_secs(10), obs(3, 3), TICK, RETRY),
            Work::EvictConnections(3)
        );
        assert!(e.state.refuses_connections());
    }
}
