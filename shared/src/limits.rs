//! The allowed ranges of the update-strategy numbers and of the object's
//! name, shared by the CRD's CEL rules and the webhook's validation so both
//! say the same thing.

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
/// Longest `metadata.name` of an `EMQX`/`EmqxEnterprise` object. The tightest
/// of the names the reconciler derives from it ([`crate::names`]): the core
/// StatefulSet is `<name>-core-<revision>` (revision: 10 characters), and the
/// StatefulSet controller labels its pods `controller-revision-hash:
/// <set>-<hash>` (hash: up to 10 characters), a label value of at most 63
/// characters, so the set's name is at most 52 and the object's at most
/// 52 - 16 = 36. (Also within: the pod hostname `<set>-<ordinal>` ≤ 63,
/// the Services `<name>-listeners`/`-dashboard` ≤ 63, the
/// `apps.emqx.io/instance` label ≤ 63, the volume `<name>-data` ≤ 63.)
pub const NAME_MAX: usize = 36;
/// Length of a revision name in set names (`revision_hash` in the reconciler;
/// the Go operator's pod-template-hash is at most as long).
pub const REVISION_LEN: usize = 10;
/// Longest hash the StatefulSet controller appends to a set's name in its
/// `controller-revision-hash` pod label (a `SafeEncodeString` of a `uint32`).
pub const CONTROLLER_REVISION_HASH_LEN: usize = 10;
/// A Kubernetes label value (and DNS label) is at most this long.
pub const LABEL_VALUE_MAX: usize = 63;
