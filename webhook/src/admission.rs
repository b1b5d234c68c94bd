//! AdmissionReview v1 → AdmissionReview v1. Pure: bytes in, review out.
//!
//! Defaulting answers with the JSON Patch from the object to
//! `emqx_crd::dynamic::default_object(object)`; validation answers with the
//! verdict of `emqx_crd::dynamic::validate_object`. `dryRun` is ignored on
//! purpose: a dry run must be answered exactly like the real request.

use emqx_crd::dynamic::{self, FieldError, ObjectError};
use kube::core::Status;
use serde_json::Value;

use crate::envelope::{self, ADMISSION_API_VERSION, ADMISSION_KIND, AdmissionAnswer, Operation};
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
    /// The answer to send back ([`encode`]).
    pub answer: AdmissionAnswer,
    /// The requested kind, for metrics.
    pub kind: KindLabel,
    /// Whether the request was denied.
    pub denied: bool,
}

/// Answers one AdmissionReview body.
pub fn review(body: &[u8], hook: Hook) -> Result<AdmissionOutcome, ReviewError> {
    let request: envelope::AdmissionRequest =
        envelope::open(body, ADMISSION_API_VERSION, ADMISSION_KIND)?;
    let kind = KindLabel::of(&request.kind.group, &request.kind.kind);
    let answer = decide(request, kind, hook);
    let denied = !answer.allowed;
    Ok(AdmissionOutcome {
        answer,
        kind,
        denied,
    })
}

/// The response body (`patch` as base64, as the API documents it).
pub fn encode(answer: &AdmissionAnswer) -> Result<Vec<u8>, serde_json::Error> {
    envelope::encode_admission(answer)
}

fn decide(request: envelope::AdmissionRequest, kind: KindLabel, hook: Hook) -> AdmissionAnswer {
    let envelope::AdmissionRequest {
        uid,
        kind: gvk,
        operation,
        sub_resource,
        object,
        old_object,
    } = request;
    let response = AdmissionAnswer::allow(uid);
    if !kind.is_served() {
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
    if sub_resource.is_some() {
        return response;
    }
    if !matches!(operation, Operation::Create | Operation::Update) {
        return response;
    }
    let Some(object) = object.filter(|o| !o.is_null()) else {
        return deny(response, "request.object is missing", "BadRequest", 400);
    };
    match hook {
        Hook::Mutate => {
            // The old object plays no part in defaulting: free it first.
            drop(old_object);
            mutate(response, &object)
        }
        Hook::Validate => validate(
            response,
            &object,
            old_object.as_ref().filter(|o| !o.is_null()),
        ),
    }
}

fn mutate(mut response: AdmissionAnswer, object: &Value) -> AdmissionAnswer {
    match dynamic::default_object(object) {
        Ok(defaulted) => {
            let patch = json_patch::diff(object, &defaulted);
            drop(defaulted);
            if patch.0.is_empty() {
                return response;
            }
            match serde_json::to_vec(&patch) {
                Ok(bytes) => {
                    response.patch = Some(bytes);
                    response
                }
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

fn validate(mut response: AdmissionAnswer, object: &Value, old: Option<&Value>) -> AdmissionAnswer {
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

fn object_error(response: AdmissionAnswer, error: &ObjectError) -> AdmissionAnswer {
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

fn deny(mut response: AdmissionAnswer, message: &str, reason: &str, code: u16) -> AdmissionAnswer {
    response.allowed = false;
    response.patch = None;
    response.result = Status::failure(message, reason).with_code(code);
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;
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

    #[test]
    fn unknown_kind_is_denied_with_a_reason_and_the_uid_echoed() {
        let b = body(
            "Pod",
            "",
            "CREATE",
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}}),
        );
        let out = review(&b, Hook::Validate).expect("review");
        let r = &out.answer;
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
        assert!(out.answer.allowed);
    }

    #[test]
    fn a_create_without_an_object_is_denied() {
        let out = review(
            &body("EMQX", "apps.emqx.io", "CREATE", Value::Null),
            Hook::Mutate,
        )
        .expect("review");
        assert!(!out.answer.allowed);
        assert!(out.answer.result.message.contains("object"));
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
        let obj = json!({"apiVersion": "apps.emqx.io/v2beta1", "kind": "EMQX", "metadata": {"name": "e"}, "spec": {"image": "emqx:5.8.0"}});
        let out = review(
            &body("EMQX", "apps.emqx.io", "CREATE", obj.clone()),
            Hook::Mutate,
        )
        .expect("review");
        assert!(out.answer.allowed);
        let encoded: Value =
            serde_json::from_slice(&encode(&out.answer).expect("encode")).expect("json");
        let b64 = encoded["response"]["patch"]
            .as_str()
            .expect("patch is a string");
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .expect("base64");
        let patch: json_patch::Patch = serde_json::from_slice(&decoded).expect("a JSON Patch");
        let mut patched = obj.clone();
        json_patch::patch(&mut patched, &patch).expect("applies");
        assert_eq!(patched, dynamic::default_object(&obj).expect("defaults"));
        assert_eq!(encoded["response"]["patchType"], "JSONPatch");
    }

    #[test]
    fn a_review_without_a_patch_encodes_with_no_patch_field() {
        let obj = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}});
        let out = review(&body("Pod", "", "CREATE", obj), Hook::Mutate).expect("review");
        let parsed: Value =
            serde_json::from_slice(&encode(&out.answer).expect("encode")).expect("json");
        assert!(parsed["response"].get("patch").is_none(), "{parsed}");
        assert!(parsed["response"].get("patchType").is_none(), "{parsed}");
        assert_eq!(parsed["response"]["allowed"], false);
        assert_eq!(parsed["response"]["status"]["code"], 400);
        assert_eq!(parsed["response"]["status"]["status"], "Failure");
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
