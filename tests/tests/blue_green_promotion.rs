//! Manual promotion end to end, against the real control plane with
//! simulated EMQX, the reconciler in process and MQTT clients connected:
//! with `updateStrategy.promotion: Manual` an upgrade stops, visibly,
//! with the new nodes ready and joined and no client moved; promoting the
//! revision finishes it (every client moved at most once), aborting it
//! returns to the old revision with the new set scaled away and no client
//! touched. The promotion, the abort and the retry go through the real
//! `kubectl emqx` plugin (its `status` screen is checked on the way).

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use mqtt_load::MqttLoad;
use sandbox::seed_003::{NAME, Seed003, Stage, condition, is_true, load, update_revision};
use serde_json::json;
use support::wait_for;

const PROMOTE: &str = "apps.emqx.io/promote";
const ABORT: &str = "apps.emqx.io/abort";
const CLIENTS: usize = 60;

/// Runs the `kubectl-emqx` binary with the sandbox's kubeconfig; its
/// stdout, or a panic with its stderr.
async fn kubectl_emqx(f: &Stage, args: &[&str]) -> String {
    let binary = tokio::task::spawn_blocking(|| {
        sandbox::operator::project_binary::build_workspace_binaries(&["kubectl-emqx"])
    })
    .await
    .expect("build task")
    .expect("kubectl-emqx builds")
    .remove(0);
    let out = tokio::process::Command::new(binary)
        .args(args)
        .args(["--namespace", "default"])
        .env("KUBECONFIG", f.sandbox.kubeconfig())
        .output()
        .await
        .expect("kubectl-emqx runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "kubectl emqx {args:?} failed: {}{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Seed 003 with manual promotion, Ready, its clients connected.
async fn manual_with_clients() -> Stage {
    support::ready(
        Seed003::new()
            .merge(json!({"spec": {"updateStrategy": {"promotion": "Manual"}}}))
            .clients(
                load(CLIENTS, 200, Duration::from_secs(300)),
                Duration::from_secs(60),
            ),
    )
    .await
}

/// Disconnects of established connections so far, over every client.
fn disconnects(load: &MqttLoad) -> usize {
    (0..CLIENTS)
        .filter_map(|i| load.client_log(i))
        .map(|log| log.disconnects())
        .sum()
}

/// Starts the upgrade (a pod-template change) and waits for the visible
/// `AwaitingPromotion` state; returns the new revision and the condition.
async fn upgrade_until_awaiting(f: &Stage) -> (String, Condition) {
    f.patch(json!({"spec": {"imagePullPolicy": "Never"}}))
        .await
        .expect("patch EMQX");
    let awaiting = f
        .wait_object(
            "the AwaitingPromotion condition",
            Duration::from_secs(120),
            |e| {
                condition(e, "AwaitingPromotion")
                    .filter(|c| c.status == "True")
                    .ok_or_else(|| {
                        format!("conditions {:?}", e.status.as_ref().map(|s| &s.conditions))
                    })
            },
        )
        .await
        .expect("wait");
    let emqx = f.get().await.expect("get EMQX");
    let new = update_revision(&emqx).expect("update revision");
    assert_ne!(new, f.revision);
    (new, awaiting)
}

/// What must hold while the upgrade awaits its promotion: the new nodes are
/// ready and joined, the Services and every client stay on the old ones.
async fn assert_held(f: &Stage, new: &str, clients: &MqttLoad) {
    let ready = f.core_pods(new).await.expect("list pods");
    assert_eq!(
        ready.iter().filter(|p| support::is_ready(p)).count(),
        2,
        "new nodes ready"
    );
    let members = f.cluster().expect("a running EMQX node").summaries();
    let joined = members
        .iter()
        .filter(|m| m.running && m.name.contains(&format!("{NAME}-core-{new}-")))
        .count();
    assert_eq!(joined, 2, "new nodes joined: {members:?}");
    assert_eq!(
        f.listeners_revision().await.as_deref(),
        Some(f.revision.as_str()),
        "the listeners Service moved before the promotion"
    );
    // No node that holds clients was evacuated (an abort drains the empty
    // new ones through evacuation).
    let old = format!("{NAME}-core-{}-", f.revision);
    let evacuated = f.evacuated_nodes();
    assert!(!evacuated.iter().any(|n| n.contains(&old)), "{evacuated:?}");
    assert_eq!(disconnects(clients), 0, "a client was disconnected");
    let emqx = f.get().await.expect("get EMQX");
    let progressing = condition(&emqx, "Progressing").expect("Progressing");
    assert_eq!(
        (progressing.status.as_str(), progressing.reason.as_str()),
        ("False", "AwaitingPromotion")
    );
    assert!(!is_true(&emqx, "Ready"));
}

/// Manual → `AwaitingPromotion` with the new nodes in and no client moved,
/// for longer than the initial delay; a stale promote annotation (another
/// revision) changes nothing; promoting the revision finishes the upgrade,
/// each client moved at most once with its session.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_manual_upgrade_waits_for_its_promotion_then_finishes() {
    let mut f = manual_with_clients().await;
    let clients = f.load.take().expect("clients");
    let (new, awaiting) = upgrade_until_awaiting(&f).await;
    assert_eq!(awaiting.reason, "AwaitingPromotion");
    assert!(
        awaiting.message.contains(&format!("{PROMOTE}={new}"))
            && awaiting.message.contains(&format!("{ABORT}={new}")),
        "{}",
        awaiting.message
    );
    assert_held(&f, &new, &clients).await;

    // A promotion left from another upgrade promotes nothing; several
    // passes and more than the initial delay later nothing moved.
    f.patch(json!({"metadata": {"annotations": {PROMOTE: f.revision}}}))
        .await
        .expect("patch EMQX");
    tokio::time::sleep(Duration::from_secs(8)).await;
    assert_held(&f, &new, &clients).await;
    assert!(f.evacuated_nodes().is_empty(), "{:?}", f.evacuated_nodes());
    let emqx = f.get().await.expect("get EMQX");
    let message = condition(&emqx, "AwaitingPromotion")
        .filter(|c| c.status == "True")
        .expect("still awaiting")
        .message;
    assert!(message.contains("not this revision"), "{message}");

    // What an operator on call sees, then does.
    let screen = kubectl_emqx(&f, &["status", NAME]).await;
    assert!(
        screen.contains("Status:     AwaitingPromotion")
            && screen.contains(&format!("revision {} → {new}", f.revision)),
        "{screen}"
    );
    let said = kubectl_emqx(&f, &["promote", NAME]).await;
    assert!(said.contains(&new), "{said}");
    let done = f
        .wait_ready(Some(&f.revision), Duration::from_secs(180))
        .await
        .expect("EMQX Ready");
    assert_eq!(update_revision(&done).as_deref(), Some(new.as_str()));
    assert!(!is_true(&done, "AwaitingPromotion"));
    assert_eq!(f.listeners_revision().await.as_deref(), Some(new.as_str()));
    assert_eq!(
        f.core_set_replicas(&f.revision)
            .await
            .expect("list StatefulSets"),
        Some(0)
    );

    assert!(
        clients.wait_all_connected(Duration::from_secs(60)).await,
        "clients did not all come back: {:?}",
        clients.progress()
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let report = clients.finish(Duration::from_secs(20)).await;
    let summary = mqtt_load::recorder::Summary::of(&report);
    assert!(
        summary.disconnect_histogram.len() <= 2,
        "a client was disconnected more than once: {summary}"
    );
    assert!(
        summary.disconnect_histogram.get(1).copied().unwrap_or(0) > 0,
        "no client was moved: {summary}"
    );
    assert_eq!(summary.sessions_lost, 0, "{summary}");
    assert!(
        report.lost().is_empty(),
        "lost QoS 1 messages: {:?}",
        report.lost()
    );
    f.stop().await.expect("sandbox stops");
}

/// Abort while awaiting the promotion: the Services stay on the old
/// revision, the new set is scaled to zero (no third set), no client is
/// disconnected, `Progressing=False` with reason `UpgradeAborted` and one
/// Event; it stays so while the annotation names the revision, and removing
/// it (a retry) brings the same new set back to await its promotion.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_aborted_upgrade_returns_to_the_old_revision_and_moves_no_client() {
    let mut f = manual_with_clients().await;
    let clients = f.load.take().expect("clients");
    let original_nodes: Vec<String> = f.hook.nodes().into_values().map(|n| n.node_name).collect();
    let (new, _) = upgrade_until_awaiting(&f).await;
    assert_held(&f, &new, &clients).await;

    let said = kubectl_emqx(&f, &["abort", NAME]).await;
    assert!(said.contains(&new), "{said}");
    let aborted = f
        .wait_object(
            "Progressing=False, UpgradeAborted",
            Duration::from_secs(30),
            |e| {
                condition(e, "Progressing")
                    .filter(|c| c.status == "False" && c.reason == "UpgradeAborted")
                    .ok_or_else(|| format!("Progressing={:?}", condition(e, "Progressing")))
            },
        )
        .await
        .expect("wait");
    assert!(aborted.message.contains(&new), "{}", aborted.message);
    wait_for(
        "the new set scaled away",
        Duration::from_secs(120),
        || async {
            let replicas = f.core_set_replicas(&new).await.expect("list StatefulSets");
            let pods = f.core_pods(&new).await.expect("list pods").len();
            if replicas == Some(0) && pods == 0 {
                Ok(())
            } else {
                Err(format!("replicas {replicas:?}, pods {pods}"))
            }
        },
    )
    .await;
    let emqx = f
        .wait_object(
            "the abort settled",
            Duration::from_secs(30),
            |e| match condition(e, "Aborted") {
                Some(c) if c.status == "True" && c.message.contains("scaled away") => Ok(e.clone()),
                other => Err(format!("Aborted={other:?}")),
            },
        )
        .await
        .expect("wait");
    let progressing = condition(&emqx, "Progressing").expect("Progressing");
    assert_eq!(
        (progressing.status.as_str(), progressing.reason.as_str()),
        ("False", "UpgradeAborted")
    );
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
    assert_eq!(
        f.stateful_set_names().await.expect("list StatefulSets"),
        BTreeSet::from([
            format!("{NAME}-core-{}", f.revision),
            format!("{NAME}-core-{new}")
        ]),
        "no third set"
    );
    assert_eq!(f.count_events("CreateNewSet").await.expect("events"), 1);
    // The stopped new nodes left the EMQX cluster; the old ones were never
    // evacuated.
    wait_for(
        "only the old nodes in EMQX",
        Duration::from_secs(30),
        || async {
            let members: Vec<String> = f
                .cluster()
                .expect("a running EMQX node")
                .summaries()
                .into_iter()
                .map(|m| m.name)
                .collect();
            if members.iter().all(|m| original_nodes.contains(m)) {
                Ok(())
            } else {
                Err(format!("{members:?}"))
            }
        },
    )
    .await;
    for node in &original_nodes {
        assert!(
            f.evacuation_history(node).is_empty(),
            "{node} was evacuated"
        );
    }

    // It stays aborted: several passes later nothing came back.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let emqx = f.get().await.expect("get EMQX");
    assert!(is_true(&emqx, "Aborted"));
    assert_eq!(
        f.core_set_replicas(&new).await.expect("list StatefulSets"),
        Some(0)
    );
    assert_eq!(f.count_events("UpgradeAborted").await.expect("events"), 1);
    assert_eq!(disconnects(&clients), 0, "a client was disconnected");

    // Retry: the annotation removed, the same new set comes back and waits
    // for its promotion again.
    let screen = kubectl_emqx(&f, &["status", NAME]).await;
    assert!(screen.contains("Status:     UpgradeAborted"), "{screen}");
    kubectl_emqx(&f, &["retry", NAME]).await;
    f.wait_object("AwaitingPromotion again", Duration::from_secs(120), |e| {
        condition(e, "AwaitingPromotion")
            .filter(|c| c.status == "True")
            .ok_or_else(|| format!("conditions {:?}", e.status.as_ref().map(|s| &s.conditions)))
    })
    .await
    .expect("wait");
    assert!(!is_true(&f.get().await.expect("get EMQX"), "Aborted"));
    assert_held(&f, &new, &clients).await;
    assert_eq!(f.count_events("CreateNewSet").await.expect("events"), 1);

    tokio::time::sleep(Duration::from_secs(2)).await;
    let report = clients.finish(Duration::from_secs(20)).await;
    let summary = mqtt_load::recorder::Summary::of(&report);
    assert!(
        summary.disconnect_histogram.len() <= 1,
        "a client was disconnected: {summary}"
    );
    assert_eq!(summary.sessions_lost, 0, "{summary}");
    assert!(
        report.lost().is_empty(),
        "lost QoS 1 messages: {:?}",
        report.lost()
    );
    f.stop().await.expect("sandbox stops");
}
