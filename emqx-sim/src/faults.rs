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
    refuse_connect: AtomicBool,
    /// Milliseconds + 1 (0: off).
    drop_after_connack_ms: AtomicU64,
    rebalance_status_delay_ms: AtomicU64,
}

/// The pod environment variable that selects an MQTT fault for a node from
/// its spec, as a bad configuration arrives with a new revision: `refuse-connect`
/// or `drop-after-connack=<ms>`. Not an `EMQX_` variable, which EMQX would
/// read as configuration.
pub const MQTT_FAULT_ENV: &str = "SIM_MQTT_FAULT";

/// A value of [`MQTT_FAULT_ENV`] the simulator does not know.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{MQTT_FAULT_ENV}: unknown fault {0:?} (refuse-connect, drop-after-connack=<ms>)")]
pub struct UnknownFault(pub String);

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

    /// Every CONNECT fails authentication: CONNACK `bad_username_or_password`
    /// (MQTT 5 0x86, MQTT 3.1.1 return code 4), as EMQX answers a client
    /// its authenticator refuses (a wrong authentication config in a new
    /// revision). No session is opened.
    pub fn set_refuse_connect(&self, on: bool) {
        self.refuse_connect.store(on, Ordering::SeqCst);
    }

    /// Whether CONNECTs are refused.
    pub fn refuse_connect(&self) -> bool {
        self.refuse_connect.load(Ordering::SeqCst)
    }

    /// Every accepted connection is closed this long after its CONNACK,
    /// without a DISCONNECT (a listener or plugin that drops clients); the
    /// session stays for its expiry, as after any lost connection.
    pub fn set_drop_after_connack(&self, after: Option<Duration>) {
        let ms = after.map_or(0, |d| {
            u64::try_from(d.as_millis())
                .unwrap_or(u64::MAX - 1)
                .saturating_add(1)
        });
        self.drop_after_connack_ms.store(ms, Ordering::SeqCst);
    }

    /// How long after CONNACK connections are dropped, if they are.
    pub fn drop_after_connack(&self) -> Option<Duration> {
        match self.drop_after_connack_ms.load(Ordering::SeqCst) {
            0 => None,
            ms => Some(Duration::from_millis(ms - 1)),
        }
    }

    /// Switches on the MQTT fault a pod's environment names
    /// ([`MQTT_FAULT_ENV`]); none when the variable is absent.
    pub fn apply_pod_env(
        &self,
        env: &std::collections::BTreeMap<String, String>,
    ) -> Result<(), UnknownFault> {
        let Some(value) = env.get(MQTT_FAULT_ENV) else {
            return Ok(());
        };
        let value = value.trim();
        if value == "refuse-connect" {
            self.set_refuse_connect(true);
            return Ok(());
        }
        let ms = value
            .strip_prefix("drop-after-connack=")
            .and_then(|ms| ms.parse::<u64>().ok())
            .ok_or_else(|| UnknownFault(value.to_owned()))?;
        self.set_drop_after_connack(Some(Duration::from_millis(ms)));
        Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn the_pod_env_selects_the_mqtt_fault() {
        let env = |v: &str| BTreeMap::from([(MQTT_FAULT_ENV.to_owned(), v.to_owned())]);
        let f = Faults::default();
        f.apply_pod_env(&BTreeMap::new()).unwrap();
        assert!(!f.refuse_connect());
        assert_eq!(f.drop_after_connack(), None);
        f.apply_pod_env(&env("refuse-connect")).unwrap();
        assert!(f.refuse_connect());
        let f = Faults::default();
        f.apply_pod_env(&env("drop-after-connack=0")).unwrap();
        assert_eq!(f.drop_after_connack(), Some(Duration::ZERO));
        f.apply_pod_env(&env(" drop-after-connack=250 ")).unwrap();
        assert_eq!(f.drop_after_connack(), Some(Duration::from_millis(250)));
        assert_eq!(
            f.apply_pod_env(&env("refuse")),
            Err(UnknownFault("refuse".into()))
        );
    }
}
