//! Answers as EMQX gives them (docs/emqx-api.md §3–§8), and hostile ones.

use super::*;
use proptest::prelude::{ProptestConfig, any, proptest};

const STRATEGY: Strategy = Strategy {
    initial_delay_s: 10,
    wait_takeover_s: 10,
    conn_evict_rate: 200,
    sess_evict_rate: 100,
};

#[test]
fn paths_name_the_node_and_cannot_be_bent() {
    assert_eq!(
        evacuation_path(
            ApiGeneration::V5,
            "emqx@emqx-core-a-0.emqx-headless.default.svc.cluster.local",
            "start"
        ),
        "/api/v5/load_rebalance/emqx@emqx-core-a-0.emqx-headless.default.svc.cluster.local/evacuation/start"
    );
    assert_eq!(
        evacuation_path(ApiGeneration::V4, "emqx-ee@10.0.0.1", "stop"),
        "/api/v4/load_rebalance/emqx-ee@10.0.0.1/evacuation/stop"
    );
    assert_eq!(
        force_leave_path("a/../b?x"),
        "/api/v5/cluster/a%2F..%2Fb%3Fx/force_leave"
    );
}

#[test]
fn the_start_body_carries_the_configured_rates() {
    let to = vec!["emqx@b-0".to_string(), "emqx@b-1".to_string()];
    let body = evacuation_start_body(ApiGeneration::V5, &STRATEGY, &to, true);
    assert_eq!(
        body,
        json!({"conn_evict_rate":200,"sess_evict_rate":100,"migrate_to":["emqx@b-0","emqx@b-1"],
               "wait_takeover":10,"wait_health_check":0})
    );
    // wait_takeover only when > 0; no wait_health_check for brokers that reject it.
    let zero = Strategy {
        wait_takeover_s: 0,
        ..STRATEGY
    };
    let body = evacuation_start_body(ApiGeneration::V5, &zero, &to, false);
    assert!(body.get("wait_takeover").is_none() && body.get("wait_health_check").is_none());
    let body = evacuation_start_body(ApiGeneration::V4, &STRATEGY, &to, true);
    assert!(body.get("wait_health_check").is_none());
}

#[test]
fn wait_health_check_exists_from_5_1() {
    for (v, known) in [
        ("5.8.9", true),
        ("e5.1.0", true),
        ("6.0.1", true),
        ("e5.0.4", false),
        ("5.0.26", false),
        ("4.4.14", false),
        ("latest", false),
        ("", false),
    ] {
        assert_eq!(knows_wait_health_check(v), known, "{v}");
    }
}

#[test]
fn the_serving_node_decides_wait_health_check() {
    let v5 = br#"[{"node":"emqx@a","node_status":"running","version":"5.8.9"},
        {"node":"emqx@b","node_status":"running","version":"5.0.4"},
        {"node":"emqx@c","node_status":"stopped","role":"core"}]"#;
    let listed = nodes(ApiGeneration::V5, 200, v5).expect("parses");
    // The first listed node knows the field; the node asked does not.
    assert_eq!(version_of(&listed, "emqx@b").as_deref(), Some("5.0.4"));
    assert!(!version_of(&listed, "emqx@b").is_some_and(|v| knows_wait_health_check(&v)));
    assert_eq!(version_of(&listed, "emqx@a").as_deref(), Some("5.8.9"));
    assert_eq!(version_of(&listed, "emqx@c"), None);
    assert_eq!(version_of(&listed, "emqx@z"), None);
}

