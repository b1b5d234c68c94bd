//! The Helm chart with real helm and kubectl against the sandbox's real
//! kube-apiserver: the rendered manifests are accepted by the apiserver; an
//! install runs both binaries as pods, the apiserver calls the webhook
//! through the chart's Service (admission and CRD conversion), and the
//! chart-installed reconciler carries out a blue-green upgrade; a `helm
//! upgrade` of the operator does not upgrade running EMQX clusters; `helm
//! uninstall` leaves the CRDs and the EMQX objects. Every metric and label
//! the chart's Grafana dashboard and PrometheusRule query is in the pods'
//! `/metrics` pages scraped while this runs.

mod support;

use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{ListParams, PostParams};
use kube::{Api, ResourceExt};
use sandbox::operator::chart::{
    NAMESPACE, RELEASE, chart_dir, helm_upgrade_install, run, wait_operator_available,
};
use sandbox::operator::monitoring::{self, Scraper};
use sandbox::seed_003::{Operator, Pace, Seed003, ready_on, update_revision};
use sandbox::{Sandbox, SandboxOptions};
use serde_json::{Value, json};
use support::wait_for;

const LIMIT: Duration = Duration::from_secs(120);

async fn helm(sandbox: &Sandbox, args: &[&str]) -> sandbox::operator::chart::CommandOutput {
    let mut helm = sandbox.helm();
    helm.args(args);
    run(helm, None, LIMIT).await.expect("helm runs")
}

async fn kubectl(
    sandbox: &Sandbox,
    args: &[&str],
    stdin: Option<&[u8]>,
) -> sandbox::operator::chart::CommandOutput {
    let mut kubectl = sandbox.kubectl();
    kubectl.args(args);
    run(kubectl, stdin, LIMIT).await.expect("kubectl runs")
}

async fn create_namespace(sandbox: &Sandbox, name: &str) {
    let namespaces: Api<Namespace> = Api::all(sandbox.client());
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name}})).expect("ns");
    namespaces
        .create(&PostParams::default(), &ns)
        .await
        .expect("namespace created");
}

/// `helm lint` in every certificate mode, and `helm template | kubectl apply
/// --dry-run=server -f -` of the default and the provided-certificate,
/// single-namespace variants: every object passes the apiserver's own
/// validation (schemas, RBAC escalation checks, webhook configuration rules).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rendered_chart_is_accepted_by_the_apiserver() {
    let sandbox = Sandbox::start(SandboxOptions::default())
        .await
        .expect("sandbox starts");
    let chart = chart_dir();
    let chart = chart.to_str().expect("utf-8 path");
    for mode in ["self-managed", "cert-manager", "provided"] {
        let lint = helm(
            &sandbox,
            &[
                "lint",
                "--strict",
                chart,
                "--set",
                &format!("webhook.certificates.mode={mode}"),
            ],
        )
        .await;
        assert!(
            lint.success,
            "helm lint ({mode}): {}{}",
            lint.stdout, lint.stderr
        );
    }
    // The values schema refuses what the binaries would refuse later.
    let bad = helm(
        &sandbox,
        &["lint", chart, "--set", "webhook.failurePolicy=Sometimes"],
    )
    .await;
    assert!(!bad.success);
    assert!(
        format!("{}{}", bad.stdout, bad.stderr).contains("failurePolicy"),
        "{}{}",
        bad.stdout,
        bad.stderr
    );

    create_namespace(&sandbox, NAMESPACE).await;
    create_namespace(&sandbox, "apps").await;
    for extra in [
        vec![],
        vec![
            "--set",
            "webhook.certificates.mode=provided,webhook.certificates.caBundle=Y2E=",
            "--set",
            "reconciler.watchNamespace=apps",
        ],
    ] {
        let mut args = vec!["template", RELEASE, chart, "--namespace", NAMESPACE];
        args.extend(extra.iter().copied());
        let rendered = helm(&sandbox, &args).await;
        assert!(rendered.success, "helm template: {}", rendered.stderr);
        let applied = kubectl(
            &sandbox,
            &["apply", "--dry-run=server", "-f", "-"],
            Some(rendered.stdout.as_bytes()),
        )
        .await;
        assert!(
            applied.success,
            "{extra:?}: {}{}",
            applied.stdout, applied.stderr
        );
        for kind in [
            "customresourcedefinition.apiextensions.k8s.io/emqxes.apps.emqx.io",
            "deployment.apps/emqx-operator-webhook",
            "deployment.apps/emqx-operator-reconciler",
            "validatingwebhookconfiguration.admissionregistration.k8s.io/emqx-operator-validating",
            "mutatingwebhookconfiguration.admissionregistration.k8s.io/emqx-operator-mutating",
            "poddisruptionbudget.policy/emqx-operator-webhook",
        ] {
            assert!(
                applied.stdout.contains(kind),
                "{kind} not applied: {}",
                applied.stdout
            );
        }
    }
    sandbox.stop().await.expect("sandbox stops");
}

