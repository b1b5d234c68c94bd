//! The CRDs committed under the chart are exactly what the types generate
//! (regenerate with `cargo run -p emqx-crd --bin crdgen`), and stay small
//! enough for client-side `kubectl apply`.

#![allow(clippy::panic, clippy::unwrap_used)] // test code: failing loudly is the point

use std::path::Path;

#[test]
fn committed_crds_match_the_types() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../charts/emqx-operator/files/crds");
    for (name, generated) in emqx_crd::crd::crd_files().expect("CRDs generate") {
        let path = dir.join(name);
        let committed = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "{}: {e}; run `cargo run -p emqx-crd --bin crdgen`",
                path.display()
            )
        });
        assert!(
            committed == generated,
            "{} differs from what the types generate; run `cargo run -p emqx-crd --bin crdgen`",
            path.display()
        );
    }
}

#[test]
fn crds_fit_client_side_apply() {
    // kubectl stores the object as compact JSON in an annotation; all
    // annotations together must stay under 256 KiB.
    for crd in [
        emqx_crd::crd::emqx_crd(),
        emqx_crd::crd::emqx_enterprise_crd(),
    ] {
        let crd = crd.expect("CRD generates");
        let json = serde_json::to_string(&crd).expect("serialize");
        assert!(
            json.len() < 128 * 1024,
            "{} is {} bytes",
            crd.metadata.name.unwrap_or_default(),
            json.len()
        );
    }
}

#[test]
fn crds_are_multi_version_with_webhook_conversion_and_existing_scale_paths() {
    let emqx = emqx_crd::crd::emqx_crd().expect("CRD");
    let versions: Vec<_> = emqx
        .spec
        .versions
        .iter()
        .map(|v| (v.name.as_str(), v.storage))
        .collect();
    assert_eq!(versions, [("v2beta1", true), ("v2alpha2", false)]);
    let enterprise = emqx_crd::crd::emqx_enterprise_crd().expect("CRD");
    let versions: Vec<_> = enterprise
        .spec
        .versions
        .iter()
        .map(|v| (v.name.as_str(), v.storage))
        .collect();
    assert_eq!(versions, [("v1beta4", true), ("v2beta1", false)]);
    for crd in [&emqx, &enterprise] {
        let conversion = crd.spec.conversion.as_ref().expect("conversion");
        assert_eq!(conversion.strategy, "Webhook");
        for version in &crd.spec.versions {
            let schema = serde_json::to_value(&version.schema).expect("schema");
            let scale = version
                .subresources
                .as_ref()
                .and_then(|s| s.scale.as_ref())
                .expect("scale subresource");
            for path in [&scale.spec_replicas_path, &scale.status_replicas_path] {
                let mut node = &schema["openAPIV3Schema"];
                for segment in path.trim_start_matches('.').split('.') {
                    node = &node["properties"][segment];
                    assert!(
                        !node.is_null(),
                        "{} {}: {path} not in schema",
                        crd.spec.names.kind,
                        version.name
                    );
                }
            }
        }
    }
}
