//! ConversionReview v1 → ConversionReview v1. Pure: bytes in, review out.
//!
//! Every object goes through `emqx_crd::dynamic::convert_object`. If any
//! object fails, the whole review fails (the API server needs all or none)
//! with a message naming the object and the reason.

use emqx_crd::dynamic;
use kube::core::Status;
use serde_json::Value;

use crate::envelope::{self, CONVERSION_API_VERSION, CONVERSION_KIND, ConversionAnswer};
use crate::kind::KindLabel;
use crate::review_error::ReviewError;

/// An answered conversion request.
#[derive(Debug)]
pub struct ConversionOutcome {
    /// The answer to send back ([`encode`]).
    pub answer: ConversionAnswer,
    /// The kind of the first object (all objects of one review share a CRD).
    pub kind: KindLabel,
    /// Whether the conversion failed.
    pub failed: bool,
}

/// Answers one ConversionReview body.
pub fn review(body: &[u8]) -> Result<ConversionOutcome, ReviewError> {
    let request: envelope::ConversionRequest =
        envelope::open(body, CONVERSION_API_VERSION, CONVERSION_KIND)?;
    let kind = request.objects.first().map_or(KindLabel::Unknown, |o| {
        KindLabel::of_api_version(str_at(o, "apiVersion"), str_at(o, "kind"))
    });
    let envelope::ConversionRequest {
        uid,
        desired_api_version: desired,
        objects,
    } = request;
    // Each source object is dropped as soon as it is converted, so the
    // request and the answer are not both held in full.
    let mut converted = Vec::with_capacity(objects.len());
    let mut failure = None;
    for (i, obj) in objects.into_iter().enumerate() {
        match dynamic::convert_object(&obj, &desired) {
            Ok(c) => converted.push(c),
            Err(e) => {
                failure = Some(format!(
                    "objects[{i}] ({} {}/{}): {e}",
                    str_at(&obj, "kind"),
                    obj.pointer("/metadata/namespace")
                        .and_then(Value::as_str)
                        .unwrap_or_default(),
                    obj.pointer("/metadata/name")
                        .and_then(Value::as_str)
                        .unwrap_or_default(),
                ));
                break;
            }
        }
    }
    let (answer, failed) = match failure {
        None => (
            ConversionAnswer {
                uid,
                converted_objects: converted,
                result: Status::success(),
            },
            false,
        ),
        Some(message) => (
            ConversionAnswer {
                uid,
                converted_objects: Vec::new(),
                result: Status::failure(
                    &format!("conversion to {desired} failed: {message}"),
                    "ConversionFailed",
                ),
            },
            true,
        ),
    };
    Ok(ConversionOutcome {
        answer,
        kind,
        failed,
    })
}

/// The response body.
pub fn encode(answer: &ConversionAnswer) -> Result<Vec<u8>, serde_json::Error> {
    envelope::encode_conversion(answer)
}

fn str_at<'a>(obj: &'a Value, key: &str) -> &'a str {
    obj.get(key).and_then(Value::as_str).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn unknown_kinds_fail_with_the_object_named_and_the_uid_echoed() {
        let body = serde_json::to_vec(&json!({
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "ConversionReview",
            "request": {
                "uid": "c0ffee00-0000-4000-8000-000000000002",
                "desiredAPIVersion": "apps.emqx.io/v2beta1",
                "objects": [{"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w", "namespace": "ns"}}]
            }
        }))
        .expect("json");
        let out = review(&body).expect("review");
        let r = &out.answer;
        assert_eq!(r.uid, "c0ffee00-0000-4000-8000-000000000002");
        assert!(r.result.is_failure());
        assert!(
            r.result.message.contains("objects[0] (Widget ns/w)"),
            "{}",
            r.result.message
        );
        assert!(r.converted_objects.is_empty());
        assert!(out.failed);
        assert_eq!(out.kind, KindLabel::Other);
    }

    #[test]
    fn an_empty_object_list_succeeds_trivially() {
        let body = br#"{"apiVersion":"apiextensions.k8s.io/v1","kind":"ConversionReview","request":{"uid":"u","desiredAPIVersion":"apps.emqx.io/v2beta1","objects":[]}}"#;
        let out = review(body).expect("review");
        assert!(!out.failed);
        assert_eq!(out.kind, KindLabel::Unknown);
    }

    #[test]
    fn not_a_conversion_review_is_an_error() {
        assert!(matches!(
            review(b"\x00\x01"),
            Err(ReviewError::Malformed { .. })
        ));
        let wrong = br#"{"apiVersion":"apiextensions.k8s.io/v1beta1","kind":"ConversionReview","request":{"uid":"u","desiredAPIVersion":"x","objects":[]}}"#;
        assert!(matches!(review(wrong), Err(ReviewError::WrongType { .. })));
        let missing = br#"{"apiVersion":"apiextensions.k8s.io/v1","kind":"ConversionReview"}"#;
        assert!(matches!(
            review(missing),
            Err(ReviewError::MissingRequest { .. })
        ));
    }
}
