//! `mqtt-load`: N real client connections (rumqttc) through one address,
//! with auto-reconnect, backoff and jitter, `clean_start=false` and a
//! session expiry, plus a QoS 1 publisher. Records per-second connections
//! per node, every disconnect/reconnect per client, and published vs
//! received messages; [`recorder`] writes that as CSV, a plot (SVG, PNG) and
//! a summary. Bounded: it stops by itself at `max_duration`.
//!
//! Which node a client is on is the broker's knowledge: a
//! [`ConnectionSampler`] tells it (the EMQX simulator implements it); this
//! crate knows no broker.

pub mod backoff;
pub mod client;
pub mod endpoints;
pub mod protocol;
pub mod publisher;
pub mod record;
pub mod recorder;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

pub use backoff::Backoff;
pub use endpoints::Endpoints;
pub use protocol::{Protocol, SessionSettings};
pub use record::{ClientEvent, ClientEventKind, ClientLog, LoadReport, Sample};

/// Where per-node connection counts come from (the broker side).
pub trait ConnectionSampler: Send + Sync + 'static {
    /// Connected clients per node now.
    fn per_node(&self) -> BTreeMap<String, u64>;
    /// Node a client is connected to, if known.
    fn locate(&self, client_id: &str) -> Option<String>;
}

/// Settings of a load run.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    /// Subscriber clients.
    pub clients: usize,
    /// Client ids are `<prefix><n>`.
    pub client_prefix: String,
    /// Protocol and session settings of every client.
    pub session: SessionSettings,
    /// New connections per second at start.
    pub connect_rate: u32,
    /// Reconnect backoff.
    pub backoff: Backoff,
    /// One message per subscribed client per interval.
    pub publish_interval: Duration,
    /// Hard bound: everything stops after this.
    pub max_duration: Duration,
}

impl Default for LoadConfig {
    fn default() -> Self {
        LoadConfig {
            clients: 100,
            client_prefix: "load-".into(),
            session: SessionSettings {
                protocol: Protocol::V5,
                keep_alive: Duration::from_secs(30),
                session_expiry: Duration::from_secs(600),
                clean_start: false,
            },
            connect_rate: 500,
            backoff: Backoff::default(),
            publish_interval: Duration::from_secs(1),
            max_duration: Duration::from_secs(300),
        }
    }
}

/// Topic of a client's messages.
pub fn topic_of(client_id: &str) -> String {
    format!("load/{client_id}")
}

/// State shared by the load's tasks.
pub struct Shared {
    config: LoadConfig,
    endpoints: Endpoints,
    publisher_endpoints: Endpoints,
    sampler: Arc<dyn ConnectionSampler>,
    started: Instant,
    logs: Vec<Mutex<ClientLog>>,
    publisher_log: Mutex<ClientLog>,
    confirmed: Vec<Mutex<std::collections::BTreeSet<u64>>>,
    subscribed: Vec<AtomicBool>,
    connected: AtomicUsize,
    published: AtomicU64,
    unconfirmed: AtomicU64,
    publisher_drained: AtomicBool,
    samples: Mutex<Vec<Sample>>,
}

impl Shared {
    fn client_id(&self, idx: usize) -> String {
        format!("{}{idx}", self.config.client_prefix)
    }

    fn set_connected(&self, was: bool, now: bool) {
        match (was, now) {
            (false, true) => {
                self.connected.fetch_add(1, Ordering::SeqCst);
            }
            (true, false) => {
                self.connected.fetch_sub(1, Ordering::SeqCst);
            }
            _ => {}
        }
    }

    fn mark_subscribed(&self, idx: usize) {
        if let Some(s) = self.subscribed.get(idx) {
            s.store(true, Ordering::SeqCst);
        }
    }

    fn is_subscribed(&self, idx: usize) -> bool {
        self.subscribed
            .get(idx)
            .is_some_and(|s| s.load(Ordering::SeqCst))
    }

    fn receive(&self, idx: usize, payload: &[u8]) {
        let Some(seq) = std::str::from_utf8(payload)
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
        else {
            return;
        };
        if let Some(log) = self.logs.get(idx) {
            let mut log = log.lock().unwrap_or_else(|e| e.into_inner());
            if !log.received.insert(seq) {
                log.duplicates += 1;
            }
        }
    }

    fn confirm(&self, idx: usize, seq: u64) {
        if let Some(c) = self.confirmed.get(idx) {
            c.lock().unwrap_or_else(|e| e.into_inner()).insert(seq);
        }
    }

    fn count_published(&self) {
        self.published.fetch_add(1, Ordering::SeqCst);
    }

    fn set_unconfirmed(&self, n: u64) {
        self.unconfirmed.store(n, Ordering::SeqCst);
    }

    fn set_publisher_drained(&self, drained: bool) {
        self.publisher_drained.store(drained, Ordering::SeqCst);
    }

    fn all_delivered(&self) -> bool {
        self.confirmed.iter().zip(&self.logs).all(|(c, l)| {
            let c = c.lock().unwrap_or_else(|e| e.into_inner());
            let l = l.lock().unwrap_or_else(|e| e.into_inner());
            c.is_subset(&l.received)
        })
    }
}

/// A snapshot of a running load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Clients connected now.
    pub connected: usize,
    /// Clients whose subscription was acknowledged at least once.
    pub subscribed: usize,
    /// Publish requests issued.
    pub published: u64,
    /// Time since start.
    pub elapsed: Duration,
}

/// A running load.
pub struct MqttLoad {
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    stop_publishing: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    deadline: Instant,
}

