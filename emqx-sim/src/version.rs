//! Broker version and edition, read from the container image as the operator
//! and users pick them (`emqx/emqx-enterprise:5.8.9`, `emqx/emqx-ee:4.4.19`).

/// Which management API a version serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiGeneration {
    /// EMQX 4.4: `/api/v4` on 8081 with the `{"code":0,"data":…}` envelope.
    V4,
    /// EMQX 5.x and later: `/api/v5` on 18083.
    V5,
}

impl ApiGeneration {
    /// Default port of the HTTP API for this generation.
    pub fn default_http_port(self) -> u16 {
        match self {
            ApiGeneration::V4 => 8081,
            ApiGeneration::V5 => 18083,
        }
    }

    /// Path prefix of the API.
    pub fn prefix(self) -> &'static str {
        match self {
            ApiGeneration::V4 => "/api/v4",
            ApiGeneration::V5 => "/api/v5",
        }
    }
}

/// A released EMQX version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct BrokerVersion {
    /// Major version (4, 5, 6).
    pub major: u32,
    /// Minor version.
    pub minor: u32,
    /// Patch version.
    pub patch: u32,
}

impl BrokerVersion {
    /// Parses the tag of an image reference; accepts `5.8.9`, `e5.8.9`, `v5.8`,
    /// `5.8.9-alpine`, and ignores a registry port and a digest.
    pub fn from_image(image: &str) -> Result<BrokerVersion, String> {
        let without_digest = image.split('@').next().unwrap_or(image);
        let last_segment = without_digest.rsplit('/').next().unwrap_or(without_digest);
        let Some((_, tag)) = last_segment.split_once(':') else {
            return Err(format!(
                "`{image}` has no tag; the version comes from the tag"
            ));
        };
        BrokerVersion::parse(tag).map_err(|e| format!("tag of `{image}`: {e}"))
    }

    /// Parses a version string such as `e5.8.9` or `4.4.19-alpine`.
    pub fn parse(tag: &str) -> Result<BrokerVersion, String> {
        let core = tag.trim_start_matches(['v', 'e']);
        let core = core.split(['-', '+']).next().unwrap_or(core);
        let mut parts = core.split('.');
        let mut number = |what: &str, required: bool| -> Result<u32, String> {
            match parts.next() {
                Some(p) => p
                    .parse::<u32>()
                    .map_err(|_| format!("`{tag}` is not a version (bad {what})")),
                None if required => Err(format!("`{tag}` is not a version (no {what})")),
                None => Ok(0),
            }
        };
        let major = number("major", true)?;
        let minor = number("minor", true)?;
        let patch = number("patch", false)?;
        let v = BrokerVersion {
            major,
            minor,
            patch,
        };
        match (major, minor) {
            (4, 4) | (5..=9, _) => Ok(v),
            _ => Err(format!(
                "version {v} is not simulated (4.4.x or 5.x and later)"
            )),
        }
    }

    /// The management API this version serves.
    pub fn api(&self) -> ApiGeneration {
        if self.major == 4 {
            ApiGeneration::V4
        } else {
            ApiGeneration::V5
        }
    }

    /// Whether this build ships node evacuation (`load_rebalance`): Enterprise
    /// from 4.4.12 (docs `release-4.4`: `changes/changes-ee-v4.md`) and from
    /// e5.0.4 (`changes/e5.0.4.en.md`), every build from 5.9. Open source
    /// 4.4 and 5.0–5.8 never had it.
    pub fn has_evacuation(&self, edition: Edition) -> bool {
        edition == Edition::Enterprise
            && match (self.major, self.minor) {
                (4, _) => self.patch >= 12,
                (5, 0) => self.patch >= 4,
                _ => true,
            }
    }

    /// Why this build refuses `node.role = replicant` at boot, if it does.
    /// Open source 5.0–5.7 has `enum([core, replicant])`; from 5.8.0 the
    /// `replicant` symbol is injected by the Enterprise schema only
    /// (`apps/emqx_enterprise/src/emqx_enterprise_schema.erl`), so open
    /// source 5.8 rejects it: 5.8.0 as a bad enum value, 5.8.1+ with
    /// `validate_node_role/1`'s message (`apps/emqx_conf/src/emqx_conf_schema.erl`,
    /// v5.8.0, v5.8.1, v5.8.9). Every build from 5.9 (e5.9.0 … e6.0.1) is
    /// the Enterprise code base and allows it. 4.4 has no roles at all.
    pub fn replicant_refusal(&self, edition: Edition) -> Option<&'static str> {
        match (self.major, self.minor, edition) {
            // hocon's enum check; its exact wording is not modelled.
            (5, 8, Edition::Opensource) if self.patch == 0 => {
                Some("node.role: replicant is not one of the allowed values [core]")
            }
            (5, 8, Edition::Opensource) => {
                Some("Node role 'replicant' is only allowed in Enterprise edition since 5.8.0")
            }
            _ => None,
        }
    }

    /// Whether an MQTT 5 CONNACK carries `Receive-Maximum` (the session's
    /// inflight window): `enrich_connack_caps/2` in
    /// `apps/emqx/src/emqx_channel.erl` adds it from v5.6.0 / e5.6.0 on
    /// (v5.8.9, 6.x likewise); v5.5.1 and 4.4.19 compute the window but do
    /// not send it.
    pub fn sends_receive_maximum(&self) -> bool {
        self.major > 5 || (self.major == 5 && self.minor >= 6)
    }

    /// 5.0.x answers unknown `/api/v5` paths with `API_NOT_EXIST`.
    pub fn is_5_0(&self) -> bool {
        self.major == 5 && self.minor == 0
    }
}

