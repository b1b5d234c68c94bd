//! Self-managed mode against an in-memory stand-in for the API server (only
//! the calls the keeper makes: Secret get/create/replace, get + JSON Patch of
//! the webhook configurations and CRDs). The real apiserver runs in the
//! sandbox end-to-end tests; this pins down the call sequence and the races.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use emqx_certs::keeper::CertKeeper;
use emqx_certs::mode::InjectionTargets;
use emqx_certs::recovery::OVERLAP_WINDOW;
use emqx_certs::rotation::{RotationPlan, parse_validity};
use emqx_certs::{CertBundle, CertMode, CertResolver, ServiceIdentity, authority};
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use serde_json::{Value, json};

const NS: &str = "emqx-system";
const SECRET_PATH: &str = "/api/v1/namespaces/emqx-system/secrets/emqx-webhook-tls";
const VWC: &str = "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations/emqx-operator-validating";
const MWC: &str =
    "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/emqx-operator-mutating";
const CRD_EMQX: &str =
    "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/emqxes.apps.emqx.io";
const CRD_EE: &str =
    "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/emqxenterprises.apps.emqx.io";

#[derive(Default)]
struct FakeApi {
    objects: HashMap<String, Value>,
    version: u64,
    writes: Vec<String>,
    /// Answer the next Secret GET with 404 even if it exists, as a replica
    /// that looked just before another one created it would see.
    hide_secret_once: bool,
    /// Answer the next Secret GET with the version before the last write, as
    /// a replica that read just before another one rotated would see.
    stale_secret_once: bool,
    previous_secret: Option<Value>,
}

fn status(code: StatusCode, reason: &str) -> Response<Full<Bytes>> {
    let body = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": reason, "code": code.as_u16(), "message": reason});
    Response::builder()
        .status(code)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("response")
}

fn ok(v: &Value, code: StatusCode) -> Response<Full<Bytes>> {
    Response::builder()
        .status(code)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(v.to_string())))
        .expect("response")
}

impl FakeApi {
    fn bump(&mut self, obj: &mut Value) {
        self.version += 1;
        obj["metadata"]["resourceVersion"] = json!(self.version.to_string());
    }

