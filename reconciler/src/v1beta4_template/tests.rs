use super::*;
use serde_json::json;

fn stash(entries: Value) -> BTreeMap<String, String> {
    BTreeMap::from([(
        ANNOTATION_CONVERSION_DATA.to_owned(),
        json!({"apiVersion": V1BETA4, "entries": entries, "createdAnnotations": true}).to_string(),
    )])
}

fn hash_of(spec: &EMQXSpec) -> Option<String> {
    spec.core_template
        .as_ref()?
        .metadata
        .as_ref()?
        .annotations
        .as_ref()?
        .get(ANNOTATION_V1BETA4_TEMPLATE)
        .cloned()
}

#[test]
fn seed_000s_container_name_patch_changes_the_template() {
    let spec = EMQXSpec::default();
    let before = stash(json!([{"path": "/spec/license", "value": {"stringData": "x"}}]));
    assert!(
        hash_of(&with_template_fields(&spec, Some(&before))).is_none(),
        "fields outside .spec.template do not touch the pods"
    );
    let named = stash(json!([
        {"path": "/spec/license", "value": {"stringData": "x"}},
        {"path": "/spec/template/spec/emqxContainer/name", "value": "emqx-ee-a"}
    ]));
    let renamed = stash(json!([
        {"path": "/spec/template/spec/emqxContainer/name", "value": "emqx-ee-b"}
    ]));
    let a = hash_of(&with_template_fields(&spec, Some(&named))).expect("hash");
    let b = hash_of(&with_template_fields(&spec, Some(&renamed))).expect("hash");
    assert_ne!(a, b);
    // Stable pass after pass.
    assert_eq!(hash_of(&with_template_fields(&spec, Some(&named))), Some(a));
}

#[test]
fn other_annotations_of_the_core_template_are_kept() {
    let spec = EMQXSpec {
        core_template: serde_json::from_value(json!({"metadata": {"annotations": {"a": "b"}}}))
            .expect("template"),
        ..EMQXSpec::default()
    };
    let out = with_template_fields(
        &spec,
        Some(&stash(
            json!([{"path": "/spec/template/spec/reloaderImage", "value": "r:1"}]),
        )),
    );
    let annotations = out
        .core_template
        .as_ref()
        .and_then(|t| t.metadata.as_ref())
        .and_then(|m| m.annotations.clone())
        .expect("annotations");
    assert_eq!(annotations.get("a").map(String::as_str), Some("b"));
    assert!(annotations.contains_key(ANNOTATION_V1BETA4_TEMPLATE));
}

#[test]
fn foreign_damaged_or_removal_stashes_change_nothing() {
    let spec = EMQXSpec::default();
    for annotations in [
        BTreeMap::new(),
        BTreeMap::from([(ANNOTATION_CONVERSION_DATA.to_owned(), "{not json".to_owned())]),
        BTreeMap::from([(ANNOTATION_CONVERSION_DATA.to_owned(), json!({"apiVersion": "apps.emqx.io/v2alpha2", "entries": [{"path": "/spec/template/x", "value": 1}]}).to_string())]),
        // An entry without a value means "absent in v1beta4": nothing to add.
        stash(json!([{"path": "/spec/template/spec/emqxContainer/name", "was": "x"}])),
    ] {
        assert!(matches!(with_template_fields(&spec, Some(&annotations)), std::borrow::Cow::Borrowed(_)));
    }
    assert!(matches!(
        with_template_fields(&spec, None),
        std::borrow::Cow::Borrowed(_)
    ));
}
