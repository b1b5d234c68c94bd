//! What EMQX 5/6 can read from the bootstrap API-key file the operator
//! writes (`<name>-bootstrap-api-key`, one `key:secret` line per key), so a
//! key that would break the file is refused — by the webhook for inline
//! keys, by the reconciler for keys read through `secretRef`.
//!
//! EMQX (`add_bootstrap_file/4` in `apps/emqx_management/src/emqx_mgmt_auth.erl`,
//! v5.8.9 and e6.0.1) `string:trim`s each line and matches it against
//! `(.+):(.+)(?::(.+))?$` compiled `ungreedy`: the key ends at the first
//! `:`, and a `:` in the secret starts a role, which must be a valid role
//! name. The first line that fails stops the whole file — the node still
//! boots, but no key after that line exists. The operator's own key is
//! written first, so a bad user line cannot take it away; a user key may
//! still not reuse its name, as the last line for a key wins.

/// The key the operator calls EMQX's API with (the Go operator's name).
pub const OPERATOR_API_KEY: &str = "emqx-operator-controller";

/// Why `key` cannot be written as the key of a bootstrap-file line.
pub fn key_problem(key: &str) -> Option<String> {
    if key == OPERATOR_API_KEY {
        return Some(format!(
            "`{OPERATOR_API_KEY}` is the operator's own key; EMQX keeps the last line for a key, so the operator would lose its access"
        ));
    }
    part_problem(key)
}

/// Why `secret` cannot be written as the secret of a bootstrap-file line.
pub fn secret_problem(secret: &str) -> Option<String> {
    part_problem(secret)
}

fn part_problem(value: &str) -> Option<String> {
    if value.is_empty() {
        return Some("must not be empty".into());
    }
    if value.contains(':') {
        return Some(
            "must not contain `:`: EMQX's bootstrap file is `key:secret[:role]`, so the part after a `:` would be read as a role, and the first unreadable line stops EMQX loading every key after it".into(),
        );
    }
    if value.chars().any(char::is_control) {
        return Some(
            "must not contain control characters (a line break would split the line in EMQX's bootstrap file)".into(),
        );
    }
    if value.trim() != value {
        return Some(
            "must not start or end with whitespace: EMQX trims each line of its bootstrap file"
                .into(),
        );
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_what_emqx_reads_back_unchanged() {
        for ok in ["k", "my_key-1", "a b", "ü→ß", "p@ss/w0rd=="] {
            assert_eq!(key_problem(ok), None, "{ok:?}");
            assert_eq!(secret_problem(ok), None, "{ok:?}");
        }
    }

    #[test]
    fn refuses_what_emqx_would_misread() {
        for bad in [
            "", "pa:ss", ":", "a\nb", "a\rb", "tab\t", " lead", "trail ", "\u{0}",
        ] {
            assert!(secret_problem(bad).is_some(), "{bad:?}");
            assert!(key_problem(bad).is_some(), "{bad:?}");
        }
        assert!(secret_problem("pa:ss").expect("refused").contains("role"));
        assert!(
            key_problem(OPERATOR_API_KEY)
                .expect("refused")
                .contains("operator")
        );
        // The operator's name is only reserved as a key.
        assert_eq!(secret_problem(OPERATOR_API_KEY), None);
    }
}
