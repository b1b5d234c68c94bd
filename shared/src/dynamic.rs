//! JSON-level entry points for the webhook (the contract between `emqx-crd`
//! and `emqx-webhook`). They take whole objects (`apiVersion`, `kind`,
//! `metadata`, `spec`, `status`) as `serde_json::Value`.

use crate::conversion_data::{self, ConversionData};
use crate::names::ANNOTATION_CONVERSION_DATA;
use crate::served::Served;
use crate::{v1beta4, v2alpha2, v2beta1, validate};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

/// Why an object could not be handled at all (as opposed to a validation
/// verdict about an object that was understood).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ObjectError {
    /// `apiVersion`/`kind` is not one this crate serves.
    #[error("unsupported kind {kind:?} in apiVersion {api_version:?}")]
    UnknownKind {
        /// The object's `apiVersion`.
        api_version: String,
        /// The object's `kind`.
        kind: String,
    },
    /// The object does not parse as its kind; `path` names the field.
    #[error("{path}: {message}")]
    Malformed {
        /// Field path, e.g. `spec.updateStrategy.initialDelaySeconds`.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// A conversion that cannot be done (e.g. an unknown target version).
    #[error("cannot convert: {0}")]
    Conversion(String),
}

/// One validation failure, named by its field path (`spec.updateStrategy.
/// evacuationStrategy.connEvictRate`) with a message that says the allowed range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// Field path from the object root.
    pub path: String,
    /// What is wrong and what is allowed.
    pub message: String,
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// The outcome of validating an understood object.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verdict {
    /// Non-empty means the object is denied.
    pub errors: Vec<FieldError>,
    /// Admission warnings (shown by kubectl); never block.
    pub warnings: Vec<String>,
}

impl Verdict {
    /// True when there are no errors.
    pub fn allowed(&self) -> bool {
        self.errors.is_empty()
    }
}

/// Which served kind/version `obj` is.
pub fn identify(obj: &Value) -> Result<Served, ObjectError> {
    let Value::Object(map) = obj else {
        return Err(ObjectError::Malformed {
            path: String::new(),
            message: "the object must be a JSON object".into(),
        });
    };
    let field = |name: &str| map.get(name).and_then(Value::as_str).unwrap_or_default();
    Served::find(field("apiVersion"), field("kind")).ok_or_else(|| ObjectError::UnknownKind {
        api_version: field("apiVersion").to_owned(),
        kind: field("kind").to_owned(),
    })
}

/// Parses `obj` as `T`, naming the field of the first error.
pub fn parse<T: DeserializeOwned>(obj: &Value) -> Result<T, ObjectError> {
    // Path tracking doubles the cost of parsing; only pay it to explain a failure.
    if let Ok(parsed) = T::deserialize(obj) {
        return Ok(parsed);
    }
    serde_path_to_error::deserialize(obj).map_err(|e| {
        let path = e.path().to_string();
        let path = if path == "." { String::new() } else { path };
        let message = e.into_inner().to_string();
        refine(obj, path, message)
    })
}

/// `#[serde(flatten)]` hides the inner field of an error (serde buffers the
/// flattened struct); re-parse the flattened part on its own to find it.
fn refine(root: &Value, path: String, message: String) -> ObjectError {
    let pointer = |path: &str| format!("/{}", path.replace('.', "/"));
    let inner = if path == "spec"
        && root.get("kind").and_then(Value::as_str) == Some("EmqxEnterprise")
        && root.get("apiVersion").and_then(Value::as_str) == Some("apps.emqx.io/v2beta1")
    {
        root.pointer("/spec").map(first_error::<v2beta1::EMQXSpec>)
    } else if path.ends_with("coreTemplate.spec") && !path.contains('[') {
        root.pointer(&pointer(&path))
            .map(first_error::<v2beta1::EMQXReplicantTemplateSpec>)
    } else {
        None
    };
    match inner.flatten() {
        Some((sub, sub_message)) if !sub.is_empty() => {
            let full = format!("{path}.{sub}");
            // The refined path may itself end at a flattened struct.
            if full.ends_with("coreTemplate.spec") && full != path {
                return refine(root, full, sub_message);
            }
            ObjectError::Malformed {
                path: full,
                message: sub_message,
            }
        }
        _ => ObjectError::Malformed { path, message },
    }
}