#[test]
fn start_answers_are_told_apart() {
    let v5 = ApiGeneration::V5;
    assert_eq!(start_outcome(v5, 200, b"{}"), Ok(StartOutcome::Started));
    let already =
        br#"{"code":"BAD_REQUEST","message":"error on node 'emqx@10.0.0.1': already_started"}"#;
    assert_eq!(
        start_outcome(v5, 400, already),
        Ok(StartOutcome::AlreadyRunning)
    );
    let missing = br#"{"code":"NOT_FOUND","message":"Node not found: emqx@nope"}"#;
    assert!(matches!(
        start_outcome(v5, 404, missing),
        Err(EmqxError::NodeNotFound(_))
    ));
    let no_api = br#"{"code":"NOT_FOUND","message":"Request Path Not Found"}"#;
    assert!(matches!(
        start_outcome(v5, 404, no_api),
        Err(EmqxError::EvacuationUnsupported(_))
    ));
    let old_no_api = br#"{"code":"API_NOT_EXIST","message":"Request Path Not Found"}"#;
    assert!(matches!(
        start_outcome(v5, 404, old_no_api),
        Err(EmqxError::EvacuationUnsupported(_))
    ));
    let html = b"<html><body><h1>404 - NOT FOUND</h1></body></html>";
    assert!(matches!(
        start_outcome(v5, 404, html),
        Err(EmqxError::EvacuationUnsupported(_))
    ));
    // EMQX 4.4 without evacuation (minirest 0.3.12): plain text, not JSON.
    assert!(matches!(
        start_outcome(ApiGeneration::V4, 404, b"Not found."),
        Err(EmqxError::EvacuationUnsupported(_))
    ));
    assert!(matches!(
        global_evacuations::<Value>(ApiGeneration::V4, 404, b"Not found."),
        Err(EmqxError::EvacuationUnsupported(_))
    ));
    // …but a node the 4.4 API does not know is not a missing API.
    let v4_missing = br#"{"code":102,"message":"Node not found: emqx@nope"}"#;
    assert!(matches!(
        start_outcome(ApiGeneration::V4, 404, v4_missing),
        Err(EmqxError::NodeNotFound(_))
    ));
    let unavailable = br#"{"code":"NOT_FOUND","message":"Nodes unavailable: ['emqx@10.0.0.9']"}"#;
    assert!(matches!(
        start_outcome(v5, 400, unavailable),
        Err(EmqxError::Api { status: 400, code, .. }) if code == "NOT_FOUND"
    ));
    let key = br#"{"code":"BAD_API_KEY_OR_SECRET","message":"Check api_key/api_secret"}"#;
    assert!(matches!(
        start_outcome(v5, 401, key),
        Err(EmqxError::Unauthorized(_))
    ));
    assert!(matches!(
        start_outcome(v5, 500, b""),
        Err(EmqxError::Api { status: 500, .. })
    ));
}

#[test]
fn the_4_4_envelope_is_checked() {
    let v4 = ApiGeneration::V4;
    assert_eq!(
        start_outcome(v4, 200, br#"{"data":[],"code":0}"#),
        Ok(StartOutcome::Started)
    );
    assert!(matches!(
        start_outcome(v4, 200, br#"{"code":102,"message":"unknown"}"#),
        Err(EmqxError::Api { code, .. }) if code == "102"
    ));
    assert!(matches!(
        start_outcome(v4, 200, b"ok"),
        Err(EmqxError::Malformed { .. })
    ));
    assert!(matches!(
        start_outcome(v4, 200, b"{}"),
        Err(EmqxError::Malformed { .. })
    ));
}

#[test]
fn stop_and_force_leave_are_idempotent() {
    let v5 = ApiGeneration::V5;
    assert_eq!(stop_outcome(v5, 200, b"{}"), Ok(StopOutcome::Stopped));
    let not_started = br#"{"code":"BAD_REQUEST","message":"error on node 'emqx@a': not_started"}"#;
    assert_eq!(
        stop_outcome(v5, 400, not_started),
        Ok(StopOutcome::NotRunning)
    );
    assert_eq!(force_leave_outcome(204, b""), Ok(()));
    // EMQX's "already gone" is this 400, and only this one.
    let gone = br#"{"code":"BAD_REQUEST","message":"node_not_in_cluster"}"#;
    assert_eq!(force_leave_outcome(400, gone), Ok(()));
    let own = br#"{"code":"BAD_REQUEST","message":"Can't leave self"}"#;
    assert!(force_leave_outcome(400, own).is_err());
    let rpc = br#"{"code":"BAD_REQUEST","message":"{badrpc,nodedown}"}"#;
    assert!(force_leave_outcome(400, rpc).is_err());
    let other_code = br#"{"code":"NOT_FOUND","message":"node_not_in_cluster"}"#;
    assert!(force_leave_outcome(400, other_code).is_err());
    // No EMQX release answers force_leave with 404; one is not "done".
    let missing = br#"{"code":"NOT_FOUND","message":"Node not found: emqx@a"}"#;
    assert!(force_leave_outcome(404, missing).is_err());
}

#[test]
fn nodes_parse_in_both_generations() {
    let v5 =
        br#"[{"node":"emqx@a","node_status":"running","version":"5.8.9","edition":"Enterprise",
        "role":"core","connections":12,"live_connections":10,"uptime":1000,"load1":0.5},
        {"node":"emqx@b","node_status":"stopped","role":"core"}]"#;
    let nodes = nodes(ApiGeneration::V5, 200, v5).expect("parses");
    assert_eq!(
        members(&nodes),
        vec![
            Member {
                node: "emqx@a".into(),
                running: true
            },
            Member {
                node: "emqx@b".into(),
                running: false
            },
        ]
    );
    let v4 = br#"{"code":0,"data":[{"node":"emqx-ee@x","node_status":"Running","otp_release":"24","version":"4.4.14","connections":3}]}"#;
    let nodes = super::nodes(ApiGeneration::V4, 200, v4).expect("parses");
    assert!(nodes[0].is_running());
    assert_eq!(nodes[0].connections, Some(3));
}

#[derive(Debug, Deserialize, PartialEq)]
struct Entry {
    node: String,
    state: String,
}

