//! Whether an object gives EMQX 5.9+ (6.x) a licence that lets nodes
//! cluster. EMQX's facts (source at 6.0.1, unchanged at 6.2.2):
//!
//! - `apps/emqx_license/src/emqx_license_schema.erl`: `license.key`
//!   defaults to `default`, the community licence;
//!   `emqx_license_parser.erl`: the community licence is single-node
//!   (`is_single_node/1`); `evaluation` and signed trial/official keys are not.
//! - `emqx_license_app.erl` + `emqx_license_checker.erl` (`no_violation/1`):
//!   a node whose licence is single-node fails its licence app when it
//!   joins a cluster with another running node, and
//!   `apps/emqx_machine/src/emqx_machine_boot.erl` (`BASIC_PERMANENT_APPS`)
//!   then shuts the node down. Every blue-green runs old and new nodes
//!   together, so such a cluster can never be upgraded.
//! - The key can also reach a node without the object saying so: set at
//!   run time through the dashboard, the REST API or `emqx ctl license
//!   update`, it lives in the cluster's `cluster.hocon`, which a joining
//!   node fetches from its peers (the comment in `emqx_license_app.erl`).
//!   That is why the webhook warns instead of refusing.

use crate::hocon;
use crate::image::{split_tag, tag_version};
use k8s_openapi::api::core::v1::EnvVar;

/// The environment variable that sets `license.key`.
pub const LICENSE_KEY_ENV: &str = "EMQX_LICENSE__KEY";

/// What the object says about the licence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SpecLicence {
    /// No `license.key` in `config.data` and no `EMQX_LICENSE__KEY`: the
    /// community licence, one node.
    Missing,
    /// `license.key = default`: the same.
    Default,
    /// A key (or `evaluation`), set where the node reads it.
    Key,
    /// `config.data` could not be read to find out.
    Unreadable(String),
}

impl SpecLicence {
    /// Whether nodes started from this object run on the single-node licence
    /// (unless a key reaches them from the cluster's own configuration).
    pub fn single_node(&self) -> bool {
        matches!(self, SpecLicence::Missing | SpecLicence::Default)
    }
}

/// Whether `image` runs EMQX 5.9 or later, where the single-node licence
/// applies (a tag that names no version is not assumed to).
pub fn has_single_node_licence(image: &str) -> bool {
    split_tag(image)
        .1
        .and_then(|t| tag_version(t.strip_prefix('e').unwrap_or(t)))
        .is_some_and(|v| {
            let major = v.first().copied().unwrap_or(0);
            let minor = v.get(1).copied().unwrap_or(0);
            (major, minor) >= (5, 9)
        })
}

/// The licence `config.data` and the pod templates' env give the nodes;
/// the environment wins over the file, as in EMQX.
pub fn spec_licence<'a>(
    config_data: Option<&str>,
    envs: impl IntoIterator<Item = &'a [EnvVar]>,
) -> SpecLicence {
    let from_env = envs
        .into_iter()
        .flatten()
        .find(|e| e.name == LICENSE_KEY_ENV);
    if let Some(env) = from_env {
        let value = env.value.as_deref().map(str::trim);
        return match value.map(|v| v.trim_matches('"')) {
            Some("default") => SpecLicence::Default,
            // A literal key, or one from a Secret (`valueFrom`).
            _ => SpecLicence::Key,
        };
    }
    match hocon::lookup_string(config_data.unwrap_or_default(), "license.key") {
        Ok(None) => SpecLicence::Missing,
        Ok(Some(key)) if key.trim() == "default" => SpecLicence::Default,
        Ok(Some(_)) => SpecLicence::Key,
        Err(e) => SpecLicence::Unreadable(e.to_string()),
    }
}

/// The admission warning for an object whose nodes would run on the
/// single-node licence, naming the field to set; `None` when the version
/// has no such licence or a key is given. `nodes` is how many nodes the
/// spec runs at once outside an upgrade.
pub fn warning(image: &str, licence: &SpecLicence, nodes: i64) -> Option<String> {
    if !has_single_node_licence(image) || !licence.single_node() {
        return None;
    }
    let tag = split_tag(image).1.unwrap_or_default();
    let when = if nodes > 1 {
        format!("this spec runs {nodes} nodes, so every node after the first")
    } else {
        "every blue-green upgrade runs old and new nodes together, so the new nodes".to_owned()
    };
    Some(format!(
        "spec.config.data: EMQX {tag} (5.9 and later) runs on the single-node community \
         licence unless license.key is set; {when} will shut down on joining \
         (SINGLE_NODE_LICENSE). Set license {{ key = \"...\" }} in spec.config.data (or \
         {LICENSE_KEY_ENV} in the pod templates' env), unless the cluster's licence was set \
         through EMQX's dashboard or API"
    ))
}

