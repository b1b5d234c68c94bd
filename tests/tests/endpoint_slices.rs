//! The listeners Service through kube-controller-manager's EndpointSlices: a
//! terminating EMQX pod leaves the Service through its EndpointSlice (its
//! endpoint stays, `ready: false, serving: true, terminating: true`), and the
//! service proxy, following kube-proxy's rules, sends new MQTT connections
//! only to the ready core that remains. `publishNotReadyAddresses` makes a
//! not-ready pod an endpoint of the Service that asks for it, and of no other.

mod support;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::{Api, ResourceExt};
use sandbox::seed_003::{NAME, NAMESPACE, Seed003, listeners_endpoint};
use serde_json::json;
use support::{pod_ip, wait_for};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const LIMIT: Duration = Duration::from_secs(60);
/// Keeps the deleted pod's object, so it stays terminating while we look.
const HOLD: &str = "sandbox.emqx.io/hold";

/// `(ready, serving, terminating)` of `ip` in the listeners Service's slices.
async fn conditions_of(
    slices: &Api<EndpointSlice>,
    ip: IpAddr,
) -> Result<(bool, bool, bool), String> {
    conditions_in(slices, &format!("{NAME}-listeners"), ip).await
}

/// `(ready, serving, terminating)` of `ip` in the slices of `service`.
async fn conditions_in(
    slices: &Api<EndpointSlice>,
    service: &str,
    ip: IpAddr,
) -> Result<(bool, bool, bool), String> {
    let list = slices
        .list(&ListParams::default().labels(&format!("kubernetes.io/service-name={service}")))
        .await
        .map_err(|e| e.to_string())?;
    let endpoint = list
        .items
        .iter()
        .flat_map(|s| s.endpoints.iter())
        .find(|e| {
            e.addresses
                .iter()
                .any(|a| a.parse::<IpAddr>().ok() == Some(ip))
        })
        .ok_or_else(|| format!("{ip} in no EndpointSlice of {service}"))?;
    let c = endpoint.conditions.clone().unwrap_or_default();
    Ok((
        c.ready.unwrap_or(true),
        c.serving.unwrap_or(true),
        c.terminating.unwrap_or(false),
    ))
}

/// An MQTT 3.1.1 CONNECT as `client_id` through `service`; Ok once CONNACK
/// (accepted) arrives.
async fn mqtt_connect(
    service: SocketAddr,
    client_id: &str,
) -> Result<tokio::net::TcpStream, String> {
    let mut stream = tokio::time::timeout(
        Duration::from_secs(3),
        tokio::net::TcpStream::connect(service),
    )
    .await
    .map_err(|_| "connect timed out".to_owned())?
    .map_err(|e| e.to_string())?;
    let id = client_id.as_bytes();
    let mut packet = vec![
        0x10,
        u8::try_from(12 + id.len()).map_err(|e| e.to_string())?,
    ];
    packet.extend_from_slice(&[0, 4, b'M', b'Q', b'T', b'T', 4, 0x02, 0, 60]);
    packet.extend_from_slice(&[0, u8::try_from(id.len()).map_err(|e| e.to_string())?]);
    packet.extend_from_slice(id);
    stream.write_all(&packet).await.map_err(|e| e.to_string())?;
    let mut connack = [0u8; 4];
    tokio::time::timeout(Duration::from_secs(3), stream.read_exact(&mut connack))
        .await
        .map_err(|_| "no CONNACK within 3 s".to_owned())?
        .map_err(|e| format!("no CONNACK: {e}"))?;
    if connack == [0x20, 2, 0, 0] {
        Ok(stream)
    } else {
        Err(format!("CONNACK {connack:?}"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_terminating_emqx_pod_leaves_the_listeners_service_through_its_endpoint_slice() {
    let stage = support::ready(Seed003::new()).await;
    let client = stage.client.clone();
    let pods: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), NAMESPACE);
    let service = listeners_endpoint(&client, NAMESPACE, NAME)
        .await
        .expect("listeners Service");
    let cores = stage.pods().await.expect("pods");
    let leaving = cores
        .iter()
        .find(|p| p.name_any().ends_with("-1"))
        .expect("core 1");
    let staying = cores
        .iter()
        .find(|p| p.name_any().ends_with("-0"))
        .expect("core 0");
    let leaving_ip = IpAddr::V4(pod_ip(leaving).expect("core 1's IP"));
    let staying_ip = IpAddr::V4(pod_ip(staying).expect("core 0's IP"));

    // Both cores are ready endpoints, and new connections reach both.
    for ip in [leaving_ip, staying_ip] {
        wait_for(&format!("{ip} ready in the slice"), LIMIT, || {
            let slices = &slices;
            async move {
                match conditions_of(slices, ip).await? {
                    (true, true, false) => Ok(()),
                    other => Err(format!("{other:?}")),
                }
            }
        })
        .await;
    }
    let cluster = stage.cluster().expect("cluster");
    let nodes = stage.nodes();
    let node_of = |pod: &Pod| nodes.get(&pod.name_any()).cloned().expect("a node");
    let (leaving_node, staying_node) = (node_of(leaving), node_of(staying));
    let mut open = Vec::new();
    let mut reached = std::collections::BTreeSet::new();
    for i in 0..4 {
        let id = format!("before-{i}");
        open.push(mqtt_connect(service, &id).await.expect("connect before"));
        reached.insert(cluster.client_location(&id).expect("client known").0);
    }
    assert_eq!(
        reached,
        [leaving_node.clone(), staying_node.clone()].into(),
        "round robin over both ready cores"
    );
    drop(open);

    // Core 1 is deleted but held by a finalizer: its containers stop, its
    // object stays terminating, and its endpoint says so.
    pods.patch(
        &leaving.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&json!({"metadata": {"finalizers": [HOLD]}})),
    )
    .await
    .expect("finalizer added");
    pods.delete(&leaving.name_any(), &DeleteParams::default())
        .await
        .expect("core 1 deleted");
    wait_for("core 1 terminating in the slice", LIMIT, || {
        let slices = &slices;
        async move {
            match conditions_of(slices, leaving_ip).await? {
                (false, _, true) => Ok(()),
                other => Err(format!("{other:?}")),
            }
        }
    })
    .await;
    assert_eq!(
        conditions_of(&slices, staying_ip).await,
        Ok((true, true, false))
    );

    // New connections go to the ready core only (the stopped one would
    // refuse them).
    for i in 0..6 {
        let id = format!("after-{i}");
        let _stream = mqtt_connect(service, &id)
            .await
            .unwrap_or_else(|e| panic!("connection {i} after core 1 left: {e}"));
        assert_eq!(
            cluster.client_location(&id).map(|l| l.0),
            Some(staying_node.clone()),
            "connection {i}"
        );
    }

    pods.patch(
        &leaving.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&json!({"metadata": {"finalizers": null}})),
    )
    .await
    .expect("finalizer removed");
    stage.stop().await.expect("sandbox stops");
}