fn first_error<T: DeserializeOwned>(value: &Value) -> Option<(String, String)> {
    serde_path_to_error::deserialize::<_, T>(value)
        .err()
        .map(|e| {
            let path = e.path().to_string();
            (
                if path == "." { String::new() } else { path },
                e.into_inner().to_string(),
            )
        })
}

fn to_value<T: Serialize>(value: &T) -> Result<Value, ObjectError> {
    serde_json::to_value(value).map_err(|e| ObjectError::Malformed {
        path: String::new(),
        message: e.to_string(),
    })
}

/// Returns the defaulted object. Deterministic and idempotent: it applies
/// exactly the defaults the CRD schema of the object's version declares (see
/// [`crate::defaults`]), after checking that the object parses.
pub fn default_object(obj: &Value) -> Result<Value, ObjectError> {
    let served = identify(obj)?;
    parse_typed(served, obj)?;
    let defaults = served.defaults().ok_or_else(|| {
        ObjectError::Conversion(format!("no schema for {}", served.api_version()))
    })?;
    let mut out = obj.clone();
    defaults.apply(&mut out);
    Ok(out)
}

/// The typed object of a served version.
enum Typed {
    EmqxV2beta1(Box<v2beta1::EMQX>),
    EmqxV2alpha2(Box<v2alpha2::EMQX>),
    EnterpriseV1beta4(Box<v1beta4::EmqxEnterprise>),
    EnterpriseV2beta1(Box<v2beta1::EmqxEnterprise>),
}

impl Typed {
    fn to_value(&self) -> Result<Value, ObjectError> {
        match self {
            Typed::EmqxV2beta1(o) => to_value(o),
            Typed::EmqxV2alpha2(o) => to_value(o),
            Typed::EnterpriseV1beta4(o) => to_value(o),
            Typed::EnterpriseV2beta1(o) => to_value(o),
        }
    }

    /// The plain (annotation-free) conversion to the other version of the kind.
    fn convert(self) -> Typed {
        match self {
            Typed::EmqxV2beta1(o) => Typed::EmqxV2alpha2(Box::new((*o).into())),
            Typed::EmqxV2alpha2(o) => Typed::EmqxV2beta1(Box::new((*o).into())),
            Typed::EnterpriseV1beta4(o) => Typed::EnterpriseV2beta1(Box::new((*o).into())),
            Typed::EnterpriseV2beta1(o) => Typed::EnterpriseV1beta4(Box::new((*o).into())),
        }
    }
}

fn parse_typed(served: Served, obj: &Value) -> Result<Typed, ObjectError> {
    Ok(match served {
        Served::EmqxV2beta1 => Typed::EmqxV2beta1(Box::new(parse(obj)?)),
        Served::EmqxV2alpha2 => Typed::EmqxV2alpha2(Box::new(parse(obj)?)),
        Served::EnterpriseV1beta4 => Typed::EnterpriseV1beta4(Box::new(parse(obj)?)),
        Served::EnterpriseV2beta1 => Typed::EnterpriseV2beta1(Box::new(parse(obj)?)),
    })
}

