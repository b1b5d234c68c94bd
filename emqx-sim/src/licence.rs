//! The licence of EMQX 5.9 and later (one edition, BSL): whether a node may
//! run in a cluster. From EMQX's source at 6.0.1 (unchanged in this respect
//! at 6.2.2 and since e5.9.0):
//!
//! - `apps/emqx_license/src/emqx_license_schema.erl`: `license.key` is
//!   `default` (the default), `evaluation`, or a key string.
//! - `apps/emqx_license/src/emqx_license_parser.erl`: `default` is the
//!   community licence; `file://<path>` reads the key from a file; a key is
//!   `base64(payload).base64(signature)`; `is_single_node/1` is true for
//!   licence type 2 (community) only.
//! - `apps/emqx_license/src/emqx_license_parser_v20220101.erl`: the payload
//!   is the lines `220111`, type (0 trial, 1 official, 2 community),
//!   customer type, customer, email, deployment, start date `YYYYMMDD`,
//!   days, max sessions, and optionally max TPS.
//! - `apps/emqx_license/src/emqx_license_app.erl` + `emqx_license_checker.erl`
//!   (`no_violation/1`): when the licence app starts, a single-node licence
//!   with more than one *running* cluster node fails with
//!   `SINGLE_NODE_LICENSE`; the app (re)starts when a node joins a cluster
//!   (`apps/emqx_machine/src/emqx_machine_boot.erl`, the ekka `start`
//!   callback), and `emqx_license` is one of `BASIC_PERMANENT_APPS`, so the
//!   joining node shuts down. Nodes already running are not checked again.
//!   A key that does not parse fails the same app start, so the node never
//!   runs.
//!
//! The simulator cannot check EMQX's RSA signature (it has no key pair of
//! EMQX's): it reads the payload of a key and trusts it. [`test_key`] makes
//! such keys for tests; a key with any other signature text is read the
//! same way. Expiry, session limits and uptime limits are not simulated.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::hocon_paths;
use crate::version::BrokerVersion;

/// Where EMQX reads its local configuration (one constant for the crate).
pub use crate::config::EMQX_CONF;
/// The environment variable that overrides `license.key`.
pub const LICENSE_KEY_ENV: &str = "EMQX_LICENSE__KEY";

/// What the node's licence allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Licence {
    /// Before 5.9: no single-node rule (the Enterprise default licence was
    /// a trial that clusters; open source has no licence app).
    NotChecked,
    /// The community licence (`default`, or a type-2 key): one running node.
    SingleNode,
    /// `evaluation`, a trial (type 0) or an official (type 1) key.
    Cluster,
}

impl Licence {
    /// Whether this licence lets the node run beside other running nodes.
    pub fn allows_cluster(&self) -> bool {
        !matches!(self, Licence::SingleNode)
    }

    /// The licence of a node of `version` with this environment and these
    /// mounted files: `EMQX_LICENSE__KEY` wins over `license.key` in
    /// `emqx.conf` (environment overrides files in EMQX), and neither means
    /// `default`. An unreadable key or config is an error naming its place.
    pub fn from_pod(
        version: &BrokerVersion,
        env: &BTreeMap<String, String>,
        files: &BTreeMap<String, String>,
    ) -> Result<Licence, String> {
        if (version.major, version.minor) < (5, 9) {
            return Ok(Licence::NotChecked);
        }
        let (key, place) = match env.get(LICENSE_KEY_ENV) {
            Some(value) => (unquote(value), format!("env {LICENSE_KEY_ENV}")),
            None => match files.get(EMQX_CONF) {
                Some(conf) => (
                    hocon_paths::lookup(conf, "license.key")
                        .map_err(|e| format!("{EMQX_CONF}: {e}"))?
                        .unwrap_or_else(|| "default".into()),
                    format!("{EMQX_CONF} license.key"),
                ),
                None => ("default".into(), String::new()),
            },
        };
        parse_key(&key, files).map_err(|e| format!("{place}: {e}"))
    }
}