    fn handle(&mut self, method: &Method, path: &str, body: &[u8]) -> Response<Full<Bytes>> {
        let path = path.split('?').next().unwrap_or_default().to_owned();
        match *method {
            Method::GET => {
                if path == SECRET_PATH && std::mem::take(&mut self.hide_secret_once) {
                    return status(StatusCode::NOT_FOUND, "NotFound");
                }
                if path == SECRET_PATH
                    && std::mem::take(&mut self.stale_secret_once)
                    && let Some(old) = &self.previous_secret
                {
                    return ok(old, StatusCode::OK);
                }
                match self.objects.get(&path) {
                    Some(o) => ok(o, StatusCode::OK),
                    None => status(StatusCode::NOT_FOUND, "NotFound"),
                }
            }
            Method::POST => {
                let mut obj: Value = serde_json::from_slice(body).expect("post body");
                let name = obj["metadata"]["name"].as_str().unwrap_or_default();
                let full = format!("{path}/{name}");
                if self.objects.contains_key(&full) {
                    return status(StatusCode::CONFLICT, "AlreadyExists");
                }
                self.bump(&mut obj);
                self.writes.push(format!("create {full}"));
                self.objects.insert(full, obj.clone());
                ok(&obj, StatusCode::CREATED)
            }
            Method::PUT => {
                let mut obj: Value = serde_json::from_slice(body).expect("put body");
                let Some(current) = self.objects.get(&path) else {
                    return status(StatusCode::NOT_FOUND, "NotFound");
                };
                let given = obj["metadata"]["resourceVersion"]
                    .as_str()
                    .map(str::to_owned);
                let given = given.as_deref();
                if given.is_some() && given != current["metadata"]["resourceVersion"].as_str() {
                    return status(StatusCode::CONFLICT, "Conflict");
                }
                self.previous_secret = Some(current.clone());
                self.bump(&mut obj);
                self.writes
                    .push(format!("replace {path} at {}", given.unwrap_or("<any>")));
                self.objects.insert(path, obj.clone());
                ok(&obj, StatusCode::OK)
            }
            Method::PATCH => {
                let patch: json_patch::Patch =
                    serde_json::from_slice(body).expect("json patch body");
                let Some(current) = self.objects.get_mut(&path) else {
                    return status(StatusCode::NOT_FOUND, "NotFound");
                };
                if json_patch::patch(current, &patch.0).is_err() {
                    return status(StatusCode::UNPROCESSABLE_ENTITY, "Invalid");
                }
                let mut obj = current.clone();
                self.bump(&mut obj);
                self.writes.push(format!("patch {path}"));
                self.objects.insert(path, obj.clone());
                ok(&obj, StatusCode::OK)
            }
            _ => status(StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed"),
        }
    }
}

fn client(api: Arc<Mutex<FakeApi>>) -> kube::Client {
    let service = tower::service_fn(move |req: Request<kube::client::Body>| {
        let api = api.clone();
        async move {
            let (parts, body) = req.into_parts();
            let bytes = body.collect_bytes().await?;
            let mut api = api.lock().map_err(|_| "poisoned")?;
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(api.handle(
                &parts.method,
                parts.uri.path(),
                &bytes,
            ))
        }
    });
    kube::Client::new(service, NS)
}

fn webhook_configuration(kind: &str, name: &str) -> Value {
    json!({
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": kind,
        "metadata": {"name": name, "resourceVersion": "1"},
        "webhooks": [
            {"name": "emqx.apps.emqx.io", "admissionReviewVersions": ["v1"], "sideEffects": "None",
             "clientConfig": {"service": {"name": "emqx-webhook", "namespace": NS, "path": "/validate"}}},
            {"name": "emqxenterprise.apps.emqx.io", "admissionReviewVersions": ["v1"], "sideEffects": "None",
             "clientConfig": {"service": {"name": "emqx-webhook", "namespace": NS, "path": "/validate"}}}
        ]
    })
}

fn crd(name: &str) -> Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": name, "resourceVersion": "1"},
        "spec": {
            "group": "apps.emqx.io", "scope": "Namespaced",
            "names": {"plural": "x", "kind": "X"},
            "versions": [],
            "conversion": {"strategy": "Webhook", "webhook": {"conversionReviewVersions": ["v1"],
                "clientConfig": {"service": {"name": "emqx-webhook", "namespace": NS, "path": "/convert"}}}}
        }
    })
}

fn cluster() -> Arc<Mutex<FakeApi>> {
    let mut api = FakeApi::default();
    api.objects.insert(
        VWC.into(),
        webhook_configuration("ValidatingWebhookConfiguration", "emqx-operator-validating"),
    );
    api.objects.insert(
        MWC.into(),
        webhook_configuration("MutatingWebhookConfiguration", "emqx-operator-mutating"),
    );
    api.objects
        .insert(CRD_EMQX.into(), crd("emqxes.apps.emqx.io"));
    api.objects
        .insert(CRD_EE.into(), crd("emqxenterprises.apps.emqx.io"));
    Arc::new(Mutex::new(api))
}

fn identity() -> ServiceIdentity {
    ServiceIdentity {
        service: "emqx-webhook".into(),
        namespace: NS.into(),
        cluster_domain: "cluster.local".into(),
        extra_names: Vec::new(),
    }
}

fn replica(api: &Arc<Mutex<FakeApi>>) -> (CertKeeper, Arc<CertResolver>) {
    let resolver = Arc::new(CertResolver::new());
    let mode = CertMode::SelfManaged {
        secret: "emqx-webhook-tls".into(),
        identity: identity(),
        targets: InjectionTargets {
            validating: Some("emqx-operator-validating".into()),
            mutating: Some("emqx-operator-mutating".into()),
            crds: vec![
                "emqxes.apps.emqx.io".into(),
                "emqxenterprises.apps.emqx.io".into(),
            ],
        },
    };
    (
        CertKeeper::new(mode, resolver.clone(), Some(client(api.clone())), NS.into()),
        resolver,
    )
}

