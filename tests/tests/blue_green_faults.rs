//! EMQX's REST API misbehaves in the middle of a blue-green upgrade: first
//! every write answers 500 (the evacuation cannot start), then every request
//! answers 500, then every request stalls 10 s (longer than the reconciler's
//! 5 s timeout). While that lasts no old node may be removed, and the
//! object's conditions must say why the upgrade waits, naming the node and
//! the error. Once the API answers again the upgrade completes as if nothing
//! happened.

#![allow(clippy::panic, clippy::unwrap_used)]

mod support;
mod upgrade;

use std::time::Duration;

use sandbox::seed_003::{NAME, Pace, Seed003, Stage, load};
use tokio::time::Instant;
use upgrade::Recorder;

/// How long each fault lasts.
const FAULT: Duration = Duration::from_secs(12);
/// A pass that started just before a fault may still act on what it saw.
const GRACE: Duration = Duration::from_secs(3);

fn set_faults(stage: &Stage, http_500: bool, delay: Duration) {
    for node in stage.hook.nodes().values() {
        node.faults.set_http_500(http_500);
        node.faults.set_http_delay(delay);
    }
}

fn set_write_faults(stage: &Stage, on: bool) {
    for node in stage.hook.nodes().values() {
        node.faults.set_http_500_on_writes(on);
    }
}

/// Waits up to `timeout` for a condition the recorder saw.
async fn wait_condition(
    recorder: &Recorder,
    what: &str,
    timeout: Duration,
    f: impl Fn(&str, &str, &str, &str) -> bool,
) {
    let deadline = Instant::now() + timeout;
    while !recorder.with(|s| s.any_condition(&f)) {
        if Instant::now() > deadline {
            let all = recorder.with(|s| format!("{:#?}", s.conditions));
            panic!("no condition {what} within {timeout:?}; seen: {all}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn api_500s_and_stalls_hold_the_upgrade_and_are_explained() {
    const CLIENTS: usize = 30;
    let pace = Pace {
        initial_delay_s: 2,
        wait_takeover_s: 2,
        conn_evict_rate: 5,
        sess_evict_rate: 5,
    };
    let mut stage = support::ready(Seed003::new().cores(2).pace(pace).clients(
        load(CLIENTS, 100, Duration::from_secs(240)),
        Duration::from_secs(60),
    ))
    .await;
    let old_revision = stage.revision.clone();
    let old_set = format!("{}-core-{old_revision}", NAME);
    let old_nodes = stage.nodes();
    let load = stage.load.take().expect("clients");
    let cluster = stage.cluster().expect("a running EMQX node");

    let recorder = Recorder::start(&stage);
    let t0 = Instant::now();
    stage.patch_image_pull_policy().await.expect("patch");

    // 0. As soon as the new nodes run (well before they are ready and the
    // initial delay passed), every write fails: the evacuation cannot start.
    support::wait_for("the new nodes", Duration::from_secs(60), || async {
        let running = stage.hook.nodes().len();
        if running >= 2 * old_nodes.len() {
            Ok(())
        } else {
            Err(format!("{running} nodes"))
        }
    })
    .await;
    set_write_faults(&stage, true);
    let fault_writes = Instant::now();
    wait_condition(
        &recorder,
        "explaining the refused evacuation start",
        Duration::from_secs(30),
        |type_, status, reason, message| {
            type_ == "Ready"
                && status == "False"
                && reason == "EmqxApiError"
                && message.contains("starting the evacuation of node emqx@")
                && message.contains("HTTP 500")
        },
    )
    .await;
    tokio::time::sleep_until(fault_writes + Duration::from_secs(8)).await;
    for node in old_nodes.values() {
        assert!(
            cluster.evacuation_history(node).is_empty(),
            "{node} evacuated although every start was refused"
        );
    }
    set_write_faults(&stage, false);

    // Strike again once the first old node is being evacuated.
    support::wait_for("the first evacuation", Duration::from_secs(90), || async {
        let started = old_nodes
            .values()
            .any(|n| !cluster.evacuation_history(n).is_empty());
        if started {
            Ok(())
        } else {
            Err("none yet".into())
        }
    })
    .await;

    // 1. Every node's API answers 500.
    set_faults(&stage, true, Duration::ZERO);
    let fault_500 = Instant::now();
    wait_condition(
        &recorder,
        "explaining the 500s",
        FAULT,
        |type_, status, reason, message| {
            type_ == "Ready"
                && status == "False"
                && reason == "EmqxApiUnavailable"
                && message.contains("HTTP 500")
                && message.contains("emqx@")
        },
    )
    .await;
    tokio::time::sleep_until(fault_500 + FAULT).await;

    // 2. Every request stalls 10 s, twice the reconciler's timeout.
    set_faults(&stage, false, Duration::from_secs(10));
    let fault_stall = Instant::now();
    wait_condition(
        &recorder,
        "explaining the stall",
        FAULT + Duration::from_secs(10),
        |type_, status, reason, message| {
            type_ == "Ready"
                && status == "False"
                && reason == "EmqxApiUnavailable"
                && message.contains("timed out")
                && message.contains("emqx@")
        },
    )
    .await;
    tokio::time::sleep_until(fault_stall + FAULT.max(Duration::from_secs(15))).await;
    set_faults(&stage, false, Duration::ZERO);
    let cleared = Instant::now();

    // No old node left while the API could not confirm its evacuation.
    let removed_during_faults: Vec<_> = recorder.with(|s| {
        s.scale_downs
            .iter()
            .filter(|d| d.set == old_set && d.seen > fault_500 + GRACE && d.seen < cleared)
            .cloned()
            .collect()
    });
    assert!(
        removed_during_faults.is_empty(),
        "old nodes removed while EMQX's API failed: {removed_during_faults:?}"
    );

    stage
        .wait_ready(Some(old_revision.as_str()), Duration::from_secs(120))
        .await
        .expect("EMQX Ready");
    eprintln!(
        "upgrade done {:.1}s after the patch, {:.1}s after the faults cleared",
        t0.elapsed().as_secs_f32(),
        cleared.elapsed().as_secs_f32()
    );
    assert!(
        load.wait_all_connected(Duration::from_secs(60)).await,
        "clients did not all come back: {:?}",
        load.progress()
    );
    let report = load.finish(Duration::from_secs(20)).await;
    let summary = mqtt_load::recorder::Summary::of(&report);
    assert!(
        summary.disconnect_histogram.len() <= 2,
        "a client was disconnected more than once: {summary}"
    );
    assert_eq!(summary.sessions_lost, 0, "{summary}");
    assert!(report.lost().is_empty(), "lost: {:?}", report.lost());

    let seen = recorder.finish().await;
    upgrade::print_evidence(&cluster, &old_nodes, t0);
    upgrade::assert_orderly(&cluster, &old_set, &old_nodes, pace, &seen);
    upgrade::assert_old_set_at_zero(&stage, &old_set).await;
    stage.stop().await.expect("sandbox stops");
}
