//! What to patch so the API server trusts the webhook's CA. Pure: each
//! function takes the live object and returns the JSON Patch (empty when the
//! object already carries the bundle, or a newer one), so a steady state
//! makes no writes.

use base64::Engine as _;
use json_patch::jsonptr::PointerBuf;
use json_patch::{AddOperation, Patch, PatchOperation, TestOperation};
use serde_json::Value;

use crate::authority::{first_pem_certificate, pem_certificates};

/// `caBundle` as the API stores it: base64 of the PEM bytes.
pub fn encode_ca_bundle(ca_pem: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(ca_pem.as_bytes())
}

/// The PEM text of a live `caBundle` value; `None` when it is not base64 of
/// UTF-8 (a hostile or broken value, which then counts as trusting nothing).
pub fn decode_ca_bundle(ca_bundle_b64: &str) -> Option<String> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(ca_bundle_b64.trim())
        .ok()?;
    String::from_utf8(bytes).ok()
}

/// The CA bundles (PEM) a Validating- or MutatingWebhookConfiguration's
/// entries carry now.
pub fn injected_in_webhook_configuration(config: &Value) -> Vec<String> {
    config
        .get("webhooks")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|hook| hook.pointer("/clientConfig/caBundle")?.as_str())
        .filter_map(decode_ca_bundle)
        .collect()
}

/// The CA bundle (PEM) a CRD's conversion webhook carries now.
pub fn injected_in_crd(crd: &Value) -> Vec<String> {
    crd.pointer("/spec/conversion/webhook/clientConfig/caBundle")
        .and_then(Value::as_str)
        .and_then(decode_ca_bundle)
        .into_iter()
        .collect()
}

/// Whether the live `caBundle` was written from a newer Secret than ours: it
/// carries our current CA, but as an old CA after a newer one. A replica that
/// read the Secret just before another one replaced the CA would otherwise
/// put its stale bundle back, and the API server would reject the new leaf
/// until the next refresh. Both values are base64 as stored.
pub fn supersedes(live_b64: &str, ours_b64: &str) -> bool {
    let (Some(live), Some(ours)) = (decode_ca_bundle(live_b64), decode_ca_bundle(ours_b64)) else {
        return false;
    };
    let Some(our_ca) = first_pem_certificate(&ours) else {
        return false;
    };
    let live = pem_certificates(&live);
    live.iter().skip(1).any(|ca| *ca == our_ca)
}

/// What to do with a live `caBundle` that [`supersedes`] ours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Newer {
    /// Leave it: our read of the Secret may be stale.
    Yield,
    /// Overwrite it: the Secret was re-read and still holds ours (someone
    /// put an older CA back on purpose, e.g. a restored backup).
    Overwrite,
}

/// Whether any entry of a webhook configuration carries a bundle that
/// [`supersedes`] ours.
pub fn webhook_configuration_superseded(config: &Value, ca_bundle_b64: &str) -> bool {
    config
        .get("webhooks")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|hook| hook.pointer("/clientConfig/caBundle")?.as_str())
        .any(|live| supersedes(live, ca_bundle_b64))
}

/// Whether a CRD's conversion webhook carries a bundle that [`supersedes`] ours.
pub fn crd_superseded(crd: &Value, ca_bundle_b64: &str) -> bool {
    crd.pointer("/spec/conversion/webhook/clientConfig/caBundle")
        .and_then(Value::as_str)
        .is_some_and(|live| supersedes(live, ca_bundle_b64))
}

/// Patch for a Validating- or MutatingWebhookConfiguration: sets
/// `webhooks[i].clientConfig.caBundle` on every entry that lacks it (and,
/// under [`Newer::Yield`], does not carry a bundle that [`supersedes`] it). Each
/// write is guarded by a `test` of the entry's name, so a concurrent edit that
/// reorders the list makes the patch fail instead of hitting the wrong entry.
pub fn webhook_configuration_patch(config: &Value, ca_bundle_b64: &str, newer: Newer) -> Patch {
    let mut ops = Vec::new();
    let Some(webhooks) = config.get("webhooks").and_then(Value::as_array) else {
        return Patch(ops);
    };
    for (i, hook) in webhooks.iter().enumerate() {
        let index = i.to_string();
        let current = hook
            .pointer("/clientConfig/caBundle")
            .and_then(Value::as_str);
        if current == Some(ca_bundle_b64)
            || (newer == Newer::Yield
                && current.is_some_and(|live| supersedes(live, ca_bundle_b64)))
        {
            continue;
        }
        if let Some(name) = hook.get("name") {
            ops.push(PatchOperation::Test(TestOperation {
                path: PointerBuf::from_tokens(["webhooks", index.as_str(), "name"]),
                value: name.clone(),
            }));
        }
        let (path, value) = if hook.get("clientConfig").is_some_and(Value::is_object) {
            (
                PointerBuf::from_tokens(["webhooks", index.as_str(), "clientConfig", "caBundle"]),
                Value::String(ca_bundle_b64.to_owned()),
            )
        } else {
            (
                PointerBuf::from_tokens(["webhooks", index.as_str(), "clientConfig"]),
                serde_json::json!({ "caBundle": ca_bundle_b64 }),
            )
        };
        ops.push(PatchOperation::Add(AddOperation { path, value }));
    }
    Patch(ops)
}

