//! Where the two Secrets of a cluster (the Erlang cookie and the bootstrap
//! API-key file with the operator's key) get their values, and so whether
//! the reconciler needs to read Secrets at all.
//!
//! * [`SecretSource::Derived`] (the chart's default): both values are an
//!   HMAC-SHA256 of the cluster's namespace, name and uid under the
//!   operator's own key (a file the kubelet mounts from a Secret). The
//!   reconciler computes the API secret instead of reading it, and only
//!   *creates* the two Secrets, so its RBAC has no `get` on Secrets: it
//!   cannot read any Secret, the webhook's CA key or a user's included. A
//!   new uid (the cluster deleted and made again) gives new values.
//! * [`SecretSource::Read`]: the values are random and the API secret is
//!   read back from the bootstrap Secret, which needs `get` on Secrets.
//!   Needed for clusters whose bootstrap Secret was written by someone else
//!   (the Go EMQX Operator, or an operator version before derived values):
//!   their key cannot be derived.

use std::fmt;

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Shortest operator key accepted, in bytes.
pub const MIN_KEY_LEN: usize = 32;

/// The operator's key. Never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct OperatorKey(Vec<u8>);

impl fmt::Debug for OperatorKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("OperatorKey(..)")
    }
}

impl OperatorKey {
    /// The key from a file's bytes (a trailing newline is not part of it).
    pub fn from_file_bytes(bytes: &[u8]) -> Result<Self, String> {
        let key = bytes.trim_ascii_end();
        if key.len() < MIN_KEY_LEN {
            return Err(format!(
                "the operator key has {} bytes; at least {MIN_KEY_LEN} are needed",
                key.len()
            ));
        }
        Ok(OperatorKey(key.to_vec()))
    }
}

/// How the values of a cluster's Secrets are found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// Derived from the operator's key; Secrets are only created.
    Derived(OperatorKey),
    /// Random, and read back (needs `get` on Secrets).
    Read,
}

/// What a derived value is for: different purposes never share a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// The Erlang distribution cookie.
    NodeCookie,
    /// The operator's secret in the bootstrap API-key file.
    OperatorApiSecret,
}

impl Purpose {
    fn label(self) -> &'static str {
        match self {
            Purpose::NodeCookie => "node-cookie",
            Purpose::OperatorApiSecret => "operator-api-secret",
        }
    }
}

/// The value for `purpose` of the cluster `namespace/name` with `uid`: 64
/// lowercase hex digits (EMQX takes them as a cookie and as an API secret).
pub fn derive(
    key: &OperatorKey,
    purpose: Purpose,
    namespace: &str,
    name: &str,
    uid: &str,
) -> String {
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&key.0) else {
        // HMAC takes a key of any length; unreachable, and an empty
        // answer would only make EMQX refuse the calls.
        return String::new();
    };
    // NUL-separated: no name can make two different tuples collide.
    for part in [purpose.label(), namespace, name, uid] {
        mac.update(part.as_bytes());
        mac.update(&[0]);
    }
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> OperatorKey {
        OperatorKey::from_file_bytes(&[byte; 40]).expect("key")
    }

    #[test]
    fn the_same_cluster_always_gets_the_same_value() {
        let a = derive(&key(b'a'), Purpose::OperatorApiSecret, "ns", "emqx", "u-1");
        assert_eq!(a.len(), 64);
        assert!(
            a.chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        );
        assert_eq!(
            a,
            derive(&key(b'a'), Purpose::OperatorApiSecret, "ns", "emqx", "u-1")
        );
    }

    #[test]
    fn key_purpose_uid_and_name_each_change_the_value() {
        let base = derive(&key(b'a'), Purpose::OperatorApiSecret, "ns", "emqx", "u-1");
        for other in [
            derive(&key(b'b'), Purpose::OperatorApiSecret, "ns", "emqx", "u-1"),
            derive(&key(b'a'), Purpose::NodeCookie, "ns", "emqx", "u-1"),
            derive(&key(b'a'), Purpose::OperatorApiSecret, "ns", "emqx", "u-2"),
            derive(&key(b'a'), Purpose::OperatorApiSecret, "ns2", "emqx", "u-1"),
            // "ns"+"emqx" vs "nse"+"mqx": the separator keeps them apart.
            derive(&key(b'a'), Purpose::OperatorApiSecret, "nse", "mqx", "u-1"),
        ] {
            assert_ne!(base, other);
        }
    }

    #[test]
    fn a_short_key_is_refused_and_a_key_is_never_printed() {
        let err = OperatorKey::from_file_bytes(b"short\n").expect_err("short");
        assert!(err.contains("5 bytes"), "{err}");
        let k = key(b'z');
        assert_eq!(format!("{k:?}"), "OperatorKey(..)");
        // A trailing newline (an editor's, `echo`'s) is not part of the key.
        let mut with_newline = vec![b'z'; 40];
        with_newline.push(b'\n');
        assert_eq!(OperatorKey::from_file_bytes(&with_newline), Ok(k));
    }
}