/// `publishNotReadyAddresses`: a pod that never gets Ready is an endpoint
/// of the Service that publishes not-ready addresses (the endpointslice
/// controller marks it ready) and of no other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_not_ready_addresses_reaches_a_pod_that_is_not_ready() {
    use k8s_openapi::api::core::v1::Service;
    use kube::api::PostParams;
    use sandbox::node::echo_hook::EchoHook;
    use sandbox::{Sandbox, SandboxOptions};

    support::init_tracing();
    let sandbox = Sandbox::start(SandboxOptions::default().hook(std::sync::Arc::new(EchoHook)))
        .await
        .expect("sandbox starts");
    let client = sandbox.client();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "never-ready", "labels": {"app": "echo"}},
        "spec": {"containers": [{
            "name": "echo", "image": "sandbox/echo:1",
            "ports": [{"name": "tcp", "containerPort": 7000}],
            // Nothing listens on 7001: the probe never passes.
            "readinessProbe": {"tcpSocket": {"port": 7001}, "periodSeconds": 1},
        }]},
    }))
    .expect("pod");
    pods.create(&PostParams::default(), &pod)
        .await
        .expect("pod created");
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    let mut addresses = Vec::new();
    for (name, publish) in [("published", true), ("ready-only", false)] {
        let service: Service = serde_json::from_value(json!({
            "metadata": {"name": name},
            "spec": {"selector": {"app": "echo"}, "publishNotReadyAddresses": publish,
                     "ports": [{"port": 80, "targetPort": "tcp"}]},
        }))
        .expect("service");
        let created = services
            .create(&PostParams::default(), &service)
            .await
            .expect("service created");
        let ip: std::net::Ipv4Addr = created
            .spec
            .and_then(|s| s.cluster_ip)
            .expect("ClusterIP")
            .parse()
            .expect("IPv4");
        addresses.push(SocketAddr::from((ip, 80)));
    }
    let reply = wait_for("an answer through the published Service", LIMIT, || {
        support::ask(addresses[0], "hello")
    })
    .await;
    assert_eq!(reply, "never-ready hello");
    let running = pods.get("never-ready").await.expect("pod");
    assert!(!support::is_ready(&running), "the pod became Ready");
    let ip = IpAddr::V4(pod_ip(&running).expect("pod IP"));
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), "default");
    assert_eq!(
        conditions_in(&slices, "published", ip).await,
        Ok((true, false, false)),
        "the controller marks a published not-ready endpoint ready"
    );
    wait_for(
        "the not-ready endpoint in ready-only's slice",
        LIMIT,
        || {
            let slices = &slices;
            async move {
                match conditions_in(slices, "ready-only", ip).await? {
                    (false, false, false) => Ok(()),
                    other => Err(format!("{other:?}")),
                }
            }
        },
    )
    .await;
    assert!(
        support::ask(addresses[1], "hello").await.is_err(),
        "the Service without publishNotReadyAddresses reached a not-ready pod"
    );
    sandbox.stop().await.expect("sandbox stops");
}
