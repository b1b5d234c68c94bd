//! What goes into the two Secrets EMQX boots with, decided once when they
//! are created: the bootstrap API-key file and the Erlang cookie.
//!
//! **Bootstrap file.** Like the Go operator 2.2.29
//! (`controllers/apps/v2beta1/add_bootstrap_resource.go`), user keys come
//! inline or through `secretRef` (the key and the secret each read from a
//! Secret entry), one `key:secret` line each. Unlike it, the operator's own
//! key is the *first* line: EMQX stops reading the file at the first line it
//! cannot read (`emqx_mgmt_auth.erl`, v5.8.9/e6.0.1), so with the operator
//! last, one bad user line left the operator locked out for good (the file
//! is written once). Values read through `secretRef` are checked by
//! [`emqx_crd::bootstrap_keys`], as the webhook checks inline ones; a bad one
//! fails the pass with the field and the Secret named, before anything is
//! written.
//!
//! **Cookie.** `node.cookie` from `spec.config.data` when the user set it,
//! else 64 random characters — Go's `generateNodeCookieSecret`. Pods get it
//! as `EMQX_NODE__COOKIE`, which EMQX's `bin/emqx` (v5.8.9) prefers over
//! `node.cookie` in `emqx.conf`, so the Secret is what counts.

use emqx_crd::bootstrap_keys::{OPERATOR_API_KEY, key_problem, secret_problem};
use emqx_crd::v2beta1::{BootstrapAPIKey, EMQXSpec, KeyRef};
use std::collections::BTreeMap;

/// A user key that cannot go into the file: the field at fault and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct KeyError {
    /// Field path, e.g. `spec.bootstrapAPIKeys[1].secretRef.secret`.
    pub path: String,
    /// What is wrong, naming the Secret where one is involved.
    pub message: String,
}

/// Entries of Secrets read for `secretRef`s, by (Secret name, entry):
/// `None` for an entry the Secret lacks; a Secret that does not exist has
/// no entries at all.
pub type SecretEntries = BTreeMap<(String, String), Option<Vec<u8>>>;

/// The Secret entries the spec's `secretRef`s name, for the shell to read.
pub fn referenced_entries(spec: &EMQXSpec) -> Vec<(String, String)> {
    spec.bootstrap_api_keys
        .iter()
        .flatten()
        .filter_map(|k| k.secret_ref.as_ref())
        .flat_map(|r| [&r.key, &r.secret])
        .map(|r| (r.secret_name.clone(), r.secret_key.clone()))
        .collect()
}

/// In the default least-privilege mode the reconciler may not read any
/// Secret (`cluster_secrets`), so a key behind a `secretRef` cannot be put
/// into the file: refused, naming the first such field and the chart value
/// that allows reading, rather than creating a file without the user's key.
pub fn refuse_secret_refs(spec: &EMQXSpec) -> Result<(), KeyError> {
    let first = spec
        .bootstrap_api_keys
        .iter()
        .flatten()
        .position(|k| k.secret_ref.is_some());
    match first {
        None => Ok(()),
        Some(i) => Err(KeyError {
            path: format!("spec.bootstrapAPIKeys[{i}].secretRef"),
            message: "the reconciler reads no Secret in its default, least-privilege mode: \
                      give this key inline (key and secret), or install the chart with \
                      reconciler.readClusterSecrets=true so that referenced Secrets can be read"
                .into(),
        }),
    }
}

/// The bootstrap file: the operator's key first, then the user's keys in
/// spec order. `secrets` holds what [`referenced_entries`] named.
pub fn bootstrap_file(
    spec: &EMQXSpec,
    operator_secret: &str,
    secrets: &SecretEntries,
) -> Result<String, KeyError> {
    let mut lines = vec![format!("{OPERATOR_API_KEY}:{operator_secret}")];
    for (i, key) in spec.bootstrap_api_keys.iter().flatten().enumerate() {
        if let Some((k, s)) = user_key(i, key, secrets)? {
            lines.push(format!("{k}:{s}"));
        }
    }
    Ok(lines.join("\n"))
}

