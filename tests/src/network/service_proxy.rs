//! kube-proxy's job on loopback: every Service with a selector and a
//! ClusterIP gets a TCP listener on each `ClusterIP:port`. Each new connection
//! goes, round robin, to a pod that the Service selects *at that moment*
//! (Ready, not terminating, with an address); the connection is then spliced
//! and left alone, so changing the selector never moves or cuts it.
//! Only loopback addresses are ever bound or dialled.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::runtime::WatchStreamExt;
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher::{self, Event};
use kube::{Api, ResourceExt};
use tokio::net::{TcpListener, TcpStream};

use crate::network::addresses::{AddressPlan, dialable};

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
    /// targetPort (number or container port name).
    pub target: Target,
    /// The Service's uid: a re-created Service gets fresh listeners. (The
    /// selector is not part of the key: it is re-read on every connection.)
    pub uid: String,
}

/// A Service targetPort.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Target {
    /// A port number.
    Number(u16),
    /// A container port name.
    Name(String),
}

/// The frontends a Service needs (none for headless, selector-less, or
/// ClusterIPs outside this sandbox's loopback range).
pub fn frontends(service: &Service, plan: &AddressPlan) -> Vec<Frontend> {
    let Some(spec) = &service.spec else {
        return Vec::new();
    };
    if spec.selector.as_ref().is_none_or(|s| s.is_empty()) {
        return Vec::new();
    }
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
            let port = u16::try_from(p.port).ok()?;
            let target = match &p.target_port {
                None => Target::Number(port),
                Some(IntOrString::Int(n)) => Target::Number(u16::try_from(*n).ok()?),
                Some(IntOrString::String(s)) => match s.parse::<u16>() {
                    Ok(n) => Target::Number(n),
                    Err(_) => Target::Name(s.clone()),
                },
            };
            Some(Frontend {
                namespace: service.namespace().unwrap_or_default(),
                service: service.name_any(),
                ip,
                port,
                target,
                uid: service.uid().unwrap_or_default(),
            })
        })
        .collect()
}

/// The backends of `service` right now: Ready, not terminating pods matching
/// its selector, with the target port resolved, sorted by pod name.
pub fn backends<'a>(
    service: &Service,
    target: &Target,
    pods: impl Iterator<Item = &'a Pod>,
) -> Vec<SocketAddr> {
    let namespace = service.namespace().unwrap_or_default();
    let selector: BTreeMap<String, String> = service
        .spec
        .as_ref()
        .and_then(|s| s.selector.clone())
        .unwrap_or_default();
    if selector.is_empty() {
        return Vec::new();
    }
    let mut selected: Vec<(String, SocketAddr)> = pods
        .filter(|p| p.namespace().as_deref() == Some(namespace.as_str()))
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| {
            let labels = p.labels();
            selector.iter().all(|(k, v)| labels.get(k) == Some(v))
        })
        .filter(|p| {
            p.status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        })
        .filter_map(|p| {
            let ip: IpAddr = p.status.as_ref()?.pod_ip.as_deref()?.parse().ok()?;
            if !dialable(ip) {
                return None;
            }
            let port = match target {
                Target::Number(n) => *n,
                Target::Name(name) => p
                    .spec
                    .as_ref()?
                    .containers
                    .iter()
                    .flat_map(|c| c.ports.iter().flatten())
                    .find(|cp| cp.name.as_deref() == Some(name.as_str()))
                    .and_then(|cp| u16::try_from(cp.container_port).ok())?,
            };
            Some((p.name_any(), SocketAddr::new(ip, port)))
        })
        .collect();
    selected.sort();
    selected.into_iter().map(|(_, a)| a).collect()
}

/// The running proxy.
pub struct ServiceProxy {
    task: tokio::task::JoinHandle<()>,
}

impl ServiceProxy {
    /// Starts watching Services and Pods and serving ClusterIPs.
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
    let (pods, pod_writer) = reflector::store::<Pod>();
    let pod_stream = reflector::reflector(
        pod_writer,
        watcher::watcher(Api::<Pod>::all(client.clone()), watcher::Config::default()),
    )
    .default_backoff()
    .for_each(|_| futures::future::ready(()));
    // Aborted with this task (a plain JoinHandle would let it outlive the proxy).
    let _pods_task = Listener {
        task: tokio::spawn(pod_stream),
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
            let task = tokio::spawn(serve(frontend.clone(), services.clone(), pods.clone()));
            listeners.insert(frontend, Listener { task });
        }
    }
}

async fn serve(frontend: Frontend, services: Store<Service>, pods: Store<Pod>) {
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
        let key =
            reflector::ObjectRef::<Service>::new(&frontend.service).within(&frontend.namespace);
        let candidates = match services.get(&key) {
            Some(service) => backends(
                &service,
                &frontend.target,
                pods.state().iter().map(|p| p.as_ref()),
            ),
            None => Vec::new(),
        };
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

    fn service(selector: serde_json::Value, ip: &str, target: serde_json::Value) -> Service {
        serde_json::from_value(json!({
            "metadata": {"name": "s", "namespace": "ns", "uid": "u"},
            "spec": {"selector": selector, "clusterIP": ip, "ports": [{"port": 80, "targetPort": target}]}
        }))
        .expect("service")
    }

    fn pod(name: &str, labels: serde_json::Value, ip: &str, ready: &str, deleting: bool) -> Pod {
        let mut meta = json!({"name": name, "namespace": "ns", "labels": labels});
        if deleting {
            meta["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        }
        serde_json::from_value(json!({
            "metadata": meta,
            "spec": {"containers": [{"name": "c", "ports": [{"name": "web", "containerPort": 8080}]}]},
            "status": {"podIP": ip, "conditions": [{"type": "Ready", "status": ready}]}
        }))
        .expect("pod")
    }

    const PLAN: AddressPlan = AddressPlan { slot: 0 };

    #[test]
    fn frontends_only_for_selected_loopback_services() {
        let s = service(json!({"app": "a"}), "127.96.0.10", json!("web"));
        let f = frontends(&s, &PLAN);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].target, Target::Name("web".into()));
        assert!(frontends(&service(json!({"app": "a"}), "None", json!(80)), &PLAN).is_empty());
        assert!(frontends(&service(json!({}), "127.96.0.10", json!(80)), &PLAN).is_empty());
        assert!(frontends(&service(json!({"app": "a"}), "10.0.0.10", json!(80)), &PLAN).is_empty());
        assert!(
            frontends(
                &service(json!({"app": "a"}), "127.96.1.10", json!(80)),
                &PLAN
            )
            .is_empty(),
            "another sandbox's range"
        );
    }

    #[test]
    fn backends_are_ready_selected_loopback_pods() {
        let s = service(json!({"app": "a"}), "127.96.0.10", json!("web"));
        let pods = [
            pod("b", json!({"app": "a"}), "127.100.0.2", "True", false),
            pod("a", json!({"app": "a"}), "127.100.0.1", "True", false),
            pod("c", json!({"app": "a"}), "127.100.0.3", "False", false),
            pod("d", json!({"app": "a"}), "127.100.0.4", "True", true),
            pod("e", json!({"app": "b"}), "127.100.0.5", "True", false),
            pod("f", json!({"app": "a"}), "10.1.1.1", "True", false),
        ];
        let b = backends(&s, &Target::Name("web".into()), pods.iter());
        assert_eq!(
            b,
            vec![
                "127.100.0.1:8080".parse::<SocketAddr>().expect("a"),
                "127.100.0.2:8080".parse().expect("b")
            ]
        );
        assert!(backends(&s, &Target::Name("nope".into()), pods.iter()).is_empty());
    }
}