/// Validates `new` (and, on update, the transition from `old`).
pub fn validate_object(new: &Value, old: Option<&Value>) -> Result<Verdict, ObjectError> {
    let served = identify(new)?;
    let typed = parse_typed(served, new)?;
    let old_typed = match old {
        Some(old) => {
            let old_served = identify(old)?;
            if old_served != served {
                return Err(ObjectError::Malformed {
                    path: "apiVersion".into(),
                    message: format!(
                        "old object is {} {}, new is {} {}",
                        old_served.api_version(),
                        old_served.kind(),
                        served.api_version(),
                        served.kind()
                    ),
                });
            }
            Some(parse_typed(served, old)?)
        }
        None => None,
    };
    let mut verdict = match (&typed, &old_typed) {
        (Typed::EmqxV2beta1(o), old) => {
            let old = match old {
                Some(Typed::EmqxV2beta1(p)) => Some(&p.spec),
                _ => None,
            };
            validate::validate_hub(&o.spec, o.status.as_ref(), old, false)
        }
        (Typed::EnterpriseV2beta1(o), old) => {
            let old = match old {
                Some(Typed::EnterpriseV2beta1(p)) => Some(&p.spec.emqx),
                _ => None,
            };
            validate::validate_hub(&o.spec.emqx, o.status.as_ref(), old, true)
        }
        (Typed::EmqxV2alpha2(o), old) => {
            let old = match old {
                Some(Typed::EmqxV2alpha2(p)) => Some(&p.spec),
                _ => None,
            };
            validate::validate_v2alpha2(&o.spec, o.status.as_ref(), old)
        }
        (Typed::EnterpriseV1beta4(o), old) => {
            let old = match old {
                Some(Typed::EnterpriseV1beta4(p)) => Some(&p.spec),
                _ => None,
            };
            validate::validate_v1beta4(&o.spec, o.status.as_ref(), old)
        }
    };
    if let Some(e) = validate::check_name(new.pointer("/metadata/name").and_then(Value::as_str)) {
        verdict.errors.insert(0, e);
    }
    let understood = typed.to_value()?;
    let mut unknown = Vec::new();
    unknown_fields(new, &understood, &mut String::new(), &mut unknown);
    verdict
        .errors
        .extend(unknown.into_iter().take(20).map(|path| FieldError {
            path,
            message: "unknown field (not part of this API version)".into(),
        }));
    Ok(verdict)
}

/// Paths present (and not null) in `given` but dropped by the typed model.
fn unknown_fields(given: &Value, understood: &Value, path: &mut String, out: &mut Vec<String>) {
    match (given, understood) {
        (Value::Object(g), Value::Object(u)) => {
            for (key, value) in g {
                if path.is_empty() && (key == "apiVersion" || key == "kind") {
                    continue;
                }
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(key);
                match u.get(key) {
                    Some(child) => unknown_fields(value, child, path, out),
                    None if !value.is_null() => out.push(path.clone()),
                    None => {}
                }
                path.truncate(len);
            }
        }
        (Value::Array(g), Value::Array(u)) => {
            for (i, (a, b)) in g.iter().zip(u).enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                unknown_fields(a, b, path, out);
                path.truncate(len);
            }
        }
        _ => {}
    }
}

/// Converts `obj` to `desired_api_version` (same kind), losslessly: what the
/// target cannot express is kept in the `apps.emqx.io/conversion-data`
/// annotation and restored when the object is converted back.
pub fn convert_object(obj: &Value, desired_api_version: &str) -> Result<Value, ObjectError> {
    let served = identify(obj)?;
    let target = served.sibling(desired_api_version).ok_or_else(|| {
        ObjectError::Conversion(format!(
            "{} has no served version {desired_api_version:?}",
            served.kind()
        ))
    })?;
    if target == served {
        return Ok(obj.clone());
    }
    let mut source = obj.clone();
    let stash = take_conversion_data(&mut source)?;
    let typed_target = parse_typed(served, &source)?.convert();
    let mut converted = typed_target.to_value()?;
    let back = match stash.filter(|s| s.api_version == target.api_version()) {
        Some(stash) => {
            conversion_data::restore(&mut converted, &stash.entries);
            // Restored fields may be ones the way back maps: re-read them.
            parse_typed(target, &converted)?.convert().to_value()?
        }
        None => typed_target.convert().to_value()?,
    };
    let mut entries = conversion_data::diff(&source, &back);
    entries.extend(defaulted_on_write(
        served, target, &converted, &source, &back,
    )?);
    if !entries.is_empty() {
        let data = ConversionData {
            api_version: served.api_version().to_owned(),
            entries,
        };
        put_conversion_data(&mut converted, &data)?;
    }
    Ok(converted)
}

