//! A blue-green upgrade of an open-source EMQX 5.8 cluster, whose brokers
//! have no node-evacuation API (`/api/v5/load_rebalance/*` answers 404).
//! The reconciler must take the documented fallback: move the Service, let
//! each old node go `waitTakeover` seconds after its drain started, one at a
//! time, and say in a condition that evacuation was unavailable and the
//! fallback was used. Clients reconnect to the new nodes.

#![allow(clippy::panic, clippy::unwrap_used)]

mod support;
mod upgrade;

use std::time::{Duration, SystemTime};

use k8s_openapi::api::events::v1::Event;
use kube::Api;
use kube::api::ListParams;
use sandbox::seed_003::{NAME, Pace, Seed003, condition, load};
use tokio::time::Instant;
use upgrade::Recorder;

/// Open source, before the single edition of 5.9: no evacuation API.
const OPEN_SOURCE_IMAGE: &str = "emqx/emqx:5.8.9";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn open_source_brokers_are_drained_by_the_documented_fallback() {
    const CLIENTS: usize = 20;
    let pace = Pace {
        initial_delay_s: 2,
        wait_takeover_s: 4,
        conn_evict_rate: 5,
        sess_evict_rate: 5,
    };
    let mut stage = support::ready(
        Seed003::new()
            .cores(2)
            .pace(pace)
            .image(OPEN_SOURCE_IMAGE)
            .clients(
                load(CLIENTS, 100, Duration::from_secs(180)),
                Duration::from_secs(60),
            ),
    )
    .await;
    let old_revision = stage.revision.clone();
    let old_set = format!("{}-core-{old_revision}", NAME);
    let old_nodes = stage.nodes();
    let cluster = stage.cluster().expect("a running EMQX node");
    assert!(
        cluster
            .summaries()
            .iter()
            .all(|m| m.edition == emqx_sim::Edition::Opensource),
        "{OPEN_SOURCE_IMAGE} must play the open-source edition"
    );
    let load = stage.load.take().expect("clients");

    let recorder = Recorder::start(&stage);
    let t0 = Instant::now();
    stage.patch_image_pull_policy().await.expect("patch");
    let done = stage
        .wait_ready(Some(old_revision.as_str()), Duration::from_secs(150))
        .await
        .expect("EMQX Ready");
    eprintln!("upgrade done after {:.1}s", t0.elapsed().as_secs_f32());
    assert!(
        load.wait_all_connected(Duration::from_secs(60)).await,
        "clients did not all come back: {:?}",
        load.progress()
    );
    let _ = load.finish(Duration::from_secs(10)).await;
    let seen = recorder.finish().await;

    // The conditions said so: no evacuation API, and the fallback drained.
    let unsupported =
        condition(&done, "EvacuationUnsupported").map(|c| (c.status, c.reason, c.message));
    assert!(
        matches!(&unsupported, Some((s, r, m)) if s == "True" && r == "NoEvacuationApi" && m.contains("waitTakeover")),
        "{unsupported:?}"
    );
    for node in old_nodes.values() {
        assert!(
            seen.any_condition(|t, s, r, m| t == "Ready"
                && s == "False"
                && r == "DrainingWithoutEvacuation"
                && m.contains(node.as_str())
                && m.contains("no node-evacuation API")),
            "no condition told of the fallback drain of {node}: {:#?}",
            seen.conditions
        );
        assert!(
            cluster.evacuation_history(node).is_empty(),
            "{node} has no evacuation API yet was evacuated"
        );
    }

    // One node at a time, each waitTakeover after the Service moved or the
    // previous one left (the drain clock counts whole seconds, hence -1 s).
    let events: Api<Event> = Api::namespaced(stage.sandbox.client(), "default");
    let events = events
        .list(&ListParams::default())
        .await
        .expect("events")
        .items;
    let first_at = |reason: &str| {
        events
            .iter()
            .filter(|e| e.reason.as_deref() == Some(reason))
            .filter_map(|e| e.event_time.as_ref().map(|t| t.0))
            .min()
    };
    let switched = first_at("SwitchTraffic").expect("a SwitchTraffic event");
    // (The event recorder folds repeats of one reason into a series, so the
    // per-node evidence is the conditions above, not the event count.)
    assert!(
        first_at("DrainWithoutEvacuation").is_some(),
        "no DrainWithoutEvacuation event"
    );
    let downs: Vec<_> = seen
        .scale_downs
        .iter()
        .filter(|d| d.set == old_set)
        .collect();
    assert_eq!(downs.len(), old_nodes.len(), "{downs:?}");
    let min_gap = Duration::from_secs(u64::from(pace.wait_takeover_s) - 1);
    let switched_wall = SystemTime::UNIX_EPOCH
        + Duration::from_micros(u64::try_from(switched.as_microsecond()).unwrap_or(0));
    let mut previous = switched_wall;
    for down in &downs {
        let gap = down.seen_wall.duration_since(previous).unwrap_or_default();
        assert!(
            gap >= min_gap,
            "{} scaled {} → {} only {gap:?} after the previous step",
            down.set,
            down.from,
            down.to
        );
        previous = down.seen_wall;
    }
    // Stopped without an evacuation, which the broker cannot do.
    for stop in cluster.stops() {
        assert_eq!(stop.evacuation, None, "{stop:?}");
    }
    upgrade::assert_force_left(&cluster, &old_nodes);
    upgrade::assert_old_set_at_zero(&stage, &old_set).await;
    stage.stop().await.expect("sandbox stops");
}
