//! A write through another version than the stored one changes only what
//! the writer changed. The apiserver fills the *request* version's schema
//! defaults on every write before converting to the stored version, so a
//! v1beta4 `EmqxEnterprise` patched through `apps.emqx.io/v2beta1` (a guard
//! setting, a label) would otherwise come back with every v2beta1 default
//! the v1beta4 object never had — a `livenessProbe` on port `dashboard`,
//! security contexts — stored as if its user had set them, a new pod
//! template, and a whole blue-green upgrade nobody asked for.

use emqx_crd::dynamic::{convert_object, default_object};
use serde_json::{Value, json};

fn seed000() -> Value {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/seeds/seed000-emqxenterprise-v1beta4.yaml"
    ))
    .expect("seed 000");
    serde_saphyr::from_str(&text).expect("seed 000 parses")
}

/// The stored object after a write through `version` that `edit`s its view:
/// read (convert to the view), edit, the apiserver's defaulting in the view's
/// version, convert back to the stored version.
fn write_through(stored: &Value, version: &str, edit: impl FnOnce(&mut Value)) -> Value {
    let stored_version = stored["apiVersion"]
        .as_str()
        .expect("apiVersion")
        .to_owned();
    let mut view = convert_object(stored, version).expect("read through the view");
    edit(&mut view);
    let defaulted = default_object(&view).expect("the view's defaults");
    convert_object(&defaulted, &stored_version).expect("stored again")
}

#[test]
fn a_v1beta4_object_written_through_v2beta1_keeps_its_pod_template() {
    let stored = default_object(&seed000()).expect("stored with v1beta4's defaults");
    let after = write_through(&stored, "apps.emqx.io/v2beta1", |view| {
        view["metadata"]["labels"] = json!({"team": "mqtt"});
    });
    assert_eq!(after["metadata"]["labels"], json!({"team": "mqtt"}));
    assert_eq!(
        after["spec"]["template"],
        stored["spec"]["template"],
        "the pod template changed: {}",
        serde_json::to_string_pretty(&after["spec"]["template"]).unwrap_or_default()
    );
}

#[test]
fn a_probe_the_writer_sets_through_v2beta1_is_stored() {
    let stored = default_object(&seed000()).expect("stored with v1beta4's defaults");
    let probe = json!({"tcpSocket": {"port": 1883}, "periodSeconds": 7});
    let after = write_through(&stored, "apps.emqx.io/v2beta1", |view| {
        view["spec"]["coreTemplate"]["spec"]["livenessProbe"] = probe.clone();
    });
    assert_eq!(
        after["spec"]["template"]["spec"]["emqxContainer"]["livenessProbe"]["periodSeconds"],
        json!(7),
        "{}",
        serde_json::to_string_pretty(&after["spec"]["template"]).unwrap_or_default()
    );
}
