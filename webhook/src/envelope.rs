//! The review envelopes, in and out: `{apiVersion, kind, request}` parsed
//! once for both kinds of review ([`open`]), and the answers written
//! straight to bytes.
//!
//! The request types hold the objects as `serde_json::Value`, the form
//! `emqx_crd::dynamic` works on, so a body is parsed into exactly one tree.
//! (kube's `AdmissionRequest<DynamicObject>` parsed each object through a
//! `#[serde(flatten)]` buffer into a `DynamicObject`, which then had to be
//! turned back into a `Value`: three trees for one object.)

use base64::Engine as _;
use kube::core::Status;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::review_error::ReviewError;

/// `admission.k8s.io/v1`, the only AdmissionReview version registered.
pub const ADMISSION_API_VERSION: &str = "admission.k8s.io/v1";
/// Kind of an admission review.
pub const ADMISSION_KIND: &str = "AdmissionReview";
/// `apiextensions.k8s.io/v1`: `conversionReviewVersions: [v1]`.
pub const CONVERSION_API_VERSION: &str = "apiextensions.k8s.io/v1";
/// Kind of a conversion review.
pub const CONVERSION_KIND: &str = "ConversionReview";

#[derive(Deserialize)]
struct Envelope<R> {
    #[serde(default, rename = "apiVersion")]
    api_version: String,
    #[serde(default)]
    kind: String,
    request: Option<R>,
}

/// Parses a review body of `api_version`/`kind` and returns its request.
pub fn open<R: DeserializeOwned>(
    body: &[u8],
    api_version: &'static str,
    kind: &'static str,
) -> Result<R, ReviewError> {
    let envelope: Envelope<R> =
        serde_json::from_slice(body).map_err(|e| ReviewError::Malformed {
            expected: kind,
            reason: e.to_string(),
        })?;
    if envelope.api_version != api_version || envelope.kind != kind {
        return Err(ReviewError::WrongType {
            expected_api_version: api_version,
            expected_kind: kind,
            api_version: envelope.api_version,
            kind: envelope.kind,
        });
    }
    envelope
        .request
        .ok_or(ReviewError::MissingRequest { expected: kind })
}

/// Group, version and kind of the object under review.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct GroupVersionKind {
    /// API group; empty for core.
    #[serde(default)]
    pub group: String,
    /// API version.
    #[serde(default)]
    pub version: String,
    /// Kind.
    #[serde(default)]
    pub kind: String,
}

/// The admission operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Operation {
    /// Create.
    Create,
    /// Update.
    Update,
    /// Delete.
    Delete,
    /// Connect (exec, proxy, …).
    Connect,
}

/// The part of an AdmissionRequest this webhook reads; the rest (userInfo,
/// options, resource, …) is skipped by the parser without being stored.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AdmissionRequest {
    /// Echoed in the response.
    pub uid: String,
    /// What is being admitted.
    pub kind: GroupVersionKind,
    /// CREATE, UPDATE, DELETE or CONNECT.
    pub operation: Operation,
    /// `status`, `scale`, … when a subresource is written.
    #[serde(default)]
    pub sub_resource: Option<String>,
    /// The new object (CREATE, UPDATE).
    #[serde(default)]
    pub object: Option<Value>,
    /// The previous object (UPDATE).
    #[serde(default)]
    pub old_object: Option<Value>,
}

/// A ConversionRequest.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConversionRequest {
    /// Echoed in the response.
    pub uid: String,
    /// `group/version` to convert every object to.
    #[serde(rename = "desiredAPIVersion")]
    pub desired_api_version: String,
    /// The objects.
    pub objects: Vec<Value>,
}

/// An admission answer.
#[derive(Debug, Clone, PartialEq)]
pub struct AdmissionAnswer {
    /// The request's uid.
    pub uid: String,
    /// Whether the request is admitted.
    pub allowed: bool,
    /// Why not (empty when allowed).
    pub result: Status,
    /// JSON Patch bytes, for a mutating answer that changes the object.
    pub patch: Option<Vec<u8>>,
    /// Warnings kubectl shows.
    pub warnings: Option<Vec<String>>,
}

