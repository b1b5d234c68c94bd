//! Defaulting: exactly what the kube-apiserver's structural defaulting does
//! with the CRD's schema, so the webhook can never contradict the CRD (the
//! "structural-defaulting caveat"). A missing property with a `default` gets
//! it, then its own properties are defaulted; `null` where the schema does not
//! allow null is dropped first, as the apiserver does
//! (`apiextensions-apiserver/pkg/apiserver/schema/defaulting`: it fills
//! missing properties, then recurses into every value, the freshly defaulted
//! ones included — which is why `default: {}` on an object makes its fields'
//! defaults apply). Only absent fields are filled, so applying it twice
//! changes nothing, and nothing depends on time or randomness.
//!
//! The walk does not read the schema itself but a [`DefaultsTree`] taken from
//! it: only what defaulting looks at (property names, `nullable`, `default`,
//! `items`, `additionalProperties`), without descriptions, types, validation
//! rules or printer columns, and without subtrees in which defaulting can
//! change nothing. The trees of the four served versions are generated with
//! the CRDs (`cargo run -p emqx-crd --bin crdgen` writes
//! `src/defaults_tree.json`; a test fails when it differs from what the types
//! generate) and compiled in, so a process that defaults objects never
//! generates a CRD: generating them (schemars, `merge_crds`, JSON round trips)
//! left the webhook ~7 MiB larger for good.

use crate::crd::{CrdError, emqx_crd, emqx_enterprise_crd, version_schema};
use crate::served::Served;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

/// Where `crdgen` writes the generated trees, relative to the crate.
pub const GENERATED_FILE: &str = "src/defaults_tree.json";

/// The generated trees, as committed.
const GENERATED: &str = include_str!("defaults_tree.json");

/// What structural defaulting needs of one schema node.
///
/// Built by [`DefaultsTree::from_schema`]; [`DefaultsTree::apply`] gives the
/// same result as walking the schema it was built from.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DefaultsTree {
    /// The properties defaulting can act on, in the schema's order.
    #[serde(default, skip_serializing_if = "<[_]>::is_empty")]
    properties: Box<[Property]>,
    /// `items`, when defaulting can act inside list items.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    items: Option<Box<DefaultsTree>>,
    /// `additionalProperties` (a schema object), when defaulting can act
    /// inside map values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    additional: Option<Box<DefaultsTree>>,
}

/// One property of an object schema.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Property {
    name: Box<str>,
    /// `nullable: true`: an explicit `null` is kept; otherwise it is dropped.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    nullable: bool,
    /// `default`, filled in when the property is absent (`null` is a value here).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present"
    )]
    default: Option<Value>,
    /// The property's own schema, when defaulting can act inside it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    schema: Option<Box<DefaultsTree>>,
}

/// A `default` that is present is `Some`, even when it is `null`.
fn present<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(deserializer).map(Some)
}

/// One served version's tree in the generated file.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct GeneratedTree {
    api_version: String,
    kind: String,
    tree: DefaultsTree,
}

impl DefaultsTree {
    /// Takes from an OpenAPI v3 schema what defaulting reads. Never fails: a
    /// schema without properties, items or defaults gives an empty tree.
    pub fn from_schema(schema: &Value) -> DefaultsTree {
        let properties = match schema.get("properties") {
            Some(Value::Object(properties)) => properties
                .iter()
                .filter_map(|(name, property)| Property::from_schema(name, property))
                .collect(),
            _ => Box::default(),
        };
        let items = schema.get("items").and_then(DefaultsTree::non_empty);
        let additional = match schema.get("additionalProperties") {
            Some(additional @ Value::Object(_)) => DefaultsTree::non_empty(additional),
            _ => None,
        };
        DefaultsTree {
            properties,
            items,
            additional,
        }
    }

    /// The tree of `schema`, or `None` when defaulting can change nothing
    /// inside a value of that schema.
    fn non_empty(schema: &Value) -> Option<Box<DefaultsTree>> {
        let tree = DefaultsTree::from_schema(schema);
        (!tree.is_empty()).then(|| Box::new(tree))
    }

