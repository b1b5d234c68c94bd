//! The chart's RBAC and ValidatingAdmissionPolicies against the sandbox's
//! real apiserver, called with each binary's own ServiceAccount token (a
//! real TokenRequest): what blue-green and the CA injection need is
//! allowed, and every other change the RBAC verb would allow is refused
//! (a pod's image, a foreign pod, another annotation or condition; a
//! webhook's rules, a CRD's versions), and the reconciler can read no
//! Secret at all.

#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Namespace, Pod, Secret, ServiceAccount};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client};
use sandbox::operator::chart::{NAMESPACE, RELEASE, chart_dir, run};
use sandbox::{Sandbox, SandboxOptions};
use serde_json::json;
use support::wait_for;

const LIMIT: Duration = Duration::from_secs(60);

/// A client that authenticates with a fresh token of `account`.
async fn client_as(sandbox: &Sandbox, account: &str) -> Client {
    let accounts: Api<ServiceAccount> = Api::namespaced(sandbox.client(), NAMESPACE);
    let token = accounts
        .create_token_request(
            account,
            &PostParams::default(),
            &TokenRequest {
                spec: TokenRequestSpec {
                    audiences: vec![],
                    expiration_seconds: Some(3600),
                    ..TokenRequestSpec::default()
                },
                ..TokenRequest::default()
            },
        )
        .await
        .expect("TokenRequest")
        .status
        .expect("token")
        .token;
    let kubeconfig = Kubeconfig::read_from(sandbox.kubeconfig()).expect("kubeconfig");
    let mut config =
        kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .expect("config");
    config.auth_info = kube::config::AuthInfo {
        token: Some(token.into()),
        ..kube::config::AuthInfo::default()
    };
    Client::try_from(config).expect("client")
}

async fn create_namespaces(admin: &Client, names: &[&str]) {
    let namespaces: Api<Namespace> = Api::all(admin.clone());
    for name in names {
        namespaces
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({"metadata": {"name": name}})).expect("ns"),
            )
            .await
            .expect("namespace");
    }
}

/// `helm template` of these chart `templates` with `values` arguments, piped
/// to `kubectl apply`; returns the rendered YAML.
async fn apply_templates(sandbox: &Sandbox, values: &[&str], templates: &[&str]) -> String {
    let mut helm = sandbox.helm();
    helm.args(["template", RELEASE])
        .arg(chart_dir())
        .args(["--namespace", NAMESPACE])
        .args(values);
    for template in templates {
        helm.args(["--show-only", template]);
    }
    let rendered = run(helm, None, LIMIT).await.expect("helm");
    assert!(rendered.success, "{}", rendered.stderr);
    let mut kubectl = sandbox.kubectl();
    kubectl.args(["apply", "-f", "-"]);
    let applied = run(kubectl, Some(rendered.stdout.as_bytes()), LIMIT)
        .await
        .expect("kubectl");
    assert!(applied.success, "{}", applied.stderr);
    rendered.stdout
}

fn pod(name: &str, labels: serde_json::Value) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "default", "labels": labels,
                     "annotations": {"note": "kept"}},
        "spec": {
            // No nodeName and no scheduler in the sandbox: the pod stays
            // Pending, untouched by the kubelet and the pod GC; the object
            // is what is tested.
            "containers": [{"name": "emqx", "image": "emqx/emqx:5.8.6"}]
        }
    }))
    .expect("pod")
}

/// A refusal by one of the chart's policies, whose messages say `says`;
/// not one by RBAC (403 too, but naming the verb).
fn policy_refusal(e: &kube::core::Status, says: &str) -> bool {
    (e.code == 403 || e.code == 422) && e.message.contains(says)
}

