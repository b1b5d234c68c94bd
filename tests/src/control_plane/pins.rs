//! The version pins of the Go binaries (`k8s-binaries/pins.env`) and the check
//! that the committed `go.mod` files agree with them.
//!
//! Pure: parsing and comparison only, so hostile files give errors, not panics.

use std::collections::BTreeMap;

/// The pinned versions, as read from `pins.env`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pins {
    /// `k8s.io/kubernetes` module version, e.g. `v1.35.4`.
    pub kubernetes: String,
    /// Version of the staging modules (`k8s.io/api` ...), e.g. `v0.35.4`.
    pub kubernetes_staging: String,
    /// `go.etcd.io/etcd/server/v3` version.
    pub etcd: String,
    /// `helm.sh/helm/v3` version.
    pub helm: String,
}

/// What is wrong with `pins.env` or a `go.mod`.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PinsError {
    /// A line is not `KEY=VALUE`.
    #[error("pins.env line {line}: expected KEY=VALUE, found {text:?}")]
    Syntax { line: usize, text: String },
    /// A required key is absent.
    #[error("pins.env: missing {0}")]
    Missing(&'static str),
    /// A value is not a Go module version (`vMAJOR.MINOR.PATCH`).
    #[error("pins.env: {key} = {value:?} is not a Go module version like v1.2.3")]
    NotAVersion { key: &'static str, value: String },
    /// A `go.mod` disagrees with the pins.
    #[error(
        "{file}: {module} is {found:?}, pins.env says {pinned} (run k8s-binaries/update-go-modules.sh)"
    )]
    GoModMismatch {
        file: String,
        module: String,
        found: Option<String>,
        pinned: String,
    },
}

impl Pins {
    /// Parses `pins.env`: `KEY=VALUE` lines, `#` comments and blank lines.
    pub fn parse(text: &str) -> Result<Pins, PinsError> {
        let mut values = BTreeMap::new();
        for (index, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((key, value)) = line.split_once('=') else {
                return Err(PinsError::Syntax {
                    line: index + 1,
                    text: raw.to_string(),
                });
            };
            values.insert(key.trim().to_string(), value.trim().to_string());
        }
        let get = |key: &'static str| -> Result<String, PinsError> {
            let value = values.get(key).ok_or(PinsError::Missing(key))?;
            if is_go_version(value) {
                Ok(value.clone())
            } else {
                Err(PinsError::NotAVersion {
                    key,
                    value: value.clone(),
                })
            }
        };
        Ok(Pins {
            kubernetes: get("KUBERNETES_VERSION")?,
            kubernetes_staging: get("KUBERNETES_STAGING_VERSION")?,
            etcd: get("ETCD_VERSION")?,
            helm: get("HELM_VERSION")?,
        })
    }

    /// `(major, minor)` of the Kubernetes pin, e.g. `("1", "35")`.
    pub fn kubernetes_major_minor(&self) -> (String, String) {
        let mut parts = self.kubernetes.trim_start_matches('v').split('.');
        let major = parts.next().unwrap_or_default().to_string();
        let minor = parts.next().unwrap_or_default().to_string();
        (major, minor)
    }
}

fn is_go_version(value: &str) -> bool {
    let Some(rest) = value.strip_prefix('v') else {
        return false;
    };
    let core = rest.split(['-', '+']).next().unwrap_or_default();
    let parts: Vec<&str> = core.split('.').collect();
    parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()))
}

/// The version `go.mod` selects for `module`: a `replace module => module vX`
/// wins over a `require module vX`.
pub fn go_mod_version(go_mod: &str, module: &str) -> Option<String> {
    let mut required = None;
    let mut replaced = None;
    for raw in go_mod.lines() {
        let line = raw.split("//").next().unwrap_or_default().trim();
        let line = line
            .strip_prefix("require ")
            .or_else(|| line.strip_prefix("replace "))
            .unwrap_or(line)
            .trim();
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            [m, "=>", target, version] if *m == module && *target == module => {
                replaced = Some((*version).to_string());
            }
            [m, version] if *m == module => required = Some((*version).to_string()),
            _ => {}
        }
    }
    replaced.or(required)
}