/// Patch for a CustomResourceDefinition whose conversion strategy is
/// `Webhook`: sets `spec.conversion.webhook.clientConfig.caBundle`. A CRD
/// without a webhook conversion stanza gets no patch (nothing calls us for it).
pub fn crd_conversion_patch(crd: &Value, ca_bundle_b64: &str, newer: Newer) -> Patch {
    let strategy = crd
        .pointer("/spec/conversion/strategy")
        .and_then(Value::as_str);
    let client_config = crd.pointer("/spec/conversion/webhook/clientConfig");
    if strategy != Some("Webhook") || !client_config.is_some_and(Value::is_object) {
        return Patch(Vec::new());
    }
    let current = crd
        .pointer("/spec/conversion/webhook/clientConfig/caBundle")
        .and_then(Value::as_str);
    if current == Some(ca_bundle_b64)
        || (newer == Newer::Yield && current.is_some_and(|live| supersedes(live, ca_bundle_b64)))
    {
        return Patch(Vec::new());
    }
    Patch(vec![
        PatchOperation::Test(TestOperation {
            path: PointerBuf::from_tokens(["spec", "conversion", "strategy"]),
            value: Value::String("Webhook".into()),
        }),
        PatchOperation::Add(AddOperation {
            path: PointerBuf::from_tokens([
                "spec",
                "conversion",
                "webhook",
                "clientConfig",
                "caBundle",
            ]),
            value: Value::String(ca_bundle_b64.to_owned()),
        }),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn applied(mut doc: Value, patch: &Patch) -> Value {
        json_patch::patch(&mut doc, &patch.0).expect("patch applies");
        doc
    }

    #[test]
    fn every_webhook_entry_gets_the_bundle_and_a_second_pass_is_a_no_op() {
        let cfg = json!({
            "metadata": {"name": "emqx-operator-validating"},
            "webhooks": [
                {"name": "validate.emqx.apps.emqx.io", "clientConfig": {"service": {"name": "s", "namespace": "n"}}},
                {"name": "validate.enterprise.apps.emqx.io", "clientConfig": {"caBundle": "b2xk", "url": "https://127.0.0.1:1"}}
            ]
        });
        let patch = webhook_configuration_patch(&cfg, "bmV3", Newer::Yield);
        let out = applied(cfg, &patch);
        assert_eq!(out["webhooks"][0]["clientConfig"]["caBundle"], "bmV3");
        assert_eq!(out["webhooks"][0]["clientConfig"]["service"]["name"], "s");
        assert_eq!(out["webhooks"][1]["clientConfig"]["caBundle"], "bmV3");
        assert_eq!(
            out["webhooks"][1]["clientConfig"]["url"],
            "https://127.0.0.1:1"
        );
        assert!(
            webhook_configuration_patch(&out, "bmV3", Newer::Yield)
                .0
                .is_empty()
        );
    }

    #[test]
    fn a_reordered_list_makes_the_patch_fail_rather_than_hit_the_wrong_entry() {
        let cfg = json!({"webhooks": [{"name": "a", "clientConfig": {}}, {"name": "b", "clientConfig": {}}]});
        let patch = webhook_configuration_patch(&cfg, "eA==", Newer::Yield);
        let mut reordered = json!({"webhooks": [{"name": "b", "clientConfig": {}}, {"name": "a", "clientConfig": {}}]});
        assert!(json_patch::patch(&mut reordered, &patch.0).is_err());
    }

    #[test]
    fn configurations_without_webhooks_or_odd_shapes_give_no_patch_or_a_valid_one() {
        assert!(
            webhook_configuration_patch(&json!({}), "eA==", Newer::Yield)
                .0
                .is_empty()
        );
        assert!(
            webhook_configuration_patch(&json!({"webhooks": "x"}), "eA==", Newer::Yield)
                .0
                .is_empty()
        );
        let cfg = json!({"webhooks": [{"name": "a"}]});
        let out = applied(
            cfg.clone(),
            &webhook_configuration_patch(&cfg, "eA==", Newer::Yield),
        );
        assert_eq!(out["webhooks"][0]["clientConfig"]["caBundle"], "eA==");
    }

    #[test]
    fn crd_with_webhook_conversion_gets_the_bundle_once() {
        let crd = json!({"spec": {"conversion": {"strategy": "Webhook", "webhook": {
            "conversionReviewVersions": ["v1"],
            "clientConfig": {"service": {"name": "s", "namespace": "n", "path": "/convert"}}}}}});
        let patch = crd_conversion_patch(&crd, "Y2E=", Newer::Yield);
        let out = applied(crd, &patch);
        assert_eq!(
            out["spec"]["conversion"]["webhook"]["clientConfig"]["caBundle"],
            "Y2E="
        );
        assert_eq!(
            out["spec"]["conversion"]["webhook"]["clientConfig"]["service"]["path"],
            "/convert"
        );
        assert!(
            crd_conversion_patch(&out, "Y2E=", Newer::Yield)
                .0
                .is_empty()
        );
    }

    #[test]
    fn crd_without_webhook_conversion_is_left_alone() {
        assert!(
            crd_conversion_patch(
                &json!({"spec": {"conversion": {"strategy": "None"}}}),
                "x",
                Newer::Yield
            )
            .0
            .is_empty()
        );
        assert!(
            crd_conversion_patch(&json!({"spec": {}}), "x", Newer::Yield)
                .0
                .is_empty()
        );
        assert!(
            crd_conversion_patch(
                &json!({"spec": {"conversion": {"strategy": "Webhook"}}}),
                "x",
                Newer::Yield
            )
            .0
            .is_empty()
        );
    }

    fn ca(n: u8) -> String {
        // Distinct well-formed PEM blocks; supersedes compares blocks, not X.509.
        format!("-----BEGIN CERTIFICATE-----\nQ0E{n}\n-----END CERTIFICATE-----\n")
    }

    fn b64(cas: &[&str]) -> String {
        encode_ca_bundle(&cas.concat())
    }

    #[test]
    fn a_bundle_that_demoted_our_ca_supersedes_ours_and_nothing_else_does() {
        let (x, y) = (ca(1), ca(2));
        assert!(
            supersedes(&b64(&[&y, &x]), &b64(&[&x])),
            "stale after a CA change"
        );
        // A rotation (ours is newer), dropping old CAs, a wiped or foreign
        // value, garbage: ours goes in.
        for (live, ours) in [
            (b64(&[&x]), b64(&[&y, &x])),
            (b64(&[&y, &x]), b64(&[&y])),
            (String::new(), b64(&[&x])),
            (b64(&[&y]), b64(&[&x])),
            ("//79".into(), b64(&[&x])),
            (b64(&[&y, &x]), "not base64".into()),
        ] {
            assert!(!supersedes(&live, &ours), "{live} vs {ours}");
        }
    }

    #[test]
    fn a_stale_bundle_yields_to_a_newer_one_unless_told_to_overwrite() {
        let (x, y) = (ca(1), ca(2));
        let newer = b64(&[&y, &x]);
        let ours = b64(&[&x]);
        let cfg = json!({"webhooks": [{"name": "a", "clientConfig": {"caBundle": newer}}]});
        assert!(
            webhook_configuration_patch(&cfg, &ours, Newer::Yield)
                .0
                .is_empty()
        );
        assert!(webhook_configuration_superseded(&cfg, &ours));
        let out = applied(
            cfg.clone(),
            &webhook_configuration_patch(&cfg, &ours, Newer::Overwrite),
        );
        assert_eq!(out["webhooks"][0]["clientConfig"]["caBundle"], json!(ours));
        let crd = json!({"spec": {"conversion": {"strategy": "Webhook", "webhook": {
            "clientConfig": {"caBundle": newer}}}}});
        assert!(crd_conversion_patch(&crd, &ours, Newer::Yield).0.is_empty());
        assert!(crd_superseded(&crd, &ours));
        assert!(
            !crd_conversion_patch(&crd, &ours, Newer::Overwrite)
                .0
                .is_empty()
        );
    }

    #[test]
    fn bundle_is_base64_of_the_pem() {
        assert_eq!(encode_ca_bundle("abc"), "YWJj");
    }
}
