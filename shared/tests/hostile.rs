//! Hostile input: wrong types, huge numbers, negative rates, unknown fields,
//! empty strings, garbage annotations and random JSON give errors that name the
//! field, never a panic.

#![allow(clippy::panic, clippy::unwrap_used)] // test code: failing loudly is the point

use emqx_crd::dynamic::{ObjectError, convert_object, default_object, validate_object};
use proptest::prelude::*;
use serde_json::{Value, json};

fn emqx(spec: Value) -> Value {
    json!({"apiVersion": "apps.emqx.io/v2beta1", "kind": "EMQX", "metadata": {"name": "e"}, "spec": spec})
}

fn enterprise_v1beta4(spec: Value) -> Value {
    json!({"apiVersion": "apps.emqx.io/v1beta4", "kind": "EmqxEnterprise", "metadata": {"name": "e"}, "spec": spec})
}

fn error_paths(obj: &Value) -> Vec<String> {
    validate_object(obj, None)
        .unwrap()
        .errors
        .into_iter()
        .map(|e| e.path)
        .collect()
}

fn malformed_path(result: Result<impl std::fmt::Debug, ObjectError>) -> String {
    match result {
        Err(ObjectError::Malformed { path, .. }) => path,
        other => panic!("expected Malformed, got {other:?}"),
    }
}

#[test]
fn non_objects_and_unknown_kinds_are_refused() {
    for value in [json!(null), json!([]), json!("EMQX"), json!(42), json!({})] {
        assert!(default_object(&value).is_err());
        assert!(validate_object(&value, None).is_err());
        assert!(convert_object(&value, "apps.emqx.io/v2beta1").is_err());
    }
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {}});
    assert!(matches!(
        default_object(&pod),
        Err(ObjectError::UnknownKind { .. })
    ));
    let wrong_group = json!({"apiVersion": "apps.emqx.io/v9", "kind": "EMQX"});
    assert!(matches!(
        validate_object(&wrong_group, None),
        Err(ObjectError::UnknownKind { .. })
    ));
}

#[test]
fn wrong_types_name_the_field() {
    assert_eq!(
        malformed_path(validate_object(&emqx(json!({"image": 5})), None)),
        "spec.image"
    );
    let obj = emqx(
        json!({"image": "emqx:5.8.0", "updateStrategy": {"evacuationStrategy": {"connEvictRate": "fast"}}}),
    );
    assert_eq!(
        malformed_path(default_object(&obj)),
        "spec.updateStrategy.evacuationStrategy.connEvictRate"
    );
    let obj = emqx(json!({"image": "emqx:5.8.0", "coreTemplate": {"spec": {"replicas": [3]}}}));
    assert_eq!(
        malformed_path(validate_object(&obj, None)),
        "spec.coreTemplate.spec.replicas"
    );
    assert_eq!(
        malformed_path(validate_object(&emqx(json!({})), None)),
        "spec"
    );
}

#[test]
fn huge_numbers_are_refused_with_the_field() {
    let obj = emqx(
        json!({"image": "emqx:5.8.0", "updateStrategy": {"evacuationStrategy": {"connEvictRate": 1e20}}}),
    );
    assert_eq!(
        malformed_path(validate_object(&obj, None)),
        "spec.updateStrategy.evacuationStrategy.connEvictRate"
    );
    let obj = emqx(
        json!({"image": "emqx:5.8.0", "updateStrategy": {"evacuationStrategy": {"sessEvictRate": 2147483647}}}),
    );
    let verdict = validate_object(&obj, None).unwrap();
    assert_eq!(
        verdict.errors[0].path,
        "spec.updateStrategy.evacuationStrategy.sessEvictRate"
    );
    assert!(
        verdict.errors[0]
            .message
            .contains("at most 1000000 (allowed: 1..=1000000)")
    );
    let obj = enterprise_v1beta4(json!({"replicas": 99999999999u64}));
    assert_eq!(malformed_path(validate_object(&obj, None)), "spec.replicas");
}

