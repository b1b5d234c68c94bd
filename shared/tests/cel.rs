//! The CRDs' CEL rules (`x-kubernetes-validations`) compile, stay within the
//! apiserver's cost budget with the schema's bounds, use only CRD-scope
//! variables, and accept/reject what they should. Evaluated client-side with
//! kube-rs's CEL evaluator (`kube-cel`); the end-to-end tests exercise them
//! against a real kube-apiserver.

#![allow(clippy::panic, clippy::unwrap_used)] // test code: failing loudly is the point

use emqx_crd::crd::{emqx_crd, emqx_enterprise_crd, version_schema};
use kube_cel::{CompiledSchema, ScopeContext, Validator, analyze_rule, compile_schema};
use serde_json::{Value, json};

fn schemas() -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for crd in [emqx_crd().unwrap(), emqx_enterprise_crd().unwrap()] {
        for version in &crd.spec.versions {
            let name = format!("{} {}", crd.spec.names.kind, version.name);
            out.push((name, version_schema(&crd, &version.name).unwrap()));
        }
    }
    out
}

fn schema(kind: &str, version: &str) -> Value {
    schemas()
        .into_iter()
        .find(|(name, _)| name == &format!("{kind} {version}"))
        .map(|(_, s)| s)
        .unwrap()
}

/// Walks the JSON schema and its compiled form together, analysing each rule
/// where it sits.
fn analyse(
    json: &Value,
    compiled: &CompiledSchema,
    path: &str,
    rules: &mut usize,
    problems: &mut Vec<String>,
) {
    for error in compiled.compilation_errors() {
        problems.push(format!("{path}: {error}"));
    }
    if let Some(Value::Array(validations)) = json.get("x-kubernetes-validations") {
        for validation in validations {
            let rule = validation["rule"].as_str().unwrap();
            *rules += 1;
            for warning in analyze_rule(rule, compiled, ScopeContext::CrdValidation) {
                problems.push(format!("{path}: {rule}: {}", warning.message));
            }
        }
    }
    if let Some(Value::Object(properties)) = json.get("properties") {
        for (name, child) in properties {
            if let Some(compiled_child) = compiled.properties.get(name) {
                analyse(
                    child,
                    compiled_child,
                    &format!("{path}.{name}"),
                    rules,
                    problems,
                );
            }
        }
    }
    if let (Some(items), Some(compiled_items)) = (json.get("items"), compiled.items.as_deref()) {
        analyse(items, compiled_items, &format!("{path}[]"), rules, problems);
    }
}

#[test]
fn every_rule_compiles_within_budget_and_scope() {
    for (name, schema) in schemas() {
        let compiled = compile_schema(&schema);
        let (mut rules, mut problems) = (0, Vec::new());
        analyse(&schema, &compiled, "", &mut rules, &mut problems);
        assert!(problems.is_empty(), "{name}: {problems:#?}");
        assert!(rules >= 5, "{name}: only {rules} rules found");
    }
}

fn emqx(spec: Value) -> Value {
    json!({"apiVersion": "apps.emqx.io/v2beta1", "kind": "EMQX", "metadata": {"name": "e"}, "spec": spec})
}

fn cel_errors(schema: &Value, obj: &Value, old: Option<&Value>) -> Vec<String> {
    match Validator::new().validate(schema, obj, old) {
        Ok(()) => Vec::new(),
        Err(errors) => errors
            .into_vec()
            .into_iter()
            .map(|e| format!("{}: {}", e.field_path, e.message))
            .collect(),
    }
}

#[test]
fn rates_and_delays_are_bounded_with_the_webhook_down() {
    let schema = schema("EMQX", "v2beta1");
    let ok = emqx(
        json!({"image": "emqx:5.8.0", "updateStrategy": {"evacuationStrategy": {"connEvictRate": 200}}}),
    );
    assert_eq!(cel_errors(&schema, &ok, None), Vec::<String>::new());
    let zero = emqx(
        json!({"image": "emqx:5.8.0", "updateStrategy": {"evacuationStrategy": {"connEvictRate": 0}}}),
    );
    let errors = cel_errors(&schema, &zero, None);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].contains("connEvictRate must be between 1 and 1000000"),
        "{errors:?}"
    );
    let negative = emqx(
        json!({"image": "emqx:5.8.0", "updateStrategy": {"initialDelaySeconds": -1,
        "evacuationStrategy": {"waitTakeover": 100000, "sessEvictRate": 2000000}}}),
    );
    assert_eq!(cel_errors(&schema, &negative, None).len(), 3);
    let v1beta4 = schema_v1beta4();
    let obj = json!({"apiVersion": "apps.emqx.io/v1beta4", "kind": "EmqxEnterprise", "metadata": {"name": "e"},
        "spec": {"blueGreenUpdate": {"evacuationStrategy": {"sessEvictRate": 0}}}});
    assert_eq!(cel_errors(&v1beta4, &obj, None).len(), 1);
}

