//! The `emqx-migrate` command on the seed 000 manifest and on bad input.

#![allow(clippy::panic, clippy::unwrap_used)] // test code: failing loudly is the point

use std::io::Write;
use std::process::{Command, Output, Stdio};

fn run(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_emqx-migrate"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start emqx-migrate");
    // A closed pipe (the command refusing early) is fine.
    let _ = child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes());
    child.wait_with_output().expect("emqx-migrate finishes")
}

fn seed000() -> String {
    std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/seeds/seed000-emqxenterprise-v1beta4.yaml"
    ))
    .unwrap()
}

#[test]
fn migrates_seed_000_and_lists_the_license() {
    let out = run(
        &["--image", "emqx/emqx-enterprise:5.10.0", "--name", "emqx"],
        &seed000(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let object: serde_json::Value =
        serde_saphyr::from_str(&String::from_utf8(out.stdout).unwrap()).unwrap();
    assert_eq!(object["kind"], "EMQX");
    assert_eq!(
        object["spec"]["updateStrategy"]["evacuationStrategy"]["connEvictRate"],
        10
    );
    // The result is a valid EMQX v2beta1 object.
    let verdict = emqx_crd::dynamic::validate_object(&object, None).unwrap();
    assert!(verdict.errors.is_empty(), "{:?}", verdict.errors);
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("not migrated: spec.license"), "{stderr}");
}

#[test]
fn strict_fails_when_fields_are_left_behind() {
    let out = run(
        &["--image", "emqx/emqx-enterprise:5.10.0", "--strict"],
        &seed000(),
    );
    assert_eq!(out.status.code(), Some(3));
}

#[test]
fn without_image_it_says_why() {
    let out = run(&[], &seed000());
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--image"));
}

#[test]
fn bad_input_is_an_error_not_a_panic() {
    for input in [
        "",
        "garbage: [",
        "- a\n- b\n",
        "apiVersion: v1\nkind: Pod\n",
        "\u{0}\u{1}",
    ] {
        let out = run(&["--image", "emqx/emqx-enterprise:5.10.0"], input);
        assert!(!out.status.success(), "{input:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.starts_with("emqx-migrate:"), "{input:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}