fn user_key(
    i: usize,
    key: &BootstrapAPIKey,
    secrets: &SecretEntries,
) -> Result<Option<(String, String)>, KeyError> {
    let path = format!("spec.bootstrapAPIKeys[{i}]");
    if let Some(r) = &key.secret_ref {
        let k = entry(&format!("{path}.secretRef.key"), &r.key, secrets)?;
        let s = entry(&format!("{path}.secretRef.secret"), &r.secret, secrets)?;
        check(&format!("{path}.secretRef.key"), &r.key, key_problem(&k))?;
        check(
            &format!("{path}.secretRef.secret"),
            &r.secret,
            secret_problem(&s),
        )?;
        return Ok(Some((k, s)));
    }
    // Inline keys passed the webhook; a key that lacks either half (the
    // webhook denies it) is left out rather than written as a broken line.
    match (&key.key, &key.secret) {
        (Some(k), Some(s)) => Ok(Some((k.clone(), s.clone()))),
        _ => Ok(None),
    }
}

fn entry(path: &str, r: &KeyRef, secrets: &SecretEntries) -> Result<String, KeyError> {
    let found = secrets
        .get(&(r.secret_name.clone(), r.secret_key.clone()))
        .ok_or_else(|| KeyError {
            path: path.to_owned(),
            message: format!("Secret {} not found", r.secret_name),
        })?;
    let bytes = found.as_ref().ok_or_else(|| KeyError {
        path: path.to_owned(),
        message: format!("Secret {} has no entry {}", r.secret_name, r.secret_key),
    })?;
    String::from_utf8(bytes.clone()).map_err(|_| KeyError {
        path: path.to_owned(),
        message: format!(
            "entry {} of Secret {} is not UTF-8 text",
            r.secret_key, r.secret_name
        ),
    })
}

fn check(path: &str, r: &KeyRef, problem: Option<String>) -> Result<(), KeyError> {
    match problem {
        None => Ok(()),
        Some(problem) => Err(KeyError {
            path: path.to_owned(),
            message: format!(
                "the value of entry {} in Secret {} {problem}",
                r.secret_key, r.secret_name
            ),
        }),
    }
}