fn schema_v1beta4() -> Value {
    schema("EmqxEnterprise", "v1beta4")
}

#[test]
fn pdb_bounds_are_mutually_exclusive() {
    let schema = schema("EMQX", "v2beta1");
    let both = emqx(
        json!({"image": "emqx:5.8.0", "replicantTemplate": {"spec": {"minAvailable": 1, "maxUnavailable": "50%"}}}),
    );
    let errors = cel_errors(&schema, &both, None);
    assert!(
        errors.iter().any(|e| e.contains("mutually exclusive")),
        "{errors:?}"
    );
    let one = emqx(json!({"image": "emqx:5.8.0", "coreTemplate": {"spec": {"maxUnavailable": 1}}}));
    assert_eq!(cel_errors(&schema, &one, None), Vec::<String>::new());
}

#[test]
fn bootstrap_keys_cannot_change_or_go_away() {
    let schema = schema("EmqxEnterprise", "v2beta1");
    let keys = json!([{"key": "ops", "secret": "secret"}]);
    let enterprise = |spec: Value| json!({"apiVersion": "apps.emqx.io/v2beta1", "kind": "EmqxEnterprise", "metadata": {"name": "e"}, "spec": spec});
    let old = enterprise(json!({"image": "emqx:5.8.0", "bootstrapAPIKeys": keys}));
    let same = enterprise(json!({"image": "emqx:5.9.0", "bootstrapAPIKeys": keys}));
    assert_eq!(cel_errors(&schema, &same, Some(&old)), Vec::<String>::new());
    let changed = enterprise(
        json!({"image": "emqx:5.8.0", "bootstrapAPIKeys": [{"key": "ops", "secret": "other"}]}),
    );
    assert!(
        cel_errors(&schema, &changed, Some(&old))[0].contains("bootstrapAPIKeys cannot be updated")
    );
    let removed = enterprise(json!({"image": "emqx:5.8.0"}));
    assert_eq!(cel_errors(&schema, &removed, Some(&old)).len(), 1);
    // Adding keys to an object that had none is allowed (nothing to protect yet).
    assert_eq!(
        cel_errors(&schema, &old, Some(&removed)),
        Vec::<String>::new()
    );
}

#[test]
fn names_longer_than_the_derived_names_allow_are_refused() {
    for (kind, version) in [
        ("EMQX", "v2beta1"),
        ("EMQX", "v2alpha2"),
        ("EmqxEnterprise", "v1beta4"),
        ("EmqxEnterprise", "v2beta1"),
    ] {
        let schema = schema(kind, version);
        let spec = if version == "v1beta4" {
            json!({})
        } else {
            json!({"image": "emqx:5.8.0"})
        };
        let named = |name: &str| {
            json!({"apiVersion": format!("apps.emqx.io/{version}"), "kind": kind,
                "metadata": {"name": name}, "spec": spec})
        };
        let longest = named(&"n".repeat(emqx_crd::limits::NAME_MAX));
        assert_eq!(
            cel_errors(&schema, &longest, None),
            Vec::<String>::new(),
            "{kind} {version}"
        );
        let too_long = named(&"n".repeat(emqx_crd::limits::NAME_MAX + 1));
        let errors = cel_errors(&schema, &too_long, None);
        assert_eq!(errors.len(), 1, "{kind} {version}: {errors:?}");
        assert!(
            errors[0].contains("metadata.name must be at most 36 characters"),
            "{errors:?}"
        );
        assert_eq!(
            cel_errors(&schema, &longest, Some(&longest)),
            Vec::<String>::new(),
            "{kind} {version}: an update of a valid object"
        );
    }
}