/// The seed manifests as kubectl would send them.
fn seeds() -> Vec<(&'static str, Value)> {
    [
        (
            "seed000-emqxenterprise-v1beta4",
            include_str!("../../shared/tests/seeds/seed000-emqxenterprise-v1beta4.yaml"),
        ),
        (
            "seed001-emqx-v2alpha2",
            include_str!("../../shared/tests/seeds/seed001-emqx-v2alpha2.yaml"),
        ),
        (
            "seed001-emqxenterprise-v1beta4",
            include_str!("../../shared/tests/seeds/seed001-emqxenterprise-v1beta4.yaml"),
        ),
        (
            "seed003-emqx-v2beta1",
            include_str!("../../shared/tests/seeds/seed003-emqx-v2beta1.yaml"),
        ),
    ]
    .into_iter()
    .map(|(name, text)| (name, serde_saphyr::from_str(text).expect("seed yaml")))
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn chart_installed_operator_upgrades_and_survives_its_own_upgrade() {
    // helm install: both binaries run as pods, 2 replicas each. Seed 003
    // with two cores, quick probes and short delays, its rates as the seed's.
    let stage = support::stage(Seed003::new().operator(Operator::Chart).pace(Pace {
        initial_delay_s: 2,
        wait_takeover_s: 2,
        conn_evict_rate: 1000,
        sess_evict_rate: 1000,
    }))
    .await;
    let (sandbox, hook, client, api) = (
        &stage.sandbox,
        &stage.hook,
        stage.client.clone(),
        &stage.api,
    );

    // Self-managed certificates: the webhook injected its CA everywhere the
    // apiserver needs it.
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    wait_for("caBundle in both CRDs", LIMIT, || {
        let crds = crds.clone();
        async move {
            for name in ["emqxes.apps.emqx.io", "emqxenterprises.apps.emqx.io"] {
                let crd = crds.get(name).await.map_err(|e| e.to_string())?;
                let bundle = crd
                    .spec
                    .conversion
                    .and_then(|c| c.webhook)
                    .and_then(|w| w.client_config)
                    .and_then(|c| c.ca_bundle);
                if bundle.is_none_or(|b| b.0.is_empty()) {
                    return Err(format!("{name}: no caBundle yet"));
                }
            }
            Ok(())
        }
    })
    .await;

    // Through the chart's Service: every seed, client-side and server-side,
    // comes back defaulted exactly as emqx-crd defaults it; the apiserver
    // picks up webhook configurations lazily, so the first may need retries.
    for (name, seed) in seeds() {
        let expected = emqx_crd::dynamic::default_object(&seed).expect("defaults");
        assert_ne!(
            expected["spec"], seed["spec"],
            "{name}: defaulting adds nothing, so 'comes back defaulted' would prove nothing"
        );
        for mode in [
            &["apply", "--dry-run=server", "-o", "json", "-f", "-"][..],
            &[
                "apply",
                "--server-side",
                "--dry-run=server",
                "-o",
                "json",
                "-f",
                "-",
            ],
        ] {
            let input = serde_json::to_vec(&seed).expect("json");
            let got: Value = wait_for(&format!("{name} {mode:?} defaulted"), LIMIT, || {
                let input = input.clone();
                let sandbox = &sandbox;
                let expected = &expected;
                async move {
                    let out = kubectl(sandbox, mode, Some(&input)).await;
                    if !out.success {
                        return Err(out.stderr);
                    }
                    let got: Value =
                        serde_json::from_str(&out.stdout).map_err(|e| e.to_string())?;
                    if got["spec"] == expected["spec"] {
                        Ok(got)
                    } else {
                        Err(format!("spec not defaulted: {}", got["spec"]))
                    }
                }
            })
            .await;
            if name.contains("v2alpha2") {
                let out = kubectl(sandbox, mode, Some(&input)).await;
                assert!(
                    out.stderr.contains("Warning:") && out.stderr.contains("deprecated"),
                    "{name}: no deprecation warning: {}",
                    out.stderr
                );
            }
            assert_eq!(got["kind"], seed["kind"]);
        }
    }
    // A bad rate is refused on --dry-run=server with the field named.
    let mut bad = stage.manifest.clone();
    bad["spec"]["updateStrategy"]["evacuationStrategy"]["connEvictRate"] = json!(0);
    let out = kubectl(
        sandbox,
        &["apply", "--dry-run=server", "-f", "-"],
        Some(&serde_json::to_vec(&bad).expect("json")),
    )
    .await;
    assert!(!out.success);
    assert!(
        out.stderr
            .contains("spec.updateStrategy.evacuationStrategy.connEvictRate"),
        "{}",
        out.stderr
    );

    // From here on the pods' /metrics pages are collected: the cluster's
    // creation and upgrade make every series the dashboard shows appear.
    let scraper = Scraper::start(client.clone(), NAMESPACE);

    // kubectl apply -f emqx-update.yaml: the chart's reconciler makes it Ready.
    let object = serde_json::to_vec(&stage.manifest).expect("json");
    let out = kubectl(sandbox, &["apply", "-f", "-"], Some(&object)).await;
    assert!(out.success, "{}", out.stderr);
    let ready_stage = &stage;
    let wait_ready = |revision_not: Option<String>| async move {
        let emqx = ready_stage
            .wait_ready(revision_not.as_deref(), Duration::from_secs(240))
            .await
            .expect("EMQX Ready");
        update_revision(&emqx).expect("a revision")
    };
    let first = wait_ready(None).await;

    // The leader's Lease requests went through the chart's FlowSchema into
    // the apiserver's `leader-election` priority level (the apiserver's own
    // count of requests dispatched per schema and level).
    let schema = format!("{NAMESPACE}-{RELEASE}-reconciler-lease");
    wait_for("Lease requests in the leader-election level", LIMIT, || {
        let schema = schema.clone();
        async move {
            let out = kubectl(sandbox, &["get", "--raw", "/metrics"], None).await;
            if !out.success {
                return Err(out.stderr);
            }
            let dispatched = out
                .stdout
                .lines()
                .filter(|l| l.starts_with("apiserver_flowcontrol_dispatched_requests_total{"))
                .filter(|l| l.contains(&format!("flow_schema=\"{schema}\"")))
                .filter(|l| l.contains("priority_level=\"leader-election\""))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum::<f64>();
            if dispatched > 0.0 {
                Ok(())
            } else {
                Err(format!("no request dispatched through FlowSchema {schema}"))
            }
        }
    })
    .await;

    let old_nodes: Vec<String> = hook.nodes().values().map(|n| n.node_name.clone()).collect();
    assert_eq!(old_nodes.len(), 2);

    // The seed's upgrade, carried out by the chart-installed reconciler.
    let out = kubectl(
        sandbox,
        &[
            "patch",
            "emqx",
            "emqx-ee",
            "--type=merge",
            "-p",
            r#"{"spec":{"imagePullPolicy":"Never"}}"#,
        ],
        None,
    )
    .await;
    assert!(out.success, "{}", out.stderr);
    let second = wait_ready(Some(first.clone())).await;
    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), "default");
    let old = sets
        .get(&format!("emqx-ee-core-{first}"))
        .await
        .expect("old set kept for history");
    assert_eq!(old.spec.and_then(|s| s.replicas), Some(0));
    let members = hook
        .nodes()
        .into_values()
        .next()
        .expect("a node")
        .cluster
        .summaries();
    for node in &old_nodes {
        assert!(
            !members.iter().any(|m| &m.name == node),
            "{node} still in the cluster: {members:?}"
        );
    }

    // The chart's dashboard and alerts query only what the binaries export.
    let (pages, read, errors) = scraper.stop();
    assert!(read > 0, "no /metrics page could be read: {errors:?}");
    let queries = monitoring::chart_queries(sandbox)
        .await
        .expect("the chart's monitoring renders");
    let problems = monitoring::problems(&queries, &pages);
    assert!(
        problems.is_empty(),
        "{} queries of the chart's dashboard and PrometheusRule use what {read} /metrics pages \
         did not show:\n{}",
        queries.len(),
        problems.join("\n")
    );

    // helm upgrade to a new operator version: new pods, new leader, and the
    // EMQX cluster is left alone (same revision, no new set, still Ready).
    let leases: Api<Lease> = Api::namespaced(client.clone(), NAMESPACE);
    let lease_name = format!("{RELEASE}-reconciler");
    let holder = |lease: Lease| lease.spec.and_then(|s| s.holder_identity);
    let leader_before = holder(leases.get(&lease_name).await.expect("lease"));
    let sets_before: Vec<String> = sets
        .list(&ListParams::default())
        .await
        .expect("sets")
        .items
        .iter()
        .map(ResourceExt::name_any)
        .collect();
    helm_upgrade_install(
        sandbox,
        &[
            "--set",
            "webhook.image.tag=0.1.1,reconciler.image.tag=0.1.1",
        ],
    )
    .await
    .expect("helm upgrade");
    wait_operator_available(&client, LIMIT)
        .await
        .expect("upgraded operator available");
    wait_for("a new reconciler leader", LIMIT, || {
        let leases = leases.clone();
        let lease_name = lease_name.clone();
        let leader_before = leader_before.clone();
        async move {
            let now = holder(leases.get(&lease_name).await.map_err(|e| e.to_string())?);
            if now.is_some() && now != leader_before {
                Ok(())
            } else {
                Err(format!("leader still {now:?}"))
            }
        }
    })
    .await;
    // The old leader stopped on SIGTERM and handed its Lease back, so the
    // standby took over without waiting out the lease duration.
    let old_leader = leader_before.expect("a leader before the upgrade");
    wait_for("the old leader's release", LIMIT, || {
        let log = sandbox.container_log(NAMESPACE, &old_leader, "reconciler");
        async move {
            match log {
                Some(log) if log.contains("released leadership") => Ok(()),
                Some(log) => Err(log.lines().rev().take(3).collect::<Vec<_>>().join("\n")),
                None => Err("no log".to_owned()),
            }
        }
    })
    .await;
    // Let the new leader reconcile a few passes.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let emqx = api.get("emqx-ee").await.expect("emqx");
    assert_eq!(
        ready_on(&emqx, None),
        Ok(second.clone()),
        "after helm upgrade"
    );
    let sets_after: Vec<String> = sets
        .list(&ListParams::default())
        .await
        .expect("sets")
        .items
        .iter()
        .map(ResourceExt::name_any)
        .collect();
    assert_eq!(
        sets_before, sets_after,
        "helm upgrade started an EMQX upgrade"
    );

    // helm uninstall: the CRDs and the EMQX object stay.
    let out = helm(
        sandbox,
        &["uninstall", RELEASE, "--namespace", NAMESPACE, "--wait"],
    )
    .await;
    assert!(out.success, "{}{}", out.stdout, out.stderr);
    for name in ["emqxes.apps.emqx.io", "emqxenterprises.apps.emqx.io"] {
        crds.get(name).await.expect("CRD kept");
    }
    let kept = api.get("emqx-ee").await.expect("EMQX object kept");
    assert_eq!(update_revision(&kept), Some(second));
    stage.stop().await.expect("sandbox stops");
}
