//! Seed 000's v1beta4 `EmqxEnterprise` on the open-source 4.4 image, which
//! has no node evacuation (neither has Enterprise before 4.4.12, which the
//! webhook refuses as older than 4.4.14): `/api/v4/load_rebalance/…`
//! answers minirest 0.3.12's `404 text/plain "Not found."`. The reconciler
//! must read that as "no evacuation API" and take the documented fallback
//! (drain each old node `waitTakeover` seconds, one at a time) instead of
//! failing its observation on every pass and stalling the update.

#![allow(clippy::panic)]

mod seed_000;
mod support;

use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use kube::Api;
use kube::api::{Patch, PatchParams};
use seed_000::{NAME, Stage, create_running, current_version, is_running, manifest, running_nodes};
use serde_json::json;
use support::wait_for;

/// Open-source 4.4: no `load_rebalance` app.
const REPOSITORY: &str = "emqx/emqx";
const VERSION: &str = "4.4.19";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn enterprise_4_4_without_evacuation_takes_the_fallback() {
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
    let old_nodes = running_nodes(&created);
    let old_revision = current_version(&created).expect("currentStatefulSetVersion");
    let cluster = hook.cluster().expect("a node");
    assert!(
        cluster
            .summaries()
            .iter()
            .all(|m| m.version.to_string() == VERSION
                && m.edition == emqx_sim::Edition::Opensource),
        "the brokers must play open-source {VERSION}"
    );

    api.patch(
        NAME,
        &PatchParams::default(),
        &Patch::Merge(
            json!({"spec": {"template": {"spec": {"emqxContainer": {"name": "emqx-ee-a"}}}}}),
        ),
    )
    .await
    .expect("patch");

    // Without the fallback the observation fails on every pass and the
    // update never finishes; with it, three drains of waitTakeover (5 s).
    let done = wait_for(
        "Running on the new revision",
        Duration::from_secs(180),
        || {
            let (api, old_revision) = (api.clone(), old_revision.clone());
            async move {
                let e = api.get(NAME).await.map_err(|e| e.to_string())?;
                let revision = current_version(&e);
                if is_running(&e) && revision.is_some() && revision != Some(old_revision) {
                    Ok(e)
                } else {
                    Err(format!("{:?}", e.status))
                }
            }
        },
    )
    .await;
    let new_nodes = running_nodes(&done);
    assert_eq!(new_nodes.len(), 3, "{:?}", done.status);
    assert!(new_nodes.is_disjoint(&old_nodes));
    // No evacuation was ever started (the broker has none), and every old
    // node stopped.
    let members = cluster.summaries();
    for node in &old_nodes {
        assert!(
            cluster.evacuation_history(node).is_empty(),
            "{node} was evacuated on a broker without the API"
        );
        assert!(
            !members.iter().any(|m| &m.name == node && m.running),
            "{node} still running: {members:?}"
        );
    }
    for stop in cluster.stops() {
        assert_eq!(stop.evacuation, None, "{stop:?}");
    }
    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), "default");
    let old = sets
        .get(&format!("{NAME}-core-{old_revision}"))
        .await
        .expect("old set kept for history");
    assert_eq!(old.spec.and_then(|s| s.replicas), Some(0));

    reconciler.stop().await;
    webhook.stop();
    sandbox.stop().await.expect("sandbox stops");
}
