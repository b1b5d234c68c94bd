//! Gathering one pass's [`Observation`]: the cluster's sets, pods and
//! Services from the API server, the revisions the spec means, the memory
//! on the object, and what EMQX says through a node that survives the
//! upgrade. The only reads of a pass; everything after works on what this
//! returns.

use crate::context::Context;
use crate::emqx_api::{self, EmqxError};
use crate::emqx_client::EmqxClient;
use crate::error::Error;
use crate::explain::EmqxUnavailable;
use crate::go_operator;
use crate::licence;
use crate::live::{self, LiveSet};
use crate::memory;
use crate::metrics::Stage;
use crate::observed::{
    EmqxView, Evacuation, Figures, GuardSpec, Observed, Role, RoleSpec, Spec, Strategy,
};
use crate::render::{OPERATOR_API_KEY, Rendered};
use crate::revision;
use crate::slow_nodes;
use emqx_crd::evacuation::NodeEvacuationStatus;
use emqx_crd::names;
use emqx_crd::v2beta1::EMQXNode;
use k8s_openapi::api::apps::v1::{ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::Api;
use kube::api::ListParams;
use std::collections::BTreeMap;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Everything one pass knows: what `decide` reads, and what the status
/// shows beyond it.
#[derive(Debug)]
pub struct Observation {
    /// The desired state, with the revisions found among the live sets.
    pub spec: Spec,
    /// `decide`'s input.
    pub observed: Observed,
    /// Nodes as EMQX reports them, with their set's UID; `None` when EMQX
    /// could not be read.
    pub nodes: Option<Vec<(Role, EMQXNode)>>,
    /// `global_status.evacuations` as EMQX reports them.
    pub evacuations: Option<Vec<NodeEvacuationStatus>>,
    /// Why EMQX could not be read, if it could not.
    pub unavailable: Option<EmqxUnavailable>,
    /// The desired revision is a Go-created set taken over as it runs
    /// ([`go_operator::runs_adopted_revision`]).
    pub adopted: bool,
    /// Nodes dying of EMQX's single-node licence ([`licence`]).
    pub licence: Option<licence::NodeLimit>,
    /// A pod of the cluster waits for its containers to start
    /// ([`live::waits_to_start`]): perhaps for a Secret someone deleted.
    pub pods_waiting: bool,
}

/// The EMQX node the pass talks to, for the steps that call EMQX.
#[derive(Debug)]
pub struct EmqxEndpoint {
    pub client: EmqxClient,
    /// The serving node's version, for `wait_health_check` support.
    pub version: Option<String>,
}

/// Milliseconds since the Unix epoch.
fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Reads the cluster and EMQX. Fails only on Kubernetes reads; EMQX being
/// unreadable is part of the observation.
pub async fn gather(
    ctx: &Context,
    rendered: &Rendered<'_>,
    annotations: Option<&BTreeMap<String, String>>,
    operator_secret: &str,
) -> Result<(Observation, Option<EmqxEndpoint>), Error> {
    let cluster = &rendered.cluster;
    let (namespace, name) = (cluster.namespace, cluster.name);
    let client = &ctx.client;
    let reads_started = Instant::now();
    let selector = format!("{}={name}", names::LABEL_INSTANCE);
    let lp = ListParams::default().labels(&selector);
    let stateful_sets = Api::<StatefulSet>::namespaced(client.clone(), namespace)
        .list(&lp)
        .await?
        .items;
    let replica_sets = Api::<ReplicaSet>::namespaced(client.clone(), namespace)
        .list(&lp)
        .await?
        .items;
    let pods = Api::<Pod>::namespaced(client.clone(), namespace)
        .list(&lp)
        .await?
        .items;
    let live = live::live_sets(cluster, &stateful_sets, &replica_sets, &pods);
    let spec = desired_spec(rendered, &live, annotations);
    let adopted = go_operator::runs_adopted_revision(&spec, &live);
    let services_api = Api::<Service>::namespaced(client.clone(), namespace);
    let listeners = services_api
        .get_opt(&names::listeners_service_name(name))
        .await?;
    let dashboard = services_api
        .get_opt(&names::dashboard_service_name(name))
        .await?;
    let services = live::services(listeners.as_ref(), dashboard.as_ref());
    ctx.metrics
        .observe_stage(Stage::KubernetesReads, reads_started.elapsed());
    let emqx_started = Instant::now();
    let emqx = read_emqx(rendered, &spec, &live, operator_secret, ctx).await;
    ctx.metrics
        .observe_stage(Stage::EmqxReads, emqx_started.elapsed());
    let (view, nodes, evacuations, endpoint, unavailable) = match emqx {
        Ok(read) => (
            Some(read.view),
            Some(read.nodes),
            Some(read.evacuations),
            Some(read.endpoint),
            None,
        ),
        Err(failure) => (None, None, None, None, Some(failure)),
    };
    let running: Option<Vec<String>> = nodes.as_ref().map(|nodes| {
        nodes
            .iter()
            .filter(|(_, n)| n.node_status.as_deref() == Some("running"))
            .filter_map(|(_, n)| n.node.clone())
            .collect()
    });
    let licence = licence::diagnose(
        &cluster.spec.image,
        &spec_licence(cluster.spec),
        &pod_evidence(&live, &pods),
        running.as_deref(),
    );
    let now_ms = now_ms();
    let observation = Observation {
        observed: Observed {
            now: now_ms / 1000,
            now_ms,
            sets: live.into_iter().map(|s| s.view).collect(),
            emqx: view,
            services,
            memory: memory::load(annotations),
        },
        spec,
        nodes,
        evacuations,
        unavailable,
        adopted,
        licence,
        pods_waiting: pods.iter().any(live::waits_to_start),
    };
    Ok((observation, endpoint))
}

/// The revisions the spec asks for, found among the live sets by template.
pub fn desired_spec(
    rendered: &Rendered<'_>,
    live: &[LiveSet],
    annotations: Option<&BTreeMap<String, String>>,
) -> Spec {
    let cluster = &rendered.cluster;
    let revision_of = |role: Role| {
        revision::resolve_revision(rendered.template(role), &live::live_templates(live, role))
    };
    let settings = cluster.spec.blue_green();
    let secs = |v: i32| u64::try_from(v).unwrap_or(0);
    let rate = |v: i32| u32::try_from(v).unwrap_or(1).max(1);
    Spec {
        core: RoleSpec {
            revision: revision_of(Role::Core),
            replicas: cluster.replicas(Role::Core).unwrap_or(1),
        },
        replicant: cluster.replicas(Role::Replicant).map(|replicas| RoleSpec {
            revision: revision_of(Role::Replicant),
            replicas,
        }),
        strategy: Strategy {
            initial_delay_s: secs(settings.initial_delay_seconds),
            wait_takeover_s: secs(settings.wait_takeover),
            conn_evict_rate: rate(settings.conn_evict_rate),
            sess_evict_rate: rate(settings.sess_evict_rate),
        },
        paused: memory::paused(annotations),
        progress_deadline_s: memory::progress_deadline(annotations),
        revision_history_limit: usize::try_from(cluster.spec.revision_history_limit()).unwrap_or(0),
        listeners_service: rendered.listeners_enabled(),
        dashboard_service: rendered.dashboard_enabled(),
        manual_promotion: settings.manual_promotion,
        promote: memory::promote(annotations),
        abort: memory::abort(annotations),
        // Both generations: 4.4's live connections come from `/api/v4/stats`
        // (see `guard_figures`).
        guard: settings.guard.map(|g| GuardSpec {
            min_percent: u64::try_from(g.min_percent).unwrap_or(0),
            window_s: secs(g.window_seconds),
            max_failures_per_minute: u64::try_from(g.max_failures_per_minute).unwrap_or(0),
        }),
    }
}

/// What EMQX said this pass.
struct EmqxRead {
    view: EmqxView,
    nodes: Vec<(Role, EMQXNode)>,
    evacuations: Vec<NodeEvacuationStatus>,
    endpoint: EmqxEndpoint,
}

/// Reads EMQX through a core pod that answers ([`crate::observed::Pod::answers_api`]),
/// preferring the desired revision (it survives the upgrade), then a Ready
/// pod. Any failure yields the node asked and the
/// error: `decide` then touches no old node, and the condition says why.
async fn read_emqx(
    rendered: &Rendered<'_>,
    spec: &Spec,
    live: &[LiveSet],
    operator_secret: &str,
    ctx: &Context,
) -> Result<EmqxRead, EmqxUnavailable> {
    let api = rendered.cluster.api();
    let mut cores: Vec<(&LiveSet, &crate::observed::Pod)> = live
        .iter()
        .filter(|s| s.view.role == Role::Core)
        .flat_map(|s| s.view.pods.iter().map(move |p| (s, p)))
        .filter(|(_, p)| p.answers_api())
        .collect();
    cores.sort_by_key(|(s, p)| {
        (
            s.view.revision != spec.core.revision,
            !p.ready,
            p.created_at,
        )
    });
    let (set, endpoint) = cores.first().ok_or_else(|| EmqxUnavailable {
        node: None,
        error: "no core pod is ready to answer".into(),
        slow_nodes: Vec::new(),
    })?;
    let failed = |error: String| EmqxUnavailable {
        node: Some(endpoint.node.clone()),
        error,
        slow_nodes: Vec::new(),
    };
    let ip = set
        .pod_ips
        .get(&endpoint.name)
        .ok_or_else(|| failed(format!("pod {} has no IP", endpoint.name)))?;
    let client = EmqxClient::new(
        format!("http://{ip}:{}", api.port()),
        api,
        OPERATOR_API_KEY,
        operator_secret,
        ctx.emqx_timeout,
    )
    .map_err(|e| failed(e.to_string()))?;
    let nodes = client.nodes().await.map_err(|e| failed(e.to_string()))?;
    let (answer, took) = client
        .global_evacuations_timed::<NodeEvacuationStatus>()
        .await;
    if slow_nodes::untrusted(answer.as_ref().map(|_| ()), took) {
        let auth = slow_nodes::Credentials {
            api,
            key: OPERATOR_API_KEY,
            secret: operator_secret,
        };
        let slow =
            slow_nodes::probe(probe_targets(live, &nodes, api), auth, ctx.emqx_timeout).await;
        let message =
            slow_nodes::message(answer.as_ref().map(|_| ()), took, &slow, ctx.emqx_timeout);
        return Err(EmqxUnavailable {
            slow_nodes: slow,
            ..failed(message)
        });
    }
    let (evacuation_api, evacuations) = match answer {
        Ok(e) => (true, e),
        Err(EmqxError::EvacuationUnsupported(_)) => (false, Vec::new()),
        Err(error) => return Err(failed(error.to_string())),
    };
    let mut view_evacuations = Vec::new();
    for e in &evacuations {
        let state = emqx_api::evacuation_state(e.state.as_deref().unwrap_or_default())
            .map_err(|e| failed(e.to_string()))?;
        let remaining = e.stats.as_ref().map_or(0, |s| {
            u64::try_from(s.current_connected.unwrap_or(0)).unwrap_or(0)
                + u64::try_from(s.current_sessions.unwrap_or(0)).unwrap_or(0)
        });
        view_evacuations.push(Evacuation {
            node: e.node.clone().unwrap_or_default(),
            state,
            remaining,
        });
    }
    let by_node: BTreeMap<&str, (Role, &LiveSet)> = live
        .iter()
        .flat_map(|s| {
            s.view
                .pods
                .iter()
                .map(move |p| (p.node.as_str(), (s.view.role, s)))
        })
        .collect();
    let status_nodes = nodes
        .iter()
        .map(|n| {
            let owner = by_node.get(n.node.as_str());
            let role = owner.map_or_else(
                || {
                    if n.role.as_deref() == Some("replicant") {
                        Role::Replicant
                    } else {
                        Role::Core
                    }
                },
                |(r, _)| *r,
            );
            (
                role,
                EMQXNode {
                    controller_uid: owner.and_then(|(_, s)| s.uid.clone()),
                    node: Some(n.node.clone()),
                    node_status: Some(n.node_status.clone()),
                    otp_release: n.otp_release.clone(),
                    version: n.version.clone(),
                    role: n.role.clone(),
                    edition: n.edition.clone(),
                    connections: n.connections,
                    live_connections: n.live_connections,
                    ..EMQXNode::default()
                },
            )
        })
        .collect();
    let version = emqx_api::version_of(&nodes, &endpoint.node);
    let (figures, figures_unavailable) = match guard_figures(&client, spec, live, &nodes).await {
        Ok(figures) => (figures, None),
        Err(why) => (None, Some(why)),
    };
    Ok(EmqxRead {
        view: EmqxView {
            members: emqx_api::members(&nodes),
            evacuations: view_evacuations,
            evacuation_api,
            figures,
            figures_unavailable,
        },
        nodes: status_nodes,
        evacuations,
        endpoint: EmqxEndpoint { client, version },
    })
}

/// The upgrade guard's figures, read only while it may watch an upgrade
/// (the guard is on and an old set remains): the live connections of every
/// running node and each node's refused CONNECTs from `GET /metrics` (one
/// more call). 5.x: `live_connections` of the `GET /nodes` answer already
/// read. 4.4: `live_connections.count` of `GET /api/v4/stats` (one more
/// call; `/nodes` lists `live_connections` only from 4.4.19, and its
/// `connections` also counts sessions whose client is gone, which cannot
/// show clients that did not come back). `Ok(None)`: not watching. `Err`:
/// why the figures are not there this pass; the guard then neither trips
/// nor arms, and the switch waits saying so.
async fn guard_figures(
    client: &EmqxClient,
    spec: &Spec,
    live: &[LiveSet],
    nodes: &[emqx_api::NodeInfo],
) -> Result<Option<Figures>, String> {
    let upgrading = live.iter().any(|s| s.view.is_old(spec));
    if spec.guard.is_none() || !upgrading {
        return Ok(None);
    }
    let live_connections = match client.api() {
        emqx_api::ApiGeneration::V5 => nodes
            .iter()
            .filter(|n| n.is_running())
            .filter_map(|n| n.live_connections)
            .map(|c| u64::try_from(c).unwrap_or(0))
            .sum(),
        emqx_api::ApiGeneration::V4 => match client.live_connections_v4().await {
            Ok(Some(total)) => total,
            Ok(None) => {
                let why = "EMQX's GET /api/v4/stats has no live_connections.count (EMQX before \
                           4.4): the guard cannot tell connected clients from sessions whose \
                           client is gone; set spec.updateStrategy.guard.enabled=false (an \
                           EmqxEnterprise through apps.emqx.io/v2beta1) to upgrade unguarded"
                    .to_owned();
                tracing::warn!("upgrade guard: {why}");
                return Err(why);
            }
            Err(error) => {
                tracing::warn!(%error, "upgrade guard: EMQX's stats not read this pass");
                return Err(format!("EMQX's stats not read: {error}"));
            }
        },
    };
    match client.connack_errors().await {
        Ok(connack_errors) => Ok(Some(Figures {
            live_connections,
            connack_errors,
        })),
        Err(error) => {
            tracing::warn!(%error, "upgrade guard: EMQX's metrics not read this pass");
            Err(format!("EMQX's metrics not read: {error}"))
        }
    }
}

/// Every running node EMQX lists that runs in one of our pods, with the
/// base URL of its own API.
fn probe_targets(
    live: &[LiveSet],
    nodes: &[emqx_api::NodeInfo],
    api: emqx_api::ApiGeneration,
) -> Vec<slow_nodes::Target> {
    nodes
        .iter()
        .filter(|n| n.is_running())
        .filter_map(|n| {
            live.iter().find_map(|s| {
                let pod = s.view.pods.iter().find(|p| p.node == n.node)?;
                let ip = s.pod_ips.get(&pod.name)?;
                Some(slow_nodes::Target {
                    node: n.node.clone(),
                    base: format!("http://{ip}:{}", api.port()),
                })
            })
        })
        .collect()
}

/// The licence the spec gives its nodes ([`emqx_crd::licence`]).
fn spec_licence(spec: &emqx_crd::v2beta1::EMQXSpec) -> emqx_crd::licence::SpecLicence {
    let core = spec
        .core_template
        .as_ref()
        .and_then(|t| t.spec.as_ref())
        .and_then(|s| s.pod.env.as_deref());
    let replicant = spec
        .replicant_template
        .as_ref()
        .and_then(|t| t.spec.as_ref())
        .and_then(|s| s.env.as_deref());
    emqx_crd::licence::spec_licence(
        spec.config.as_ref().and_then(|c| c.data.as_deref()),
        [core, replicant].into_iter().flatten(),
    )
}

/// Each live pod's node, readiness and container restarts.
fn pod_evidence(live: &[LiveSet], pods: &[Pod]) -> Vec<licence::PodEvidence> {
    live.iter()
        .flat_map(|s| s.view.pods.iter())
        .map(|p| {
            let restarts = pods
                .iter()
                .find(|k| k.metadata.name.as_deref() == Some(p.name.as_str()))
                .and_then(|k| k.status.as_ref())
                .and_then(|st| st.container_statuses.as_ref())
                .map_or(0, |cs| cs.iter().map(|c| c.restart_count).sum());
            licence::PodEvidence {
                node: p.node.clone(),
                restarts,
                ready: p.ready,
            }
        })
        .collect()
}
