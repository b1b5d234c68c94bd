//! The kinds this webhook serves, as a bounded label set.

use emqx_crd::served::GROUP;
use prometheus_client::encoding::{EncodeLabelValue, LabelValueEncoder};

/// A served kind, or why a request's kind is not one. Bounded, so a hostile
/// client cannot blow up metric cardinality with made-up kind names.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub enum KindLabel {
    /// `EMQX` (`v2beta1`, `v2alpha2`).
    Emqx,
    /// `EmqxEnterprise` (`v1beta4`, `v2beta1`).
    EmqxEnterprise,
    /// Any other group/kind.
    Other,
    /// The body was not a review, so no kind is known.
    Unknown,
}

impl KindLabel {
    /// Classifies a group and kind.
    pub fn of(group: &str, kind: &str) -> Self {
        match (group, kind) {
            (GROUP, "EMQX") => KindLabel::Emqx,
            (GROUP, "EmqxEnterprise") => KindLabel::EmqxEnterprise,
            _ => KindLabel::Other,
        }
    }

    /// Classifies an `apiVersion` (`apps.emqx.io/v2beta1`) and kind.
    pub fn of_api_version(api_version: &str, kind: &str) -> Self {
        let group = api_version.rsplit_once('/').map_or("", |(g, _)| g);
        Self::of(group, kind)
    }

    /// Whether this webhook serves the kind.
    pub fn is_served(self) -> bool {
        matches!(self, KindLabel::Emqx | KindLabel::EmqxEnterprise)
    }
}

impl KindLabel {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            KindLabel::Emqx => "EMQX",
            KindLabel::EmqxEnterprise => "EmqxEnterprise",
            KindLabel::Other => "other",
            KindLabel::Unknown => "unknown",
        }
    }
}

impl EncodeLabelValue for KindLabel {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        std::fmt::Write::write_str(encoder, self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_two_kinds_of_apps_emqx_io_are_served() {
        assert_eq!(KindLabel::of("apps.emqx.io", "EMQX"), KindLabel::Emqx);
        assert_eq!(
            KindLabel::of_api_version("apps.emqx.io/v1beta4", "EmqxEnterprise"),
            KindLabel::EmqxEnterprise
        );
        assert_eq!(KindLabel::of("apps", "EMQX"), KindLabel::Other);
        assert_eq!(
            KindLabel::of("apps.emqx.io", "EmqxBroker"),
            KindLabel::Other
        );
        assert_eq!(KindLabel::of_api_version("v1", "EMQX"), KindLabel::Other);
        assert!(!KindLabel::Other.is_served());
    }
}