fn stored_bundle(api: &Arc<Mutex<FakeApi>>) -> CertBundle {
    let api = api.lock().expect("lock");
    let secret: k8s_openapi::api::core::v1::Secret =
        serde_json::from_value(api.objects[SECRET_PATH].clone()).expect("secret");
    CertBundle::from_secret_data(&secret.data.unwrap_or_default()).expect("bundle")
}

fn ca_bundles(api: &Arc<Mutex<FakeApi>>) -> Vec<String> {
    let api = api.lock().expect("lock");
    let mut out = Vec::new();
    for path in [VWC, MWC] {
        for hook in api.objects[path]["webhooks"].as_array().expect("webhooks") {
            out.push(
                hook["clientConfig"]["caBundle"]
                    .as_str()
                    .unwrap_or("<none>")
                    .to_owned(),
            );
        }
    }
    for path in [CRD_EMQX, CRD_EE] {
        out.push(
            api.objects[path]["spec"]["conversion"]["webhook"]["clientConfig"]["caBundle"]
                .as_str()
                .unwrap_or("<none>")
                .to_owned(),
        );
    }
    out
}

fn writes(api: &Arc<Mutex<FakeApi>>) -> Vec<String> {
    api.lock().expect("lock").writes.clone()
}

#[tokio::test]
async fn first_replica_creates_the_secret_and_injects_the_ca_everywhere_then_goes_quiet() {
    let api = cluster();
    let (keeper, resolver) = replica(&api);
    let r = keeper.refresh(SystemTime::now()).await.expect("refresh");
    assert!(r.installed);
    assert_eq!(r.injected, 4, "2 webhook configurations + 2 CRDs");
    let stored = stored_bundle(&api);
    assert_eq!(resolver.served_cert_pem(), Some(stored.cert_pem.clone()));
    let expected = emqx_certs::injection::encode_ca_bundle(&stored.ca_pem);
    assert!(
        ca_bundles(&api).iter().all(|b| *b == expected),
        "{:?}",
        ca_bundles(&api)
    );

    let before = writes(&api).len();
    let r = keeper.refresh(SystemTime::now()).await.expect("steady");
    assert_eq!(
        (r.installed, r.injected, r.plan),
        (false, 0, Some(RotationPlan::Keep))
    );
    assert_eq!(writes(&api).len(), before, "steady state writes nothing");
}

#[tokio::test]
async fn a_replica_that_loses_the_create_race_serves_the_winners_certificate() {
    let api = cluster();
    let (a, served_a) = replica(&api);
    let (b, served_b) = replica(&api);
    a.refresh(SystemTime::now()).await.expect("a");
    api.lock().expect("lock").hide_secret_once = true;
    b.refresh(SystemTime::now()).await.expect("b adopts");
    assert_eq!(served_a.served_cert_pem(), served_b.served_cert_pem());
    let creates = writes(&api)
        .iter()
        .filter(|w| w.starts_with("create"))
        .count();
    assert_eq!(creates, 1, "{:?}", writes(&api));
}

#[tokio::test]
async fn an_ageing_serving_certificate_is_reissued_from_the_same_ca_without_reinjection() {
    let api = cluster();
    let (keeper, resolver) = replica(&api);
    let year_ago = SystemTime::now() - Duration::from_secs(300 * 86_400);
    keeper
        .refresh(year_ago)
        .await
        .expect("create as of 300 days ago");
    let old = stored_bundle(&api);
    let r = keeper.refresh(SystemTime::now()).await.expect("rotate");
    assert_eq!(r.plan, Some(RotationPlan::ReissueServing));
    assert_eq!(r.injected, 0, "same CA, nothing to inject");
    let new = stored_bundle(&api);
    assert_eq!(new.ca_pem, old.ca_pem);
    assert_ne!(new.cert_pem, old.cert_pem);
    assert_eq!(resolver.served_cert_pem(), Some(new.cert_pem.clone()));
    let not_after = parse_validity(&new.cert_pem).expect("parse").not_after;
    assert!(not_after > SystemTime::now() + Duration::from_secs(300 * 86_400));
}

