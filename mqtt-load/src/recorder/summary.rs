//! The numbers a run is judged by.

use std::fmt;
use std::time::Duration;

use crate::{ClientEventKind, LoadReport};

/// Summary of a load run.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// Subscriber clients.
    pub clients: usize,
    /// Most clients disconnected (after having connected) at the same time.
    pub max_disconnected_at_once: usize,
    /// Clients by number of disconnects: index = disconnects, value = clients.
    pub disconnect_histogram: Vec<usize>,
    /// Reconnects whose CONNACK had `session_present=0` (session lost).
    pub sessions_lost: usize,
    /// Publishes issued / acknowledged by the broker.
    pub published: u64,
    /// Acknowledged publishes.
    pub confirmed: u64,
    /// Distinct messages received.
    pub received: u64,
    /// Redeliveries.
    pub duplicates: u64,
    /// Acknowledged but never received.
    pub lost: usize,
    /// The publisher's connections that ended.
    pub publisher_disconnects: usize,
    /// The publisher's reconnects without its session.
    pub publisher_sessions_lost: usize,
    /// Publishes the broker had not acknowledged when the run ended.
    pub unconfirmed: u64,
    /// Wall time.
    pub duration: Duration,
}

impl Summary {
    /// Computes the summary of `report`.
    pub fn of(report: &LoadReport) -> Summary {
        let mut histogram = Vec::new();
        let mut changes: Vec<(Duration, i64)> = Vec::new();
        let mut sessions_lost = 0;
        for log in &report.client_logs {
            let d = log.disconnects();
            if histogram.len() <= d {
                histogram.resize(d + 1, 0);
            }
            histogram[d] += 1;
            sessions_lost += log
                .reconnect_session_flags()
                .iter()
                .filter(|p| !**p)
                .count();
            let mut down = false;
            for e in &log.events {
                match e.kind {
                    ClientEventKind::Disconnected { .. } if !down => {
                        down = true;
                        changes.push((e.at, 1));
                    }
                    ClientEventKind::Connected { .. } if down => {
                        down = false;
                        changes.push((e.at, -1));
                    }
                    _ => {}
                }
            }
        }
        // Reconnections at the same instant count before new disconnections.
        changes.sort();
        let mut now = 0i64;
        let mut max = 0i64;
        for (_, delta) in changes {
            now += delta;
            max = max.max(now);
        }
        Summary {
            clients: report.clients,
            max_disconnected_at_once: usize::try_from(max).unwrap_or(0),
            disconnect_histogram: histogram,
            sessions_lost,
            published: report.published,
            confirmed: report.confirmed_total(),
            received: report.received_total(),
            duplicates: report.client_logs.iter().map(|l| l.duplicates).sum(),
            lost: report.lost().len(),
            publisher_disconnects: report.publisher.disconnects(),
            publisher_sessions_lost: report
                .publisher
                .reconnect_session_flags()
                .iter()
                .filter(|p| !**p)
                .count(),
            unconfirmed: report.unconfirmed,
            duration: report.duration,
        }
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "clients:                  {}", self.clients)?;
        writeln!(
            f,
            "duration:                 {:.1} s",
            self.duration.as_secs_f64()
        )?;
        writeln!(
            f,
            "max disconnected at once: {}",
            self.max_disconnected_at_once
        )?;
        let per: Vec<String> = self
            .disconnect_histogram
            .iter()
            .enumerate()
            .filter(|(_, n)| **n > 0)
            .map(|(d, n)| format!("{n} client(s) x{d}"))
            .collect();
        writeln!(f, "disconnects per client:   {}", per.join(", "))?;
        writeln!(f, "sessions lost:            {}", self.sessions_lost)?;
        writeln!(
            f,
            "QoS 1 messages:           {} published, {} acknowledged, {} received, {} duplicates",
            self.published, self.confirmed, self.received, self.duplicates
        )?;
        writeln!(
            f,
            "publisher:                {} disconnects, {} sessions lost, {} unacknowledged at the end",
            self.publisher_disconnects, self.publisher_sessions_lost, self.unconfirmed
        )?;
        write!(f, "messages lost:            {}", self.lost)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::{ClientEvent, ClientLog};

    fn ev(ms: u64, kind: ClientEventKind) -> ClientEvent {
        ClientEvent {
            at: Duration::from_millis(ms),
            kind,
        }
    }

    fn connected(present: bool) -> ClientEventKind {
        ClientEventKind::Connected {
            session_present: present,
            node: None,
        }
    }

    fn down() -> ClientEventKind {
        ClientEventKind::Disconnected {
            reason: "evicted".into(),
        }
    }

    #[test]
    fn overlapping_disconnects_and_losses() {
        let a = ClientLog {
            client_id: "a".into(),
            events: vec![
                ev(0, connected(false)),
                ev(100, down()),
                ev(300, connected(true)),
            ],
            received: BTreeSet::from([1, 2]),
            duplicates: 1,
        };
        let b = ClientLog {
            client_id: "b".into(),
            events: vec![
                ev(0, connected(false)),
                ev(200, down()),
                ev(400, connected(false)),
            ],
            received: BTreeSet::from([1]),
            duplicates: 0,
        };
        let c = ClientLog {
            client_id: "c".into(),
            events: vec![
                ev(0, connected(false)),
                ev(300, down()),
                ev(350, connected(true)),
            ],
            received: BTreeSet::new(),
            duplicates: 0,
        };
        let report = LoadReport {
            clients: 3,
            duration: Duration::from_secs(1),
            client_logs: vec![a, b, c],
            confirmed: vec![
                BTreeSet::from([1, 2]),
                BTreeSet::from([1, 2]),
                BTreeSet::new(),
            ],
            published: 4,
            publisher: ClientLog {
                events: vec![
                    ev(0, connected(false)),
                    ev(500, down()),
                    ev(600, connected(false)),
                ],
                ..ClientLog::default()
            },
            ..LoadReport::default()
        };
        let s = Summary::of(&report);
        // a down 100..300, b down 200..400, c down 300..350; a's reconnect at 300
        // counts before c's disconnect at 300: at most 2 at once.
        assert_eq!(s.max_disconnected_at_once, 2);
        assert_eq!(s.disconnect_histogram, vec![0, 3]);
        assert_eq!(s.sessions_lost, 1);
        assert_eq!((s.publisher_disconnects, s.publisher_sessions_lost), (1, 1));
        assert_eq!(s.lost, 1);
        assert_eq!(s.duplicates, 1);
        assert!(s.to_string().contains("messages lost:            1"));
    }
}
