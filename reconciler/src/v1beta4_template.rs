//! v1beta4 pod-template fields the hub cannot express still change the pods.
//!
//! Seed 000 triggers its blue-green upgrade with `kubectl patch
//! EmqxEnterprise emqx-ee ... {"emqxContainer": {"name": "emqx-ee-a"}}`:
//! "modifying any content of `.spec.template` triggers" it. Some v1beta4
//! template fields (the container's name, `reloaderImage`, `emqxACL`, ...)
//! have no v2beta1 counterpart; the conversion keeps them in the
//! `apps.emqx.io/conversion-data` annotation of the hub object. Their hash
//! goes into the core pod template's annotations, so changing one is a
//! template change like any other, and leaving them alone changes nothing.

use emqx_crd::conversion_data::ConversionData;
use emqx_crd::names::ANNOTATION_CONVERSION_DATA;
use emqx_crd::v2beta1::EMQXSpec;
use serde_json::Value;
use std::collections::BTreeMap;

/// Pod-template annotation holding the hash of the v1beta4-only fields.
pub const ANNOTATION_V1BETA4_TEMPLATE: &str = "apps.emqx.io/v1beta4-template";

const V1BETA4: &str = "apps.emqx.io/v1beta4";
const TEMPLATE: &str = "/spec/template/";

/// The v1beta4-only `.spec.template` fields stashed in `annotations`, by
/// JSON Pointer. A stash this operator did not write, or one of another
/// version, holds none.
pub fn template_fields(annotations: Option<&BTreeMap<String, String>>) -> BTreeMap<String, Value> {
    let Some(raw) = annotations.and_then(|a| a.get(ANNOTATION_CONVERSION_DATA)) else {
        return BTreeMap::new();
    };
    let Ok(data) = serde_json::from_str::<ConversionData>(raw) else {
        return BTreeMap::new();
    };
    if data.api_version != V1BETA4 {
        return BTreeMap::new();
    }
    data.entries
        .into_iter()
        .filter(|e| e.path.starts_with(TEMPLATE))
        .filter_map(|e| Some((e.path, e.value?)))
        .collect()
}

/// `spec` with the hash of [`template_fields`] in the core pod template's
/// annotations; unchanged (borrowed) when there are none.
pub fn with_template_fields<'a>(
    spec: &'a EMQXSpec,
    annotations: Option<&BTreeMap<String, String>>,
) -> std::borrow::Cow<'a, EMQXSpec> {
    let fields = template_fields(annotations);
    if fields.is_empty() {
        return std::borrow::Cow::Borrowed(spec);
    }
    let canonical = serde_json::to_value(&fields).unwrap_or_default();
    let hash = crate::revision::revision_hash(&canonical);
    let mut spec = spec.clone();
    spec.core_template
        .get_or_insert_with(Default::default)
        .metadata
        .get_or_insert_with(Default::default)
        .annotations
        .get_or_insert_with(BTreeMap::new)
        .insert(ANNOTATION_V1BETA4_TEMPLATE.to_owned(), hash);
    std::borrow::Cow::Owned(spec)
}

#[cfg(test)]
mod tests;
