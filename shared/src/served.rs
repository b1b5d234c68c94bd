//! The four served kind/version pairs, and their CRD schemas.

use crate::crd::{emqx_crd, emqx_enterprise_crd, version_schema};
use serde_json::Value;
use std::sync::OnceLock;

/// API group of every kind here.
pub const GROUP: &str = "apps.emqx.io";

/// One served kind/version.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Served {
    /// `EMQX` `apps.emqx.io/v2beta1` (storage; the hub).
    EmqxV2beta1,
    /// `EMQX` `apps.emqx.io/v2alpha2`.
    EmqxV2alpha2,
    /// `EmqxEnterprise` `apps.emqx.io/v1beta4` (storage).
    EnterpriseV1beta4,
    /// `EmqxEnterprise` `apps.emqx.io/v2beta1` (hub shape).
    EnterpriseV2beta1,
}

impl Served {
    /// Every served pair.
    pub const ALL: [Served; 4] = [
        Served::EmqxV2beta1,
        Served::EmqxV2alpha2,
        Served::EnterpriseV1beta4,
        Served::EnterpriseV2beta1,
    ];

    /// Looks up `apiVersion` + `kind`.
    pub fn find(api_version: &str, kind: &str) -> Option<Served> {
        Served::ALL
            .into_iter()
            .find(|s| s.api_version() == api_version && s.kind() == kind)
    }

    /// `apps.emqx.io/<version>`.
    pub fn api_version(self) -> &'static str {
        match self {
            Served::EmqxV2beta1 | Served::EnterpriseV2beta1 => "apps.emqx.io/v2beta1",
            Served::EmqxV2alpha2 => "apps.emqx.io/v2alpha2",
            Served::EnterpriseV1beta4 => "apps.emqx.io/v1beta4",
        }
    }

    /// The version part of [`Served::api_version`].
    pub fn version(self) -> &'static str {
        match self {
            Served::EmqxV2beta1 | Served::EnterpriseV2beta1 => "v2beta1",
            Served::EmqxV2alpha2 => "v2alpha2",
            Served::EnterpriseV1beta4 => "v1beta4",
        }
    }

    /// `EMQX` or `EmqxEnterprise`.
    pub fn kind(self) -> &'static str {
        match self {
            Served::EmqxV2beta1 | Served::EmqxV2alpha2 => "EMQX",
            Served::EnterpriseV1beta4 | Served::EnterpriseV2beta1 => "EmqxEnterprise",
        }
    }

    /// The version of the same kind that `api_version` names, if served.
    pub fn sibling(self, api_version: &str) -> Option<Served> {
        Served::find(api_version, self.kind())
    }

    /// The CRD's OpenAPI schema of this version (generated once).
    pub fn schema(self) -> Option<&'static Value> {
        static SCHEMAS: OnceLock<[Option<Value>; 4]> = OnceLock::new();
        let schemas = SCHEMAS.get_or_init(|| {
            let emqx = emqx_crd().ok();
            let enterprise = emqx_enterprise_crd().ok();
            let get =
                |crd: &Option<_>, version| crd.as_ref().and_then(|c| version_schema(c, version));
            [
                get(&emqx, "v2beta1"),
                get(&emqx, "v2alpha2"),
                get(&enterprise, "v1beta4"),
                get(&enterprise, "v2beta1"),
            ]
        });
        let index = Served::ALL.iter().position(|s| *s == self)?;
        schemas[index].as_ref()
    }
}
