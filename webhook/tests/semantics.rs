//! What the webhook answers for real objects, decided by emqx-crd: seeds are
//! defaulted and allowed, bad rates are denied naming the field, warnings
//! reach the response, conversions round-trip. (Before emqx-crd's real
//! functions were merged these failed, as expected; the protocol tests did not.)

mod support;

use emqx_crd::limits::RATE_STORM_WARNING;
use serde_json::{Value, json};
use support::{SEEDS, admission_body, app, call, conversion_body, fixture, json_of};

async fn admit(path: &str, operation: &str, obj: &Value, old: Option<&Value>) -> Value {
    let (router, _) = app();
    let (status, body) = call(
        &router,
        "POST",
        path,
        admission_body("sem-uid", operation, obj, old, false),
    )
    .await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let review = json_of(&body);
    assert_eq!(review["response"]["uid"], "sem-uid");
    review["response"].clone()
}

/// Applies the base64 JSON Patch of a mutate response to `obj`.
fn apply_patch(obj: &Value, response: &Value) -> Value {
    let mut out = obj.clone();
    if let Some(b64) = response["patch"].as_str() {
        assert_eq!(response["patchType"], "JSONPatch");
        use base64::Engine as _;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .expect("base64 patch");
        let patch: json_patch::Patch = serde_json::from_slice(&bytes).expect("JSON Patch");
        json_patch::patch(&mut out, &patch.0).expect("patch applies");
    }
    out
}