impl MqttLoad {
    /// Starts clients (paced at `connect_rate`), the publisher and the sampler.
    /// The publisher uses `publisher_endpoints` (often the same as `endpoints`).
    pub fn start(
        config: LoadConfig,
        endpoints: Endpoints,
        publisher_endpoints: Endpoints,
        sampler: Arc<dyn ConnectionSampler>,
    ) -> MqttLoad {
        let started = Instant::now();
        let deadline = started + config.max_duration;
        let n = config.clients;
        let shared = Arc::new(Shared {
            logs: (0..n)
                .map(|i| {
                    Mutex::new(ClientLog {
                        client_id: format!("{}{i}", config.client_prefix),
                        ..ClientLog::default()
                    })
                })
                .collect(),
            publisher_log: Mutex::new(ClientLog {
                client_id: publisher::PUBLISHER_ID.to_string(),
                ..ClientLog::default()
            }),
            confirmed: (0..n).map(|_| Mutex::default()).collect(),
            subscribed: (0..n).map(|_| AtomicBool::new(false)).collect(),
            config,
            endpoints,
            publisher_endpoints,
            sampler,
            started,
            connected: AtomicUsize::new(0),
            published: AtomicU64::new(0),
            unconfirmed: AtomicU64::new(0),
            publisher_drained: AtomicBool::new(false),
            samples: Mutex::new(Vec::new()),
        });
        let (stop, stop_rx) = watch::channel(false);
        let (stop_publishing, stop_pub_rx) = watch::channel(false);
        let mut tasks = Vec::new();
        let rate = shared.config.connect_rate.max(1);
        for idx in 0..n {
            let shared = shared.clone();
            let stop_rx = stop_rx.clone();
            let start_at = started + Duration::from_secs_f64(idx as f64 / f64::from(rate));
            tasks.push(tokio::spawn(async move {
                tokio::time::sleep_until(start_at.min(deadline)).await;
                client::run(shared, idx, stop_rx, deadline).await;
            }));
        }
        tasks.push(tokio::spawn(publisher::run(
            shared.clone(),
            stop_pub_rx,
            stop_rx.clone(),
            deadline,
        )));
        tasks.push(tokio::spawn(sample_loop(shared.clone(), stop_rx, deadline)));
        MqttLoad {
            shared,
            stop,
            stop_publishing,
            tasks,
            deadline,
        }
    }

    /// Current progress.
    pub fn progress(&self) -> Progress {
        let s = &self.shared;
        Progress {
            connected: s.connected.load(Ordering::SeqCst),
            subscribed: s
                .subscribed
                .iter()
                .filter(|b| b.load(Ordering::SeqCst))
                .count(),
            published: s.published.load(Ordering::SeqCst),
            elapsed: s.started.elapsed(),
        }
    }

    /// Waits (polling every 50 ms) until `cond` holds; false on timeout or
    /// when the run's own deadline passes.
    pub async fn wait_until(&self, timeout: Duration, cond: impl Fn(&Progress) -> bool) -> bool {
        let until = (Instant::now() + timeout).min(self.deadline);
        loop {
            if cond(&self.progress()) {
                return true;
            }
            if Instant::now() >= until {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until every client is connected and has had its subscription
    /// acknowledged: the load is in place.
    pub async fn wait_all_subscribed(&self, timeout: Duration) -> bool {
        let n = self.shared.config.clients;
        self.wait_until(timeout, |p| p.connected == n && p.subscribed == n)
            .await
    }

    /// Waits until every client is connected (again, after an upgrade).
    pub async fn wait_all_connected(&self, timeout: Duration) -> bool {
        let n = self.shared.config.clients;
        self.wait_until(timeout, |p| p.connected == n).await
    }

    /// Whether client `idx` has had a subscription acknowledged.
    pub fn is_subscribed(&self, idx: usize) -> bool {
        self.shared.is_subscribed(idx)
    }

    /// Copy of one client's log so far.
    pub fn client_log(&self, idx: usize) -> Option<ClientLog> {
        self.shared
            .logs
            .get(idx)
            .map(|l| l.lock().unwrap_or_else(|e| e.into_inner()).clone())
    }

    /// Stops publishing, waits up to `drain` for acknowledgements and
    /// deliveries, then stops every client and returns the report.
    pub async fn finish(mut self, drain: Duration) -> LoadReport {
        let _ = self.stop_publishing.send(true);
        let until = (Instant::now() + drain).min(self.deadline);
        while Instant::now() < until {
            let s = &self.shared;
            if s.publisher_drained.load(Ordering::SeqCst) && s.all_delivered() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let _ = self.stop.send(true);
        for t in std::mem::take(&mut self.tasks) {
            let _ = t.await;
        }
        let s = &self.shared;
        LoadReport {
            clients: s.config.clients,
            duration: s.started.elapsed(),
            samples: s.samples.lock().unwrap_or_else(|e| e.into_inner()).clone(),
            client_logs: s
                .logs
                .iter()
                .map(|l| l.lock().unwrap_or_else(|e| e.into_inner()).clone())
                .collect(),
            confirmed: s
                .confirmed
                .iter()
                .map(|c| c.lock().unwrap_or_else(|e| e.into_inner()).clone())
                .collect(),
            published: s.published.load(Ordering::SeqCst),
            unconfirmed: s.unconfirmed.load(Ordering::SeqCst),
            publisher: s
                .publisher_log
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        }
    }
}

impl Drop for MqttLoad {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        for t in &self.tasks {
            t.abort();
        }
    }
}

async fn sample_loop(shared: Arc<Shared>, mut stop: watch::Receiver<bool>, deadline: Instant) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    // A late sample is taken late, not repeated to catch up.
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
            _ = tokio::time::sleep_until(deadline) => return,
        }
        let sample = Sample {
            at: shared.started.elapsed(),
            per_node: shared.sampler.per_node(),
            clients_connected: shared.connected.load(Ordering::SeqCst) as u64,
        };
        shared
            .samples
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(sample);
    }
}