impl std::fmt::Display for BrokerVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// Enterprise builds carry the rebalance/evacuation app; open source ≤ 5.8 does not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Edition {
    /// `"Opensource"`: no `load_rebalance` API.
    Opensource,
    /// `"Enterprise"`: evacuation available.
    Enterprise,
}

impl Edition {
    /// Decides the edition from the image repository and version: `emqx-ee` and
    /// `emqx-enterprise` are Enterprise, as is every build from 5.9 on.
    pub fn from_image(image: &str, version: &BrokerVersion) -> Edition {
        let without_digest = image.split('@').next().unwrap_or(image);
        let last = without_digest.rsplit('/').next().unwrap_or(without_digest);
        let repo = last.split(':').next().unwrap_or(last);
        let single_edition = version.major > 5 || (version.major == 5 && version.minor >= 9);
        if repo.ends_with("-ee") || repo.ends_with("-enterprise") || single_edition {
            Edition::Enterprise
        } else {
            Edition::Opensource
        }
    }

    /// Spelling in `/nodes`.
    pub fn as_str(self) -> &'static str {
        match self {
            Edition::Opensource => "Opensource",
            Edition::Enterprise => "Enterprise",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_parse() {
        let v = BrokerVersion::from_image("registry:5000/emqx/emqx-enterprise:e5.8.9@sha256:ab")
            .expect("valid");
        assert_eq!((v.major, v.minor, v.patch), (5, 8, 9));
        assert_eq!(v.api(), ApiGeneration::V5);
        let v = BrokerVersion::from_image("emqx/emqx-ee:4.4.19-alpine").expect("valid");
        assert_eq!(v.api(), ApiGeneration::V4);
        assert!(BrokerVersion::from_image("emqx/emqx:6.0.1").is_ok());
        assert!(BrokerVersion::from_image("emqx/emqx").is_err());
        assert!(BrokerVersion::from_image("emqx/emqx:latest").is_err());
        assert!(BrokerVersion::from_image("emqx/emqx:4.3.1").is_err());
        assert!(BrokerVersion::from_image("emqx/emqx:99999999999.1").is_err());
        assert!(BrokerVersion::from_image("").is_err());
    }

    #[test]
    fn editions() {
        let e = |img: &str| {
            let v = BrokerVersion::from_image(img).expect("valid");
            Edition::from_image(img, &v)
        };
        assert_eq!(e("emqx/emqx:5.8.9"), Edition::Opensource);
        assert_eq!(e("emqx/emqx-enterprise:5.8.9"), Edition::Enterprise);
        assert_eq!(e("emqx/emqx:5.9.0"), Edition::Enterprise);
        assert_eq!(e("emqx/emqx:6.0.1"), Edition::Enterprise);
        assert_eq!(e("emqx/emqx-ee:4.4.19"), Edition::Enterprise);
        assert_eq!(e("emqx/emqx:4.4.19"), Edition::Opensource);
    }

    #[test]
    fn replicants_are_refused_by_open_source_5_8_only() {
        let refused = |img: &str| {
            let v = BrokerVersion::from_image(img).expect("valid");
            v.replicant_refusal(Edition::from_image(img, &v)).is_some()
        };
        assert!(refused("emqx/emqx:5.8.0"));
        assert!(refused("emqx/emqx:5.8.9"));
        assert!(!refused("emqx/emqx:5.7.2"));
        assert!(!refused("emqx/emqx:5.0.26"));
        assert!(!refused("emqx/emqx-enterprise:5.8.9"));
        assert!(!refused("emqx/emqx:5.9.0"));
        assert!(!refused("emqx/emqx:6.0.1"));
    }

    #[test]
    fn connack_says_receive_maximum_from_5_6() {
        let says = |img: &str| {
            BrokerVersion::from_image(img)
                .expect("valid")
                .sends_receive_maximum()
        };
        assert!(!says("emqx/emqx-ee:4.4.19"));
        assert!(!says("emqx/emqx:5.5.1"));
        assert!(says("emqx/emqx-enterprise:5.6.0"));
        assert!(says("emqx/emqx:5.8.9"));
        assert!(says("emqx/emqx:6.0.1"));
    }

    #[test]
    fn evacuation_ships_with_enterprise_4_4_12_and_e5_0_4() {
        let has = |img: &str| {
            let v = BrokerVersion::from_image(img).expect("valid");
            v.has_evacuation(Edition::from_image(img, &v))
        };
        assert!(!has("emqx/emqx-ee:4.4.11"));
        assert!(has("emqx/emqx-ee:4.4.12"));
        assert!(!has("emqx/emqx:4.4.19"));
        assert!(!has("emqx/emqx-enterprise:5.0.3"));
        assert!(has("emqx/emqx-enterprise:5.0.4"));
        assert!(!has("emqx/emqx:5.8.9"));
        assert!(has("emqx/emqx:5.9.0"));
    }
}
