//! The HTTP and review protocol, in-process (no TLS), independent of what
//! emqx-crd decides: status codes, uid echo, errors for non-reviews, probes,
//! metrics, body limit.

mod support;

use serde_json::{Value, json};
use support::{admission_body, app, call, conversion_body, fixture, json_of};

#[tokio::test]
async fn probes_answer_and_readyz_waits_for_a_certificate() {
    let (router, state) = app();
    assert_eq!(call(&router, "GET", "/healthz", vec![]).await.0, 200);
    assert_eq!(call(&router, "GET", "/readyz", vec![]).await.0, 200);
    state
        .shutting_down
        .store(true, std::sync::atomic::Ordering::Relaxed);
    let (status, body) = call(&router, "GET", "/readyz", vec![]).await;
    assert_eq!(status, 503);
    assert_eq!(body, b"shutting down");

    let empty =
        emqx_webhook::routes::AppState::new(std::sync::Arc::new(emqx_certs::CertResolver::new()));
    let router = emqx_webhook::routes::router(empty, Default::default());
    let (status, body) = call(&router, "GET", "/readyz", vec![]).await;
    assert_eq!(status, 503);
    assert!(String::from_utf8_lossy(&body).contains("certificate"));
    assert_eq!(call(&router, "GET", "/healthz", vec![]).await.0, 200);
}

#[tokio::test]
async fn wrong_methods_and_paths_are_4xx() {
    let (router, _) = app();
    assert_eq!(call(&router, "GET", "/mutate", vec![]).await.0, 405);
    assert_eq!(call(&router, "POST", "/healthz", vec![]).await.0, 405);
    assert_eq!(
        call(
            &router,
            "POST",
            "/mutate-apps-emqx-io-v1beta4-emqxenterprise",
            vec![]
        )
        .await
        .0,
        404
    );
}

#[tokio::test]
async fn non_reviews_get_400_with_the_reason() {
    let (router, _) = app();
    for path in ["/mutate", "/validate", "/convert"] {
        let (status, body) = call(&router, "POST", path, b"{not json".to_vec()).await;
        assert_eq!(status, 400, "{path}");
        assert!(
            String::from_utf8_lossy(&body).contains("not a valid"),
            "{path}"
        );

        let (status, _) = call(&router, "POST", path, vec![]).await;
        assert_eq!(status, 400, "{path}: empty body");
    }
    let wrong = json!({"apiVersion": "admission.k8s.io/v1beta1", "kind": "AdmissionReview", "request": null});
    let (status, body) = call(
        &router,
        "POST",
        "/validate",
        serde_json::to_vec(&wrong).expect("json"),
    )
    .await;
    assert_eq!(status, 400);
    assert!(String::from_utf8_lossy(&body).contains("admission.k8s.io/v1beta1"));

    let missing = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"});
    let (status, body) = call(
        &router,
        "POST",
        "/mutate",
        serde_json::to_vec(&missing).expect("json"),
    )
    .await;
    assert_eq!(status, 400);
    assert!(String::from_utf8_lossy(&body).contains("no request"));

    let conv = json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "ConversionReview"});
    let (status, body) = call(
        &router,
        "POST",
        "/convert",
        serde_json::to_vec(&conv).expect("json"),
    )
    .await;
    assert_eq!(status, 400);
    assert!(String::from_utf8_lossy(&body).contains("no request"));

    // An AdmissionReview sent to /convert is the wrong review type.
    let adm = admission_body("u", "CREATE", &fixture("emqx-v2beta1-seed003"), None, false);
    assert_eq!(call(&router, "POST", "/convert", adm).await.0, 400);
}