#[test]
fn negative_and_zero_rates_and_delays_are_denied() {
    let obj = emqx(json!({"image": "emqx:5.8.0", "updateStrategy": {
        "initialDelaySeconds": -1,
        "evacuationStrategy": {"connEvictRate": 0, "sessEvictRate": -5, "waitTakeover": -1}}}));
    let verdict = validate_object(&obj, None).unwrap();
    let paths: Vec<_> = verdict.errors.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "spec.updateStrategy.initialDelaySeconds",
            "spec.updateStrategy.evacuationStrategy.waitTakeover",
            "spec.updateStrategy.evacuationStrategy.connEvictRate",
            "spec.updateStrategy.evacuationStrategy.sessEvictRate",
        ]
    );
    assert!(
        verdict.errors[2]
            .message
            .contains("must be at least 1 (allowed: 1..=1000000)")
    );
    assert!(verdict.errors[0].message.contains("allowed: 0..=86400"));
    let v1 = enterprise_v1beta4(
        json!({"blueGreenUpdate": {"evacuationStrategy": {"connEvictRate": 0}},
        "template": {"spec": {"emqxContainer": {"image": {"version": "4.4.14"}}}}}),
    );
    assert_eq!(
        error_paths(&v1),
        ["spec.blueGreenUpdate.evacuationStrategy.connEvictRate"]
    );
}

#[test]
fn unknown_fields_are_named() {
    let obj = emqx(json!({"image": "emqx:5.8.0", "bogus": 1,
        "coreTemplate": {"spec": {"affinity": {"nodeAffinity": {}, "typo": true}}}}));
    let paths = error_paths(&obj);
    assert!(paths.contains(&"spec.bogus".to_owned()), "{paths:?}");
    assert!(
        paths.contains(&"spec.coreTemplate.spec.affinity.typo".to_owned()),
        "{paths:?}"
    );
    let obj = emqx(
        json!({"image": "emqx:5.8.0", "coreTemplate": {"spec": {"extraContainers": [{"name": "a", "imag": "x"}]}}}),
    );
    assert_eq!(
        error_paths(&obj),
        ["spec.coreTemplate.spec.extraContainers[0].imag"]
    );
}

#[test]
fn empty_strings_are_denied_where_meaningless() {
    assert_eq!(error_paths(&emqx(json!({"image": ""}))), ["spec.image"]);
    assert_eq!(
        error_paths(&emqx(json!({"image": "emqx:5.8.0", "clusterDomain": ""}))),
        ["spec.clusterDomain"]
    );
    assert_eq!(
        error_paths(&emqx(
            json!({"image": "emqx:5.8.0", "bootstrapAPIKeys": [{"key": "", "secret": ""}]})
        )),
        [
            "spec.bootstrapAPIKeys[0].key",
            "spec.bootstrapAPIKeys[0].secret"
        ]
    );
    let v1 = enterprise_v1beta4(
        json!({"template": {"spec": {"emqxContainer": {"image": {"version": ""}}}}}),
    );
    assert_eq!(
        error_paths(&v1),
        ["spec.template.spec.emqxContainer.image.version"]
    );
    assert_eq!(
        error_paths(&emqx(json!({"image": "emqx:5.8.0", "imagePullPolicy": ""}))),
        ["spec.imagePullPolicy"]
    );
}

#[test]
fn garbage_conversion_data_and_targets_are_errors() {
    let mut obj = emqx(json!({"image": "emqx:5.8.0"}));
    obj["metadata"]["annotations"] = json!({"apps.emqx.io/conversion-data": "{not json"});
    assert_eq!(
        malformed_path(convert_object(&obj, "apps.emqx.io/v2alpha2")),
        "metadata.annotations.apps.emqx.io/conversion-data"
    );
    let obj = emqx(json!({"image": "emqx:5.8.0"}));
    assert!(matches!(
        convert_object(&obj, "apps.emqx.io/v1beta4"),
        Err(ObjectError::Conversion(_))
    ));
    assert!(matches!(
        convert_object(&obj, ""),
        Err(ObjectError::Conversion(_))
    ));
    assert_eq!(convert_object(&obj, "apps.emqx.io/v2beta1").unwrap(), obj);
}

