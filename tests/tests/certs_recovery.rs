//! Two self-managed certificate keepers (the webhook's `CertKeeper`, in
//! process, one per replica) refreshing at the same moment against the
//! sandbox's real kube-apiserver, while the certificate Secret is deleted and
//! then corrupted. Each time exactly one write lands (the other replica's
//! guarded create or replace gets 409 and adopts it), both replicas serve the
//! same new leaf, and the `caBundle` injected into a real webhook
//! configuration and a real CRD accepts both the old leaf (a replica that has
//! not refreshed yet) and the new one. The apiserver's audit log shows that
//! every replace of the Secret carried the `resourceVersion` it was read at.

#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::SystemTime;

use emqx_certs::keeper::CertKeeper;
use emqx_certs::mode::InjectionTargets;
use emqx_certs::{CertBundle, CertMode, CertResolver, ServiceIdentity};
use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use sandbox::{Sandbox, SandboxOptions};
use serde_json::json;

const NS: &str = "certs-recovery";
const SECRET: &str = "webhook-tls";
const VWC: &str = "certs-recovery";
const CRD: &str = "widgets.certs.example.com";

fn keeper(client: &Client) -> (CertKeeper, Arc<CertResolver>) {
    let resolver = Arc::new(CertResolver::new());
    let mode = CertMode::SelfManaged {
        secret: SECRET.into(),
        identity: ServiceIdentity {
            service: "webhook".into(),
            namespace: NS.into(),
            cluster_domain: "cluster.local".into(),
            extra_names: Vec::new(),
        },
        targets: InjectionTargets {
            validating: Some(VWC.into()),
            mutating: None,
            crds: vec![CRD.into()],
        },
    };
    let keeper = CertKeeper::new(mode, resolver.clone(), Some(client.clone()), NS.into());
    (keeper, resolver)
}

async fn create_targets(client: &Client) {
    let ns: Api<Namespace> = Api::all(client.clone());
    ns.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": NS}})).expect("ns"),
    )
    .await
    .expect("namespace");
    let vwc: Api<ValidatingWebhookConfiguration> = Api::all(client.clone());
    vwc.create(
        &PostParams::default(),
        &serde_json::from_value(json!({
            "metadata": {"name": VWC},
            "webhooks": [{
                "name": "widgets.certs.example.com",
                "admissionReviewVersions": ["v1"], "sideEffects": "None",
                "failurePolicy": "Ignore",
                // Matches nothing: the configuration is only a caBundle holder.
                "rules": [{"apiGroups": ["certs.example.com"], "apiVersions": ["v1"],
                           "operations": ["CREATE"], "resources": ["gadgets"]}],
                "clientConfig": {"service": {"name": "webhook", "namespace": NS, "path": "/validate"}}
            }]
        }))
        .expect("vwc"),
    )
    .await
    .expect("create vwc");
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.create(
        &PostParams::default(),
        &serde_json::from_value(json!({
            "metadata": {"name": CRD},
            "spec": {
                "group": "certs.example.com", "scope": "Namespaced",
                "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
                "versions": [
                    {"name": "v1", "served": true, "storage": true,
                     "schema": {"openAPIV3Schema": {"type": "object"}}},
                    {"name": "v2", "served": true, "storage": false,
                     "schema": {"openAPIV3Schema": {"type": "object"}}}
                ],
                "conversion": {"strategy": "Webhook", "webhook": {
                    "conversionReviewVersions": ["v1"],
                    "clientConfig": {"service": {"name": "webhook", "namespace": NS, "path": "/convert"}}}}
            }
        }))
        .expect("crd"),
    )
    .await
    .expect("create crd");
}

async fn secret_bundle(secrets: &Api<Secret>) -> CertBundle {
    let s = secrets.get(SECRET).await.expect("get secret");
    CertBundle::from_secret_data(&s.data.unwrap_or_default()).expect("bundle")
}

/// The PEM bundles the apiserver trusts now (the configuration's and the CRD's).
async fn injected(client: &Client) -> Vec<String> {
    let decode = |v: &serde_json::Value| -> String {
        use base64::Engine as _;
        let b64 = v.as_str().expect("caBundle set");
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .expect("caBundle is base64");
        String::from_utf8(bytes).expect("caBundle is PEM text")
    };
    let vwc: Api<ValidatingWebhookConfiguration> = Api::all(client.clone());
    let vwc = serde_json::to_value(vwc.get(VWC).await.expect("vwc")).expect("json");
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd = serde_json::to_value(crds.get(CRD).await.expect("crd")).expect("json");
    vec![
        decode(&vwc["webhooks"][0]["clientConfig"]["caBundle"]),
        decode(&crd["spec"]["conversion"]["webhook"]["clientConfig"]["caBundle"]),
    ]
}

