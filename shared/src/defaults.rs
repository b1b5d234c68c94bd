//! Defaulting: exactly what the kube-apiserver's structural defaulting does
//! with the CRD's schema, so the webhook can never contradict the CRD (the
//! "structural-defaulting caveat"). It walks the generated schema: a missing
//! property with a `default` gets it, then its own properties are defaulted;
//! `null` where the schema does not allow null is dropped first, as the
//! apiserver does. Only absent fields are filled, so applying it twice changes
//! nothing, and nothing depends on time or randomness.

use serde_json::{Map, Value};

/// Applies the schema's defaults to `value` in place.
pub fn apply_schema_defaults(value: &mut Value, schema: &Value) {
    match value {
        Value::Object(map) => default_object(map, schema),
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for item in items {
                    apply_schema_defaults(item, item_schema);
                }
            }
        }
        _ => {}
    }
}

fn default_object(map: &mut Map<String, Value>, schema: &Value) {
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
                apply_schema_defaults(child, property);
            }
        }
    }
    if let Some(additional @ Value::Object(_)) = schema.get("additionalProperties") {
        for child in map.values_mut() {
            apply_schema_defaults(child, additional);
        }
    }
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
}
