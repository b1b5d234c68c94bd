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

#[cfg(test)]
mod tests {
    use super::*;

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
