//! AdmissionReview v1 → AdmissionReview v1. Pure: bytes in, review out.
//!
//! Defaulting answers with the JSON Patch from the object to
//! `emqx_crd::dynamic::default_object(object)`; validation answers with the
//! verdict of `emqx_crd::dynamic::validate_object`. `dryRun` is ignored on
//! purpose: a dry run must be answered exactly like the real request.

use base64::Engine as _;
use emqx_crd::dynamic::{self, FieldError, ObjectError};
use kube::core::admission::{
    AdmissionRequest, AdmissionResponse, AdmissionReview, META_API_VERSION_V1, META_KIND, Operation,
};
use kube::core::{DynamicObject, Status};
use serde_json::Value;

use crate::kind::KindLabel;
use crate::review_error::ReviewError;

/// Which admission webhook is answering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    /// `/mutate`: defaulting.
    Mutate,
    /// `/validate`: validation and warnings.
    Validate,
}

/// An answered admission request.
#[derive(Debug)]
pub struct AdmissionOutcome {
    /// The response review to send back.
    pub review: AdmissionReview<DynamicObject>,
    /// The requested kind, for metrics.
    pub kind: KindLabel,
    /// Whether the request was denied.
    pub denied: bool,
}

/// Answers one AdmissionReview body.
pub fn review(body: &[u8], hook: Hook) -> Result<AdmissionOutcome, ReviewError> {
    let review: AdmissionReview<DynamicObject> =
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
    let request: AdmissionRequest<DynamicObject> =
        review.try_into().map_err(|_| ReviewError::MissingRequest {
            expected: META_KIND,
        })?;
    let kind = KindLabel::of(&request.kind.group, &request.kind.kind);
    let response = decide(&request, kind, hook);
    let denied = !response.allowed;
    Ok(AdmissionOutcome {
        review: response.into_review(),
        kind,
        denied,
    })
}

/// The response body. kube's `AdmissionResponse` serializes `patch` (a Go
/// `[]byte`) as an array of numbers (kube-rs issue #1781); the API documents
/// it as base64, which is what Go clients emit, so it is re-encoded here.
pub fn encode(review: &AdmissionReview<DynamicObject>) -> Result<Vec<u8>, serde_json::Error> {
    let Some(patch) = review.response.as_ref().and_then(|r| r.patch.as_ref()) else {
        // No patch (every validation, most re-applies): nothing to re-encode,
        // so skip the intermediate `Value` tree.
        return serde_json::to_vec(review);
    };
    let mut value = serde_json::to_value(review)?;
    if let Some(slot) = value.pointer_mut("/response/patch") {
        *slot = Value::String(base64::engine::general_purpose::STANDARD.encode(patch));
    }
    serde_json::to_vec(&value)
}

fn decide(
    request: &AdmissionRequest<DynamicObject>,
    kind: KindLabel,
    hook: Hook,
) -> AdmissionResponse {
    let response = AdmissionResponse::from(request);
    if !kind.is_served() {
        let gvk = &request.kind;
        return deny(
            response,
            &format!(
                "this webhook serves only EMQX and EmqxEnterprise in apps.emqx.io; got kind {:?} in {}/{}",
                gvk.kind, gvk.group, gvk.version
            ),
            "BadRequest",
            400,
        );
    }
    // Status and scale writes carry no spec change to default or validate, and
    // must not be blocked (the reconciler writes status on invalid objects too).
    if request.sub_resource.is_some() {
        return response;
    }
    if !matches!(request.operation, Operation::Create | Operation::Update) {
        return response;
    }
    let Some(object) = request.object.as_ref() else {
        return deny(response, "request.object is missing", "BadRequest", 400);
    };
    let object = match serde_json::to_value(object) {
        Ok(v) => v,
        Err(e) => return deny(response, &format!("request.object: {e}"), "BadRequest", 400),
    };
    match hook {
        Hook::Mutate => mutate(response, &object),
        Hook::Validate => {
            let old = match request
                .old_object
                .as_ref()
                .map(serde_json::to_value)
                .transpose()
            {
                Ok(old) => old,
                Err(e) => {
                    return deny(
                        response,
                        &format!("request.oldObject: {e}"),
                        "BadRequest",
                        400,
                    );
                }
            };
            validate(response, &object, old.as_ref())
        }
    }
}

fn mutate(response: AdmissionResponse, object: &Value) -> AdmissionResponse {
    match dynamic::default_object(object) {
        Ok(defaulted) => {
            let patch = json_patch::diff(object, &defaulted);
            if patch.0.is_empty() {
                return response;
            }
            match response.clone().with_patch(patch) {
                Ok(patched) => patched,
                Err(e) => deny(
                    response,
                    &format!("cannot encode the defaulting patch: {e}"),
                    "InternalError",
                    500,
                ),
            }
        }
        Err(e) => object_error(response, &e),
    }
}

fn validate(
    mut response: AdmissionResponse,
    object: &Value,
    old: Option<&Value>,
) -> AdmissionResponse {
    match dynamic::validate_object(object, old) {
        Ok(verdict) => {
            if !verdict.warnings.is_empty() {
                response.warnings = Some(verdict.warnings);
            }
            if verdict.errors.is_empty() {
                response
            } else {
                deny(response, &denial_message(&verdict.errors), "Invalid", 422)
            }
        }
        Err(e) => object_error(response, &e),
    }
}

fn object_error(response: AdmissionResponse, error: &ObjectError) -> AdmissionResponse {
    let (reason, code) = match error {
        ObjectError::UnknownKind { .. } => ("BadRequest", 400),
        ObjectError::Malformed { .. } | ObjectError::Conversion(_) => ("Invalid", 422),
    };
    deny(response, &error.to_string(), reason, code)
}

