//! The operator controls users of peers expect, end to end against the real
//! control plane with simulated EMQX and the reconciler in process:
//! pause/resume by annotation, a progress deadline that reports a stalled
//! upgrade and why, a bad image that strands nothing and is superseded by a
//! corrected spec, and a revert mid-upgrade that goes back to the old set
//! without creating a third one.

mod support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use sandbox::seed_003::{
    NAME, Seed003, Stage, condition, is_true, load, quick_probe, update_revision,
};
use serde_json::json;
use support::wait_for;

const PAUSED: &str = "apps.emqx.io/reconcile-paused";
const DEADLINE: &str = "apps.emqx.io/progress-deadline-seconds";

/// Waits until the old core set has been scaled down by one: traffic moved,
/// one old node was evacuated and removed, the rest still runs.
async fn wait_first_removal(f: &Stage, replicas_before: i32) {
    wait_for(
        "the first old node removed",
        Duration::from_secs(120),
        || async {
            match f
                .core_set_replicas(&f.revision)
                .await
                .expect("list StatefulSets")
            {
                Some(r) if r < replicas_before => Ok(()),
                other => Err(format!("old set replicas {other:?}")),
            }
        },
    )
    .await;
}

/// Pause mid-upgrade: no evacuation starts and nothing is scaled while the
/// annotation is set, a condition says so; removing it finishes the upgrade.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pause_holds_an_upgrade_and_resume_finishes_it() {
    let f = support::ready(Seed003::new().cores(3)).await;
    f.patch(json!({"spec": {"imagePullPolicy": "Never"}}))
        .await
        .expect("patch EMQX");
    wait_first_removal(&f, 3).await;

    f.patch(json!({"metadata": {"annotations": {PAUSED: "true"}}}))
        .await
        .expect("patch EMQX");
    let paused = f
        .wait_object("the Paused condition", Duration::from_secs(30), |e| {
            condition(e, "Paused")
                .filter(|c| c.status == "True")
                .ok_or_else(|| format!("conditions {:?}", e.status.as_ref().map(|s| &s.conditions)))
        })
        .await
        .expect("wait");
    assert_eq!(paused.reason, "Paused");
    assert!(paused.message.contains("annotation"), "{}", paused.message);
    let emqx = f.get().await.expect("get EMQX");
    let progressing = condition(&emqx, "Progressing").expect("Progressing condition");
    assert_eq!(
        (progressing.status.as_str(), progressing.reason.as_str()),
        ("False", "Paused")
    );
    let ready = condition(&emqx, "Ready").expect("Ready condition");
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", "Paused")
    );

    // Everything the reconciler could do next, as it stands now.
    let replicas = f
        .core_set_replicas(&f.revision)
        .await
        .expect("list StatefulSets");
    assert!(
        replicas.is_some_and(|r| r >= 1),
        "paused before the upgrade ended: old set at {replicas:?}"
    );
    let evacuations = f.count_events("NodeEvacuation").await.expect("events");
    let removals = f.count_events("RemoveOldNode").await.expect("events");
    let evacuated = f.evacuated_nodes();
    // A spec edited while paused is not applied either.
    let config_before = f.config_data().await.expect("ConfigMap");
    let edited = format!("{config_before}\n# edited while paused\n");
    f.patch(json!({"spec": {"config": {"data": edited}}}))
        .await
        .expect("patch EMQX");
    // Longer than an evacuation of an idle node, its waitTakeover and
    // several reconcile passes.
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(
        f.core_set_replicas(&f.revision)
            .await
            .expect("list StatefulSets"),
        replicas,
        "scaled while paused"
    );
    assert_eq!(
        f.count_events("NodeEvacuation").await.expect("events"),
        evacuations
    );
    assert_eq!(
        f.count_events("RemoveOldNode").await.expect("events"),
        removals
    );
    let now_evacuated = f.evacuated_nodes();
    assert!(
        now_evacuated.iter().all(|n| evacuated.contains(n)),
        "an evacuation started while paused: {evacuated:?} → {now_evacuated:?}"
    );
    assert!(is_true(&f.get().await.expect("get EMQX"), "Paused"));
    assert_eq!(
        f.config_data().await.expect("ConfigMap"),
        config_before,
        "ConfigMap written while paused"
    );

    f.patch(json!({"metadata": {"annotations": {PAUSED: null}}}))
        .await
        .expect("patch EMQX");
    let done = f
        .wait_ready(Some(&f.revision), Duration::from_secs(120))
        .await
        .expect("EMQX Ready");
    assert!(!is_true(&done, "Paused"));
    assert_eq!(
        f.config_data().await.expect("ConfigMap"),
        edited,
        "the edit applied on resume"
    );
    assert_eq!(
        f.core_set_replicas(&f.revision)
            .await
            .expect("list StatefulSets"),
        Some(0)
    );
    f.stop().await.expect("sandbox stops");
}