/// An environment value is HOCON: `"evaluation"` and `evaluation` are the same.
fn unquote(value: &str) -> String {
    let trimmed = value.trim();
    trimmed
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(trimmed)
        .to_owned()
}

/// Reads a `license.key` value.
pub fn parse_key(key: &str, files: &BTreeMap<String, String>) -> Result<Licence, String> {
    match key.trim() {
        "default" => Ok(Licence::SingleNode),
        "evaluation" => Ok(Licence::Cluster),
        k if k.starts_with("file://") => {
            let path = &k["file://".len()..];
            let content = files
                .get(path)
                .ok_or_else(|| format!("licence file {path} is not mounted in the pod"))?;
            parse_signed(content)
        }
        k => parse_signed(k),
    }
}

/// A `payload.signature` key (whitespace inside is ignored, as EMQX's
/// `normalize/1` does).
fn parse_signed(key: &str) -> Result<Licence, String> {
    let normal: String = key
        .chars()
        .filter(|c| !matches!(c, ' ' | '\n' | '\r'))
        .collect();
    if normal.is_empty() {
        return Err("the licence key is empty".into());
    }
    let (payload, signature) = normal
        .split_once('.')
        .ok_or("bad_license_format: a licence key is <payload>.<signature>")?;
    let payload = STANDARD
        .decode(payload)
        .map_err(|_| "bad_license_format: the payload is not base64".to_string())?;
    STANDARD
        .decode(signature)
        .map_err(|_| "bad_license_format: the signature is not base64".to_string())?;
    let payload = String::from_utf8(payload)
        .map_err(|_| "bad_license_format: the payload is not text".to_string())?;
    let lines: Vec<&str> = payload.trim().split('\n').map(str::trim).collect();
    if !(lines.len() == 9 || lines.len() == 10) || lines[0] != "220111" {
        return Err(
            "invalid_license_format: the payload is not a 220111 licence (9 or 10 lines)".into(),
        );
    }
    let number = |i: usize, what: &str| {
        lines[i].parse::<u64>().map_err(|_| {
            format!(
                "invalid_license_format: {what} {:?} is not a number",
                lines[i]
            )
        })
    };
    let license_type = number(1, "license type")?;
    number(2, "customer type")?;
    let start = lines[6];
    if start.len() != 8 || start.parse::<u32>().is_err() {
        return Err(format!(
            "invalid_license_format: start date {start:?} is not YYYYMMDD"
        ));
    }
    number(7, "days")?;
    number(8, "max sessions")?;
    match license_type {
        0 | 1 => Ok(Licence::Cluster),
        2 => Ok(Licence::SingleNode),
        other => Err(format!("invalid_license_format: license type {other}")),
    }
}

/// A key in EMQX's format whose payload the simulator reads: licence type
/// `license_type` (0 trial, 1 official, 2 community), customer type 0, a
/// year from 2025-01-01, 1000 sessions, and a signature EMQX would refuse.
pub fn test_key(license_type: u8) -> String {
    let payload = format!(
        "220111\n{license_type}\n0\nsimulated\nsim@example.com\nsandbox\n20250101\n365\n1000"
    );
    format!(
        "{}.{}",
        STANDARD.encode(payload),
        STANDARD.encode("not a real signature")
    )
}

