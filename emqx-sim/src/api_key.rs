//! API keys from the bootstrap file (`key:secret[:role]`, one per line).

use super::version::Edition;

/// What a key may do (EMQX Enterprise RBAC, 5.4+).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiRole {
    /// Everything.
    Administrator,
    /// Read-only (`GET`).
    Viewer,
    /// Only the publish API, which the simulator does not serve.
    Publisher,
}

/// One accepted key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKey {
    /// Key (user part of HTTP Basic).
    pub key: String,
    /// Secret (password part).
    pub secret: String,
    /// Role.
    pub role: ApiRole,
}

impl ApiKey {
    /// An administrator key.
    pub fn administrator(key: impl Into<String>, secret: impl Into<String>) -> ApiKey {
        ApiKey {
            key: key.into(),
            secret: secret.into(),
            role: ApiRole::Administrator,
        }
    }
}

/// What a node made of its bootstrap file: the keys it loaded, and the line
/// that stopped it, if one did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BootstrapLoad {
    /// Keys of the lines before the first bad one, in file order.
    pub keys: Vec<ApiKey>,
    /// Why loading stopped early (`line N: …`); the lines after it are never read.
    pub stopped: Option<String>,
}

/// Reads a 5.x/6.x bootstrap file as `add_bootstrap_file/4` in
/// `apps/emqx_management/src/emqx_mgmt_auth.erl` (v5.8.9, e5.10.4, e6.0.1)
/// does. Each line is `string:trim`med; blank lines are skipped; the rest
/// must match `(.+):(.+)(?::(.+))?$` compiled `ungreedy`: the key runs to
/// the first `:` after at least one character, the secret to the next `:`
/// that has something after it, and the rest is the role, checked by
/// `valid_role/1` (open source: `administrator` only; Enterprise and every
/// build from 5.9: also `viewer`, `publisher`, `emqx_dashboard_rbac.erl`).
/// The first bad line throws: keys of earlier lines stay loaded, later lines
/// are never read — and the node boots anyway (`try_init_bootstrap_file/0`
/// ignores the error). A secret with a `:` in it is therefore read as
/// `secret:role` and stops the file.
pub fn parse_bootstrap_file(contents: &str, edition: Edition) -> BootstrapLoad {
    let mut load = BootstrapLoad::default();
    for (i, raw) in contents.split('\n').enumerate() {
        let line = raw.trim();
        if line.is_empty() {
            continue;
        }
        match parse_bootstrap_line(line, edition) {
            Ok(key) => load.keys.push(key),
            Err(reason) => {
                load.stopped = Some(format!("line {}: {reason}", i + 1));
                break;
            }
        }
    }
    load
}

/// One trimmed, non-blank line, by the regex's ungreedy matching.
fn parse_bootstrap_line(line: &str, edition: Edition) -> Result<ApiKey, String> {
    let invalid = || "invalid_format (expected key:secret[:role])".to_string();
    // The key's `.+` needs one character: a `:` at position 0 is part of it.
    let colon = line
        .bytes()
        .skip(1)
        .position(|b| b == b':')
        .map(|p| p + 1)
        .ok_or_else(invalid)?;
    let (key, rest) = (&line[..colon], &line[colon + 1..]);
    if rest.is_empty() {
        return Err(invalid());
    }
    // The secret stops at the first `:` (after its first character) that
    // leaves at least one character for the role.
    let split = rest
        .bytes()
        .enumerate()
        .skip(1)
        .find(|&(i, b)| b == b':' && i + 1 < rest.len())
        .map(|(i, _)| i);
    let (secret, role) = match split {
        Some(i) => (&rest[..i], Some(&rest[i + 1..])),
        None => (rest, None),
    };
    let role = match role {
        None | Some("administrator") => ApiRole::Administrator,
        Some("viewer") if edition == Edition::Enterprise => ApiRole::Viewer,
        Some("publisher") if edition == Edition::Enterprise => ApiRole::Publisher,
        Some(other) => return Err(format!("invalid_role `{other}`")),
    };
    Ok(ApiKey {
        key: key.to_string(),
        secret: secret.to_string(),
        role,
    })
}