/// New pods that join EMQX but never pass their readiness probe: after the
/// progress deadline a condition says the upgrade is stalled and on what;
/// traffic and old nodes are untouched. Reverting the probe recovers.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stalled_upgrade_says_why_within_the_deadline() {
    const DEADLINE_S: u64 = 8;
    let f = support::ready(
        Seed003::new()
            .merge(json!({"metadata": {"annotations": {DEADLINE: DEADLINE_S.to_string()}}})),
    )
    .await;
    let original_nodes: Vec<String> = f.hook.nodes().into_values().map(|n| n.node_name).collect();
    let started = Instant::now();
    f.patch(json!({"spec": {"coreTemplate": {"spec": {"readinessProbe": quick_probe("/no-such-path")}}}}))
        .await.expect("patch EMQX");
    let stalled = f
        .wait_object(
            "a stalled condition",
            Duration::from_secs(DEADLINE_S + 45),
            |e| {
                condition(e, "Progressing")
                    .filter(|c| c.status == "False" && c.reason == "ProgressDeadlineExceeded")
                    .ok_or_else(|| format!("Progressing={:?}", condition(e, "Progressing")))
            },
        )
        .await
        .expect("wait");
    eprintln!(
        "stalled condition after {:?}: {}",
        started.elapsed(),
        stalled.message
    );
    // It says what it waits for: the new nodes joined but are not ready.
    assert!(
        stalled.message.contains("0/2 ready") && stalled.message.contains("2/2 joined"),
        "{}",
        stalled.message
    );
    let emqx = f.get().await.expect("get EMQX");
    assert!(!is_true(&emqx, "Ready"));
    let broken = update_revision(&emqx).expect("update revision");
    assert_ne!(broken, f.revision);
    assert_eq!(
        f.listeners_revision().await.as_deref(),
        Some(f.revision.as_str())
    );
    assert_eq!(
        f.core_set_replicas(&f.revision)
            .await
            .expect("list StatefulSets"),
        Some(2)
    );
    assert!(f.evacuated_nodes().is_empty(), "{:?}", f.evacuated_nodes());
    assert_eq!(f.count_events("NodeEvacuation").await.expect("events"), 0);

    // The probe put back: the old set is the desired one again.
    f.patch(
        json!({"spec": {"coreTemplate": {"spec": {"readinessProbe": quick_probe("/status")}}}}),
    )
    .await
    .expect("patch EMQX");
    let done = f
        .wait_ready(Some(&broken), Duration::from_secs(90))
        .await
        .expect("EMQX Ready");
    assert_eq!(update_revision(&done), Some(f.revision.clone()));
    let progressing = condition(&done, "Progressing").expect("Progressing");
    assert_ne!(progressing.reason, "ProgressDeadlineExceeded");
    wait_for(
        "the stalled set emptied",
        Duration::from_secs(60),
        || async {
            let replicas = f
                .core_set_replicas(&broken)
                .await
                .expect("list StatefulSets");
            let pods = f
                .pods()
                .await
                .expect("list pods")
                .into_iter()
                .filter(|p| {
                    p.metadata
                        .name
                        .as_deref()
                        .is_some_and(|n| n.contains(&broken))
                })
                .count();
            if replicas.unwrap_or(0) == 0 && pods == 0 {
                Ok(())
            } else {
                Err(format!("replicas {replicas:?}, pods {pods}"))
            }
        },
    )
    .await;
    assert_eq!(
        f.core_set_replicas(&f.revision)
            .await
            .expect("list StatefulSets"),
        Some(2)
    );
    // The stalled nodes had joined, so they left through evacuation and
    // force_leave; the original nodes were never evacuated.
    for node in &original_nodes {
        assert!(
            f.evacuation_history(node).is_empty(),
            "{node} was evacuated"
        );
    }
    f.stop().await.expect("sandbox stops");
}

