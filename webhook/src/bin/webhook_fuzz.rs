//! `webhook-fuzz`: drives mutated AdmissionReview and ConversionReview
//! bodies through the pure review functions (`admission::review`,
//! `conversion::review`, both hooks, every endpoint) and checks what must
//! hold for any input: no panic; a body that is not a review is an error
//! naming the problem; a denial or failed conversion says why; an allowed
//! mutation's patch applies to the object it was computed from; a
//! successful conversion returns one object per input, each in the desired
//! version; every answer encodes.
//!
//! Inputs start from the seed objects' reviews (CREATE, UPDATE, conversion
//! both ways) and are mutated structurally (a node replaced by another type,
//! an extreme number, a long string, a copy of another node; a key removed
//! or added; envelope fields changed) and, for one in eight, byte-wise
//! (flips, truncation, insertion). Deterministic for a given `--seed`.
//!
//! Run: `cargo run --release -p emqx-webhook --bin webhook-fuzz -- [--count N] [--seed S]`
//! (default 1,000,000 inputs). Not part of `cargo test`.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Instant;

use anyhow::{Context as _, bail};
use base64::Engine as _;
use emqx_webhook::admission::{self, Hook};
use emqx_webhook::conversion;
use std::collections::BTreeMap;

use serde_json::{Value, json};

const SEEDS: [&str; 4] = [
    include_str!("../../tests/fixtures/emqx-v2beta1-seed003.json"),
    include_str!("../../tests/fixtures/emqx-v2alpha2-seed001.json"),
    include_str!("../../tests/fixtures/emqxenterprise-v1beta4-seed000.json"),
    include_str!("../../tests/fixtures/emqxenterprise-v1beta4-seed001.json"),
];

/// xorshift64*: deterministic, no dependency, plenty for choosing mutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn admission_review(obj: &Value, old: Option<&Value>) -> Value {
    let api_version = obj["apiVersion"].as_str().unwrap_or_default();
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": "00000000-0000-4000-8000-000000000001",
            "kind": {"group": group, "version": version, "kind": obj["kind"]},
            "resource": {"group": group, "version": version, "resource": "emqxes"},
            "name": obj.pointer("/metadata/name"), "namespace": obj.pointer("/metadata/namespace"),
            "operation": if old.is_some() { "UPDATE" } else { "CREATE" },
            "userInfo": {"username": "fuzz"},
            "object": obj, "oldObject": old, "dryRun": false
        }
    })
}

fn conversion_review(desired: &str, objects: &[Value]) -> Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "ConversionReview",
        "request": {"uid": "00000000-0000-4000-8000-000000000002", "desiredAPIVersion": desired, "objects": objects}
    })
}

/// The reviews mutations start from: (is a conversion, review).
fn corpus() -> anyhow::Result<Vec<(bool, Value)>> {
    let mut out = Vec::new();
    for seed in SEEDS {
        let obj: Value = serde_json::from_str(seed)?;
        let defaulted = emqx_crd::dynamic::default_object(&obj)?;
        out.push((false, admission_review(&obj, None)));
        out.push((false, admission_review(&defaulted, Some(&defaulted))));
        let other = match obj["apiVersion"].as_str() {
            Some("apps.emqx.io/v1beta4") | Some("apps.emqx.io/v2alpha2") => "apps.emqx.io/v2beta1",
            _ if obj["kind"] == "EMQX" => "apps.emqx.io/v2alpha2",
            _ => "apps.emqx.io/v1beta4",
        };
        out.push((
            true,
            conversion_review(other, &[defaulted.clone(), obj.clone()]),
        ));
    }
    Ok(out)
}

/// Every node's JSON pointer.
fn pointers(v: &Value, at: &mut String, out: &mut Vec<String>) {
    out.push(at.clone());
    let len = at.len();
    match v {
        Value::Object(m) => {
            for (k, child) in m {
                at.push('/');
                at.push_str(&k.replace('~', "~0").replace('/', "~1"));
                pointers(child, at, out);
                at.truncate(len);
            }
        }
        Value::Array(a) => {
            for (i, child) in a.iter().enumerate() {
                at.push_str(&format!("/{i}"));
                pointers(child, at, out);
                at.truncate(len);
            }
        }
        _ => {}
    }
}