/// Entries that undo, on the way back, what the apiserver's defaulting in
/// `target` adds to a write through that version: it fills the request
/// version's schema defaults before converting to the stored one, so a
/// field the source never had (a v1beta4 `EmqxEnterprise` has no
/// `livenessProbe` unless its user set one) would be stored as if set, and
/// change the pod template of a cluster whose user only changed a label.
/// Each entry removes the field where the way back still holds exactly the
/// default (a value the writer chose is kept) and is restored on its own.
/// `converted`: `source` in `target`, before the annotation; `back`: its
/// plain way back.
///
/// Only for a source as the apiserver hands it over from storage, defaulted
/// in its own version (`served`): an object that is not (one built by hand,
/// in tests) converts and converts back to itself as before.
fn defaulted_on_write(
    served: Served,
    target: Served,
    converted: &Value,
    source: &Value,
    back: &Value,
) -> Result<Vec<conversion_data::Entry>, ObjectError> {
    let (Some(own), Some(defaults)) = (served.defaults(), target.defaults()) else {
        return Ok(Vec::new());
    };
    let mut source_defaulted = source.clone();
    own.apply(&mut source_defaulted);
    if source_defaulted != *source {
        return Ok(Vec::new());
    }
    let mut defaulted = converted.clone();
    defaults.apply(&mut defaulted);
    if defaulted == *converted {
        return Ok(Vec::new());
    }
    let back_defaulted = parse_typed(target, &defaulted)?.convert().to_value()?;
    Ok(conversion_data::diff(back, &back_defaulted)
        .into_iter()
        .filter(|e| e.value.is_none() && e.was.is_some() && source.pointer(&e.path).is_none())
        .map(|e| conversion_data::Entry {
            path: e.path,
            value: None,
            was: e.was,
            alone: true,
        })
        .collect())
}

/// Removes and parses the conversion-data annotation. An annotations map left
/// empty is removed too when the stash says it created it.
fn take_conversion_data(obj: &mut Value) -> Result<Option<ConversionData>, ObjectError> {
    let Some(metadata) = obj.get_mut("metadata").and_then(Value::as_object_mut) else {
        return Ok(None);
    };
    let Some(Value::Object(annotations)) = metadata.get_mut("annotations") else {
        return Ok(None);
    };
    let Some(raw) = annotations.remove(ANNOTATION_CONVERSION_DATA) else {
        return Ok(None);
    };
    let emptied = annotations.is_empty();
    let text = raw.as_str().unwrap_or_default();
    let data: StoredData = serde_json::from_str(text).map_err(|e| ObjectError::Malformed {
        path: format!("metadata.annotations.{ANNOTATION_CONVERSION_DATA}"),
        message: format!("not conversion data this operator wrote: {e}"),
    })?;
    if emptied && data.created_annotations {
        metadata.remove("annotations");
    }
    Ok(Some(data.data))
}

#[derive(serde::Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
struct StoredData {
    #[serde(flatten)]
    data: ConversionData,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    created_annotations: bool,
}

fn put_conversion_data(obj: &mut Value, data: &ConversionData) -> Result<(), ObjectError> {
    let Some(metadata) = obj.get_mut("metadata").and_then(Value::as_object_mut) else {
        return Err(ObjectError::Conversion("object has no metadata".into()));
    };
    let created = !matches!(metadata.get("annotations"), Some(Value::Object(_)));
    if created {
        metadata.insert("annotations".into(), Value::Object(Map::new()));
    }
    let stored = StoredData {
        data: data.clone(),
        created_annotations: created,
    };
    let text =
        serde_json::to_string(&stored).map_err(|e| ObjectError::Conversion(e.to_string()))?;
    if let Some(Value::Object(annotations)) = metadata.get_mut("annotations") {
        annotations.insert(ANNOTATION_CONVERSION_DATA.into(), Value::String(text));
    }
    Ok(())
}