#[test]
fn update_with_an_old_object_of_another_kind_is_refused() {
    let new = emqx(json!({"image": "emqx:5.8.0"}));
    let old = enterprise_v1beta4(json!({}));
    assert!(validate_object(&new, Some(&old)).is_err());
}

#[test]
fn deep_nesting_in_open_fields_is_handled() {
    let mut deep = json!(1);
    for _ in 0..100 {
        deep = json!({"x": deep});
    }
    let obj = emqx(
        json!({"image": "emqx:5.8.0", "coreTemplate": {"spec": {"affinity": {"nodeAffinity": deep}}}}),
    );
    assert!(default_object(&obj).is_ok());
    assert!(!validate_object(&obj, None).unwrap().errors.is_empty());
    assert!(convert_object(&obj, "apps.emqx.io/v2alpha2").is_ok());
}

fn arbitrary_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        "\\PC{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 32, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            proptest::collection::btree_map("[a-zA-Z]{0,8}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

const FIELDS: &[&[&str]] = &[
    &["spec"],
    &["spec", "image"],
    &["spec", "updateStrategy"],
    &[
        "spec",
        "updateStrategy",
        "evacuationStrategy",
        "connEvictRate",
    ],
    &["spec", "coreTemplate", "spec"],
    &["spec", "coreTemplate", "spec", "replicas"],
    &["spec", "bootstrapAPIKeys"],
    &["spec", "template", "spec", "emqxContainer", "image"],
    &["spec", "blueGreenUpdate"],
    &["status"],
    &["status", "conditions"],
    &["metadata"],
    &["metadata", "annotations", "apps.emqx.io/conversion-data"],
];

proptest! {
    #[test]
    fn random_json_anywhere_never_panics(
        which in 0usize..4,
        field in 0usize..FIELDS.len(),
        junk in arbitrary_json(),
        target in prop_oneof![Just("apps.emqx.io/v2beta1"), Just("apps.emqx.io/v2alpha2"), Just("apps.emqx.io/v1beta4")],
    ) {
        let mut obj = match which {
            0 => emqx(json!({"image": "emqx:5.8.0"})),
            1 => json!({"apiVersion": "apps.emqx.io/v2alpha2", "kind": "EMQX", "metadata": {"name": "e"}, "spec": {"image": "emqx:5.1"}}),
            2 => enterprise_v1beta4(json!({"template": {"spec": {"emqxContainer": {"image": {"version": "4.4.14"}}}}})),
            _ => json!({"apiVersion": "apps.emqx.io/v2beta1", "kind": "EmqxEnterprise", "metadata": {"name": "e"}, "spec": {"image": "emqx:5.8.0"}}),
        };
        let mut node = &mut obj;
        let (last, parents) = FIELDS[field].split_last().unwrap();
        for key in parents {
            if !node.get(*key).is_some_and(Value::is_object) {
                node[*key] = json!({});
            }
            node = &mut node[*key];
        }
        node[*last] = junk;
        let old = obj.clone();
        let _ = default_object(&obj);
        let _ = validate_object(&obj, None);
        let _ = validate_object(&obj, Some(&old));
        let _ = convert_object(&obj, target);
    }

    #[test]
    fn random_whole_objects_never_panic(junk in arbitrary_json(), target in "\\PC{0,20}") {
        let _ = default_object(&junk);
        let _ = validate_object(&junk, Some(&junk));
        let _ = convert_object(&junk, &target);
    }
}
