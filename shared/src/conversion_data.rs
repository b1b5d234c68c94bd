//! The `apps.emqx.io/conversion-data` annotation: what a conversion could not
//! express in the target version, so converting back restores it.
//!
//! Converting `obj` (version A) to B: `b = map(obj)`, `back = map⁻¹(b)`; every
//! place where `obj` and `back` differ becomes an entry `{path, value, was}`
//! (JSON Pointer into A, A's value — absent means "remove" — and `back`'s value
//! there). Converting B back to A restores an entry only where the object still
//! holds `was`: if a user changed that part through version B, the edit wins
//! over the stash. Entries under the same parent are restored all or none, so
//! related fields (an image's registry and repository) never mix old and new;
//! an entry marked `alone` (a default of the other version's schema) is
//! restored on its own.
//! Objects are compared key by key; lists as a whole.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// The annotation's content.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConversionData {
    /// The version the entries belong to (`apps.emqx.io/v1beta4`, ...).
    pub api_version: String,
    /// The differences to restore.
    pub entries: Vec<Entry>,
}

/// One difference.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// JSON Pointer (RFC 6901) into the object.
    pub path: String,
    /// The original value; absent means the field did not exist.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<Value>,
    /// What the plain conversion yields there; absent means nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub was: Option<Value>,
    /// Restored on its own, not all-or-none with its siblings: a field the
    /// other version's schema defaults on every write in it (see
    /// [`crate::dynamic::convert_object`]), unrelated to the fields next to
    /// it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub alone: bool,
}

/// The differences that turn `back` into `original`.
pub fn diff(original: &Value, back: &Value) -> Vec<Entry> {
    let mut entries = Vec::new();
    diff_into(Some(original), Some(back), &mut String::new(), &mut entries);
    entries
}

fn diff_into(a: Option<&Value>, b: Option<&Value>, path: &mut String, out: &mut Vec<Entry>) {
    if a == b {
        return;
    }
    if let (Some(Value::Object(a)), Some(Value::Object(b))) = (a, b) {
        let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
        keys.sort();
        keys.dedup();
        for key in keys {
            let len = path.len();
            path.push('/');
            path.push_str(&key.replace('~', "~0").replace('/', "~1"));
            diff_into(a.get(key), b.get(key), path, out);
            path.truncate(len);
        }
        return;
    }
    out.push(Entry {
        path: path.clone(),
        value: a.cloned(),
        was: b.cloned(),
        alone: false,
    });
}

/// Restores `entries` into `target` where it still holds what the plain
/// conversion produced (see the module doc).
pub fn restore(target: &mut Value, entries: &[Entry]) {
    let mut groups: BTreeMap<&str, Vec<&Entry>> = BTreeMap::new();
    for entry in entries {
        let group = if entry.alone {
            entry.path.as_str()
        } else {
            parent_of(&entry.path)
        };
        groups.entry(group).or_default().push(entry);
    }
    for group in groups.values() {
        if group
            .iter()
            .all(|e| target.pointer(&e.path) == e.was.as_ref())
        {
            for entry in group {
                set(target, &entry.path, entry.value.clone());
            }
        }
    }
}

fn parent_of(path: &str) -> &str {
    path.rfind('/').map_or("", |i| &path[..i])
}

fn set(target: &mut Value, path: &str, value: Option<Value>) {
    if path.is_empty() {
        if let Some(value) = value {
            *target = value;
        }
        return;
    }
    let tokens: Vec<String> = path
        .split('/')
        .skip(1)
        .map(|t| t.replace("~1", "/").replace("~0", "~"))
        .collect();
    let Some((last, parents)) = tokens.split_last() else {
        return;
    };
    let mut node = target;
    for token in parents {
        let Value::Object(map) = node else { return };
        node = map
            .entry(token.clone())
            .or_insert_with(|| Value::Object(Map::new()));
    }
    let Value::Object(map) = node else { return };
    match value {
        Some(value) => {
            map.insert(last.clone(), value);
        }
        None => {
            map.remove(last);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn diff_then_restore_gives_the_original() {
        let original = json!({"a": {"x": 1, "y": [1, 2]}, "gone": true, "k/~": 1});
        let back = json!({"a": {"x": 2, "z": 3}, "k/~": 2});
        let entries = diff(&original, &back);
        let mut restored = back.clone();
        restore(&mut restored, &entries);
        assert_eq!(restored, original);
    }

    #[test]
    fn an_edit_through_the_other_version_wins() {
        let original = json!({"image": {"registry": "r", "repository": "p"}, "license": "L"});
        let back = json!({"image": {"repository": "r/p"}});
        let entries = diff(&original, &back);
        // The user changed the image through the other version.
        let mut edited = json!({"image": {"repository": "other"}});
        restore(&mut edited, &entries);
        assert_eq!(
            edited,
            json!({"image": {"repository": "other"}, "license": "L"})
        );
    }
}