fn random_value(rng: &mut Rng, donor: &Value) -> Value {
    match rng.below(14) {
        0 => Value::Null,
        1 => json!(true),
        2 => json!(0),
        3 => json!(-1),
        4 => json!(i64::MAX),
        5 => json!(u64::MAX),
        6 => json!(1e308),
        7 => json!(""),
        8 => Value::String("x".repeat(rng.below(300))),
        9 => json!({}),
        10 => json!([]),
        11 => json!("5.8.0"),
        12 => json!({"unknownField": [1, {"a": null}]}),
        _ => donor.clone(),
    }
}

fn mutate_tree(rng: &mut Rng, review: &mut Value) {
    let mut all = Vec::new();
    pointers(review, &mut String::new(), &mut all);
    let rounds = 1 + rng.below(3);
    for _ in 0..rounds {
        let target = &all[rng.below(all.len())];
        let donor_at = &all[rng.below(all.len())];
        let donor = review.pointer(donor_at).cloned().unwrap_or(Value::Null);
        let replacement = random_value(rng, &donor);
        let Some(node) = review.pointer_mut(target) else {
            continue;
        };
        match (rng.below(4), node) {
            (0, Value::Object(m)) if !m.is_empty() => {
                let key = m
                    .keys()
                    .nth(rng.below(m.len()))
                    .cloned()
                    .unwrap_or_default();
                m.remove(&key);
            }
            (1, Value::Object(m)) => {
                m.insert(format!("k{}", rng.below(4)), replacement);
            }
            (1, Value::Array(a)) => {
                let copies = if rng.below(8) == 0 { 200 } else { 1 };
                for _ in 0..copies {
                    a.push(replacement.clone());
                }
            }
            (_, node) => *node = replacement,
        }
    }
}

fn mutate_bytes(rng: &mut Rng, bytes: &mut Vec<u8>) {
    match rng.below(3) {
        0 if !bytes.is_empty() => {
            let i = rng.below(bytes.len());
            bytes[i] ^= 1 << rng.below(8);
        }
        1 => {
            let keep = rng.below(bytes.len() + 1);
            bytes.truncate(keep);
        }
        _ => {
            let i = rng.below(bytes.len() + 1);
            let junk = [b'{', b'[', b'"', b'\\', b'0', 0xff, b'}', b','];
            bytes.insert(i, junk[rng.below(junk.len())]);
        }
    }
}

/// The body as the harness reads it back. The webhook skips the fields it
/// does not read without validating them (an invalid UTF-8 byte or a number
/// out of range there is accepted, as by any serde client), so the harness
/// may fail to read back what the webhook answered; such inputs are counted
/// apart.
fn reparse(body: &[u8]) -> Result<Value, String> {
    serde_json::from_str(&String::from_utf8_lossy(body)).map_err(|e| e.to_string())
}

