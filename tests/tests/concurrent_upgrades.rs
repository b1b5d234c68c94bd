//! The operator-wide bound on upgrades at once (issue 16, item 3; the
//! reconciler's `--max-concurrent-upgrades`): six one-core clusters, Ready,
//! are all given a new revision at the same moment with a bound of two.
//! Sampled every 200 ms, never more than two clusters have sets of two
//! revisions running; the others say `Progressing=False`, reason
//! `UpgradeQueued`, naming the running upgrades, and create nothing; every
//! cluster ends Ready on its new revision, and no condition's
//! `lastTransitionTime` moves while its status holds. A test of behaviour,
//! not of speed: the deadlines are generous.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use emqx_crd::v2beta1::EMQX;
use k8s_openapi::api::apps::v1::StatefulSet;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use sandbox::condition_history::ConditionHistory;
use sandbox::operator::{InProcessReconciler, install_crds};
use sandbox::seed_003::{condition, is_true, one_core_cluster, update_revision};
use sandbox::{EmqxHook, Sandbox, SandboxOptions};
use serde_json::json;
use support::wait_for;

const NS: &str = "default";
const CLUSTERS: usize = 6;
const LIMIT: usize = 2;

fn cluster(name: &str) -> EMQX {
    let quick = json!({"spec": {"updateStrategy": {
        "initialDelaySeconds": 1, "evacuationStrategy": {"waitTakeover": 1}
    }}});
    one_core_cluster(name, NS, &quick).expect("an EMQX object")
}

/// Clusters (by name) whose StatefulSets of two revisions still have
/// replicas: the upgrades running now.
fn running(sets: &[StatefulSet]) -> BTreeSet<String> {
    let mut revisions: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for set in sets {
        let replicas = set.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0);
        let labels = set.labels();
        if let (true, Some(cluster), Some(revision)) = (
            replicas > 0,
            labels.get("apps.emqx.io/instance"),
            labels.get("apps.emqx.io/pod-template-hash"),
        ) {
            revisions
                .entry(cluster.clone())
                .or_default()
                .insert(revision.clone());
        }
    }
    revisions
        .into_iter()
        .filter(|(_, r)| r.len() > 1)
        .map(|(c, _)| c)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn at_most_the_limit_of_upgrades_run_and_the_others_wait_in_a_queue() {
    support::init_tracing();
    let hook = EmqxHook::new();
    let sandbox = Sandbox::start(SandboxOptions::default().hook(hook.clone()))
        .await
        .expect("sandbox starts");
    let client = sandbox.client();
    install_crds(&client).await.expect("CRDs");
    let reconciler = InProcessReconciler::start_with_upgrade_limit(client.clone(), NS, LIMIT);

    let api: Api<EMQX> = Api::namespaced(client.clone(), NS);
    let names: Vec<String> = (0..CLUSTERS).map(|i| format!("queue-{i}")).collect();
    for name in &names {
        api.create(&PostParams::default(), &cluster(name))
            .await
            .expect("create");
    }
    let all_ready = |api: Api<EMQX>, not: BTreeMap<String, String>| async move {
        let list = api
            .list(&ListParams::default())
            .await
            .map_err(|e| e.to_string())?;
        let waiting: Vec<String> = list
            .items
            .iter()
            .filter(|e| {
                !is_true(e, "Ready")
                    || not
                        .get(&e.name_any())
                        .is_some_and(|old| update_revision(e).as_deref() == Some(old.as_str()))
            })
            .map(ResourceExt::name_any)
            .collect();
        if list.items.len() == CLUSTERS && waiting.is_empty() {
            Ok(list.items)
        } else {
            Err(format!(
                "{} objects, waiting: {waiting:?}",
                list.items.len()
            ))
        }
    };
    let ready = wait_for("all clusters Ready", Duration::from_secs(180), || {
        all_ready(api.clone(), BTreeMap::new())
    })
    .await;
    let first: BTreeMap<String, String> = ready
        .iter()
        .map(|e| (e.name_any(), update_revision(e).expect("a revision")))
        .collect();

    let conditions = ConditionHistory::start(&client, NS);
    // Every cluster gets a new revision at once.
    for name in &names {
        api.patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"imagePullPolicy": "Never"}})),
        )
        .await
        .expect("patch");
    }
    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), NS);
    let started = Instant::now();
    let mut most = 0;
    let mut queued_seen: BTreeMap<String, String> = BTreeMap::new();
    let mut ever_running = BTreeSet::new();
    let finished = loop {
        let list = sets.list(&ListParams::default()).await.expect("sets");
        let now = running(&list.items);
        most = most.max(now.len());
        assert!(
            now.len() <= LIMIT,
            "{} upgrades at once with a limit of {LIMIT}: {now:?}",
            now.len()
        );
        ever_running.extend(now);
        for e in api.list(&ListParams::default()).await.expect("list").items {
            if let Some(c) = condition(&e, "Progressing").filter(|c| c.reason == "UpgradeQueued") {
                assert_eq!(c.status, "False", "{c:?}");
                queued_seen.entry(e.name_any()).or_insert(c.message);
            }
        }
        if let Ok(done) = all_ready(api.clone(), first.clone()).await {
            break done;
        }
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "not all upgraded in 300 s; running at most {most}, queued seen {queued_seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    reconciler.stop().await;

    // Queued, then upgrading, then Ready: many flips, each written once
    // with its time, which then holds while the status does.
    assert!(
        conditions.sightings() > CLUSTERS,
        "the watch saw no conditions"
    );
    let moved = conditions.moved_without_a_flip();
    assert!(
        moved.is_empty(),
        "lastTransitionTime moved without a flip: {moved:#?}"
    );

    assert_eq!(most, LIMIT, "the bound was never reached");
    assert_eq!(
        ever_running.len(),
        CLUSTERS,
        "some upgrades never seen running: {ever_running:?}"
    );
    assert!(
        queued_seen.len() >= CLUSTERS - LIMIT,
        "queued clusters seen: {queued_seen:?}"
    );
    for message in queued_seen.values() {
        assert!(
            message.contains("--max-concurrent-upgrades")
                && message.contains("EMQX/default/queue-"),
            "{message}"
        );
    }
    for e in &finished {
        assert_ne!(
            update_revision(e).as_deref(),
            first.get(&e.name_any()).map(String::as_str),
            "{} not upgraded",
            e.name_any()
        );
    }
    sandbox.stop().await.expect("sandbox stops");
}
