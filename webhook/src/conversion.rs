//! ConversionReview v1 → ConversionReview v1. Pure: bytes in, review out.
//!
//! Every object goes through `emqx_crd::dynamic::convert_object`. If any
//! object fails, the whole review fails (the API server needs all or none)
//! with a message naming the object and the reason.

use emqx_crd::dynamic;
use kube::core::Status;
use kube::core::conversion::{ConversionRequest, ConversionResponse, ConversionReview};
use serde_json::Value;

use crate::kind::KindLabel;
use crate::review_error::ReviewError;

/// The only ConversionReview version the API server sends to `conversionReviewVersions: [v1]`.
const META_API_VERSION_V1: &str = "apiextensions.k8s.io/v1";
const META_KIND: &str = "ConversionReview";

/// An answered conversion request.
#[derive(Debug)]
pub struct ConversionOutcome {
    /// The response review to send back.
    pub review: ConversionReview,
    /// The kind of the first object (all objects of one review share a CRD).
    pub kind: KindLabel,
    /// Whether the conversion failed.
    pub failed: bool,
}

/// Answers one ConversionReview body.
pub fn review(body: &[u8]) -> Result<ConversionOutcome, ReviewError> {
    let review: ConversionReview =
        serde_json::from_slice(body).map_err(|e| ReviewError::Malformed {
            expected: META_KIND,
            reason: e.to_string(),
        })?;
    if review.types.api_version != META_API_VERSION_V1 || review.types.kind != META_KIND {
        return Err(ReviewError::WrongType {
            expected_api_version: META_API_VERSION_V1,
            expected_kind: META_KIND,
            api_version: review.types.api_version,
            kind: review.types.kind,
        });
    }
    let request = ConversionRequest::try_from(review).map_err(|_| ReviewError::MissingRequest {
        expected: META_KIND,
    })?;
    let kind = request.objects.first().map_or(KindLabel::Unknown, |o| {
        KindLabel::of_api_version(str_at(o, "apiVersion"), str_at(o, "kind"))
    });
    let desired = request.desired_api_version.clone();
    let converted = request
        .objects
        .iter()
        .enumerate()
        .map(|(i, obj)| {
            dynamic::convert_object(obj, &desired).map_err(|e| {
                format!(
                    "objects[{i}] ({} {}/{}): {e}",
                    str_at(obj, "kind"),
                    obj.pointer("/metadata/namespace")
                        .and_then(Value::as_str)
                        .unwrap_or_default(),
                    obj.pointer("/metadata/name")
                        .and_then(Value::as_str)
                        .unwrap_or_default(),
                )
            })
        })
        .collect::<Result<Vec<_>, _>>();
    let response = ConversionResponse::for_request(request);
    let (response, failed) = match converted {
        Ok(objects) => (response.success(objects), false),
        Err(message) => (
            response.failure(Status::failure(
                &format!("conversion to {desired} failed: {message}"),
                "ConversionFailed",
            )),
            true,
        ),
    };
    Ok(ConversionOutcome {
        review: response.into_review(),
        kind,
        failed,
    })
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
        let r = out.review.response.as_ref().expect("response");
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
