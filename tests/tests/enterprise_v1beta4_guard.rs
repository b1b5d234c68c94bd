//! The upgrade guard on EMQX 4.4 and on the drain without the evacuation
//! API (issue #15, item 1), end to end: seed 000's v1beta4 `EmqxEnterprise`
//! on open-source 4.4.19 (no `load_rebalance`, so each old node is drained
//! by the clock and removed, its clients reconnecting elsewhere), converted
//! by the real `emqx-webhook`, the reconciler in process, MQTT clients
//! connected. An upgrade to a revision whose nodes refuse CONNECT (counted
//! from `GET /api/v4/metrics`), or accept clients and drop them (live
//! connections from `GET /api/v4/stats` that do not come back within the
//! window after the first old node's removal), is aborted by the guard with
//! at most that one old node removed, and every client ends on the old
//! revision.
//!
//! The first removed node's sessions die with it (4.4 keeps sessions in
//! the node's memory; the fallback documents that non-durable sessions are
//! lost), so its clients may lose their sessions and the QoS 1 messages
//! queued in them: the test bounds that by one node's clients, and every
//! other client keeps its session and every message.

#![allow(clippy::panic)]

mod seed_000;
mod support;

use std::time::{Duration, Instant};

use emqx_crd::v2beta1;
use emqx_sim::faults::MQTT_FAULT_ENV;
use k8s_openapi::api::apps::v1::StatefulSet;
use kube::Api;
use kube::api::{Patch, PatchParams};
use mqtt_load::recorder::Summary;
use sandbox::seed_003::{connect_clients, load};
use seed_000::{NAME, Stage, create_running, current_version, manifest};
use serde_json::{Value, json};
use support::wait_for;

/// Open-source 4.4.19: no node evacuation.
const REPOSITORY: &str = "emqx/emqx";
const VERSION: &str = "4.4.19";
/// About 30 clients on each of the three nodes (the Service spreads them).
const CLIENTS: usize = 90;
/// The recovery window the tests give the guard (the default is 60 s).
const WINDOW_S: u64 = 20;
const ABORT: &str = "apps.emqx.io/abort";

