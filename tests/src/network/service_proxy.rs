//! kube-proxy's job on loopback: every Service with a ClusterIP gets a TCP
//! listener on each `ClusterIP:port`, and each new connection goes, round
//! robin, to an endpoint of that Service port as its EndpointSlices (written
//! by kube-controller-manager's endpointslice controller) say *at that
//! moment*; the connection is then spliced and left alone, so a change of
//! endpoints never moves or cuts it. Only loopback addresses are ever bound
//! or dialled.
//!
//! Which endpoints take new connections is kube-proxy's rule (Kubernetes
//! v1.35.4, `pkg/proxy/endpointslicecache.go` and `CategorizeEndpoints` in
//! `pkg/proxy/topology.go`, cluster traffic policy): the ready ones; when
//! none is ready, the serving-and-terminating ones; else the connection is
//! refused. A missing `ready` or `serving` condition counts as true, a
//! missing `terminating` as false. `publishNotReadyAddresses` needs nothing
//! here: the endpointslice controller then marks every endpoint ready.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::WatchStreamExt;
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher::{self, Event};
use kube::{Api, ResourceExt};
use tokio::net::{TcpListener, TcpStream};

use crate::network::addresses::{AddressPlan, dialable};

/// The label linking an EndpointSlice to its Service.
const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// One listener: a Service port.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Frontend {
    /// Service namespace.
    pub namespace: String,
    /// Service name.
    pub service: String,
    /// ClusterIP.
    pub ip: Ipv4Addr,
    /// Service port.
    pub port: u16,
    /// The Service port's name ("" when it has none): EndpointSlice ports
    /// carry the same name.
    pub port_name: String,
    /// The Service's uid: a re-created Service gets fresh listeners.
    pub uid: String,
}

/// The frontends a Service needs (none for headless Services or ClusterIPs
/// outside this sandbox's loopback range).
pub fn frontends(service: &Service, plan: &AddressPlan) -> Vec<Frontend> {
    let Some(spec) = &service.spec else {
        return Vec::new();
    };
    let Some(ip) = spec
        .cluster_ip
        .as_deref()
        .and_then(|ip| ip.parse::<Ipv4Addr>().ok())
    else {
        return Vec::new();
    };
    if !plan.is_service_ip(ip) {
        return Vec::new();
    }
    spec.ports
        .iter()
        .flatten()
        .filter(|p| p.protocol.as_deref().unwrap_or("TCP") == "TCP")
        .filter_map(|p| {
            Some(Frontend {
                namespace: service.namespace().unwrap_or_default(),
                service: service.name_any(),
                ip,
                port: u16::try_from(p.port).ok()?,
                port_name: p.name.clone().unwrap_or_default(),
                uid: service.uid().unwrap_or_default(),
            })
        })
        .collect()
}

/// An endpoint of a Service port, with the conditions kube-proxy reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Endpoint {
    ready: bool,
    serving: bool,
    terminating: bool,
}

/// Where new connections to the Service port `port_name` may go now, given
/// the Service's EndpointSlices: sorted, without duplicates.
pub fn backends<'a>(
    port_name: &str,
    slices: impl Iterator<Item = &'a EndpointSlice>,
) -> Vec<SocketAddr> {
    let mut endpoints: BTreeMap<SocketAddr, Endpoint> = BTreeMap::new();
    for slice in slices.filter(|s| s.address_type == "IPv4") {
        for port in slice.ports.iter().flatten() {
            let named = port.name.as_deref() == Some(port_name);
            let tcp = port.protocol.as_deref().unwrap_or("TCP") == "TCP";
            let Some(number) = port.port.and_then(|p| u16::try_from(p).ok()) else {
                continue;
            };
            if !named || !tcp || number == 0 {
                continue;
            }
            for endpoint in &slice.endpoints {
                let Some(ip) = endpoint
                    .addresses
                    .first()
                    .and_then(|a| a.parse::<IpAddr>().ok())
                else {
                    continue;
                };
                if !dialable(ip) {
                    continue;
                }
                let conditions = endpoint.conditions.clone().unwrap_or_default();
                endpoints
                    .entry(SocketAddr::new(ip, number))
                    .or_insert(Endpoint {
                        ready: conditions.ready.unwrap_or(true),
                        serving: conditions.serving.unwrap_or(true),
                        terminating: conditions.terminating.unwrap_or(false),
                    });
            }
        }
    }
    let pick = |keep: fn(&Endpoint) -> bool| -> Vec<SocketAddr> {
        endpoints
            .iter()
            .filter(|(_, e)| keep(e))
            .map(|(a, _)| *a)
            .collect()
    };
    let ready = pick(|e| e.ready);
    if ready.is_empty() {
        pick(|e| e.serving && e.terminating)
    } else {
        ready
    }
}

