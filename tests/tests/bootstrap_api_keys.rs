//! User API keys through the reconciler to EMQX: an inline key and one
//! given by `secretRef` both work on the running cluster, next to the
//! operator's own key. A referenced secret EMQX would misread (`pa:ss` is
//! secret `pa`, role `ss`, and stops the file) is refused with an Event
//! naming the field before anything is created; once the Secret is fixed,
//! the cluster comes up. `node.cookie` in `spec.config.data` becomes the
//! cluster's cookie.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::events::v1::Event;
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use sandbox::seed_003::{NAMESPACE, READY_LIMIT, Seed003};
use serde_json::json;
use support::{pod_ip, wait_for};

const USER_SECRET: &str = "user-api-key";

fn user_secret(secret: &str) -> Secret {
    Secret {
        metadata: kube::api::ObjectMeta {
            name: Some(USER_SECRET.into()),
            ..Default::default()
        },
        data: Some(BTreeMap::from([
            ("key".to_string(), ByteString(b"from_secret".to_vec())),
            ("secret".to_string(), ByteString(secret.as_bytes().to_vec())),
        ])),
        ..Default::default()
    }
}

/// Status of `GET /api/v5/nodes` on `ip` as `key:secret`.
async fn status_as(ip: std::net::Ipv4Addr, key: &str, secret: &str) -> u16 {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client")
        .get(format!("http://{ip}:18083/api/v5/nodes"))
        .basic_auth(key, Some(secret))
        .send()
        .await
        .expect("send")
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn inline_and_secret_ref_keys_reach_emqx() {
    let stage = support::stage(Seed003::new().cores(1).merge(json!({"spec": {
        // One core: EMQX 6's single-node licence needs no key (and seed 003's
        // elided `key = "..."` is no key EMQX would boot with).
        "config": {"data": "node {\n  cookie = \"user-chosen-cookie\"\n}\n"},
        "bootstrapAPIKeys": [
            {"key": "inline_user", "secret": "inl1ne-secret"},
            {"secretRef": {
                "key": {"secretName": USER_SECRET, "secretKey": "key"},
                "secret": {"secretName": USER_SECRET, "secretKey": "secret"}
            }}
        ]
    }})))
    .await;
    let client = stage.client.clone();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), NAMESPACE);
    secrets
        .create(&PostParams::default(), &user_secret("pa:ss"))
        .await
        .expect("user Secret");
    stage.create().await.expect("EMQX object");

    // Refused, with the field named, and nothing created.
    let events: Api<Event> = Api::namespaced(client.clone(), NAMESPACE);
    let note = wait_for(
        "InvalidBootstrapAPIKey",
        Duration::from_secs(60),
        || async {
            let list = events
                .list(&ListParams::default())
                .await
                .map_err(|e| e.to_string())?;
            list.items
                .into_iter()
                .find(|e| e.reason.as_deref() == Some("InvalidBootstrapAPIKey"))
                .and_then(|e| e.note)
                .ok_or_else(|| "no such Event yet".to_string())
        },
    )
    .await;
    assert!(
        note.contains("spec.bootstrapAPIKeys[1].secretRef.secret") && note.contains(USER_SECRET),
        "{note}"
    );
    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), NAMESPACE);
    assert!(
        sets.list(&ListParams::default())
            .await
            .expect("sets")
            .items
            .is_empty()
    );

    // Fixed: the next pass writes the file and the cluster comes up.
    secrets
        .patch(
            USER_SECRET,
            &PatchParams::default(),
            &Patch::Merge(json!({"stringData": {"secret": "s3cret-from-secret"}})),
        )
        .await
        .expect("fix the Secret");
    stage.wait_ready(None, READY_LIMIT).await.expect("Ready");

    let pods = stage.pods().await.expect("pods");
    let ip = pods.iter().find_map(pod_ip).expect("a core pod IP");
    let file = secrets
        .get("emqx-ee-bootstrap-api-key")
        .await
        .expect("bootstrap Secret")
        .data
        .and_then(|d| d.get("bootstrap_api_key").cloned())
        .map(|b| String::from_utf8_lossy(&b.0).into_owned())
        .expect("bootstrap file");
    let operator = file
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("emqx-operator-controller:"))
        .expect("the operator's key is the first line");
    assert_eq!(
        status_as(ip, "emqx-operator-controller", operator).await,
        200
    );
    assert_eq!(status_as(ip, "inline_user", "inl1ne-secret").await, 200);
    assert_eq!(
        status_as(ip, "from_secret", "s3cret-from-secret").await,
        200
    );
    assert_eq!(status_as(ip, "from_secret", "wrong").await, 401);

    // node.cookie from spec.config.data became the cluster's cookie, as the
    // Go operator does.
    let cookie = secrets
        .get("emqx-ee-node-cookie")
        .await
        .expect("cookie Secret")
        .data
        .and_then(|d| d.get("node_cookie").cloned())
        .expect("node_cookie");
    assert_eq!(String::from_utf8_lossy(&cookie.0), "user-chosen-cookie");
}