fn refused(result: Result<Pod, kube::Error>, what: &str) -> String {
    match result {
        Err(kube::Error::Api(e)) if e.code == 403 || e.code == 422 => e.message,
        other => panic!("{what}: expected a refusal, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_account_may_make_only_the_changes_it_needs() {
    support::init_tracing();
    let sandbox = Sandbox::start(SandboxOptions::default())
        .await
        .expect("sandbox");
    let admin = sandbox.client();
    sandbox::operator::install_crds(&admin).await.expect("CRDs");
    create_namespaces(&admin, &[NAMESPACE]).await;
    // The chart's accounts, RBAC, policies and webhook configurations (no
    // Deployments: the calls are made here, with the accounts' tokens).
    apply_templates(
        &sandbox,
        &[],
        &[
            "templates/admission-policies.yaml",
            "templates/reconciler/serviceaccount.yaml",
            "templates/reconciler/rbac.yaml",
            "templates/webhook/serviceaccount.yaml",
            "templates/webhook/rbac.yaml",
            "templates/webhook/configurations.yaml",
        ],
    )
    .await;

    let admin_pods: Api<Pod> = Api::namespaced(admin.clone(), "default");
    let emqx_labels =
        json!({"apps.emqx.io/instance": "emqx-ee", "apps.emqx.io/managed-by": "emqx-operator"});
    for (name, labels) in [
        ("emqx-ee-replicant-0", emqx_labels.clone()),
        ("foreign", json!({"app": "other"})),
    ] {
        admin_pods
            .create(&PostParams::default(), &pod(name, labels))
            .await
            .expect("pod");
    }

    let reconciler = client_as(&sandbox, &format!("{RELEASE}-reconciler")).await;
    let pods: Api<Pod> = Api::namespaced(reconciler, "default");
    let merge = |v: serde_json::Value| Patch::Merge(v);
    let params = PatchParams::default();

    // The policy takes effect once the apiserver has loaded it: wait for
    // the first refusal (a foreign pod stays foreign, so the same patch is
    // refused again however often it is tried), then everything below is
    // decided by it.
    let foreign = merge(
        json!({"metadata": {"annotations": {"controller.kubernetes.io/pod-deletion-cost": "1"}}}),
    );
    // Only the policy's own refusal ends the wait: the apiserver's RBAC
    // authorizer also loads the just-applied bindings from a cache, and
    // until it has, the same patch is refused for want of the verb.
    wait_for("the pod policy in force", LIMIT, || async {
        match pods.patch("foreign", &params, &foreign).await {
            Err(kube::Error::Api(e)) if policy_refusal(&e, "EMQX clusters") => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    // A strategic merge by container name: only the image changes, which
    // the apiserver itself allows on a live pod.
    let image = Patch::Strategic(
        json!({"spec": {"containers": [{"name": "emqx", "image": "evil/emqx:1"}]}}),
    );
    let message = refused(
        pods.patch("emqx-ee-replicant-0", &params, &image).await,
        "the image",
    );
    assert!(message.contains("spec"), "{message}");

    // What blue-green does: allowed.
    pods.patch(
        "emqx-ee-replicant-0",
        &params,
        &merge(json!({"metadata": {"annotations": {"controller.kubernetes.io/pod-deletion-cost": "-99999"}}})),
    )
    .await
    .expect("the deletion-cost annotation is allowed");
    pods.patch_status(
        "emqx-ee-replicant-0",
        &params,
        &Patch::Strategic(json!({"status": {"conditions": [{
            "type": "apps.emqx.io/on-serving", "status": "True",
            "lastTransitionTime": "2026-01-01T00:00:00Z"}]}})),
    )
    .await
    .expect("the on-serving condition is allowed");

    // Everything else the `patch` verb would allow: refused.
    let cases = [
        (
            "emqx-ee-replicant-0",
            merge(json!({"metadata": {"annotations": {"note": "changed"}}})),
            "annotation",
        ),
        (
            "emqx-ee-replicant-0",
            merge(json!({"metadata": {"labels": {"apps.emqx.io/instance": "other"}}})),
            "labels",
        ),
        (
            "emqx-ee-replicant-0",
            merge(json!({"spec": {"activeDeadlineSeconds": 1}})),
            "spec",
        ),
    ];
    for (name, patch, expect) in &cases {
        let message = refused(
            pods.patch(name, &params, patch).await,
            &format!("{name}: {expect}"),
        );
        assert!(message.contains(expect), "{name}: {message}");
    }
    let other_condition = Patch::Strategic(json!({"status": {"conditions": [{
        "type": "Ready", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"}]}}));
    let message = refused(
        pods.patch_status("emqx-ee-replicant-0", &params, &other_condition)
            .await,
        "the Ready condition",
    );
    assert!(message.contains("on-serving"), "{message}");
    let phase = Patch::Merge(json!({"status": {"phase": "Failed"}}));
    refused(
        pods.patch_status("emqx-ee-replicant-0", &params, &phase)
            .await,
        "the phase",
    );
    // The admin is not matched: the policy binds the operator's account only.
    admin_pods
        .patch(
            "foreign",
            &params,
            &merge(json!({"metadata": {"annotations": {"note": "admin"}}})),
        )
        .await
        .expect("the admin is not restricted");

    // Secrets: the reconciler creates its clusters' Secrets and reads none
    // (their values are derived from the operator's key), not even one it
    // created, and not the webhook's CA in the release namespace.
    let reconciler_client = client_as(&sandbox, &format!("{RELEASE}-reconciler")).await;
    let secret = |name: &str, ns: &str| -> Secret {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": ns,
                         "labels": {"apps.emqx.io/instance": "emqx-ee"}},
            "stringData": {"ca.key": "not for the reconciler"}
        }))
        .expect("secret")
    };
    Api::<Secret>::namespaced(admin.clone(), NAMESPACE)
        .create(&PostParams::default(), &secret("webhook-ca", NAMESPACE))
        .await
        .expect("a foreign Secret");
    for ns in [NAMESPACE, "default"] {
        let secrets: Api<Secret> = Api::namespaced(reconciler_client.clone(), ns);
        if ns == "default" {
            secrets
                .create(&PostParams::default(), &secret("emqx-ee-node-cookie", ns))
                .await
                .expect("creating a cluster's Secret is allowed");
        }
        for name in ["webhook-ca", "emqx-ee-node-cookie"] {
            match secrets.get(name).await {
                Err(kube::Error::Api(e)) => {
                    assert_eq!(e.code, 403, "get {ns}/{name}: {}", e.message)
                }
                other => panic!("get {ns}/{name}: expected 403, got {other:?}"),
            }
        }
        match secrets.list(&Default::default()).await {
            Err(kube::Error::Api(e)) => assert_eq!(e.code, 403, "list {ns}: {}", e.message),
            other => panic!("list {ns}: expected 403, got {other:?}"),
        }
    }

    // Its cluster-wide create and delete reach only EMQX clusters' sets and
    // Secrets. That is a policy of its own, which the apiserver loads on its
    // own schedule (one CI run created the Secret before it was in force):
    // wait for its first refusal of a dry run, which admission sees and
    // nothing stores, then everything below is decided by it.
    let mut unlabelled = secret("not-an-emqx-secret", "default");
    unlabelled.metadata.labels = None;
    let reconciler_secrets = Api::<Secret>::namespaced(reconciler_client.clone(), "default");
    let dry_run = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    wait_for("the owned-objects policy in force", LIMIT, || async {
        match reconciler_secrets.create(&dry_run, &unlabelled).await {
            Err(kube::Error::Api(e)) if policy_refusal(&e, "EMQX clusters") => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    let message = match reconciler_secrets
        .create(&PostParams::default(), &unlabelled)
        .await
    {
        Err(kube::Error::Api(e)) => e.message,
        other => panic!("an unlabelled Secret: expected a refusal, got {other:?}"),
    };
    assert!(message.contains("EMQX clusters"), "{message}");
    let replica_set = |name: &str, labels: serde_json::Value| -> ReplicaSet {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "default", "labels": labels.clone()},
            "spec": {
                "replicas": 0,
                "selector": {"matchLabels": labels.clone()},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {"containers": [{"name": "c", "image": "busybox"}]}
                }
            }
        }))
        .expect("replicaset")
    };
    let admin_sets: Api<ReplicaSet> = Api::namespaced(admin.clone(), "default");
    for (name, labels) in [
        ("other-app", json!({"app": "other"})),
        (
            "emqx-ee-replicant-x",
            json!({"apps.emqx.io/instance": "emqx-ee"}),
        ),
    ] {
        admin_sets
            .create(&PostParams::default(), &replica_set(name, labels))
            .await
            .expect("replicaset");
    }
    let sets: Api<ReplicaSet> = Api::namespaced(reconciler_client.clone(), "default");
    match sets.delete("other-app", &Default::default()).await {
        Err(kube::Error::Api(e)) => assert!(e.message.contains("EMQX clusters"), "{}", e.message),
        other => panic!("deleting another app's ReplicaSet: expected a refusal, got {other:?}"),
    }
    sets.delete("emqx-ee-replicant-x", &Default::default())
        .await
        .expect("deleting an EMQX ReplicaSet is allowed");

    // The webhook's account: caBundle only (a real PEM: the apiserver
    // parses a CRD's).
    let ca_bundle = {
        use base64::Engine as _;
        let ca =
            rcgen::generate_simple_self_signed(vec!["emqx-operator-ca".to_owned()]).expect("CA");
        base64::engine::general_purpose::STANDARD.encode(ca.cert.pem())
    };
    let webhook = client_as(&sandbox, &format!("{RELEASE}-webhook")).await;
    let configs: Api<ValidatingWebhookConfiguration> = Api::all(webhook.clone());
    let name = format!("{RELEASE}-validating");
    let json_patch = |ops: serde_json::Value| -> Patch<()> {
        Patch::Json(serde_json::from_value(ops).expect("JSON patch"))
    };
    let widen = json_patch(json!([
        {"op": "replace", "path": "/webhooks/0/rules/0/resources", "value": ["*"]}
    ]));
    wait_for("the webhook policy in force", LIMIT, || async {
        match configs.patch(&name, &params, &widen).await {
            Err(kube::Error::Api(e)) if policy_refusal(&e, "caBundle") => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    let fail_open = json_patch(json!([
        {"op": "replace", "path": "/webhooks/0/failurePolicy", "value": "Ignore"}
    ]));
    match configs.patch(&name, &params, &fail_open).await {
        Err(kube::Error::Api(e)) => assert!(e.message.contains("caBundle"), "{}", e.message),
        other => panic!("failurePolicy Ignore: expected a refusal, got {other:?}"),
    }
    configs
        .patch(
            &name,
            &params,
            &json_patch(json!([
                {"op": "add", "path": "/webhooks/0/clientConfig/caBundle", "value": ca_bundle}
            ])),
        )
        .await
        .expect("a caBundle change is allowed");

    let crds: Api<CustomResourceDefinition> = Api::all(webhook);
    let crd_name = "emqxes.apps.emqx.io";
    let bundle = Patch::Merge(
        json!({"spec": {"conversion": {"webhook": {"clientConfig": {"caBundle": ca_bundle}}}}}),
    );
    crds.patch(crd_name, &params, &bundle)
        .await
        .expect("a CRD caBundle change is allowed");
    let live = Api::<CustomResourceDefinition>::all(admin)
        .get(crd_name)
        .await
        .expect("crd");
    let mut versions = serde_json::to_value(&live.spec.versions).expect("json");
    versions[0]["schema"]["openAPIV3Schema"]["description"] = json!("changed");
    for (what, patch) in [
        (
            "a version's schema",
            json!({"spec": {"versions": versions}}),
        ),
        (
            "the names",
            json!({"spec": {"names": {"shortNames": ["evil"]}}}),
        ),
    ] {
        match crds.patch(crd_name, &params, &Patch::Merge(patch)).await {
            Err(kube::Error::Api(e)) => {
                assert!(e.message.contains("caBundle"), "{what}: {}", e.message)
            }
            other => panic!("{what}: expected a refusal, got {other:?}"),
        }
    }
    sandbox.stop().await.expect("stop");
}

/// `reconciler.watchNamespaces`: a Role and RoleBinding in each listed
/// namespace and no cluster-wide rights, checked with the reconciler's own
/// token against the real apiserver.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watched_namespaces_get_roles_and_nothing_else_is_reachable() {
    support::init_tracing();
    let sandbox = Sandbox::start(SandboxOptions::default())
        .await
        .expect("sandbox");
    let admin = sandbox.client();
    create_namespaces(&admin, &[NAMESPACE, "team-a", "team-b", "team-c"]).await;
    let rendered = apply_templates(
        &sandbox,
        &["--set", "reconciler.watchNamespaces={team-a,team-b}"],
        &[
            "templates/reconciler/serviceaccount.yaml",
            "templates/reconciler/rbac.yaml",
        ],
    )
    .await;
    assert!(!rendered.contains("ClusterRole"), "{rendered}");

    let reconciler = client_as(&sandbox, &format!("{RELEASE}-reconciler")).await;
    // The apiserver's RBAC authorizer serves the just-applied bindings from
    // a cache: wait until they are in force, then the refusals below are
    // the bindings' and not the cache's lag.
    for ns in ["team-a", "team-b"] {
        wait_for(&format!("the Role in {ns} in force"), LIMIT, || async {
            Api::<Pod>::namespaced(reconciler.clone(), ns)
                .list(&Default::default())
                .await
                .map_err(|e| format!("listing pods in {ns}: {e}"))?;
            Api::<ReplicaSet>::namespaced(reconciler.clone(), ns)
                .list(&Default::default())
                .await
                .map_err(|e| format!("listing ReplicaSets in {ns}: {e}"))
        })
        .await;
    }
    let forbidden =
        |result: Result<kube::core::ObjectList<Pod>, kube::Error>, what: &str| match result {
            Err(kube::Error::Api(e)) => assert_eq!(e.code, 403, "{what}: {}", e.message),
            other => panic!("{what}: expected 403, got {other:?}"),
        };
    forbidden(
        Api::<Pod>::namespaced(reconciler.clone(), "team-c")
            .list(&Default::default())
            .await,
        "pods in an unlisted namespace",
    );
    forbidden(
        Api::<Pod>::all(reconciler).list(&Default::default()).await,
        "pods in all namespaces",
    );
    sandbox.stop().await.expect("stop");
}