#[tokio::test]
async fn an_ageing_ca_is_replaced_and_both_cas_are_trusted_during_the_switch() {
    let api = cluster();
    let (keeper, _) = replica(&api);
    let long_ago = SystemTime::now() - authority::CA_LIFETIME + Duration::from_secs(100 * 86_400);
    keeper.refresh(long_ago).await.expect("create long ago");
    let old = stored_bundle(&api);
    let r = keeper.refresh(SystemTime::now()).await.expect("rotate");
    assert_eq!(r.plan, Some(RotationPlan::ReissueAll));
    assert_eq!(r.injected, 4);
    let new = stored_bundle(&api);
    assert_eq!(new.ca_pem.matches("BEGIN CERTIFICATE").count(), 2);
    assert!(
        new.ca_pem.ends_with(&old.ca_pem),
        "the old CA stays trusted"
    );
    let expected = emqx_certs::injection::encode_ca_bundle(&new.ca_pem);
    assert!(ca_bundles(&api).iter().all(|b| *b == expected));
}

#[tokio::test]
async fn a_replica_that_rotates_from_a_stale_read_loses_on_conflict_and_adopts_the_winner() {
    let api = cluster();
    let (a, served_a) = replica(&api);
    let (b, served_b) = replica(&api);
    let old = SystemTime::now() - Duration::from_secs(300 * 86_400);
    a.refresh(old).await.expect("create");
    a.refresh(SystemTime::now()).await.expect("a rotates");
    // b read the Secret just before a's rotation landed: it plans the same
    // rotation, its replace carries the old resourceVersion, gets 409, and
    // b serves what a wrote instead of overwriting it.
    api.lock().expect("lock").stale_secret_once = true;
    let r = b.refresh(SystemTime::now()).await.expect("b adopts");
    assert_eq!(r.plan, Some(RotationPlan::ReissueServing));
    assert_eq!(served_a.served_cert_pem(), served_b.served_cert_pem());
    let replaces = writes(&api)
        .iter()
        .filter(|w| w.starts_with("replace"))
        .count();
    assert_eq!(replaces, 1, "{:?}", writes(&api));

    // And a replica that simply refreshes after a rotation does not rotate again.
    let (c, served_c) = replica(&api);
    c.refresh(SystemTime::now()).await.expect("c");
    assert_eq!(served_c.served_cert_pem(), served_a.served_cert_pem());
}

#[tokio::test]
async fn a_helm_upgrade_that_wipes_ca_bundles_is_repaired_on_the_next_refresh() {
    let api = cluster();
    let (keeper, _) = replica(&api);
    keeper.refresh(SystemTime::now()).await.expect("first");
    api.lock().expect("lock").objects.insert(
        VWC.into(),
        webhook_configuration("ValidatingWebhookConfiguration", "emqx-operator-validating"),
    );
    let r = keeper.refresh(SystemTime::now()).await.expect("repair");
    assert_eq!(r.injected, 1);
    let expected = emqx_certs::injection::encode_ca_bundle(&stored_bundle(&api).ca_pem);
    assert!(ca_bundles(&api).iter().all(|b| *b == expected));
}

