//! EMQX 6 without a licence key: one node runs, but a blue-green's new node
//! joins the old one and shuts down (SINGLE_NODE_LICENSE, EMQX's
//! `emqx_license_app.erl` at 6.0.1/6.2.2, played by `emqx_sim::licence`),
//! its pod restarting again and again. The upgrade cannot finish, and the
//! object's conditions must say why, naming the node, instead of a bare
//! "waiting for new nodes"; the old node keeps serving, and `kubectl logs
//! --previous` shows the new node's last instance.

#![allow(clippy::panic, clippy::unwrap_used)]

mod support;

use std::time::Duration;

use sandbox::operator::chart::run;
use sandbox::seed_003::{NAME, NAMESPACE, Seed003};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn new_nodes_dying_of_the_single_node_licence_are_named() {
    // The seed without its licence: one core runs on the default licence.
    let stage = support::ready(
        Seed003::new()
            .cores(1)
            .merge(json!({"spec": {"config": {"data": "# no license.key\n"}}})),
    )
    .await;
    let old_nodes = stage.nodes();
    stage.patch_image_pull_policy().await.expect("patch");

    let found = stage
        .wait_object(
            "a condition naming the licence",
            Duration::from_secs(120),
            |emqx| {
                let conditions = emqx
                    .status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .cloned()
                    .unwrap_or_default();
                conditions
                    .iter()
                    .find(|c| c.reason == "LicenseNodeLimit")
                    .map(|c| c.message.clone())
                    .ok_or_else(|| {
                        conditions
                            .iter()
                            .map(|c| {
                                format!("{} {} {}: {}", c.type_, c.status, c.reason, c.message)
                            })
                            .collect::<Vec<_>>()
                            .join("\n")
                    })
            },
        )
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert!(found.contains("SINGLE_NODE_LICENSE"), "{found}");
    assert!(found.contains("license.key"), "{found}");
    let named: Vec<&str> = found
        .split(['(', ')', ',', ' '])
        .filter(|w| w.starts_with("emqx@"))
        .collect();
    assert!(!named.is_empty(), "no node named: {found}");
    for node in named {
        assert!(
            !old_nodes.values().any(|old| old == node),
            "blamed the old node {node}: {found}"
        );
    }
    // `kubectl logs --previous` of a new pod: the instance that booted,
    // joined and was shut down.
    let new_pod = stage
        .pods()
        .await
        .expect("pods")
        .into_iter()
        .filter_map(|p| p.metadata.name)
        .find(|name| !old_nodes.contains_key(name))
        .expect("a new pod");
    let previous = support::wait_for(
        "the previous instance's log",
        Duration::from_secs(60),
        || async {
            let mut kubectl = stage.sandbox.kubectl();
            kubectl.args(["logs", "-n", NAMESPACE, &new_pod, "--previous"]);
            let out = run(kubectl, None, Duration::from_secs(30))
                .await
                .map_err(|e| format!("{e:#}"))?;
            if out.success {
                Ok(out.stdout)
            } else {
                Err(out.stderr)
            }
        },
    )
    .await;
    assert!(previous.contains(" is running now!\n"), "{previous}");
    // The old node still runs: nothing was taken from the clients.
    let running = stage.nodes();
    for (pod, node) in &old_nodes {
        assert_eq!(running.get(pod), Some(node), "{pod} stopped");
    }
    let emqx = stage.api.get(NAME).await.expect("object");
    let ready = emqx
        .status
        .and_then(|s| s.conditions)
        .unwrap_or_default()
        .into_iter()
        .find(|c| c.type_ == "Ready");
    assert_eq!(ready.map(|c| c.status).as_deref(), Some("False"));
}