#[test]
fn global_status_yields_the_evacuations() {
    let body = br#"{"evacuations":[{"node":"emqx@a","state":"waiting_takeover","connection_eviction_rate":100,
        "session_eviction_rate":100,"connection_goal":0,"session_goal":0,"session_recipients":["emqx@b"],
        "stats":{"initial_connected":100,"current_connected":0,"initial_sessions":100,"current_sessions":100}}],
        "purges":[],"rebalances":[]}"#;
    let entries: Vec<Entry> = global_evacuations(ApiGeneration::V5, 200, body).expect("parses");
    assert_eq!(
        entries,
        vec![Entry {
            node: "emqx@a".into(),
            state: "waiting_takeover".into()
        }]
    );
    assert_eq!(
        evacuation_state(&entries[0].state),
        Ok(EvacuationState::WaitingTakeover)
    );
    let v4: Vec<Entry> = global_evacuations(
        ApiGeneration::V4,
        200,
        br#"{"rebalances":[],"evacuations":[]}"#,
    )
    .expect("parses");
    assert!(v4.is_empty());
}

#[test]
fn hostile_answers_are_errors() {
    let cases: [&[u8]; 7] = [
        b"",
        b"{",
        b"null",
        br#"{"evacuations":"all of them"}"#,
        br#"{"evacuations":[{"node":7}]}"#,
        br#"[{"node":"a","connections":1e400}]"#,
        b"\xff\xfe\x00garbage",
    ];
    for body in cases {
        assert!(
            global_evacuations::<Entry>(ApiGeneration::V5, 200, body).is_err(),
            "{body:?}"
        );
    }
    assert!(nodes(ApiGeneration::V5, 200, br#"[{"node_status":"running"}]"#).is_err());
    assert!(nodes(ApiGeneration::V5, 200, br#"{"node":"a"}"#).is_err());
    assert!(evacuation_state("teleporting").is_err());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn no_answer_makes_a_parser_panic(status in 100u16..600, body in proptest::collection::vec(any::<u8>(), 0..256)) {
        for api in [ApiGeneration::V4, ApiGeneration::V5] {
            let _ = start_outcome(api, status, &body);
            let _ = stop_outcome(api, status, &body);
            let _ = nodes(api, status, &body);
            let _ = global_evacuations::<Entry>(api, status, &body);
        }
        let _ = force_leave_outcome(status, &body);
    }
}

#[test]
fn connack_errors_per_node_in_both_generations() {
    // 5.x: one map per node, `node` first; a node whose RPC failed is
    // `{node, reason}` and is left out.
    let v5 = br#"[{"node":"emqx@a","packets.connack.error":7,"packets.connack.sent":9},
                 {"node":"emqx@b","reason":"timeout"}]"#;
    let got = connack_errors(ApiGeneration::V5, 200, v5).expect("parsed");
    assert_eq!(
        got.into_iter().collect::<Vec<_>>(),
        [("emqx@a".to_owned(), 7)]
    );
    // 4.4: `{code, data: [{node, metrics}]}`.
    let v4 = br#"{"code":0,"data":[{"node":"emqx@a","metrics":{"packets.connack.error":3}}]}"#;
    let got = connack_errors(ApiGeneration::V4, 200, v4).expect("parsed");
    assert_eq!(got.get("emqx@a"), Some(&3));
    assert!(connack_errors(ApiGeneration::V5, 200, br#"{"x":1}"#).is_err());
    assert!(connack_errors(ApiGeneration::V5, 500, b"{}").is_err());
}

#[test]
fn live_connections_of_4_4_are_summed_from_stats() {
    // `{code, data: [#{node, stats}]}`, as `emqx_mgmt_api_stats.erl` v4.4.19
    // answers: `live_connections.count`, not `connections.count` (which
    // also counts sessions whose client is gone).
    let body = br#"{"code":0,"data":[
        {"node":"emqx@a","stats":{"connections.count":50,"live_connections.count":30}},
        {"node":"emqx@b","stats":{"connections.count":20,"live_connections.count":12}}]}"#;
    assert_eq!(live_connections_v4(200, body).expect("parsed"), Some(42));
    // A broker whose stats have no such figure: said, not guessed as 0.
    let older = br#"{"code":0,"data":[{"node":"emqx@a","stats":{"connections.count":50}}]}"#;
    assert_eq!(live_connections_v4(200, older).expect("parsed"), None);
    for bad in [
        &br#"{"code":0,"data":{"x":1}}"#[..],
        br#"{"code":0,"data":[{"node":"emqx@a"}]}"#,
        br#"{"code":0,"data":[{"node":"emqx@a","stats":{"live_connections.count":"7"}}]}"#,
        br#"{"code":102,"message":"badrpc"}"#,
    ] {
        assert!(live_connections_v4(200, bad).is_err(), "{bad:?}");
    }
    assert!(live_connections_v4(500, b"{}").is_err());
}