/// The cookie the user set as `node.cookie` in `spec.config.data`; `None`
/// when unset, empty, or not readable by [`emqx_crd::hocon`] (logged: the
/// webhook warns about it at admission).
pub fn user_cookie(spec: &EMQXSpec) -> Option<String> {
    let data = spec.config.as_ref()?.data.as_deref()?;
    match emqx_crd::hocon::lookup_string(data, "node.cookie") {
        Ok(cookie) => cookie.filter(|c| !c.is_empty()),
        Err(error) => {
            tracing::warn!(%error, "node.cookie in spec.config.data not read; generating a cookie");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use emqx_crd::v2beta1::{Config, SecretRef};

    fn inline(k: &str, s: &str) -> BootstrapAPIKey {
        BootstrapAPIKey {
            key: Some(k.into()),
            secret: Some(s.into()),
            secret_ref: None,
        }
    }

    fn by_ref(secret: &str, key_entry: &str, secret_entry: &str) -> BootstrapAPIKey {
        let r = |entry: &str| KeyRef {
            secret_name: secret.into(),
            secret_key: entry.into(),
        };
        BootstrapAPIKey {
            key: None,
            secret: None,
            secret_ref: Some(SecretRef {
                key: r(key_entry),
                secret: r(secret_entry),
            }),
        }
    }

    #[test]
    fn secret_refs_are_refused_naming_the_first_field_when_no_secret_may_be_read() {
        assert_eq!(refuse_secret_refs(&spec(vec![inline("a", "b")])), Ok(()));
        let refused = refuse_secret_refs(&spec(vec![
            inline("a", "b"),
            by_ref("keys", "k", "s"),
            by_ref("more", "k", "s"),
        ]))
        .unwrap_err();
        assert_eq!(refused.path, "spec.bootstrapAPIKeys[1].secretRef");
        assert!(
            refused
                .message
                .contains("reconciler.readClusterSecrets=true")
        );
    }

    fn spec(keys: Vec<BootstrapAPIKey>) -> EMQXSpec {
        EMQXSpec {
            bootstrap_api_keys: Some(keys),
            ..Default::default()
        }
    }

    fn entries(list: &[(&str, &str, Option<&str>)]) -> SecretEntries {
        list.iter()
            .map(|(s, e, v)| {
                (
                    (s.to_string(), e.to_string()),
                    v.map(|v| v.as_bytes().to_vec()),
                )
            })
            .collect()
    }

    #[test]
    fn operator_key_first_then_inline_and_referenced_keys() {
        let spec = spec(vec![
            inline("a", "sa1"),
            by_ref("user-keys", "name", "pass"),
        ]);
        assert_eq!(
            referenced_entries(&spec),
            [
                ("user-keys".to_string(), "name".to_string()),
                ("user-keys".to_string(), "pass".to_string())
            ]
        );
        let secrets = entries(&[
            ("user-keys", "name", Some("from_secret")),
            ("user-keys", "pass", Some("s3cret")),
        ]);
        assert_eq!(
            bootstrap_file(&spec, "op", &secrets),
            Ok("emqx-operator-controller:op\na:sa1\nfrom_secret:s3cret".into())
        );
        assert_eq!(
            bootstrap_file(&EMQXSpec::default(), "op", &SecretEntries::new()),
            Ok("emqx-operator-controller:op".into())
        );
    }

    #[test]
    fn unreadable_references_name_the_field_and_the_secret() {
        let spec = spec(vec![
            inline("a", "sa1"),
            by_ref("user-keys", "name", "pass"),
        ]);
        let cases = [
            (entries(&[]), "secretRef.key", "Secret user-keys not found"),
            (
                entries(&[
                    ("user-keys", "name", Some("k")),
                    ("user-keys", "pass", None),
                ]),
                "secretRef.secret",
                "has no entry pass",
            ),
            (
                entries(&[
                    ("user-keys", "name", Some("k")),
                    ("user-keys", "pass", Some("pa:ss")),
                ]),
                "secretRef.secret",
                "role",
            ),
            (
                entries(&[
                    ("user-keys", "name", Some("k\n")),
                    ("user-keys", "pass", Some("p")),
                ]),
                "secretRef.key",
                "control characters",
            ),
            (
                entries(&[
                    ("user-keys", "name", Some(OPERATOR_API_KEY)),
                    ("user-keys", "pass", Some("p")),
                ]),
                "secretRef.key",
                "operator",
            ),
        ];
        for (secrets, field, words) in cases {
            let e = bootstrap_file(&spec, "op", &secrets).expect_err(words);
            assert_eq!(e.path, format!("spec.bootstrapAPIKeys[1].{field}"), "{e}");
            assert!(e.message.contains(words), "{e}");
        }
        let mut secrets = entries(&[("user-keys", "pass", Some("p"))]);
        secrets.insert(("user-keys".into(), "name".into()), Some(vec![0xff, 0xfe]));
        let e = bootstrap_file(&spec, "op", &secrets).expect_err("not UTF-8");
        assert!(e.message.contains("UTF-8"), "{e}");
    }

    #[test]
    fn the_cookie_comes_from_node_cookie_in_the_config() {
        let with = |data: &str| EMQXSpec {
            config: Some(Config {
                data: Some(data.into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(
            user_cookie(&with("node {\n  cookie = \"my-cookie\"\n}")),
            Some("my-cookie".into())
        );
        assert_eq!(user_cookie(&with("node.cookie = c2")), Some("c2".into()));
        assert_eq!(user_cookie(&with("log.console.level = debug")), None);
        assert_eq!(user_cookie(&with("node.cookie = \"\"")), None);
        assert_eq!(user_cookie(&with("node.cookie = ${X}")), None);
        assert_eq!(user_cookie(&EMQXSpec::default()), None);
    }
}