    /// True when applying the tree can change no value.
    pub fn is_empty(&self) -> bool {
        self.properties.is_empty() && self.items.is_none() && self.additional.is_none()
    }

    /// Applies the defaults to `value` in place.
    pub fn apply(&self, value: &mut Value) {
        match value {
            Value::Object(map) => self.apply_object(map),
            Value::Array(items) => {
                if let Some(item) = &self.items {
                    for value in items {
                        item.apply(value);
                    }
                }
            }
            _ => {}
        }
    }

    fn apply_object(&self, map: &mut Map<String, Value>) {
        for property in &self.properties {
            let name: &str = &property.name;
            if !property.nullable && matches!(map.get(name), Some(Value::Null)) {
                map.remove(name);
            }
            if let Some(default) = &property.default
                && !map.contains_key(name)
            {
                map.insert(name.to_owned(), default.clone());
            }
            if let Some(schema) = &property.schema
                && let Some(child) = map.get_mut(name)
            {
                schema.apply(child);
            }
        }
        if let Some(additional) = &self.additional {
            for child in map.values_mut() {
                additional.apply(child);
            }
        }
    }

    /// Number of schema nodes kept (properties, items, additionalProperties),
    /// for the size test.
    pub fn node_count(&self) -> usize {
        let nested = |tree: &Option<Box<DefaultsTree>>| tree.as_ref().map_or(0, |t| t.node_count());
        self.properties
            .iter()
            .map(|p| 1 + nested(&p.schema))
            .sum::<usize>()
            + nested(&self.items)
            + nested(&self.additional)
    }
}

impl Property {
    /// `None` when the property is nullable, has no default and nothing to
    /// default inside: defaulting would leave it as it is.
    fn from_schema(name: &str, schema: &Value) -> Option<Property> {
        let nullable = schema
            .get("nullable")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let default = schema.get("default").cloned();
        let inner = DefaultsTree::non_empty(schema);
        if nullable && default.is_none() && inner.is_none() {
            return None;
        }
        Some(Property {
            name: name.into(),
            nullable,
            default,
            schema: inner,
        })
    }
}

/// The trees of the served versions, from the CRDs the types generate, as
/// the text of [`GENERATED_FILE`].
pub fn generate_file() -> Result<String, CrdError> {
    let emqx = emqx_crd()?;
    let enterprise = emqx_enterprise_crd()?;
    let trees = Served::ALL
        .into_iter()
        .map(|served| {
            let crd = match served.kind() {
                "EMQX" => &emqx,
                _ => &enterprise,
            };
            let schema = version_schema(crd, served.version()).unwrap_or(Value::Null);
            GeneratedTree {
                api_version: served.api_version().to_owned(),
                kind: served.kind().to_owned(),
                tree: DefaultsTree::from_schema(&schema),
            }
        })
        .collect::<Vec<_>>();
    // One line per served version: compact, yet diffs show which one changed.
    let mut text = String::from("[\n");
    for (i, tree) in trees.iter().enumerate() {
        text.push_str(&serde_json::to_string(tree)?);
        text.push_str(if i + 1 < trees.len() { ",\n" } else { "\n" });
    }
    text.push_str("]\n");
    Ok(text)
}

/// The compiled-in trees, in [`Served::ALL`] order (`None` for a version the
/// file lacks, or all `None` if the file does not parse — the tests ensure
/// neither happens).
pub(crate) fn compiled_in() -> [Option<DefaultsTree>; 4] {
    let mut trees = [None, None, None, None];
    let Ok(generated) = serde_json::from_str::<Vec<GeneratedTree>>(GENERATED) else {
        return trees;
    };
    for entry in generated {
        if let Some(index) = Served::find(&entry.api_version, &entry.kind)
            .and_then(|served| Served::ALL.iter().position(|s| *s == served))
        {
            trees[index] = Some(entry.tree);
        }
    }
    trees
}

