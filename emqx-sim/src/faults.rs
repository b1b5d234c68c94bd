//! Fault injection, switchable while the node runs.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

/// Faults a node injects; all off by default. Shared by the node's listeners.
#[derive(Debug, Default)]
pub struct Faults {
    http_500: AtomicBool,
    http_500_writes: AtomicBool,
    http_delay_ms: AtomicU64,
    drop_http: AtomicBool,
    drop_mqtt: AtomicBool,
    rebalance_status_delay_ms: AtomicU64,
}

impl Faults {
    /// Every `/api/…` request answers 500 `INTERNAL_ERROR`.
    pub fn set_http_500(&self, on: bool) {
        self.http_500.store(on, Ordering::SeqCst);
    }

    /// Every `/api/…` request other than GET answers 500 `INTERNAL_ERROR`:
    /// the broker can be read but refuses every change (evacuation start,
    /// `force_leave`).
    pub fn set_http_500_on_writes(&self, on: bool) {
        self.http_500_writes.store(on, Ordering::SeqCst);
    }

    /// Every `/api/…` request waits this long before it is handled.
    pub fn set_http_delay(&self, delay: Duration) {
        let ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        self.http_delay_ms.store(ms, Ordering::SeqCst);
    }

    /// New HTTP connections are closed at once, without a response.
    pub fn set_drop_http(&self, on: bool) {
        self.drop_http.store(on, Ordering::SeqCst);
    }

    /// New MQTT connections are closed at once, without a CONNACK.
    pub fn set_drop_mqtt(&self, on: bool) {
        self.drop_mqtt.store(on, Ordering::SeqCst);
    }

    /// The node's evacuation process answers status queries this late (a
    /// node busy evicting, or overloaded): its own `load_rebalance/status`,
    /// and its part of `global_status` asked on any node of the cluster,
    /// which waits up to EMQX's 15 s RPC timeout per phase for it
    /// ([`crate::rest::global_status`]).
    pub fn set_rebalance_status_delay(&self, delay: Duration) {
        let ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        self.rebalance_status_delay_ms.store(ms, Ordering::SeqCst);
    }

    /// Injected delay of the evacuation status.
    pub fn rebalance_status_delay(&self) -> Duration {
        Duration::from_millis(self.rebalance_status_delay_ms.load(Ordering::SeqCst))
    }

    /// Whether 500s are injected.
    pub fn http_500(&self) -> bool {
        self.http_500.load(Ordering::SeqCst)
    }

    /// Whether 500s are injected into writes.
    pub fn http_500_on_writes(&self) -> bool {
        self.http_500_writes.load(Ordering::SeqCst)
    }

    /// Injected delay.
    pub fn http_delay(&self) -> Duration {
        Duration::from_millis(self.http_delay_ms.load(Ordering::SeqCst))
    }

    /// Whether HTTP connections are dropped.
    pub fn drop_http(&self) -> bool {
        self.drop_http.load(Ordering::SeqCst)
    }

    /// Whether MQTT connections are dropped.
    pub fn drop_mqtt(&self) -> bool {
        self.drop_mqtt.load(Ordering::SeqCst)
    }
}