#[tokio::test]
async fn a_garbled_secret_is_replaced_not_served() {
    let api = cluster();
    {
        let mut a = api.lock().expect("lock");
        a.objects.insert(
            SECRET_PATH.into(),
            json!({"apiVersion": "v1", "kind": "Secret",
                   "metadata": {"name": "emqx-webhook-tls", "namespace": NS, "resourceVersion": "7"},
                   "data": {"tls.crt": "bm90IGEgY2VydA=="}}),
        );
    }
    let (keeper, resolver) = replica(&api);
    keeper.refresh(SystemTime::now()).await.expect("replace");
    assert!(resolver.is_loaded());
    assert_eq!(
        resolver.served_cert_pem(),
        Some(stored_bundle(&api).cert_pem)
    );
}

#[tokio::test]
async fn missing_targets_are_skipped_and_retried_later() {
    let api = cluster();
    api.lock().expect("lock").objects.remove(CRD_EE);
    let (keeper, resolver) = replica(&api);
    let r = keeper.refresh(SystemTime::now()).await.expect("refresh");
    assert_eq!(r.injected, 3);
    assert!(resolver.is_loaded());
    api.lock()
        .expect("lock")
        .objects
        .insert(CRD_EE.into(), crd("emqxenterprises.apps.emqx.io"));
    assert_eq!(
        keeper
            .refresh(SystemTime::now())
            .await
            .expect("again")
            .injected,
        1
    );
}

/// The CA bundles (PEM) the API server trusts now, one per injection target.
fn trusted_pems(api: &Arc<Mutex<FakeApi>>) -> Vec<String> {
    ca_bundles(api)
        .iter()
        .map(|b| {
            use base64::Engine as _;
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(b)
                .unwrap_or_default();
            String::from_utf8(bytes).unwrap_or_default()
        })
        .collect()
}

/// Whether the API server, trusting `ca_bundle_pem`, accepts `leaf_pem`.
fn accepts(ca_bundle_pem: &str, leaf_pem: &str) -> bool {
    use x509_parser::prelude::*;
    let (_, leaf) = parse_x509_pem(leaf_pem.as_bytes()).expect("leaf pem");
    let leaf = leaf.parse_x509().expect("leaf");
    Pem::iter_from_buffer(ca_bundle_pem.as_bytes())
        .filter_map(Result::ok)
        .any(|pem| {
            pem.parse_x509()
                .is_ok_and(|ca| leaf.verify_signature(Some(ca.public_key())).is_ok())
        })
}

/// Whether every injected `caBundle` accepts `leaf_pem` (a target without
/// one accepts nothing).
fn trusted_everywhere(api: &Arc<Mutex<FakeApi>>, leaf_pem: &str) -> bool {
    trusted_pems(api).iter().all(|ca| accepts(ca, leaf_pem))
}

fn served(r: &CertResolver) -> String {
    r.served_cert_pem().expect("serving")
}

fn delete_secret(api: &Arc<Mutex<FakeApi>>) {
    api.lock().expect("lock").objects.remove(SECRET_PATH);
}

#[tokio::test]
async fn a_deleted_secret_is_recreated_with_the_old_ca_trusted_until_every_replica_switched() {
    let api = cluster();
    let (a, served_a) = replica(&api);
    let (b, served_b) = replica(&api);
    let now = SystemTime::now();
    a.refresh(now).await.expect("a creates");
    b.refresh(now).await.expect("b adopts");
    let old = stored_bundle(&api);

    delete_secret(&api);
    let r = a.refresh(now).await.expect("a recovers");
    assert_eq!(r.plan, Some(RotationPlan::ReissueAll));
    let new = stored_bundle(&api);
    assert_ne!(new.cert_pem, old.cert_pem);
    // b has not refreshed yet: it still serves the old leaf, and the API
    // server must still accept it, while also accepting a's new leaf.
    assert_eq!(served(&served_b), old.cert_pem);
    assert!(
        trusted_everywhere(&api, &served(&served_b)),
        "b's old leaf rejected"
    );
    assert!(
        trusted_everywhere(&api, &served(&served_a)),
        "a's new leaf rejected"
    );
    b.refresh(now).await.expect("b switches");
    assert_eq!(served(&served_b), served(&served_a));

    // Within the window nothing is written; after it, the old CA goes.
    let before = writes(&api).len();
    a.refresh(now + OVERLAP_WINDOW / 2)
        .await
        .expect("in window");
    assert_eq!(writes(&api).len(), before, "{:?}", writes(&api));
    a.refresh(now + OVERLAP_WINDOW).await.expect("window over");
    for trusted in trusted_pems(&api) {
        assert!(!accepts(&trusted, &old.cert_pem), "old CA still trusted");
        assert!(accepts(&trusted, &served(&served_b)));
    }
    assert_eq!(
        stored_bundle(&api)
            .ca_pem
            .matches("BEGIN CERTIFICATE")
            .count(),
        1
    );
}