/// Checks one input; `Ok` says what it was answered, `Err` names the broken
/// property.
fn check(is_conversion: bool, body: &[u8]) -> Result<&'static str, String> {
    if is_conversion {
        let out = match conversion::review(body) {
            Ok(out) => out,
            Err(e) if e.to_string().is_empty() => return Err("empty error".into()),
            Err(_) => return Ok("not a review (400)"),
        };
        conversion::encode(&out.answer).map_err(|e| format!("encode: {e}"))?;
        if out.failed {
            if out.answer.result.message.is_empty() {
                return Err("failed conversion without a message".into());
            }
            return Ok("conversion failed, with a reason");
        }
        let Ok(request) = reparse(body) else {
            return Ok("converted; a skipped field not readable back");
        };
        let desired = request
            .pointer("/request/desiredAPIVersion")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let given = request
            .pointer("/request/objects")
            .and_then(Value::as_array)
            .map_or(0, Vec::len);
        if out.answer.converted_objects.len() != given {
            return Err(format!(
                "{given} objects in, {} out",
                out.answer.converted_objects.len()
            ));
        }
        for o in &out.answer.converted_objects {
            if o.get("apiVersion").and_then(Value::as_str) != Some(desired) {
                return Err(format!(
                    "converted object is not {desired}: {}",
                    o["apiVersion"]
                ));
            }
        }
        return Ok("converted");
    }
    let mut answered = "allowed";
    for hook in [Hook::Mutate, Hook::Validate] {
        let out = match admission::review(body, hook) {
            Ok(out) => out,
            Err(e) if e.to_string().is_empty() => return Err("empty error".into()),
            Err(_) => return Ok("not a review (400)"),
        };
        admission::encode(&out.answer).map_err(|e| format!("encode: {e}"))?;
        if out.denied && out.answer.result.message.is_empty() {
            return Err(format!("{hook:?}: denied without a message"));
        }
        if out.denied {
            answered = "denied, with a reason";
        }
        if let Some(patch) = &out.answer.patch {
            let Ok(request) = reparse(body) else {
                answered = "defaulted; a skipped field not readable back";
                continue;
            };
            let mut object = request
                .pointer("/request/object")
                .cloned()
                .ok_or("a patch without an object")?;
            let patch: json_patch::Patch = serde_json::from_slice(patch)
                .map_err(|e| format!("patch is not JSON Patch: {e}"))?;
            json_patch::patch(&mut object, &patch)
                .map_err(|e| format!("patch does not apply: {e}"))?;
            answered = "defaulted by a patch that applies";
        }
    }
    Ok(answered)
}

fn main() -> anyhow::Result<()> {
    let mut count: u64 = 1_000_000;
    let mut seed: u64 = 0x5eed_1234_abcd_0001;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--count" => count = args.next().context("--count N")?.parse()?,
            "--seed" => seed = args.next().context("--seed S")?.parse()?,
            other => bail!("unknown argument {other}; usage: webhook-fuzz [--count N] [--seed S]"),
        }
    }
    // A panic is a finding: report it with the input, not the default hook's noise.
    std::panic::set_hook(Box::new(|_| {}));
    let corpus = corpus()?;
    let mut rng = Rng(seed | 1);
    let started = Instant::now();
    let mut tally: BTreeMap<&'static str, u64> = BTreeMap::new();
    let mut bytes_mutated = 0u64;
    for i in 0..count {
        let (is_conversion, base) = &corpus[rng.below(corpus.len())];
        let mut review = base.clone();
        mutate_tree(&mut rng, &mut review);
        let mut body = serde_json::to_vec(&review)?;
        if rng.below(8) == 0 {
            mutate_bytes(&mut rng, &mut body);
            bytes_mutated += 1;
        }
        let verdict = catch_unwind(AssertUnwindSafe(|| check(*is_conversion, &body)));
        match verdict {
            Ok(Ok(answered)) => *tally.entry(answered).or_default() += 1,
            Ok(Err(broken)) => bail!(
                "input {i}: {broken}\nbody (base64): {}",
                base64::engine::general_purpose::STANDARD.encode(&body)
            ),
            Err(_) => bail!(
                "input {i}: panic\nbody (base64): {}",
                base64::engine::general_purpose::STANDARD.encode(&body)
            ),
        }
        if (i + 1) % 100_000 == 0 {
            eprintln!(
                "{} inputs, {:.0}/s",
                i + 1,
                (i + 1) as f64 / started.elapsed().as_secs_f64()
            );
        }
    }
    println!(
        "webhook-fuzz: {count} inputs (seed {seed}, {bytes_mutated} byte-mutated) in {:.1} s; every property held",
        started.elapsed().as_secs_f64()
    );
    for (answered, n) in tally {
        println!("  {n:>9}  {answered}");
    }
    Ok(())
}