/// The running proxy.
pub struct ServiceProxy {
    task: tokio::task::JoinHandle<()>,
}

impl ServiceProxy {
    /// Starts watching Services and EndpointSlices and serving ClusterIPs.
    pub fn start(client: kube::Client, plan: AddressPlan) -> ServiceProxy {
        let task = tokio::spawn(run(client, plan));
        ServiceProxy { task }
    }

    /// Stops accepting; established connections end with the runtime or their peers.
    pub fn stop(&self) {
        self.task.abort();
    }
}

impl Drop for ServiceProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct Listener {
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Listener {
    fn drop(&mut self) {
        // Stops accepting; spliced connections run in their own tasks and stay.
        self.task.abort();
    }
}

async fn run(client: kube::Client, plan: AddressPlan) {
    let (slices, slice_writer) = reflector::store::<EndpointSlice>();
    let slice_stream = reflector::reflector(
        slice_writer,
        watcher::watcher(
            Api::<EndpointSlice>::all(client.clone()),
            watcher::Config::default().labels(SERVICE_NAME_LABEL),
        ),
    )
    .default_backoff()
    .for_each(|_| futures::future::ready(()));
    // Aborted with this task (a plain JoinHandle would let it outlive the proxy).
    let _slices_task = Listener {
        task: tokio::spawn(slice_stream),
    };
    let (services, service_writer) = reflector::store::<Service>();
    let mut service_stream = reflector::reflector(
        service_writer,
        watcher::watcher(Api::<Service>::all(client), watcher::Config::default()),
    )
    .default_backoff()
    .boxed();
    let mut listeners: HashMap<Frontend, Listener> = HashMap::new();
    while let Some(event) = service_stream.next().await {
        match event {
            Ok(Event::InitApply(_) | Event::Init) => continue,
            Ok(_) => {}
            Err(e) => {
                tracing::warn!("service proxy watch: {e}");
                continue;
            }
        }
        let wanted: Vec<Frontend> = services
            .state()
            .iter()
            .flat_map(|s| frontends(s, &plan))
            .collect();
        listeners.retain(|f, _| wanted.contains(f));
        for frontend in wanted {
            if listeners.contains_key(&frontend) {
                continue;
            }
            let task = tokio::spawn(serve(frontend.clone(), slices.clone()));
            listeners.insert(frontend, Listener { task });
        }
    }
}

async fn serve(frontend: Frontend, slices: Store<EndpointSlice>) {
    // Round robin per Service port, as each kube-proxy rule balances on its own.
    let counter = AtomicUsize::new(0);
    let addr = SocketAddr::new(IpAddr::V4(frontend.ip), frontend.port);
    let listener = loop {
        match TcpListener::bind(addr).await {
            Ok(l) => break l,
            Err(e) => {
                tracing::warn!(
                    "service {}/{}: cannot listen on {addr}: {e}; retrying",
                    frontend.namespace,
                    frontend.service
                );
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    };
    loop {
        let Ok((inbound, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let state = slices.state();
        let candidates = backends(
            &frontend.port_name,
            state.iter().map(|s| s.as_ref()).filter(|s| {
                s.namespace().as_deref() == Some(frontend.namespace.as_str())
                    && s.labels().get(SERVICE_NAME_LABEL) == Some(&frontend.service)
            }),
        );
        if candidates.is_empty() {
            // Like kube-proxy with no endpoints: the connection is refused.
            drop(inbound);
            continue;
        }
        let backend = candidates[counter.fetch_add(1, Ordering::Relaxed) % candidates.len()];
        tokio::spawn(splice(inbound, backend));
    }
}

async fn splice(mut inbound: TcpStream, backend: SocketAddr) {
    if !dialable(backend.ip()) {
        return;
    }
    let Ok(Ok(mut outbound)) =
        tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(backend)).await
    else {
        return;
    };
    let _ = inbound.set_nodelay(true);
    let _ = outbound.set_nodelay(true);
    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn service(ip: &str, ports: serde_json::Value) -> Service {
        serde_json::from_value(json!({
            "metadata": {"name": "s", "namespace": "ns", "uid": "u"},
            "spec": {"selector": {"app": "a"}, "clusterIP": ip, "ports": ports}
        }))
        .expect("service")
    }

    /// One endpoint: address, then ready/serving/terminating (`None`: unset).
    type Ep<'a> = (&'a str, Option<bool>, Option<bool>, Option<bool>);

    fn slice(port_name: &str, port: i32, endpoints: &[Ep<'_>]) -> EndpointSlice {
        let endpoints: Vec<serde_json::Value> = endpoints
            .iter()
            .map(|(ip, ready, serving, terminating)| {
                json!({"addresses": [ip], "conditions": {
                    "ready": ready, "serving": serving, "terminating": terminating,
                }})
            })
            .collect();
        serde_json::from_value(json!({
            "metadata": {"name": format!("s-{port}"), "namespace": "ns",
                         "labels": {SERVICE_NAME_LABEL: "s"}},
            "addressType": "IPv4",
            "ports": [{"name": port_name, "port": port, "protocol": "TCP"}],
            "endpoints": endpoints,
        }))
        .expect("slice")
    }

    fn addrs(list: &[&str]) -> Vec<SocketAddr> {
        list.iter().map(|a| a.parse().expect("addr")).collect()
    }

    const PLAN: AddressPlan = AddressPlan { slot: 0 };

    #[test]
    fn frontends_for_every_loopback_cluster_ip_port() {
        let s = service(
            "127.164.0.10",
            json!([{"name": "mqtt", "port": 1883, "targetPort": "mqtt"}, {"port": 80}]),
        );
        let f = frontends(&s, &PLAN);
        assert_eq!(f.len(), 2);
        assert_eq!((f[0].port, f[0].port_name.as_str()), (1883, "mqtt"));
        assert_eq!((f[1].port, f[1].port_name.as_str()), (80, ""));
        assert!(frontends(&service("None", json!([{"port": 80}])), &PLAN).is_empty());
        assert!(frontends(&service("10.0.0.10", json!([{"port": 80}])), &PLAN).is_empty());
        assert!(
            frontends(&service("127.165.0.10", json!([{"port": 80}])), &PLAN).is_empty(),
            "another sandbox's range"
        );
        let udp = service("127.164.0.10", json!([{"port": 53, "protocol": "UDP"}]));
        assert!(frontends(&udp, &PLAN).is_empty());
    }

    #[test]
    fn ready_endpoints_of_the_named_port_take_new_connections() {
        let t = Some(true);
        let f = Some(false);
        let slices = [
            slice(
                "mqtt",
                1883,
                &[
                    ("127.100.0.2", t, t, f),
                    ("127.100.0.1", None, None, None),
                    // Not ready, or terminating: left out while others are ready.
                    ("127.100.0.3", f, f, f),
                    ("127.100.0.4", f, t, t),
                    // Never a non-loopback address.
                    ("10.1.1.1", t, t, f),
                ],
            ),
            // The same endpoint in a second slice counts once.
            slice("mqtt", 1883, &[("127.100.0.1", t, t, f)]),
            slice("ws", 8083, &[("127.100.0.9", t, t, f)]),
        ];
        assert_eq!(
            backends("mqtt", slices.iter()),
            addrs(&["127.100.0.1:1883", "127.100.0.2:1883"])
        );
        assert_eq!(backends("ws", slices.iter()), addrs(&["127.100.0.9:8083"]));
        assert!(backends("nope", slices.iter()).is_empty());
    }

    #[test]
    fn without_ready_endpoints_serving_terminating_ones_are_used() {
        let t = Some(true);
        let f = Some(false);
        let draining = [slice(
            "",
            80,
            &[
                ("127.100.0.1", f, t, t),
                ("127.100.0.2", f, f, t),
                ("127.100.0.3", f, t, f),
            ],
        )];
        assert_eq!(backends("", draining.iter()), addrs(&["127.100.0.1:80"]));
        let gone = [slice(
            "",
            80,
            &[("127.100.0.2", f, f, t), ("127.100.0.3", f, f, f)],
        )];
        assert!(backends("", gone.iter()).is_empty());
    }
}