#[tokio::test]
async fn the_served_ca_is_kept_even_when_the_secret_and_every_ca_bundle_are_gone() {
    let api = cluster();
    let (a, _) = replica(&api);
    let (b, served_b) = replica(&api);
    let now = SystemTime::now();
    a.refresh(now).await.expect("a creates");
    b.refresh(now).await.expect("b adopts");
    // Secret deleted and the configurations re-applied without caBundle
    // (`helm upgrade`): only the replica's memory knows the old CA.
    delete_secret(&api);
    {
        let mut api = api.lock().expect("lock");
        api.objects.insert(
            VWC.into(),
            webhook_configuration("ValidatingWebhookConfiguration", "emqx-operator-validating"),
        );
        api.objects.insert(
            MWC.into(),
            webhook_configuration("MutatingWebhookConfiguration", "emqx-operator-mutating"),
        );
        api.objects
            .insert(CRD_EMQX.into(), crd("emqxes.apps.emqx.io"));
        api.objects
            .insert(CRD_EE.into(), crd("emqxenterprises.apps.emqx.io"));
    }
    a.refresh(now).await.expect("a recovers");
    assert!(
        trusted_everywhere(&api, &served(&served_b)),
        "b's old leaf rejected"
    );
}

#[tokio::test]
async fn a_corrupt_secret_is_replaced_only_at_the_version_read_and_a_racing_replica_adopts() {
    let api = cluster();
    let (a, served_a) = replica(&api);
    let (b, served_b) = replica(&api);
    let now = SystemTime::now();
    a.refresh(now).await.expect("a creates");
    b.refresh(now).await.expect("b adopts");
    let old = stored_bundle(&api);
    // Someone garbles tls.crt and drops tls.key; ca.crt survives.
    let rv = {
        let mut api = api.lock().expect("lock");
        let secret = api.objects.get_mut(SECRET_PATH).expect("secret");
        secret["data"]["tls.crt"] = json!("bm90IGEgY2VydA==");
        secret["data"]
            .as_object_mut()
            .expect("data")
            .remove("tls.key");
        secret["metadata"]["resourceVersion"]
            .as_str()
            .expect("rv")
            .to_owned()
    };
    a.refresh(now).await.expect("a replaces");
    // b read the garbled Secret just before a's replace landed.
    api.lock().expect("lock").stale_secret_once = true;
    b.refresh(now).await.expect("b adopts a's");
    let replaces: Vec<String> = writes(&api)
        .into_iter()
        .filter(|w| w.starts_with("replace"))
        .collect();
    assert_eq!(
        replaces,
        vec![format!("replace {SECRET_PATH} at {rv}")],
        "one guarded replace, never an unconditional one"
    );
    assert_eq!(served(&served_a), served(&served_b));
    assert_eq!(served(&served_a), stored_bundle(&api).cert_pem);
    // ca.crt of the garbled Secret was what the API server trusted: kept.
    assert!(stored_bundle(&api).ca_pem.ends_with(&old.ca_pem));
}

