//! The compact defaults tree defaults exactly like walking the CRD schema
//! itself did (the implementation it replaced, kept here as the reference):
//! on every seed manifest through `default_object`, and on random values
//! shaped by each served version's schema (absent fields, explicit nulls,
//! lists, maps, unknown keys, wrong types).

#![allow(clippy::panic, clippy::unwrap_used)] // test code: failing loudly is the point

use emqx_crd::crd::{emqx_crd, emqx_enterprise_crd, version_schema};
use emqx_crd::defaults::DefaultsTree;
use emqx_crd::dynamic::{default_object, identify};
use emqx_crd::served::Served;
use proptest::prelude::*;
use proptest::test_runner::TestRunner;
use serde_json::{Map, Value, json};
use std::path::Path;

/// The schema walker `default_object` used before the tree, verbatim.
fn reference_defaults(value: &mut Value, schema: &Value) {
    match value {
        Value::Object(map) => reference_object(map, schema),
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for item in items {
                    reference_defaults(item, item_schema);
                }
            }
        }
        _ => {}
    }
}

fn reference_object(map: &mut Map<String, Value>, schema: &Value) {
    if let Some(Value::Object(properties)) = schema.get("properties") {
        for (name, property) in properties {
            let nullable = property
                .get("nullable")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            if matches!(map.get(name), Some(Value::Null)) && !nullable {
                map.remove(name);
            }
            if !map.contains_key(name)
                && let Some(default) = property.get("default")
            {
                map.insert(name.clone(), default.clone());
            }
            if let Some(child) = map.get_mut(name) {
                reference_defaults(child, property);
            }
        }
    }
    if let Some(additional @ Value::Object(_)) = schema.get("additionalProperties") {
        for child in map.values_mut() {
            reference_defaults(child, additional);
        }
    }
}

fn schema_of(served: Served) -> Value {
    let crd = match served.kind() {
        "EMQX" => emqx_crd(),
        _ => emqx_enterprise_crd(),
    }
    .unwrap();
    version_schema(&crd, served.version()).unwrap()
}

#[test]
fn seeds_default_exactly_as_the_schema_walk_did() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/seeds");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "yaml") {
            continue;
        }
        let seed: Value = serde_saphyr::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let served = identify(&seed).unwrap();
        let mut expected = seed.clone();
        reference_defaults(&mut expected, &schema_of(served));
        assert_eq!(
            default_object(&seed).unwrap(),
            expected,
            "{}",
            path.display()
        );
        // And from nothing but the required fields, where most defaults apply.
        let bare = json!({"apiVersion": seed["apiVersion"], "kind": seed["kind"],
                          "metadata": {"name": "bare"}, "spec": seed["spec"].clone()});
        let mut expected = bare.clone();
        reference_defaults(&mut expected, &schema_of(served));
        assert_eq!(default_object(&bare).unwrap(), expected);
        checked += 1;
    }
    assert!(checked >= 4, "seed manifests missing in {}", dir.display());
}

/// A small deterministic generator (xorshift) so one proptest seed drives a
/// whole schema-shaped value.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn leaf(rng: &mut Rng) -> Value {
    match rng.below(6) {
        0 => Value::Null,
        1 => json!(rng.below(2) == 0),
        2 => json!(rng.below(5000) as i64 - 10),
        3 => json!("x"),
        4 => json!([]),
        _ => json!({}),
    }
}

/// A value for `schema`: each property absent, null, a random leaf or
/// generated from its own schema; lists of 0–2 items; map entries; and now
/// and then a key the schema does not know.
fn shaped(schema: &Value, rng: &mut Rng, depth: u32) -> Value {
    if depth > 12 {
        return leaf(rng);
    }
    if let Some(Value::Object(properties)) = schema.get("properties") {
        let mut map = Map::new();
        for (name, property) in properties {
            match rng.below(8) {
                0..=2 => {}
                3 => {
                    map.insert(name.clone(), Value::Null);
                }
                4 => {
                    map.insert(name.clone(), leaf(rng));
                }
                _ => {
                    map.insert(name.clone(), shaped(property, rng, depth + 1));
                }
            }
        }
        if rng.below(6) == 0 {
            map.insert("unknownField".into(), leaf(rng));
        }
        return Value::Object(map);
    }
    if let Some(items) = schema.get("items") {
        return Value::Array(
            (0..rng.below(3))
                .map(|_| shaped(items, rng, depth + 1))
                .collect(),
        );
    }
    if let Some(additional @ Value::Object(_)) = schema.get("additionalProperties") {
        let mut map = Map::new();
        for i in 0..rng.below(3) {
            let value = match rng.below(3) {
                0 => Value::Null,
                _ => shaped(additional, rng, depth + 1),
            };
            map.insert(format!("k{i}"), value);
        }
        return Value::Object(map);
    }
    leaf(rng)
}

#[test]
fn schema_shaped_values_default_exactly_as_the_schema_walk_did() {
    for served in Served::ALL {
        let schema = schema_of(served);
        let tree = served.defaults().unwrap();
        assert_eq!(*tree, DefaultsTree::from_schema(&schema));
        let mut runner = TestRunner::new(ProptestConfig {
            cases: 512,
            ..ProptestConfig::default()
        });
        runner
            .run(&(1u64..), |seed| {
                let mut rng = Rng(seed);
                let value = shaped(&schema, &mut rng, 0);
                let mut expected = value.clone();
                reference_defaults(&mut expected, &schema);
                let mut actual = value.clone();
                tree.apply(&mut actual);
                prop_assert_eq!(&actual, &expected, "{:?} from {}", served, value);
                Ok(())
            })
            .unwrap();
    }
}

#[test]
fn the_tree_keeps_a_fraction_of_the_schema() {
    for served in Served::ALL {
        let schema = schema_of(served);
        let tree = served.defaults().unwrap();
        let mut schema_nodes = 0;
        count_schema_nodes(&schema, &mut schema_nodes);
        println!(
            "{served:?}: schema {} bytes of JSON, {schema_nodes} nodes; defaults tree {} nodes",
            serde_json::to_string(&schema).unwrap().len(),
            tree.node_count()
        );
        assert!(tree.node_count() > 0);
        assert!(tree.node_count() < schema_nodes);
    }
}

fn count_schema_nodes(schema: &Value, count: &mut usize) {
    if let Some(Value::Object(properties)) = schema.get("properties") {
        for property in properties.values() {
            *count += 1;
            count_schema_nodes(property, count);
        }
    }
    for key in ["items", "additionalProperties"] {
        if let Some(child @ Value::Object(_)) = schema.get(key) {
            *count += 1;
            count_schema_nodes(child, count);
        }
    }
}

#[test]
fn committed_trees_match_the_types() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(emqx_crd::defaults::GENERATED_FILE);
    let committed = std::fs::read_to_string(&path).unwrap();
    assert!(
        committed == emqx_crd::defaults::generate_file().unwrap(),
        "{} differs from what the types generate; run `cargo run -p emqx-crd --bin crdgen`",
        path.display()
    );
    for served in Served::ALL {
        assert!(
            served.defaults().is_some(),
            "{served:?} missing from the compiled-in trees"
        );
    }
}
