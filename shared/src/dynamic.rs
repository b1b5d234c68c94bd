//! JSON-level entry points for the webhook (the contract between `emqx-crd`
//! and `emqx-webhook`). Issue 2 fills these in; the signatures are fixed.

use serde_json::Value;

/// Why an object could not be handled at all (as opposed to a validation
/// verdict about an object that was understood).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ObjectError {
    /// `apiVersion`/`kind` is not one this crate serves.
    #[error("unsupported kind {kind:?} in apiVersion {api_version:?}")]
    UnknownKind { api_version: String, kind: String },
    /// The object does not parse as its kind; `path` names the field.
    #[error("{path}: {message}")]
    Malformed { path: String, message: String },
    /// A conversion that cannot be done (e.g. an unknown target version).
    #[error("cannot convert: {0}")]
    Conversion(String),
}

/// One validation failure, named by its field path (`spec.updateStrategy.
/// evacuationStrategy.connEvictRate`) with a message that says the allowed range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub path: String,
    pub message: String,
}

/// The outcome of validating an understood object.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verdict {
    /// Non-empty means the object is denied.
    pub errors: Vec<FieldError>,
    /// Admission warnings (shown by kubectl); never block.
    pub warnings: Vec<String>,
}

/// Returns the defaulted object. Deterministic and idempotent.
pub fn default_object(obj: &Value) -> Result<Value, ObjectError> {
    Err(unimplemented_for(obj))
}

/// Validates `new` (and, on update, the transition from `old`).
pub fn validate_object(new: &Value, old: Option<&Value>) -> Result<Verdict, ObjectError> {
    let _ = old;
    Err(unimplemented_for(new))
}

/// Converts `obj` to `desired_api_version` (same kind), losslessly.
pub fn convert_object(obj: &Value, desired_api_version: &str) -> Result<Value, ObjectError> {
    let _ = desired_api_version;
    Err(unimplemented_for(obj))
}

fn unimplemented_for(obj: &Value) -> ObjectError {
    ObjectError::UnknownKind {
        api_version: obj["apiVersion"].as_str().unwrap_or_default().to_owned(),
        kind: obj["kind"].as_str().unwrap_or_default().to_owned(),
    }
}