#[tokio::test]
async fn unknown_kinds_are_denied_saying_so_with_the_uid_echoed() {
    let (router, _) = app();
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "default"}});
    for path in ["/mutate", "/validate"] {
        let (status, body) = call(
            &router,
            "POST",
            path,
            admission_body("uid-pod-1", "CREATE", &pod, None, false),
        )
        .await;
        assert_eq!(status, 200);
        let review = json_of(&body);
        assert_eq!(review["apiVersion"], "admission.k8s.io/v1");
        assert_eq!(review["kind"], "AdmissionReview");
        assert_eq!(review["response"]["uid"], "uid-pod-1");
        assert_eq!(review["response"]["allowed"], false);
        let msg = review["response"]["status"]["message"]
            .as_str()
            .unwrap_or_default();
        assert!(msg.contains("\"Pod\"") && msg.contains("EMQX"), "{msg}");
        assert!(review["response"].get("patch").is_none());
    }
    let widget =
        json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}});
    let (status, body) = call(
        &router,
        "POST",
        "/convert",
        conversion_body("uid-c-1", "example.com/v2", &[widget]),
    )
    .await;
    assert_eq!(status, 200);
    let review = json_of(&body);
    assert_eq!(review["response"]["uid"], "uid-c-1");
    assert_eq!(review["response"]["result"]["status"], "Failure");
    assert!(
        review["response"]["result"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("Widget")
    );
}

#[tokio::test]
async fn dry_run_is_answered_exactly_like_the_real_request() {
    let (router, _) = app();
    for seed in support::SEEDS {
        let obj = fixture(seed);
        for path in ["/mutate", "/validate"] {
            let real = call(
                &router,
                "POST",
                path,
                admission_body("same-uid", "CREATE", &obj, None, false),
            )
            .await;
            let dry = call(
                &router,
                "POST",
                path,
                admission_body("same-uid", "CREATE", &obj, None, true),
            )
            .await;
            assert_eq!(real.0, dry.0, "{seed} {path}");
            assert_eq!(json_of(&real.1), json_of(&dry.1), "{seed} {path}");
        }
    }
}

#[tokio::test]
async fn deletes_are_allowed_without_a_decision() {
    let (router, _) = app();
    let obj = fixture("emqx-v2beta1-seed003");
    let mut body: Value =
        serde_json::from_slice(&admission_body("del", "DELETE", &obj, None, false)).expect("json");
    body["request"]["oldObject"] = obj;
    body["request"]["object"] = Value::Null;
    let (status, resp) = call(
        &router,
        "POST",
        "/validate",
        serde_json::to_vec(&body).expect("json"),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(json_of(&resp)["response"]["allowed"], true);
}

#[tokio::test]
async fn bodies_over_the_limit_get_413_and_ten_megabytes_never_reach_the_parser() {
    let (router, _) = app();
    let big = vec![b' '; 10 * 1024 * 1024];
    for path in ["/mutate", "/validate", "/convert"] {
        let (status, _) = call(&router, "POST", path, big.clone()).await;
        assert_eq!(status, 413, "{path}");
    }
    // Just under the limit is parsed (and is not a review).
    let mut under = vec![b' '; emqx_webhook::routes::DEFAULT_BODY_LIMIT - 2];
    under.extend_from_slice(b"{}");
    assert_eq!(call(&router, "POST", "/validate", under).await.0, 400);
}

#[tokio::test]
async fn metrics_count_requests_per_endpoint_kind_and_outcome() {
    let (router, _) = app();
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}});
    call(
        &router,
        "POST",
        "/validate",
        admission_body("m1", "CREATE", &pod, None, false),
    )
    .await;
    call(&router, "POST", "/mutate", b"junk".to_vec()).await;
    let (status, body) = call(&router, "GET", "/metrics", vec![]).await;
    assert_eq!(status, 200);
    let text = String::from_utf8_lossy(&body);
    assert!(
        text.contains(
            r#"emqx_webhook_requests_total{endpoint="validate",kind="other",outcome="denied"} 1"#
        ),
        "{text}"
    );
    assert!(text.contains(r#"emqx_webhook_requests_total{endpoint="mutate",kind="unknown",outcome="bad_request"} 1"#), "{text}");
    assert!(
        text.contains(r#"emqx_webhook_denials_total{endpoint="validate",kind="other"} 1"#),
        "{text}"
    );
    assert!(
        text.contains("emqx_webhook_request_duration_seconds_bucket"),
        "{text}"
    );
}