/// One line per field, `path: message`, as kubectl shows it after
/// `admission webhook "..." denied the request:`.
pub fn denial_message(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(|e| format!("{}: {}", e.path, e.message))
        .collect::<Vec<_>>()
        .join("; ")
}

fn deny(
    mut response: AdmissionResponse,
    message: &str,
    reason: &str,
    code: u16,
) -> AdmissionResponse {
    response.allowed = false;
    response.patch = None;
    response.result = Status::failure(message, reason).with_code(code);
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn body(kind: &str, group: &str, operation: &str, object: Value) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {
                "uid": "3f1c7a2e-0000-4000-8000-000000000001",
                "kind": {"group": group, "version": "v1", "kind": kind},
                "resource": {"group": group, "version": "v1", "resource": "things"},
                "operation": operation,
                "userInfo": {"username": "tester"},
                "object": object,
                "oldObject": null,
                "dryRun": false
            }
        }))
        .expect("json")
    }

    fn response(outcome: &AdmissionOutcome) -> &AdmissionResponse {
        outcome.review.response.as_ref().expect("response")
    }

    #[test]
    fn unknown_kind_is_denied_with_a_reason_and_the_uid_echoed() {
        let b = body(
            "Pod",
            "",
            "CREATE",
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}}),
        );
        let out = review(&b, Hook::Validate).expect("review");
        let r = response(&out);
        assert!(!r.allowed);
        assert!(r.result.message.contains("\"Pod\""), "{}", r.result.message);
        assert_eq!(r.uid, "3f1c7a2e-0000-4000-8000-000000000001");
        assert_eq!(out.kind, KindLabel::Other);
        assert!(out.denied);
    }

    #[test]
    fn deletes_and_subresources_pass_without_calling_the_api_crate() {
        let obj = json!({"apiVersion": "apps.emqx.io/v2beta1", "kind": "EMQX", "metadata": {"name": "e"}});
        let out =
            review(&body("EMQX", "apps.emqx.io", "DELETE", obj), Hook::Validate).expect("review");
        assert!(response(&out).allowed);
    }

    #[test]
    fn a_create_without_an_object_is_denied() {
        let out = review(
            &body("EMQX", "apps.emqx.io", "CREATE", Value::Null),
            Hook::Mutate,
        )
        .expect("review");
        assert!(!response(&out).allowed);
        assert!(response(&out).result.message.contains("object"));
    }

    #[test]
    fn not_a_review_is_an_error_naming_the_problem() {
        assert!(matches!(
            review(b"{", Hook::Mutate),
            Err(ReviewError::Malformed { .. })
        ));
        assert!(matches!(
            review(b"[]", Hook::Mutate),
            Err(ReviewError::Malformed { .. })
        ));
        let wrong = br#"{"apiVersion":"admission.k8s.io/v1beta1","kind":"AdmissionReview"}"#;
        assert!(matches!(
            review(wrong, Hook::Mutate),
            Err(ReviewError::WrongType { .. })
        ));
        let missing = br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#;
        assert_eq!(
            review(missing, Hook::Validate).err(),
            Some(ReviewError::MissingRequest {
                expected: "AdmissionReview"
            })
        );
    }

    #[test]
    fn the_patch_goes_out_as_base64_of_a_json_patch() {
        let obj = json!({"apiVersion": "apps.emqx.io/v2beta1", "kind": "EMQX", "metadata": {"name": "e"}});
        let b = body("EMQX", "apps.emqx.io", "CREATE", obj);
        let request: AdmissionRequest<DynamicObject> =
            serde_json::from_slice::<AdmissionReview<DynamicObject>>(&b)
                .expect("parse")
                .try_into()
                .expect("request");
        let patch = json_patch::Patch(vec![json_patch::PatchOperation::Add(
            json_patch::AddOperation {
                path: json_patch::jsonptr::PointerBuf::parse("/spec").expect("pointer"),
                value: json!({}),
            },
        )]);
        let response = AdmissionResponse::from(&request)
            .with_patch(patch)
            .expect("patch");
        let out: Value = serde_json::from_slice(&encode(&response.into_review()).expect("encode"))
            .expect("json");
        let b64 = out["response"]["patch"]
            .as_str()
            .expect("patch is a string");
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .expect("base64");
        assert_eq!(decoded, br#"[{"op":"add","path":"/spec","value":{}}]"#);
        assert_eq!(out["response"]["patchType"], "JSONPatch");
    }

    #[test]
    fn a_review_without_a_patch_encodes_as_plain_json_with_no_patch_field() {
        let obj = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}});
        let out = review(&body("Pod", "", "CREATE", obj), Hook::Mutate).expect("review");
        let encoded = encode(&out.review).expect("encode");
        let parsed: Value = serde_json::from_slice(&encoded).expect("json");
        // Same document as through a `Value` (only the key order differs).
        assert_eq!(parsed, serde_json::to_value(&out.review).expect("value"));
        assert!(parsed["response"].get("patch").is_none(), "{parsed}");
        assert_eq!(parsed["response"]["allowed"], false);
    }

    #[test]
    fn denial_message_names_every_field() {
        let msg = denial_message(&[
            FieldError {
                path: "spec.a".into(),
                message: "must be ≥ 1".into(),
            },
            FieldError {
                path: "spec.b".into(),
                message: "must be ≥ 0".into(),
            },
        ]);
        assert_eq!(msg, "spec.a: must be ≥ 1; spec.b: must be ≥ 0");
    }
}