#[tokio::test]
async fn hostile_ca_bundles_do_not_stop_recovery_and_are_not_kept() {
    let api = cluster();
    {
        let mut api = api.lock().expect("lock");
        let hook = &mut api.objects.get_mut(VWC).expect("vwc")["webhooks"][0]["clientConfig"];
        // The API server only stores base64 (caBundle is bytes), but the
        // bytes may be anything: here, not UTF-8.
        hook["caBundle"] = json!("//79");
        let garbage_pem = emqx_certs::injection::encode_ca_bundle(
            &"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n".repeat(1000),
        );
        let crd = &mut api.objects.get_mut(CRD_EMQX).expect("crd")["spec"]["conversion"]["webhook"]
            ["clientConfig"];
        crd["caBundle"] = json!(garbage_pem);
    }
    // Among the junk, one real CA the API server trusts (a previous
    // installation's): it is kept, the junk is not.
    let previous = authority::new_bundle(&identity(), SystemTime::now(), None).expect("previous");
    {
        let mut api = api.lock().expect("lock");
        api.objects.get_mut(MWC).expect("mwc")["webhooks"][1]["clientConfig"]["caBundle"] =
            json!(emqx_certs::injection::encode_ca_bundle(&previous.ca_pem));
    }
    let (a, served_a) = replica(&api);
    a.refresh(SystemTime::now()).await.expect("recovers");
    assert!(served_a.is_loaded());
    let stored = stored_bundle(&api);
    assert_eq!(stored.ca_pem.matches("BEGIN CERTIFICATE").count(), 2);
    assert!(stored.ca_pem.ends_with(&previous.ca_pem));
    let expected = emqx_certs::injection::encode_ca_bundle(&stored.ca_pem);
    assert!(ca_bundles(&api).iter().all(|b| *b == expected));
}

/// The Secret as stored now (JSON), to play it back later.
fn secret_json(api: &Arc<Mutex<FakeApi>>) -> Value {
    api.lock().expect("lock").objects[SECRET_PATH].clone()
}

#[tokio::test]
async fn a_replica_with_a_stale_read_does_not_put_the_old_ca_bundle_back() {
    let api = cluster();
    let (a, served_a) = replica(&api);
    let (c, served_c) = replica(&api);
    let now = SystemTime::now();
    a.refresh(now).await.expect("a creates");
    c.refresh(now).await.expect("c adopts");
    let before = secret_json(&api);
    delete_secret(&api);
    a.refresh(now).await.expect("a recovers");
    // c read the Secret just before it was deleted: it serves and injects
    // what it read, which would drop the CA of a's new leaf.
    {
        let mut api = api.lock().expect("lock");
        api.previous_secret = Some(before);
        api.stale_secret_once = true;
    }
    c.refresh(now).await.expect("c, stale");
    assert!(
        trusted_everywhere(&api, &served(&served_a)),
        "a's new leaf rejected"
    );
    assert!(
        trusted_everywhere(&api, &served(&served_c)),
        "c's old leaf rejected"
    );
    c.refresh(now).await.expect("c, fresh");
    assert_eq!(served(&served_c), served(&served_a));
}

#[tokio::test]
async fn an_older_secret_restored_on_purpose_is_injected() {
    let api = cluster();
    let (a, served_a) = replica(&api);
    let now = SystemTime::now();
    a.refresh(now).await.expect("a creates");
    let old = stored_bundle(&api);
    let mut backup = secret_json(&api);
    delete_secret(&api);
    a.refresh(now).await.expect("a recovers");
    // The admin restores the backup: the Secret is older than caBundle.
    {
        let mut api = api.lock().expect("lock");
        backup["metadata"]["resourceVersion"] = json!("1000");
        api.objects.insert(SECRET_PATH.into(), backup);
    }
    a.refresh(now).await.expect("a serves the restored pair");
    assert_eq!(served(&served_a), old.cert_pem);
    let expected = emqx_certs::injection::encode_ca_bundle(&old.ca_pem);
    assert!(
        ca_bundles(&api).iter().all(|b| *b == expected),
        "{:?}",
        trusted_pems(&api)
    );
}