/// Runs the `kubectl-emqx` binary with the sandbox's kubeconfig; its
/// stdout, or a panic with its stderr.
async fn kubectl_emqx(kubeconfig: &std::path::Path, args: &[&str]) -> String {
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
        .env("KUBECONFIG", kubeconfig)
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

/// `type`'s condition of the v2beta1 view of the object.
fn v2_condition(e: &v2beta1::EmqxEnterprise, type_: &str) -> Option<(String, String, String)> {
    e.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
}

/// The tests of this file run one after the other. Their clusters have the
/// same name and cookie, and the simulator finds a node's peers by DNS
/// name and cookie among all simulated nodes of the process
/// (`emqx_sim::cluster`): two sandboxes' clusters in one process would join
/// each other, which nodes of two Kubernetes clusters cannot (CI saw the
/// six nodes in one cluster and the operator's key refused).
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Upgrades to a revision whose nodes carry `fault` and checks the guard's
/// abort; `figures` is what the condition's message must name.
async fn a_faulty_4_4_revision_is_aborted_by_the_guard(fault: &str, figures: &str) {
    let _alone = ONE_AT_A_TIME.lock().await;
    support::init_tracing();
    let Stage {
        hook,
        sandbox,
        webhook,
        reconciler,
        client,
        api,
    } = Stage::start().await;
    let created = create_running(
        &api,
        manifest(Some((REPOSITORY, VERSION))),
        "Running with three open-source 4.4 nodes",
    )
    .await;
    let old_revision = current_version(&created).expect("currentStatefulSetVersion");
    let old_prefix = format!("{NAME}-core-{old_revision}-");
    let cluster = hook.cluster().expect("a node");

    let v2: Api<v2beta1::EmqxEnterprise> = Api::namespaced(client.clone(), "default");
    let clients = connect_clients(
        &client,
        "default",
        NAME,
        cluster.clone(),
        load(CLIENTS, 100, Duration::from_secs(600)),
        Duration::from_secs(60),
    )
    .await
    .expect("clients connect");

    // The faulty revision (the container's env, as a bad configuration
    // comes with one) and the guard's window, a v2 field, in one patch
    // through the v2beta1 API: the conversion keeps the window in the
    // v1beta4 object's conversion data, and takes out the probes v2beta1's
    // defaulting fills on that write (`webhook_e2e`,
    // `a_v1beta4_object_patched_through_v2beta1_keeps_its_pod_template`).
    // Clients per old node at the patch: the removed node's are the most
    // that may lose their sessions (the Service spreads them unevenly).
    let at_patch = cluster.live_connections_by_node();
    let started = Instant::now();
    v2.patch(
        NAME,
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {
            "updateStrategy": {"guard": {"connectionRecovery": {"windowSeconds": WINDOW_S}}},
            "coreTemplate": {"spec": {"env": [{"name": MQTT_FAULT_ENV, "value": fault}]}}
        }})),
    )
    .await
    .expect("patch");
    let stored = serde_json::to_value(api.get(NAME).await.expect("get v1beta4")).expect("json");
    let env = stored
        .pointer("/spec/template/spec/emqxContainer/env")
        .cloned()
        .unwrap_or_default();
    assert!(env.to_string().contains(fault), "v1beta4 env: {env}");
    let window = serde_json::to_value(v2.get(NAME).await.expect("get v2beta1")).expect("json");
    assert_eq!(
        window.pointer("/spec/updateStrategy/guard/connectionRecovery/windowSeconds"),
        Some(&json!(WINDOW_S)),
        "kept through the v1beta4 storage"
    );

    let (message, new_revision) = wait_for(
        "Progressing=False, UpgradeAborted",
        Duration::from_secs(150),
        || {
            let v2 = v2.clone();
            async move {
                let e = v2.get(NAME).await.map_err(|e| e.to_string())?;
                match v2_condition(&e, "Progressing") {
                    Some((status, reason, message))
                        if status == "False" && reason == "UpgradeAborted" =>
                    {
                        let raw = serde_json::to_value(&e).map_err(|e| e.to_string())?;
                        let new = raw
                            .pointer("/status/coreNodesStatus/updateRevision")
                            .and_then(Value::as_str)
                            .map(str::to_owned)
                            .ok_or("no updateRevision")?;
                        Ok((message, new))
                    }
                    other => Err(format!("Progressing={other:?}")),
                }
            }
        },
    )
    .await;
    let tripped_after = started.elapsed();
    assert_ne!(new_revision, old_revision);
    assert!(
        message.contains("upgrade guard") && message.contains(figures),
        "{message}"
    );
    // The guard wrote the abort annotation (visible on the v1beta4 object).
    let stored = api.get(NAME).await.expect("get v1beta4");
    let annotations = stored.metadata.annotations.clone().unwrap_or_default();
    assert_eq!(
        annotations.get(ABORT),
        Some(&new_revision),
        "{annotations:?}"
    );
    // At most one old node holding clients was removed (a node the Service
    // gave no client moves nothing when removed, and the guard rightly lets
    // the next one go); none was evacuated (there is no API for it).
    let removed: Vec<String> = cluster
        .stops()
        .into_iter()
        .filter(|s| s.node.contains(&old_prefix))
        .map(|s| s.node)
        .collect();
    let with_clients: Vec<&String> = removed
        .iter()
        .filter(|node| at_patch.get(*node).is_some_and(|&n| n > 0))
        .collect();
    assert!(
        with_clients.len() <= 1,
        "removed {removed:?}; clients per node at the patch {at_patch:?}"
    );
    assert!(cluster.stops().iter().all(|s| s.evacuation.is_none()));

    // The new set is scaled away; every client comes back to the old nodes.
    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), "default");
    let new_set = format!("{NAME}-core-{new_revision}");
    wait_for("the new set scaled away", Duration::from_secs(120), || {
        let (sets, new_set) = (sets.clone(), new_set.clone());
        async move {
            let s = sets.get(&new_set).await.map_err(|e| e.to_string())?;
            let replicas = s.spec.as_ref().and_then(|s| s.replicas);
            let running = s.status.as_ref().map_or(0, |s| s.replicas);
            if replicas == Some(0) && running == 0 {
                Ok(())
            } else {
                Err(format!("replicas {replicas:?}, running {running}"))
            }
        }
    })
    .await;
    assert!(
        clients.wait_all_connected(Duration::from_secs(120)).await,
        "clients did not all come back: {:?}",
        clients.progress()
    );
    let on_old = wait_for(
        "every client on the old nodes",
        Duration::from_secs(60),
        || {
            let (cluster, old_prefix) = (cluster.clone(), old_prefix.clone());
            async move {
                let members = cluster.summaries();
                let running = members.iter().filter(|m| m.running);
                let all: u64 = running.clone().map(|m| m.live_connections).sum();
                let on_old: u64 = running
                    .filter(|m| m.name.contains(&old_prefix))
                    .map(|m| m.live_connections)
                    .sum();
                // The load's publisher is one more connection.
                if on_old == all && on_old >= CLIENTS as u64 {
                    Ok(on_old)
                } else {
                    let where_: Vec<String> = members
                        .iter()
                        .map(|m| {
                            format!(
                                "{} running={} live={}",
                                m.name, m.running, m.live_connections
                            )
                        })
                        .collect();
                    Err(format!(
                        "{on_old} of {all} on {old_prefix}*, {CLIENTS} clients: {where_:?}"
                    ))
                }
            }
        },
    )
    .await;
    // `kubectl emqx status` finds the EmqxEnterprise and shows its
    // revisions and the abort; the list names its kind.
    let kubeconfig = sandbox.kubeconfig().to_owned();
    let screen = kubectl_emqx(&kubeconfig, &["status", NAME]).await;
    assert!(
        screen.contains("Kind:       EmqxEnterprise (apps.emqx.io/v1beta4)")
            && screen.contains(&format!("revision {old_revision}"))
            && screen.contains(&new_revision)
            && screen.contains("UpgradeAborted"),
        "{screen}"
    );
    let list = kubectl_emqx(&kubeconfig, &["status"]).await;
    assert!(
        list.lines()
            .any(|l| l.contains(NAME) && l.contains("EmqxEnterprise")),
        "{list}"
    );

    tokio::time::sleep(Duration::from_secs(2)).await;
    let report = clients.finish(Duration::from_secs(30)).await;
    let summary = Summary::of(&report);
    println!(
        "4.4 guard ({fault}, {CLIENTS} clients): tripped {:.1} s after the patch ({message}); removed {removed:?}; {on_old} connections on {old_prefix}*; {summary}",
        tripped_after.as_secs_f64()
    );
    // Only the removed node's clients can have lost their sessions, and
    // only they can have lost QoS 1 messages (those queued in the session
    // that died with the node, or published while they had none); every
    // other client kept its session and every message.
    let one_node: usize = removed
        .iter()
        .filter_map(|node| at_patch.get(node))
        .map(|&n| usize::try_from(n).unwrap_or(usize::MAX))
        .sum();
    assert!(
        summary.sessions_lost <= one_node,
        "{summary}; the removed node had {one_node} clients at the patch ({at_patch:?})"
    );
    let without_session: std::collections::BTreeSet<&str> = report
        .client_logs
        .iter()
        .filter(|log| log.reconnect_session_flags().iter().any(|present| !present))
        .map(|log| log.client_id.as_str())
        .collect();
    let lost = report.lost();
    assert!(
        lost.iter()
            .all(|(client, _)| without_session.contains(client.as_str())),
        "QoS 1 messages lost by clients that kept their session: {lost:?}"
    );
    if removed.is_empty() {
        assert_eq!(summary.sessions_lost, 0, "{summary}");
        assert!(lost.is_empty(), "lost: {lost:?}");
    }

    reconciler.stop().await;
    webhook.stop();
    sandbox.stop().await.expect("sandbox stops");
}

/// The new 4.4 nodes refuse every CONNECT: the clients of the first
/// drained node, refused there, trip the guard by `packets.connack.error`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_4_4_revision_that_refuses_connect_is_aborted_by_the_guard() {
    a_faulty_4_4_revision_is_aborted_by_the_guard("refuse-connect", "refused").await;
}

/// The new 4.4 nodes accept clients and drop them 20 ms later: no refusal,
/// but after the first old node's removal the live connections do not come
/// back within the window, and the second node waits and is never drained.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_4_4_revision_that_drops_clients_is_aborted_after_the_first_removal() {
    a_faulty_4_4_revision_is_aborted_by_the_guard("drop-after-connack=20", "before the upgrade")
        .await;
}
