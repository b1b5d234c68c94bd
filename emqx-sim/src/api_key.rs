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

/// Parses a bootstrap file. Blank lines are skipped; one bad line rejects the
/// whole file, as EMQX aborts loading. Open source accepts only `administrator`.
pub fn parse_bootstrap_file(contents: &str, edition: Edition) -> Result<Vec<ApiKey>, String> {
    let mut keys = Vec::new();
    for (i, raw) in contents.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() {
            continue;
        }
        let n = i + 1;
        let mut parts = line.splitn(3, ':');
        let key = parts.next().unwrap_or_default();
        let Some(secret) = parts.next() else {
            return Err(format!("line {n}: expected key:secret[:role]"));
        };
        let role = match parts.next() {
            None | Some("administrator") => ApiRole::Administrator,
            Some("viewer") if edition == Edition::Enterprise => ApiRole::Viewer,
            Some("publisher") if edition == Edition::Enterprise => ApiRole::Publisher,
            Some(other) => return Err(format!("line {n}: role `{other}` is not allowed")),
        };
        if key.is_empty() || secret.is_empty() {
            return Err(format!("line {n}: key and secret must not be empty"));
        }
        keys.push(ApiKey {
            key: key.to_string(),
            secret: secret.to_string(),
            role,
        });
    }
    Ok(keys)
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
    fn parses_roles_and_rejects_bad_lines() {
        let keys = parse_bootstrap_file("a:b\n\n c:d:viewer \ne:f:publisher", Edition::Enterprise)
            .expect("valid");
        assert_eq!(keys.len(), 3);
        assert_eq!(keys[1].role, ApiRole::Viewer);
        assert!(parse_bootstrap_file("a:b:viewer", Edition::Opensource).is_err());
        assert!(parse_bootstrap_file("a:b:root", Edition::Enterprise).is_err());
        assert!(parse_bootstrap_file(":b", Edition::Enterprise).is_err());
        assert!(parse_bootstrap_file("a:", Edition::Enterprise).is_err());
        let e = parse_bootstrap_file("a:b\nzzz", Edition::Enterprise).expect_err("bad");
        assert!(e.contains("line 2"));
    }
}