/// An image whose containers never start: the cluster keeps serving from
/// the old set and no old node is touched; a corrected image supersedes the
/// broken revision and completes the upgrade, and with
/// `revisionHistoryLimit: 0` both old sets are gone at the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_bad_image_strands_nothing_and_a_corrected_spec_completes() {
    let f =
        support::ready(Seed003::new().merge(json!({"spec": {"revisionHistoryLimit": 0}}))).await;
    let original_nodes: Vec<String> = f.hook.nodes().into_values().map(|n| n.node_name).collect();
    // A typo in the tag (letter O for zero): no such image runs.
    f.patch(json!({"spec": {"image": "emqx/emqx:6.O.1"}}))
        .await
        .expect("patch EMQX");
    let broken = f
        .wait_object(
            "the broken revision",
            Duration::from_secs(30),
            |e| match update_revision(e) {
                Some(r) if r != f.revision => Ok(r),
                other => Err(format!("{other:?}")),
            },
        )
        .await
        .expect("wait");
    // Its pods exist and fail to start, again and again.
    wait_for("broken pods failing", Duration::from_secs(60), || async {
        let failing = f
            .pods()
            .await
            .expect("list pods")
            .into_iter()
            .filter(|p| {
                p.metadata
                    .name
                    .as_deref()
                    .is_some_and(|n| n.contains(&broken))
            })
            .filter(|p| {
                p.status
                    .as_ref()
                    .and_then(|s| s.container_statuses.as_ref())
                    .into_iter()
                    .flatten()
                    .any(|c| {
                        c.state
                            .as_ref()
                            .and_then(|s| s.waiting.as_ref())
                            .and_then(|w| w.reason.as_deref())
                            == Some("CreateContainerError")
                    })
            })
            .count();
        if failing == 2 {
            Ok(())
        } else {
            Err(format!("{failing} failing pods"))
        }
    })
    .await;
    // Several reconcile passes later nothing old has been touched.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let emqx = f.get().await.expect("get EMQX");
    assert!(!is_true(&emqx, "Ready"));
    let ready = condition(&emqx, "Ready").expect("Ready");
    assert!(ready.message.contains("0/2 ready"), "{}", ready.message);
    assert_eq!(
        f.listeners_revision().await.as_deref(),
        Some(f.revision.as_str())
    );
    assert_eq!(
        f.core_set_replicas(&f.revision)
            .await
            .expect("list StatefulSets"),
        Some(2)
    );
    assert!(f.evacuated_nodes().is_empty(), "{:?}", f.evacuated_nodes());
    assert_eq!(f.count_events("NodeEvacuation").await.expect("events"), 0);

    // kubectl apply of the corrected spec.
    f.patch(json!({"spec": {"image": "emqx/emqx:6.0.2"}}))
        .await
        .expect("patch EMQX");
    // The broken set holds nothing, so it goes at once; the original set
    // drains through evacuation after the new nodes are in.
    let original_left = wait_for(
        "the broken set scaled away",
        Duration::from_secs(120),
        || async {
            let broken = f
                .core_set_replicas(&broken)
                .await
                .expect("list StatefulSets")
                .unwrap_or(0);
            let original = f
                .core_set_replicas(&f.revision)
                .await
                .expect("list StatefulSets")
                .unwrap_or(0);
            if broken == 0 {
                Ok(original)
            } else {
                Err(format!("broken set at {broken}, original at {original}"))
            }
        },
    )
    .await;
    assert!(
        original_left > 0,
        "the broken set was scaled away only after the original set had drained"
    );
    let done = f
        .wait_ready(Some(&f.revision), Duration::from_secs(120))
        .await
        .expect("EMQX Ready");
    let fixed = update_revision(&done).expect("revision");
    assert_ne!(fixed, broken, "the broken revision is not the desired one");
    let status = done.status.as_ref().expect("status");
    let core = status.core_nodes_status.as_ref().expect("core status");
    assert_eq!(core.current_revision.as_deref(), Some(fixed.as_str()));
    assert_eq!(core.ready_replicas, Some(2));
    wait_for("old sets deleted", Duration::from_secs(30), || async {
        let sets = f.stateful_set_names().await.expect("list StatefulSets");
        let want = BTreeSet::from([format!("{NAME}-core-{fixed}")]);
        if sets == want {
            Ok(())
        } else {
            Err(format!("{sets:?}"))
        }
    })
    .await;
    // The old nodes left through evacuation; none lingers in EMQX.
    let members = f
        .hook
        .nodes()
        .into_values()
        .next()
        .expect("a node")
        .cluster
        .summaries();
    for node in &original_nodes {
        assert!(!members.iter().any(|m| &m.name == node), "{node} lingers");
    }
    assert_eq!(f.count_events("NodeEvacuation").await.expect("events"), 2);
    f.stop().await.expect("sandbox stops");
}

