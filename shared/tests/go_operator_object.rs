//! The `EMQX` object as the Go EMQX Operator 2.2.29 left it (captured; the
//! defaults it writes back into the spec included) is accepted as it is,
//! and means what it meant to Go.

use emqx_crd::dynamic::{default_object, validate_object};
use emqx_crd::v2beta1::EMQX;
use serde_json::Value;

fn object() -> Value {
    serde_saphyr::from_str(include_str!(
        "../../reconciler/tests/fixtures/go-operator-2.2.29/emqx.yaml"
    ))
    .expect("fixture YAML")
}

#[test]
fn the_object_go_left_is_admitted_on_create_and_update() {
    let obj = object();
    let defaulted = default_object(&obj).expect("defaulting");
    let created = validate_object(&defaulted, None).expect("validation");
    assert!(created.allowed(), "{:?}", created.errors);
    let updated = validate_object(&defaulted, Some(&defaulted)).expect("validation");
    assert!(updated.allowed(), "{:?}", updated.errors);
}

#[test]
fn gos_empty_claim_is_no_persistence() {
    let defaulted = default_object(&object()).expect("defaulting");
    let emqx: EMQX = serde_json::from_value(defaulted).expect("an EMQX v2beta1");
    let core = emqx
        .spec
        .core_template
        .and_then(|t| t.spec)
        .expect("coreTemplate.spec");
    assert!(core.volume_claim_templates.is_some(), "kept as Go wrote it");
    assert_eq!(core.data_claim(), None);
}
