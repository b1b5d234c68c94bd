//! Property tests: random bytes and random JSON through every endpoint never
//! panic, never hang and never answer 5xx; every 200 is a well-formed review.

mod support;

use std::time::Duration;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{Value, json};
use support::{admission_body, app, call, conversion_body, fixture};

const PATHS: [&str; 3] = ["/mutate", "/validate", "/convert"];

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        "[a-zA-Z0-9./:_-]{0,12}".prop_map(Value::String),
        prop_oneof![
            Just("admission.k8s.io/v1"),
            Just("apiextensions.k8s.io/v1"),
            Just("apps.emqx.io/v2beta1"),
            Just("apps.emqx.io/v1beta4"),
            Just("AdmissionReview"),
            Just("ConversionReview"),
            Just("EMQX"),
            Just("EmqxEnterprise"),
            Just("CREATE"),
            Just("UPDATE"),
        ]
        .prop_map(|s| Value::String(s.to_owned())),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    Just("apiVersion".to_owned()),
                    Just("kind".to_owned()),
                    Just("request".to_owned()),
                    Just("uid".to_owned()),
                    Just("object".to_owned()),
                    Just("oldObject".to_owned()),
                    Just("objects".to_owned()),
                    Just("desiredAPIVersion".to_owned()),
                    Just("spec".to_owned()),
                    Just("metadata".to_owned()),
                    "[a-z]{1,8}",
                ],
                inner,
                0..6
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A real review whose object (or one of its fields) was replaced by junk.
fn arb_mangled_review() -> impl Strategy<Value = (usize, Vec<u8>)> {
    let seeds = support::SEEDS.map(fixture).to_vec();
    (
        0..PATHS.len(),
        0..seeds.len(),
        arb_json(),
        "[a-zA-Z/]{0,20}",
        0..4usize,
    )
        .prop_map(move |(path, seed, junk, pointer_key, how)| {
            let mut obj = seeds[seed].clone();
            match how {
                0 => obj["spec"] = junk.clone(),
                1 => obj["metadata"] = junk.clone(),
                2 => {
                    if let Some(spec) = obj["spec"].as_object_mut() {
                        spec.insert(pointer_key, junk.clone());
                    }
                }
                _ => obj = junk.clone(),
            }
            let body = if PATHS[path] == "/convert" {
                conversion_body("p", "apps.emqx.io/v2beta1", &[obj])
            } else {
                admission_body("p", "CREATE", &obj, Some(&junk), false)
            };
            (path, body)
        })
}

fn check_answer(path: &str, status: u16, body: &[u8]) -> Result<(), TestCaseError> {
    prop_assert!(
        matches!(status, 200 | 400 | 413),
        "{path}: status {status}: {}",
        String::from_utf8_lossy(body)
    );
    if status == 200 {
        let review: Value =
            serde_json::from_slice(body).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert!(review["response"]["uid"].is_string(), "{path}: {review}");
        if path == "/convert" {
            prop_assert!(
                review["response"]["result"]["status"].is_string(),
                "{review}"
            );
        } else {
            prop_assert!(review["response"]["allowed"].is_boolean(), "{review}");
            if review["response"]["allowed"] == false {
                let msg = review["response"]["status"]["message"]
                    .as_str()
                    .unwrap_or_default();
                prop_assert!(!msg.is_empty(), "denial without a reason: {review}");
            }
        }
    }
    Ok(())
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

async fn call_bounded(
    router: &axum::Router,
    path: &str,
    body: Vec<u8>,
) -> Result<(u16, Vec<u8>), TestCaseError> {
    let (status, body) =
        tokio::time::timeout(Duration::from_secs(10), call(router, "POST", path, body))
            .await
            .map_err(|_| TestCaseError::fail(format!("{path}: no answer within 10 s")))?;
    Ok((status.as_u16(), body))
}

#[test]
fn random_bytes_never_break_any_endpoint() {
    let rt = runtime();
    let (router, _) = app();
    let mut runner = TestRunner::new(Config::with_cases(256));
    let strategy = (0..PATHS.len(), prop::collection::vec(any::<u8>(), 0..2048));
    runner
        .run(&strategy, |(path, bytes)| {
            let (status, body) = rt.block_on(call_bounded(&router, PATHS[path], bytes))?;
            check_answer(PATHS[path], status, &body)
        })
        .expect("property holds");
}

#[test]
fn random_json_never_breaks_any_endpoint() {
    let rt = runtime();
    let (router, _) = app();
    let mut runner = TestRunner::new(Config::with_cases(512));
    runner
        .run(&(0..PATHS.len(), arb_json()), |(path, value)| {
            let bytes =
                serde_json::to_vec(&value).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let (status, body) = rt.block_on(call_bounded(&router, PATHS[path], bytes))?;
            check_answer(PATHS[path], status, &body)
        })
        .expect("property holds");
}

#[test]
fn mangled_reviews_of_seed_objects_are_answered_with_a_reason() {
    let rt = runtime();
    let (router, _) = app();
    let mut runner = TestRunner::new(Config::with_cases(512));
    runner
        .run(&arb_mangled_review(), |(path, bytes)| {
            let (status, body) = rt.block_on(call_bounded(&router, PATHS[path], bytes))?;
            check_answer(PATHS[path], status, &body)
        })
        .expect("property holds");
}

#[test]
fn random_bodies_over_real_tls_are_answered() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let server = rt.block_on(support::TlsServer::start(
        support::test_limits(),
        Default::default(),
    ));
    let mut runner = TestRunner::new(Config::with_cases(24));
    let strategy = (
        0..PATHS.len(),
        prop_oneof![
            prop::collection::vec(any::<u8>(), 0..512),
            arb_json().prop_map(|v| serde_json::to_vec(&v).unwrap_or_default())
        ],
    );
    runner
        .run(&strategy, |(path, bytes)| {
            let (status, body) = rt
                .block_on(async {
                    tokio::time::timeout(
                        Duration::from_secs(10),
                        support::https_post(&server, PATHS[path], bytes),
                    )
                    .await
                })
                .map_err(|_| TestCaseError::fail("no answer over TLS within 10 s"))?;
            check_answer(PATHS[path], status, &body)
        })
        .expect("property holds");
    assert!(rt.block_on(server.stop()));
}