/// Revert mid-upgrade: after traffic moved and one old node was evacuated
/// and removed, putting the previous template back returns to the old set
/// (scaled up again), drains the new one, and creates no third set.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reverting_mid_upgrade_returns_to_the_old_set() {
    const CLIENTS: usize = 60;
    let mut f = support::ready(Seed003::new().clients(
        load(CLIENTS, 200, Duration::from_secs(300)),
        Duration::from_secs(60),
    ))
    .await;
    let original_nodes: Vec<String> = f.hook.nodes().into_values().map(|n| n.node_name).collect();
    let cluster = f.cluster().expect("a running EMQX node");
    let load = f.load.take().expect("clients");
    let original = f
        .get()
        .await
        .expect("get EMQX")
        .spec
        .image_pull_policy
        .clone();
    f.patch(json!({"spec": {"imagePullPolicy": "Never"}}))
        .await
        .expect("patch EMQX");
    let new = f
        .wait_object(
            "the new revision",
            Duration::from_secs(30),
            |e| match update_revision(e) {
                Some(r) if r != f.revision => Ok(r),
                other => Err(format!("{other:?}")),
            },
        )
        .await
        .expect("wait");
    wait_first_removal(&f, 2).await;
    assert_eq!(f.listeners_revision().await.as_deref(), Some(new.as_str()));

    // kubectl apply of the previous manifest.
    f.patch(json!({"spec": {"imagePullPolicy": original}}))
        .await
        .expect("patch EMQX");
    let done = f
        .wait_object(
            "Ready on the original revision",
            Duration::from_secs(120),
            |e| {
                let update = update_revision(e);
                if is_true(e, "Ready") && update.as_deref() == Some(f.revision.as_str()) {
                    Ok(e.clone())
                } else {
                    Err(format!(
                        "Ready={:?} update={update:?}",
                        condition(e, "Ready")
                    ))
                }
            },
        )
        .await
        .expect("wait");
    let core = done
        .status
        .as_ref()
        .and_then(|s| s.core_nodes_status.clone())
        .expect("core status");
    assert_eq!(core.current_revision.as_deref(), Some(f.revision.as_str()));
    assert_eq!(core.ready_replicas, Some(2));
    assert_eq!(
        f.stateful_set_names().await.expect("list StatefulSets"),
        BTreeSet::from([
            format!("{NAME}-core-{}", f.revision),
            format!("{NAME}-core-{new}")
        ]),
        "no third set"
    );
    assert_eq!(
        f.core_set_replicas(&f.revision)
            .await
            .expect("list StatefulSets"),
        Some(2)
    );
    assert_eq!(
        f.core_set_replicas(&new).await.expect("list StatefulSets"),
        Some(0)
    );
    assert_eq!(
        f.listeners_revision().await.as_deref(),
        Some(f.revision.as_str())
    );
    assert_eq!(
        f.count_events("CreateNewSet").await.expect("events"),
        1,
        "one new set, ever"
    );

    // The clients that moved to the new set came back with their sessions;
    // all end on the original revision's nodes.
    assert!(
        load.wait_all_connected(Duration::from_secs(60)).await,
        "clients did not all come back: {:?}",
        load.progress()
    );
    let per_node = cluster.live_connections_by_node();
    let total: u64 = per_node.values().sum();
    let on_original: u64 = original_nodes
        .iter()
        .map(|n| per_node.get(n).copied().unwrap_or(0))
        .sum();
    assert!(on_original >= CLIENTS as u64, "{per_node:?}");
    assert_eq!(on_original, total, "{per_node:?}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let report = load.finish(Duration::from_secs(20)).await;
    let summary = mqtt_load::recorder::Summary::of(&report);
    assert!(
        summary.disconnect_histogram.len() <= 3,
        "a client was disconnected more than twice: {summary}"
    );
    assert!(
        summary.disconnect_histogram.get(2).copied().unwrap_or(0) > 0,
        "some clients went to the new set and back: {summary}"
    );
    assert_eq!(summary.sessions_lost, 0, "{summary}");
    assert!(
        report.lost().is_empty(),
        "lost QoS 1 messages: {:?}",
        report.lost()
    );
    f.stop().await.expect("sandbox stops");
}