/// [`warning`] for a v2beta1/v2alpha2 spec (the same template types):
/// `config.data`, both templates' env, and the nodes they run (defaults:
/// two cores, no replicants).
pub fn spec_warning(
    image: &str,
    config_data: Option<&str>,
    core: Option<&crate::v2beta1::EMQXCoreTemplate>,
    replicant: Option<&crate::v2beta1::EMQXReplicantTemplate>,
) -> Option<String> {
    let core = core.and_then(|t| t.spec.as_ref()).map(|s| &s.pod);
    let replicant = replicant.and_then(|t| t.spec.as_ref());
    let envs = [core, replicant]
        .into_iter()
        .flatten()
        .filter_map(|p| p.env.as_deref());
    let licence = spec_licence(config_data, envs);
    let nodes = i64::from(core.and_then(|p| p.replicas).unwrap_or(2))
        + i64::from(replicant.and_then(|p| p.replicas).unwrap_or(0));
    warning(image, &licence, nodes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str, value: Option<&str>) -> EnvVar {
        EnvVar {
            name: name.into(),
            value: value.map(Into::into),
            value_from: None,
        }
    }

    #[test]
    fn only_5_9_and_later_have_the_single_node_licence() {
        for (image, want) in [
            ("emqx/emqx:6.0.1", true),
            ("emqx/emqx-enterprise:5.9.0", true),
            ("emqx/emqx-enterprise:5.10.0", true),
            ("emqx/emqx:5.8.9", false),
            ("emqx/emqx-enterprise:e5.8.9", false),
            ("emqx/emqx-ee:4.4.19", false),
            ("emqx/emqx@sha256:abc", false),
            ("emqx/emqx:latest", false),
        ] {
            assert_eq!(has_single_node_licence(image), want, "{image}");
        }
    }

    #[test]
    fn the_key_is_found_in_config_data_or_env() {
        let none: [&[EnvVar]; 0] = [];
        assert_eq!(spec_licence(None, none), SpecLicence::Missing);
        assert_eq!(
            spec_licence(Some("node.cookie = x\n"), none),
            SpecLicence::Missing
        );
        assert_eq!(
            spec_licence(Some("license {\n  key = \"...\"\n}\n"), none),
            SpecLicence::Key
        );
        assert_eq!(
            spec_licence(Some("license.key = evaluation"), none),
            SpecLicence::Key
        );
        assert_eq!(
            spec_licence(Some("license { key = default }"), none),
            SpecLicence::Default
        );
        assert!(matches!(
            spec_licence(Some("license {"), none),
            SpecLicence::Unreadable(_)
        ));
        let from_secret = [EnvVar {
            name: LICENSE_KEY_ENV.into(),
            value: None,
            value_from: Some(Default::default()),
        }];
        assert_eq!(spec_licence(None, [&from_secret[..]]), SpecLicence::Key);
        let default = [env(LICENSE_KEY_ENV, Some("\"default\""))];
        assert_eq!(
            spec_licence(Some("license.key = evaluation"), [&default[..]]),
            SpecLicence::Default
        );
    }

    #[test]
    fn the_warning_names_the_field_and_the_cause() {
        let w = warning("emqx/emqx:6.0.1", &SpecLicence::Missing, 3).expect("warns");
        assert!(w.starts_with("spec.config.data: EMQX 6.0.1"), "{w}");
        assert!(
            w.contains("runs 3 nodes") && w.contains("SINGLE_NODE_LICENSE"),
            "{w}"
        );
        let w = warning("emqx/emqx:6.0.1", &SpecLicence::Default, 1).expect("warns");
        assert!(w.contains("blue-green"), "{w}");
        assert!(warning("emqx/emqx:6.0.1", &SpecLicence::Key, 3).is_none());
        assert!(warning("emqx/emqx:5.8.9", &SpecLicence::Missing, 3).is_none());
        assert!(warning("emqx/emqx:6.0.1", &SpecLicence::Unreadable("x".into()), 3).is_none());
    }

    #[test]
    fn the_webhook_warns_for_v2beta1_and_v2alpha2_objects() {
        use crate::validate::{validate_hub, validate_v2alpha2};
        let spec = crate::v2beta1::EMQXSpec {
            image: "emqx/emqx:6.0.1".into(),
            ..Default::default()
        };
        let v = validate_hub(&spec, None, None, false);
        assert!(
            v.errors.is_empty(),
            "a warning, not a denial: {:?}",
            v.errors
        );
        assert!(
            v.warnings.iter().any(
                |w| w.starts_with("spec.config.data: EMQX 6.0.1") && w.contains("runs 2 nodes")
            ),
            "{:?}",
            v.warnings
        );
        let mut licensed = spec.clone();
        licensed.config = Some(crate::v2beta1::Config {
            mode: None,
            data: Some("license { key = evaluation }".into()),
        });
        let v = validate_hub(&licensed, None, None, false);
        assert!(
            !v.warnings.iter().any(|w| w.contains("license")),
            "{:?}",
            v.warnings
        );
        let old = crate::v2alpha2::EMQXSpec {
            image: "emqx/emqx:6.0.1".into(),
            ..Default::default()
        };
        let v = validate_v2alpha2(&old, None, None);
        assert!(
            v.warnings
                .iter()
                .any(|w| w.starts_with("spec.config.data:")),
            "{:?}",
            v.warnings
        );
    }
}