/// Parses a 4.4 bootstrap apps file as `init_bootstrap_apps/3` in
/// `apps/emqx_management/src/emqx_mgmt_auth.erl` (v4.4.19) does: every line
/// read by `file:read_line` must match `(.+):(.+$)` (ungreedy), so the AppID
/// runs to the first `:` after at least one character and the secret is the
/// rest of the line, `:` and spaces included. No line is skipped: a blank
/// line is "invalid format", and that error fails `emqx_management`'s start
/// (`emqx_mgmt_app.erl`), so the node does not boot. 4.4 has no roles.
pub fn parse_apps_file_v4(contents: &str) -> Result<Vec<ApiKey>, String> {
    let mut keys = Vec::new();
    let mut rest = contents;
    let mut n = 0;
    while !rest.is_empty() {
        n += 1;
        let (line, next) = rest.split_once('\n').unwrap_or((rest, ""));
        rest = next;
        let split = line
            .char_indices()
            .skip(1)
            .find(|&(_, c)| c == ':')
            .map(|(i, _)| (&line[..i], &line[i + 1..]));
        match split {
            Some((app_id, secret)) if !secret.is_empty() => {
                keys.push(ApiKey::administrator(app_id, secret));
            }
            _ => return Err(format!("line {n}: invalid format (expected appid:secret)")),
        }
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v4_apps_follow_4_4_rules() {
        let keys = parse_apps_file_v4("a:b\nop:se:cret \n").expect("valid");
        assert_eq!(
            keys,
            vec![
                ApiKey::administrator("a", "b"),
                ApiKey::administrator("op", "se:cret ")
            ]
        );
        // Blank lines are not skipped, anywhere.
        for bad in ["a:b\n\nc:d", "\na:b", "a:b\n\n", "a:b\n \n"] {
            let e = parse_apps_file_v4(bad).expect_err(bad);
            assert!(e.contains("invalid format"), "{bad:?}: {e}");
        }
        assert!(parse_apps_file_v4("a:").is_err());
        assert!(parse_apps_file_v4("nocolon").is_err());
        // `.+` needs one character before the colon; `:` itself is one.
        assert_eq!(
            parse_apps_file_v4("::s").expect("valid"),
            vec![ApiKey::administrator(":", "s")]
        );
        assert_eq!(parse_apps_file_v4("").expect("empty file"), vec![]);
    }

    #[test]
    fn parses_roles_and_stops_at_the_first_bad_line() {
        let load = parse_bootstrap_file("a:b\n\n c:d:viewer \ne:f:publisher", Edition::Enterprise);
        assert_eq!(load.stopped, None);
        assert_eq!(load.keys.len(), 3);
        assert_eq!(load.keys[1].role, ApiRole::Viewer);
        assert_eq!(load.keys[1].secret, "d");
        let load = parse_bootstrap_file("a:b:viewer", Edition::Opensource);
        assert!(load.keys.is_empty());
        assert!(load.stopped.expect("stops").contains("invalid_role"));
        for bad in ["a:b:root", ":b", "a:", "nocolon", ":"] {
            let load = parse_bootstrap_file(bad, Edition::Enterprise);
            assert!(load.keys.is_empty(), "{bad:?}");
            assert!(load.stopped.is_some(), "{bad:?}");
        }
        // Keys before the bad line stay, keys after it are never read.
        let load = parse_bootstrap_file("a:b\nzzz\nop:secret", Edition::Enterprise);
        assert_eq!(load.keys, vec![ApiKey::administrator("a", "b")]);
        assert!(load.stopped.expect("stops").starts_with("line 2"));
    }

    #[test]
    fn colons_split_as_the_ungreedy_regex_does() {
        let one = |line: &str| {
            let load = parse_bootstrap_file(line, Edition::Enterprise);
            (load.keys.first().cloned(), load.stopped)
        };
        // A user secret with a colon: the rest is a role, and not a valid one.
        let (key, stopped) = one("user:pa:ss");
        assert_eq!(key, None);
        assert!(stopped.expect("stops").contains("invalid_role `ss`"));
        // ...unless it happens to name one.
        assert_eq!(
            one("user:pa:viewer").0.map(|k| (k.secret, k.role)),
            Some(("pa".into(), ApiRole::Viewer))
        );
        // A trailing colon has nothing after it: part of the secret.
        assert_eq!(one("a:b:").0.map(|k| k.secret), Some("b:".into()));
        // The secret takes at least one character, even a colon.
        assert_eq!(one("a::").0.map(|k| k.secret), Some(":".into()));
        assert_eq!(one("a::b").0.map(|k| k.secret), Some(":b".into()));
        // A leading colon belongs to the key.
        assert_eq!(one("::s").0.map(|k| k.key), Some(":".into()));
        // Whitespace around the line goes, inside it stays.
        assert_eq!(
            one("\t k y:s e \r").0.map(|k| (k.key, k.secret)),
            Some(("k y".into(), "s e".into()))
        );
    }
}
