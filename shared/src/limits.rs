//! The allowed ranges of the update-strategy numbers, shared by the CRD's CEL
//! rules and the webhook's validation so both say the same thing.

/// Lowest connection/session eviction rate (per second). 0 would never finish.
pub const RATE_MIN: i64 = 1;
/// Highest eviction rate (per second). Far above what one EMQX node can take
/// over; anything larger is a typo.
pub const RATE_MAX: i64 = 1_000_000;
/// Default eviction rate, as in the Go operator.
pub const RATE_DEFAULT: i64 = 1000;
/// Highest `initialDelaySeconds` / `waitTakeover`: one day.
pub const DELAY_MAX: i64 = 86_400;
/// Default `initialDelaySeconds` and `waitTakeover`, as in the Go operator.
pub const DELAY_DEFAULT: i64 = 10;
/// Rates above this invite a reconnect storm on the receiving nodes: warned.
pub const RATE_STORM_WARNING: i64 = 10_000;
/// An evacuation estimated to take longer than this (seconds) is warned.
pub const LONG_EVACUATION_SECONDS: i64 = 3_600;
/// Most bootstrap API keys per object (bounds the CEL immutability check).
pub const MAX_BOOTSTRAP_KEYS: u64 = 32;