/// Applies the defaults of `schema` to `value` in place (builds the tree each
/// time; callers that default often keep a [`DefaultsTree`]).
pub fn apply_schema_defaults(value: &mut Value, schema: &Value) {
    DefaultsTree::from_schema(schema).apply(value);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> Value {
        json!({"type": "object", "properties": {
            "a": {"type": "object", "default": {}, "properties": {
                "b": {"type": "integer", "default": 7},
                "c": {"type": "object", "properties": {"d": {"type": "string", "default": "x"}}}
            }},
            "l": {"type": "array", "items": {"type": "object", "properties": {"n": {"type": "integer", "default": 1}}}},
            "z": {"type": "integer", "default": 3, "nullable": true}
        }})
    }

    #[test]
    fn absent_parent_gets_its_default_then_nested_defaults() {
        let mut v = json!({});
        apply_schema_defaults(&mut v, &schema());
        assert_eq!(v, json!({"a": {"b": 7}, "z": 3}));
    }

    #[test]
    fn nested_defaults_only_apply_inside_present_parents() {
        let mut v = json!({"a": {"c": {}}, "l": [{}, {"n": 5}]});
        apply_schema_defaults(&mut v, &schema());
        assert_eq!(
            v,
            json!({"a": {"b": 7, "c": {"d": "x"}}, "l": [{"n": 1}, {"n": 5}], "z": 3})
        );
    }

    #[test]
    fn null_is_dropped_unless_nullable() {
        let mut v = json!({"a": null, "z": null});
        apply_schema_defaults(&mut v, &schema());
        assert_eq!(v, json!({"a": {"b": 7}, "z": null}));
    }

    #[test]
    fn defaulting_twice_changes_nothing() {
        let mut once = json!({"a": {"c": {}}, "l": [{}]});
        apply_schema_defaults(&mut once, &schema());
        let mut twice = once.clone();
        apply_schema_defaults(&mut twice, &schema());
        assert_eq!(once, twice);
    }

    #[test]
    fn null_in_a_property_without_default_is_dropped_at_any_depth() {
        let schema = json!({"properties": {"o": {"properties": {"s": {"type": "string"}}}}});
        let mut v = json!({"o": {"s": null}});
        apply_schema_defaults(&mut v, &schema);
        assert_eq!(v, json!({"o": {}}));
    }

    #[test]
    fn map_values_are_defaulted_through_additional_properties() {
        let schema = json!({"additionalProperties": {"properties": {"p": {"default": 80}}}});
        let mut v = json!({"x": {}, "y": {"p": 1}, "z": 5});
        apply_schema_defaults(&mut v, &schema);
        assert_eq!(v, json!({"x": {"p": 80}, "y": {"p": 1}, "z": 5}));
        // `additionalProperties: true` allows anything and defaults nothing.
        let open = json!({"additionalProperties": true});
        assert!(DefaultsTree::from_schema(&open).is_empty());
    }

    #[test]
    fn a_null_default_is_filled_in_like_any_other() {
        let schema = json!({"properties": {"n": {"nullable": true, "default": null}}});
        let mut v = json!({});
        apply_schema_defaults(&mut v, &schema);
        assert_eq!(v, json!({"n": null}));
    }

    #[test]
    fn only_what_defaulting_reads_is_kept() {
        let schema = json!({"type": "object", "description": "long text", "properties": {
            "kept": {"type": "string", "description": "non-nullable: null is dropped"},
            "gone": {"type": "string", "nullable": true, "description": "nothing to do"},
            "open": {"type": "object", "nullable": true, "x-kubernetes-preserve-unknown-fields": true}
        }});
        let tree = DefaultsTree::from_schema(&schema);
        assert_eq!(tree.node_count(), 1);
        let mut v = json!({"kept": null, "gone": null, "open": null});
        tree.apply(&mut v);
        assert_eq!(v, json!({"gone": null, "open": null}));
    }
}