/// Whether a client trusting `bundle` accepts `leaf` (signature by one of its CAs).
fn accepts(bundle: &str, leaf: &str) -> bool {
    use x509_parser::prelude::*;
    let (_, leaf) = parse_x509_pem(leaf.as_bytes()).expect("leaf pem");
    let leaf = leaf.parse_x509().expect("leaf");
    Pem::iter_from_buffer(bundle.as_bytes())
        .filter_map(Result::ok)
        .any(|pem| {
            pem.parse_x509()
                .is_ok_and(|ca| leaf.verify_signature(Some(ca.public_key())).is_ok())
        })
}

/// Secret writes by the keepers (the test's own delete and patch excluded):
/// (verb, code, resourceVersion in the request).
fn keeper_writes(sb: &Sandbox) -> Vec<(String, u16, Option<String>)> {
    sb.audited_writes()
        .expect("audit log")
        .into_iter()
        .filter(|w| w.resource == "secrets" && w.name == SECRET)
        .filter(|w| w.verb == "create" || w.verb == "update")
        .map(|w| {
            let rv = w
                .body
                .as_ref()
                .and_then(|b| b.pointer("/metadata/resourceVersion"))
                .and_then(|v| v.as_str())
                .map(str::to_owned);
            (w.verb, w.code, rv)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_recover_a_deleted_then_corrupt_secret_with_one_ca_and_overlap() {
    let sb = Sandbox::start(SandboxOptions::default().audit_writes())
        .await
        .expect("sandbox");
    let client = sb.client();
    create_targets(&client).await;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), NS);
    let (a, served_a) = keeper(&client);
    let (b, served_b) = keeper(&client);
    let now = SystemTime::now();

    // Both start at once: one creates, the other adopts.
    let (ra, rb) = tokio::join!(a.refresh(now), b.refresh(now));
    ra.expect("a starts");
    rb.expect("b starts");
    assert_eq!(served_a.served_cert_pem(), served_b.served_cert_pem());
    let first = secret_bundle(&secrets).await;

    // Deleted: both notice at once.
    secrets
        .delete(SECRET, &DeleteParams::default())
        .await
        .expect("delete");
    let (ra, rb) = tokio::join!(a.refresh(now), b.refresh(now));
    ra.expect("a recovers");
    rb.expect("b recovers");
    let second = secret_bundle(&secrets).await;
    assert_ne!(second.cert_pem, first.cert_pem);
    assert_eq!(served_a.served_cert_pem(), Some(second.cert_pem.clone()));
    assert_eq!(served_b.served_cert_pem(), Some(second.cert_pem.clone()));
    assert!(
        second.ca_pem.ends_with(&first.ca_pem),
        "old CA kept: {}",
        second.ca_pem
    );
    for trusted in injected(&client).await {
        assert!(
            accepts(&trusted, &first.cert_pem),
            "a not-yet-switched replica's leaf"
        );
        assert!(accepts(&trusted, &second.cert_pem), "the new leaf");
    }

    // Corrupted (tls.crt not even text): both notice at once.
    secrets
        .patch(
            SECRET,
            &PatchParams::default(),
            &Patch::Json::<()>(
                serde_json::from_value(json!([
                    // A kubernetes.io/tls Secret must keep both keys; the
                    // bytes can be anything (here not even UTF-8).
                    {"op": "replace", "path": "/data/tls.key", "value": "bm90IGEga2V5"},
                    {"op": "replace", "path": "/data/tls.crt", "value": "//4="}
                ]))
                .expect("patch"),
            ),
        )
        .await
        .expect("corrupt");
    let (ra, rb) = tokio::join!(a.refresh(now), b.refresh(now));
    ra.expect("a replaces");
    rb.expect("b replaces");
    let third = secret_bundle(&secrets).await;
    assert_eq!(served_a.served_cert_pem(), Some(third.cert_pem.clone()));
    assert_eq!(served_b.served_cert_pem(), Some(third.cert_pem.clone()));
    for trusted in injected(&client).await {
        assert!(accepts(&trusted, &second.cert_pem));
        assert!(accepts(&trusted, &third.cert_pem));
    }

    let writes = keeper_writes(&sb);
    eprintln!("keeper writes of the Secret (verb, code, resourceVersion): {writes:?}");
    let landed = |verb: &str| {
        writes
            .iter()
            .filter(|(v, code, _)| v == verb && (200..300).contains(code))
            .count()
    };
    assert_eq!(landed("create"), 2, "one create per absence: {writes:?}");
    assert_eq!(
        landed("update"),
        1,
        "one replace of the corrupt Secret: {writes:?}"
    );
    assert!(
        writes
            .iter()
            .filter(|(v, ..)| v == "update")
            .all(|(_, _, rv)| rv.as_deref().is_some_and(|rv| !rv.is_empty())),
        "every replace carries the resourceVersion read: {writes:?}"
    );
    sb.stop().await.expect("stop");
}