fn message(response: &Value) -> String {
    response["status"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

fn warnings(response: &Value) -> Vec<String> {
    response["warnings"]
        .as_array()
        .map(|w| {
            w.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn every_seed_is_defaulted_by_patch_idempotently_and_then_allowed() {
    for seed in SEEDS {
        let obj = fixture(seed);
        let mutated = admit("/mutate", "CREATE", &obj, None).await;
        assert_eq!(mutated["allowed"], true, "{seed}: {}", message(&mutated));
        assert!(
            mutated["patch"].is_string(),
            "{seed}: seeds leave fields to default"
        );
        let defaulted = apply_patch(&obj, &mutated);
        assert_eq!(
            defaulted,
            emqx_crd::dynamic::default_object(&obj).expect("default"),
            "{seed}: the patch must yield exactly emqx-crd's defaults"
        );
        let again = admit("/mutate", "CREATE", &defaulted, None).await;
        assert_eq!(again["allowed"], true);
        assert!(
            again.get("patch").is_none(),
            "{seed}: defaulting twice changed something: {again}"
        );

        let validated = admit("/validate", "CREATE", &defaulted, None).await;
        assert_eq!(
            validated["allowed"],
            true,
            "{seed}: {}",
            message(&validated)
        );
        let updated = admit("/validate", "UPDATE", &defaulted, Some(&defaulted)).await;
        assert_eq!(updated["allowed"], true, "{seed}: {}", message(&updated));
    }
}

#[tokio::test]
async fn the_v2beta1_defaults_fill_the_update_strategy() {
    let mut obj = fixture("emqx-v2beta1-seed003");
    obj["spec"]
        .as_object_mut()
        .expect("spec")
        .remove("updateStrategy");
    let defaulted = apply_patch(&obj, &admit("/mutate", "CREATE", &obj, None).await);
    let strategy = &defaulted["spec"]["updateStrategy"];
    assert_eq!(strategy["type"], "Recreate", "{defaulted}");
    assert!(
        strategy["evacuationStrategy"]["connEvictRate"]
            .as_i64()
            .is_some_and(|r| r >= 1),
        "{defaulted}"
    );
}

#[tokio::test]
async fn zero_conn_evict_rate_is_denied_naming_the_field_and_range() {
    let mut obj = fixture("emqx-v2beta1-seed003");
    obj["spec"]["updateStrategy"]["evacuationStrategy"]["connEvictRate"] = json!(0);
    let r = admit("/validate", "CREATE", &obj, None).await;
    assert_eq!(r["allowed"], false);
    let msg = message(&r);
    assert!(
        msg.contains("spec.updateStrategy.evacuationStrategy.connEvictRate"),
        "{msg}"
    );
    assert!(msg.contains("at least 1"), "{msg}");
    assert_eq!(r["status"]["code"], 422);

    let mut ee = fixture("emqxenterprise-v1beta4-seed000");
    ee["spec"]["blueGreenUpdate"]["evacuationStrategy"]["connEvictRate"] = json!(0);
    let r = admit("/validate", "CREATE", &ee, None).await;
    assert_eq!(r["allowed"], false);
    assert!(
        message(&r).contains("spec.blueGreenUpdate.evacuationStrategy.connEvictRate"),
        "{}",
        message(&r)
    );
}

#[tokio::test]
async fn negative_initial_delay_is_denied_naming_the_field() {
    let mut obj = fixture("emqx-v2alpha2-seed001");
    obj["spec"]["updateStrategy"]["initialDelaySeconds"] = json!(-5);
    let r = admit("/validate", "CREATE", &obj, None).await;
    assert_eq!(r["allowed"], false);
    assert!(
        message(&r).contains("spec.updateStrategy.initialDelaySeconds"),
        "{}",
        message(&r)
    );
}

#[tokio::test]
async fn warnings_reach_the_response_without_blocking() {
    let r = admit(
        "/validate",
        "CREATE",
        &fixture("emqx-v2alpha2-seed001"),
        None,
    )
    .await;
    assert_eq!(r["allowed"], true, "{}", message(&r));
    assert!(warnings(&r).iter().any(|w| w.contains("deprecated")), "{r}");

    let mut stormy = fixture("emqx-v2beta1-seed003");
    stormy["spec"]["updateStrategy"]["evacuationStrategy"]["connEvictRate"] =
        json!(RATE_STORM_WARNING + 1);
    let r = admit("/validate", "CREATE", &stormy, None).await;
    assert_eq!(r["allowed"], true, "{}", message(&r));
    assert!(
        warnings(&r).iter().any(|w| w.contains("reconnect storm")),
        "{r}"
    );

    // The Go operator 2.2.29 fixture's override of the operator's own
    // bootstrap-file variable: admitted, with a warning naming it.
    let mut overriding = fixture("emqx-v2beta1-seed003");
    overriding["spec"]["coreTemplate"]["spec"]["env"] = json!([
        {"name": "EMQX_API_KEY__BOOTSTRAP_FILE", "value": "/opt/emqx/data/bootstrap_api_key"}
    ]);
    let r = admit("/validate", "CREATE", &overriding, None).await;
    assert_eq!(r["allowed"], true, "{}", message(&r));
    assert!(
        warnings(&r).iter().any(|w| w.starts_with(
            "spec.coreTemplate.spec.env[0]: EMQX_API_KEY__BOOTSTRAP_FILE overrides the \
             EMQX_API_KEY__BOOTSTRAP_FILE the operator sets"
        )),
        "{r}"
    );
}

#[tokio::test]
async fn an_in_place_major_version_change_is_denied_on_update() {
    let old = fixture("emqx-v2beta1-seed003");
    let mut new = old.clone();
    new["spec"]["image"] = json!("emqx/emqx:4.4.14");
    let r = admit("/validate", "UPDATE", &new, Some(&old)).await;
    assert_eq!(r["allowed"], false);
    assert!(message(&r).contains("spec.image"), "{}", message(&r));
}

#[tokio::test]
async fn unknown_fields_and_wrong_types_are_denied_by_name() {
    let mut obj = fixture("emqx-v2beta1-seed003");
    obj["spec"]["updateStrategy"]["evacuationStrategy"]["connEvictRate"] = json!("fast");
    let r = admit("/validate", "CREATE", &obj, None).await;
    assert_eq!(r["allowed"], false);
    assert!(message(&r).contains("connEvictRate"), "{}", message(&r));
    let r = admit("/mutate", "CREATE", &obj, None).await;
    assert_eq!(
        r["allowed"], false,
        "mutate cannot default what it cannot parse"
    );
}

async fn convert(desired: &str, objects: &[Value]) -> Value {
    let (router, _) = app();
    let (status, body) = call(
        &router,
        "POST",
        "/convert",
        conversion_body("conv-uid", desired, objects),
    )
    .await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let review = json_of(&body);
    assert_eq!(review["response"]["uid"], "conv-uid");
    review["response"].clone()
}

#[tokio::test]
async fn v1beta4_and_v2beta1_enterprise_objects_convert_both_ways_losslessly() {
    for seed in [
        "emqxenterprise-v1beta4-seed000",
        "emqxenterprise-v1beta4-seed001",
    ] {
        let v1 = fixture(seed);
        let up = convert("apps.emqx.io/v2beta1", std::slice::from_ref(&v1)).await;
        assert_eq!(up["result"]["status"], "Success", "{seed}: {up}");
        let v2 = up["convertedObjects"][0].clone();
        assert_eq!(v2["apiVersion"], "apps.emqx.io/v2beta1");
        assert_eq!(v2["kind"], "EmqxEnterprise");
        assert_eq!(
            v2["spec"]["image"], "emqx/emqx-ee:4.4.14",
            "{seed}: image struct → string"
        );
        let down = convert("apps.emqx.io/v1beta4", &[v2]).await;
        assert_eq!(down["result"]["status"], "Success", "{down}");
        assert_eq!(down["convertedObjects"][0], v1, "{seed}: round trip");
    }
    let v1 = fixture("emqxenterprise-v1beta4-seed000");
    let up = convert("apps.emqx.io/v2beta1", std::slice::from_ref(&v1)).await;
    let v2 = &up["convertedObjects"][0];
    assert_eq!(
        v2["spec"]["coreTemplate"]["spec"]["replicas"], 3,
        "replicas → coreTemplate: {v2}"
    );
    assert_eq!(
        v2["spec"]["updateStrategy"]["evacuationStrategy"]["connEvictRate"], 10,
        "{v2}"
    );
}

#[tokio::test]
async fn emqx_v2alpha2_and_v2beta1_convert_both_ways_and_mixed_batches_work() {
    let alpha = fixture("emqx-v2alpha2-seed001");
    let beta = fixture("emqx-v2beta1-seed003");
    let r = convert("apps.emqx.io/v2beta1", &[alpha.clone(), beta.clone()]).await;
    assert_eq!(r["result"]["status"], "Success", "{r}");
    let converted = r["convertedObjects"].as_array().expect("objects");
    assert_eq!(converted.len(), 2);
    assert!(
        converted
            .iter()
            .all(|o| o["apiVersion"] == "apps.emqx.io/v2beta1")
    );
    assert_eq!(converted[1], beta, "same version passes through unchanged");
    let back = convert("apps.emqx.io/v2alpha2", &[converted[0].clone()]).await;
    assert_eq!(back["convertedObjects"][0], alpha);
}

#[tokio::test]
async fn an_unconvertible_object_fails_the_review_naming_it() {
    let beta = fixture("emqx-v2beta1-seed003");
    let r = convert("apps.emqx.io/v1beta4", &[beta]).await;
    assert_eq!(r["result"]["status"], "Failure");
    let msg = r["result"]["message"].as_str().unwrap_or_default();
    assert!(msg.contains("objects[0] (EMQX default/emqx-ee)"), "{msg}");
    assert_eq!(
        r["convertedObjects"].as_array().map(Vec::len).unwrap_or(0),
        0
    );
}

#[tokio::test]
async fn a_name_too_long_for_the_derived_names_is_denied_naming_the_field() {
    let mut obj = fixture("emqx-v2beta1-seed003");
    let longest = "e".repeat(36);
    obj["metadata"]["name"] = json!(longest);
    let r = admit("/validate", "CREATE", &obj, None).await;
    assert_eq!(r["allowed"], true, "{}", message(&r));
    obj["metadata"]["name"] = json!(format!("{longest}x"));
    let r = admit("/validate", "CREATE", &obj, None).await;
    assert_eq!(r["allowed"], false);
    let m = message(&r);
    assert!(
        m.starts_with("metadata.name: must be at most 36 characters, got 37"),
        "{m}"
    );
    assert_eq!(r["status"]["code"], 422);
}
