//! Every EMQX/EmqxEnterprise manifest and status from the seed documents
//! parses, defaults, validates and converts, compared with golden files in
//! `tests/seeds/golden/` (regenerate with `UPDATE_GOLDEN=1 cargo test -p
//! emqx-crd --test seeds`, then review the diff).

#![allow(clippy::panic, clippy::unwrap_used)] // test code: failing loudly is the point

use emqx_crd::dynamic::{convert_object, default_object, identify, validate_object};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};

fn seeds_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/seeds")
}

fn load(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).expect("seed readable");
    if path.extension().is_some_and(|e| e == "json") {
        serde_json::from_str(&text).expect("seed JSON")
    } else {
        serde_saphyr::from_str(&text).expect("seed YAML")
    }
}

fn other_version(api_version: &str, kind: &str) -> &'static str {
    match (api_version, kind) {
        ("apps.emqx.io/v2beta1", "EMQX") => "apps.emqx.io/v2alpha2",
        ("apps.emqx.io/v2alpha2", "EMQX") => "apps.emqx.io/v2beta1",
        ("apps.emqx.io/v1beta4", _) => "apps.emqx.io/v2beta1",
        _ => "apps.emqx.io/v1beta4",
    }
}

fn check_golden(name: &str, actual: &Value) {
    let path = seeds_dir().join("golden").join(name);
    let pretty = serde_json::to_string_pretty(actual).expect("serialize") + "\n";
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(&path, pretty).expect("write golden");
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (run with UPDATE_GOLDEN=1)", path.display()));
    assert_eq!(pretty, expected, "golden file {} differs", path.display());
}

#[test]
fn every_seed_manifest_defaults_validates_and_converts() {
    let mut seeds: Vec<PathBuf> = std::fs::read_dir(seeds_dir())
        .expect("seeds dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.is_file())
        .collect();
    seeds.sort();
    assert!(seeds.len() >= 6, "seed manifests missing: {seeds:?}");
    for path in seeds {
        let stem = path
            .file_stem()
            .and_then(|s| s.to_str())
            .expect("name")
            .to_owned();
        let obj = load(&path);
        let served = identify(&obj).expect("served kind");
        let defaulted = default_object(&obj).expect("defaults");
        assert_eq!(
            default_object(&defaulted).expect("defaults again"),
            defaulted,
            "{stem}: idempotent"
        );
        let verdict = validate_object(&defaulted, None).expect("validates");
        assert!(verdict.errors.is_empty(), "{stem}: {:?}", verdict.errors);
        let target = other_version(served.api_version(), served.kind());
        let converted = convert_object(&defaulted, target).expect("converts");
        let back = convert_object(&converted, served.api_version()).expect("converts back");
        assert_eq!(back, defaulted, "{stem}: round trip through {target}");
        let verdict_converted = validate_object(&converted, None).expect("converted validates");
        check_golden(
            &format!("{stem}.json"),
            &json!({
                "defaulted": defaulted,
                "warnings": verdict.warnings,
                "converted": converted,
                "convertedErrors": verdict_converted.errors.iter().map(|e| e.to_string()).collect::<Vec<_>>(),
            }),
        );
    }
}
