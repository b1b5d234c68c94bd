//! The four served kind/version pairs, and what defaulting reads of their CRD schemas.

use crate::defaults::DefaultsTree;
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

    /// What defaulting reads of this version's CRD schema (see
    /// [`crate::defaults`]): compiled in, parsed once on first use.
    pub fn defaults(self) -> Option<&'static DefaultsTree> {
        static TREES: OnceLock<[Option<DefaultsTree>; 4]> = OnceLock::new();
        let trees = TREES.get_or_init(crate::defaults::compiled_in);
        let index = Served::ALL.iter().position(|s| *s == self)?;
        trees[index].as_ref()
    }
}