impl AdmissionAnswer {
    /// Allowed, nothing to say.
    pub fn allow(uid: String) -> Self {
        AdmissionAnswer {
            uid,
            allowed: true,
            result: Status::default(),
            patch: None,
            warnings: None,
        }
    }
}

#[derive(Serialize)]
struct Out<'a, R> {
    #[serde(rename = "apiVersion")]
    api_version: &'static str,
    kind: &'static str,
    response: &'a R,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct AdmissionResponseOut<'a> {
    uid: &'a str,
    allowed: bool,
    status: &'a Status,
    /// The API documents `patch` as base64 (a Go `[]byte`).
    #[serde(skip_serializing_if = "Option::is_none")]
    patch: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    patch_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    warnings: Option<&'a Vec<String>>,
}

/// The AdmissionReview response body.
pub fn encode_admission(answer: &AdmissionAnswer) -> Result<Vec<u8>, serde_json::Error> {
    let response = AdmissionResponseOut {
        uid: &answer.uid,
        allowed: answer.allowed,
        status: &answer.result,
        patch: answer
            .patch
            .as_ref()
            .map(|p| base64::engine::general_purpose::STANDARD.encode(p)),
        patch_type: answer.patch.as_ref().map(|_| "JSONPatch"),
        warnings: answer.warnings.as_ref(),
    };
    serde_json::to_vec(&Out {
        api_version: ADMISSION_API_VERSION,
        kind: ADMISSION_KIND,
        response: &response,
    })
}

/// A conversion answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConversionAnswer {
    /// The request's uid.
    pub uid: String,
    /// Every object converted, in order; empty on failure.
    pub converted_objects: Vec<Value>,
    /// `Success`, or `Failure` with the reason.
    pub result: Status,
}

/// The ConversionReview response body.
pub fn encode_conversion(answer: &ConversionAnswer) -> Result<Vec<u8>, serde_json::Error> {
    serde_json::to_vec(&Out {
        api_version: CONVERSION_API_VERSION,
        kind: CONVERSION_KIND,
        response: answer,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_envelope_is_checked_once_for_both_kinds() {
        let open_admission = |b: &[u8]| {
            open::<AdmissionRequest>(b, ADMISSION_API_VERSION, ADMISSION_KIND).map(|_| ())
        };
        assert!(matches!(
            open_admission(b"{"),
            Err(ReviewError::Malformed { .. })
        ));
        assert!(matches!(
            open_admission(
                br#"{"apiVersion":"admission.k8s.io/v1beta1","kind":"AdmissionReview"}"#
            ),
            Err(ReviewError::WrongType { .. })
        ));
        assert_eq!(
            open_admission(br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#),
            Err(ReviewError::MissingRequest {
                expected: "AdmissionReview"
            })
        );
        let conversion = open::<ConversionRequest>(
            br#"{"apiVersion":"apiextensions.k8s.io/v1","kind":"ConversionReview","request":{"uid":"u","desiredAPIVersion":"a/b","objects":[{}]}}"#,
            CONVERSION_API_VERSION,
            CONVERSION_KIND,
        )
        .expect("conversion request");
        assert_eq!(conversion.desired_api_version, "a/b");
        assert_eq!(conversion.objects.len(), 1);
    }

    #[test]
    fn an_allowed_answer_without_a_patch_has_no_patch_fields() {
        let bytes = encode_admission(&AdmissionAnswer::allow("u".into())).expect("encode");
        let v: Value = serde_json::from_slice(&bytes).expect("json");
        assert_eq!(
            v,
            serde_json::json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                "response": {"uid": "u", "allowed": true, "status": {}}})
        );
    }
}