/// Checks one `go.mod` against the versions it must select.
pub fn check_go_mod(file: &str, go_mod: &str, expected: &[(&str, &str)]) -> Result<(), PinsError> {
    for (module, pinned) in expected {
        let found = go_mod_version(go_mod, module);
        if found.as_deref() != Some(*pinned) {
            return Err(PinsError::GoModMismatch {
                file: file.to_string(),
                module: (*module).to_string(),
                found,
                pinned: (*pinned).to_string(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const PINS: &str = "# c\nKUBERNETES_VERSION=v1.35.4\nKUBERNETES_STAGING_VERSION=v0.35.4\n\nETCD_VERSION=v3.6.5\nHELM_VERSION=v3.22.0\n";

    #[test]
    fn parses_the_committed_pins() {
        let text = include_str!("../../k8s-binaries/pins.env");
        let pins = Pins::parse(text).expect("committed pins parse");
        assert_eq!(pins.kubernetes_major_minor().1, "35");
        assert_eq!(Pins::parse(PINS).expect("parse").etcd, "v3.6.5");
    }

    #[test]
    fn hostile_pins_are_errors_naming_the_key() {
        assert_eq!(
            Pins::parse("garbage"),
            Err(PinsError::Syntax {
                line: 1,
                text: "garbage".into()
            })
        );
        assert_eq!(
            Pins::parse(&PINS.replace("ETCD_VERSION=v3.6.5", "")),
            Err(PinsError::Missing("ETCD_VERSION"))
        );
        for bad in [
            "latest",
            "v1.2",
            "1.2.3",
            "v1.2.x",
            "v1..3",
            "v1.2.3; rm -rf /",
            "",
        ] {
            let err = Pins::parse(&PINS.replace("v3.22.0", bad)).expect_err(bad);
            assert!(err.to_string().contains("HELM_VERSION"), "{err}");
        }
    }

    #[test]
    fn committed_go_mods_agree_with_the_pins() {
        let pins = Pins::parse(include_str!("../../k8s-binaries/pins.env")).expect("pins");
        let kubernetes = include_str!("../../k8s-binaries/kubernetes/go.mod");
        check_go_mod(
            "kubernetes/go.mod",
            kubernetes,
            &[
                ("k8s.io/kubernetes", &pins.kubernetes),
                ("k8s.io/api", &pins.kubernetes_staging),
                ("k8s.io/apiserver", &pins.kubernetes_staging),
                ("k8s.io/kubectl", &pins.kubernetes_staging),
            ],
        )
        .expect("kubernetes go.mod");
        check_go_mod(
            "etcd/go.mod",
            include_str!("../../k8s-binaries/etcd/go.mod"),
            &[("go.etcd.io/etcd/server/v3", &pins.etcd)],
        )
        .expect("etcd go.mod");
        check_go_mod(
            "helm/go.mod",
            include_str!("../../k8s-binaries/helm/go.mod"),
            &[("helm.sh/helm/v3", &pins.helm)],
        )
        .expect("helm go.mod");
    }

    #[test]
    fn mismatch_names_module_and_file() {
        let err = check_go_mod(
            "x/go.mod",
            "require k8s.io/api v0.1.0\n",
            &[("k8s.io/api", "v0.35.4")],
        )
        .expect_err("mismatch");
        let text = err.to_string();
        assert!(
            text.contains("x/go.mod") && text.contains("k8s.io/api") && text.contains("v0.35.4")
        );
        assert_eq!(go_mod_version("", "k8s.io/api"), None);
        assert_eq!(
            go_mod_version(
                "require (\n\tk8s.io/api v0.0.0\n)\nreplace k8s.io/api => k8s.io/api v0.35.4\n",
                "k8s.io/api"
            ),
            Some("v0.35.4".into())
        );
    }
}