/// Why a node of this licence must shut down when it has joined a cluster
/// whose running nodes are `running` (itself included), as EMQX logs it.
pub fn join_violation(licence: &Licence, running: usize) -> Option<String> {
    (!licence.allows_cluster() && running > 1).then(|| {
        "SINGLE_NODE_LICENSE, make sure this node and peer nodes are configured with a valid license"
            .to_owned()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> BrokerVersion {
        BrokerVersion::parse(s).expect("version")
    }

    fn conf(text: &str) -> BTreeMap<String, String> {
        BTreeMap::from([(EMQX_CONF.to_owned(), text.to_owned())])
    }

    #[test]
    fn default_and_community_keys_are_single_node() {
        let none = BTreeMap::new();
        assert_eq!(
            Licence::from_pod(&v("6.0.1"), &none, &none),
            Ok(Licence::SingleNode)
        );
        assert_eq!(
            Licence::from_pod(&v("5.9.0"), &none, &conf("node.cookie = x")),
            Ok(Licence::SingleNode)
        );
        let community = conf(&format!("license {{ key = \"{}\" }}", test_key(2)));
        assert_eq!(
            Licence::from_pod(&v("6.2.2"), &none, &community),
            Ok(Licence::SingleNode)
        );
        // Before 5.9 there is no single-node rule.
        assert_eq!(
            Licence::from_pod(&v("5.8.9"), &none, &none),
            Ok(Licence::NotChecked)
        );
    }

    #[test]
    fn evaluation_trial_and_official_keys_cluster() {
        let none = BTreeMap::new();
        for (doc, want) in [
            ("license.key = evaluation".to_owned(), Licence::Cluster),
            (
                format!("license {{ key = \"{}\" }}", test_key(0)),
                Licence::Cluster,
            ),
            (
                format!("license.key = \"{}\"", test_key(1)),
                Licence::Cluster,
            ),
            ("license { key = default }".to_owned(), Licence::SingleNode),
        ] {
            assert_eq!(
                Licence::from_pod(&v("6.0.1"), &none, &conf(&doc)),
                Ok(want),
                "{doc}"
            );
        }
        // The environment wins over emqx.conf, quoted or not.
        let env = BTreeMap::from([(LICENSE_KEY_ENV.to_owned(), "\"evaluation\"".to_owned())]);
        assert_eq!(
            Licence::from_pod(&v("6.0.1"), &env, &conf("license.key = default")),
            Ok(Licence::Cluster)
        );
        // file:// keys are read from the mounted file.
        let mut files = conf("license.key = \"file:///etc/lic/key\"");
        files.insert("/etc/lic/key".into(), format!("{}\n", test_key(1)));
        assert_eq!(
            Licence::from_pod(&v("6.0.1"), &none, &files),
            Ok(Licence::Cluster)
        );
    }

    #[test]
    fn unreadable_keys_name_where_they_came_from() {
        let none = BTreeMap::new();
        for (doc, want) in [
            ("license.key = \"nope\"", "bad_license_format"),
            ("license.key = \"bm9wZQ==.c2ln\"", "invalid_license_format"),
            ("license.key = \"!!!.c2ln\"", "not base64"),
            ("license.key = \"file:///missing\"", "not mounted"),
            ("license {", "unterminated"),
        ] {
            let e = Licence::from_pod(&v("6.0.1"), &none, &conf(doc)).expect_err(doc);
            assert!(e.contains(EMQX_CONF) && e.contains(want), "{doc}: {e}");
        }
        let env = BTreeMap::from([(LICENSE_KEY_ENV.to_owned(), "garbage".to_owned())]);
        let e = Licence::from_pod(&v("6.0.1"), &env, &none).expect_err("env");
        assert!(e.starts_with("env EMQX_LICENSE__KEY"), "{e}");
        // A payload whose licence type is unknown.
        let bad = format!(
            "{}.c2ln",
            STANDARD.encode("220111\n7\n0\na\nb\nc\n20250101\n1\n1")
        );
        assert!(parse_key(&bad, &none).is_err());
    }

    #[test]
    fn only_a_single_node_licence_with_company_is_violated() {
        assert!(join_violation(&Licence::SingleNode, 1).is_none());
        let e = join_violation(&Licence::SingleNode, 2).expect("violation");
        assert!(e.starts_with("SINGLE_NODE_LICENSE"));
        assert!(join_violation(&Licence::Cluster, 5).is_none());
        assert!(join_violation(&Licence::NotChecked, 5).is_none());
    }
}
