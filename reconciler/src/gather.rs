//! The controller shell: observe the cluster and EMQX, call [`decide`],
//! carry out its actions in order, write status. Nothing is remembered
//! between passes except what [`crate::memory`] keeps on the object.

use crate::decide::{self, Action as Step, Decision};
use crate::emqx_api::{self, ApiGeneration, EmqxError};
use crate::emqx_client::EmqxClient;
use crate::explain::{self, EmqxUnavailable};
use crate::hub::HubObject;
use crate::metrics::{ClusterLabels, ErrorLabels, KindLabels, Metrics, NodeLabels};
use crate::observe::{self, LiveSet, VICTIM_DELETION_COST};
use crate::observed::{EmqxView, Evacuation, Memory, Observed, Role, RoleSpec, Spec, Strategy};
use crate::render::{self, Cluster, OPERATOR_API_KEY};
use crate::{drift, memory, revision, status};
use emqx_crd::evacuation::NodeEvacuationStatus;
use emqx_crd::names;
use emqx_crd::v2beta1::EMQXNode;
use futures::StreamExt;
use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::{ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, ObjectReference, Pod, Secret, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{Controller, watcher};
use kube::{Api, Client, ResourceExt};
use rand::distr::{Alphanumeric, SampleString};
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The one field manager every write uses.
pub const FIELD_MANAGER: &str = "emqx-operator";

/// What every reconcile needs.
pub struct Context {
    pub client: Client,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    /// Bound on every EMQX call.
    pub emqx_timeout: Duration,
}

/// Why a pass failed; each variant has a short metric label.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("EMQX API: {0}")]
    Emqx(#[from] EmqxError),
    #[error("object has no {0}")]
    MissingField(&'static str),
}

impl Error {
    fn label(&self) -> &'static str {
        match self {
            Error::Kube(_) => "kube",
            Error::Emqx(_) => "emqx",
            Error::MissingField(_) => "object",
        }
    }
}

fn now_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn apply_params() -> PatchParams {
    PatchParams::apply(FIELD_MANAGER).force()
}

/// Resolves when the controllers should stop: SIGTERM, or leadership lost.
pub type Shutdown =
    futures::future::Shared<std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>>;

/// Runs the controller for kind `K` until `shutdown` resolves.
pub async fn run<K: HubObject>(
    client: Client,
    namespace: Option<&str>,
    ctx: Arc<Context>,
    shutdown: Shutdown,
) {
    let api = |c: Client| -> (Api<K>, Api<StatefulSet>, Api<ReplicaSet>, Api<Pod>) {
        match namespace {
            Some(ns) => (
                Api::namespaced(c.clone(), ns),
                Api::namespaced(c.clone(), ns),
                Api::namespaced(c.clone(), ns),
                Api::namespaced(c, ns),
            ),
            None => (
                Api::all(c.clone()),
                Api::all(c.clone()),
                Api::all(c.clone()),
                Api::all(c),
            ),
        }
    };
    let (objects, stateful_sets, replica_sets, pods) = api(client);
    let owned = watcher::Config::default().labels(emqx_crd::names::LABEL_INSTANCE);
    Controller::new(objects, watcher::Config::default())
        .owns(stateful_sets, owned.clone())
        .owns(replica_sets, owned.clone())
        // Pod readiness and termination drive the upgrade; pods are owned by
        // the sets, so map them to their cluster by label.
        .watches(pods, owned, |pod: Pod| {
            let name = pod
                .metadata
                .labels
                .as_ref()?
                .get(emqx_crd::names::LABEL_INSTANCE)?
                .clone();
            let ns = pod.metadata.namespace.clone()?;
            Some(ObjectRef::<K>::new(&name).within(&ns))
        })
        .graceful_shutdown_on(shutdown)
        .run(reconcile::<K>, error_policy::<K>, ctx)
        .for_each(|result| async move {
            if let Err(error) = result {
                tracing::debug!(%error, "reconcile");
            }
        })
        .await;
}

/// One reconcile pass of one cluster.
pub async fn reconcile<K: HubObject>(object: Arc<K>, ctx: Arc<Context>) -> Result<Action, Error> {
    let kind = K::kind(&()).to_string();
    let started = Instant::now();
    ctx.metrics
        .reconciles
        .get_or_create(&KindLabels { kind: kind.clone() })
        .inc();
    let result = reconcile_inner(&*object, &ctx).await;
    ctx.metrics
        .duration
        .get_or_create(&KindLabels { kind: kind.clone() })
        .observe(started.elapsed().as_secs_f64());
    if let Err(e) = &result {
        ctx.metrics
            .errors
            .get_or_create(&ErrorLabels {
                kind,
                error: e.label().to_owned(),
            })
            .inc();
    }
    result
}

/// Failed passes retry after a short, fixed pause; the next pass re-derives
/// everything, so nothing is lost by failing.
pub fn error_policy<K: HubObject>(_object: Arc<K>, error: &Error, _ctx: Arc<Context>) -> Action {
    tracing::warn!(%error, "reconcile failed");
    Action::requeue(Duration::from_secs(2))
}

async fn reconcile_inner<K: HubObject>(object: &K, ctx: &Context) -> Result<Action, Error> {
    if object.meta().deletion_timestamp.is_some() {
        // Owned objects go with it through the garbage collector.
        return Ok(Action::await_change());
    }
    let namespace = object.namespace().ok_or(Error::MissingField("namespace"))?;
    let name = object.name_any();
    let uid = object.uid().ok_or(Error::MissingField("uid"))?;
    let api_version = K::api_version(&()).to_string();
    let kind = K::kind(&()).to_string();
    let hub_spec = crate::v1beta4_template::with_template_fields(
        object.hub_spec(),
        object.meta().annotations.as_ref(),
    );
    let cluster = Cluster {
        api_version: &api_version,
        kind: &kind,
        name: &name,
        namespace: &namespace,
        uid: &uid,
        spec: &hub_spec,
    };
    let client = &ctx.client;
    let reference = object.object_ref(&());
    let annotations = object.meta().annotations.as_ref();

    let operator_secret = if memory::paused(annotations) {
        // Paused: observe and report only; no owned object is written, so a
        // spec edited while paused takes effect on resume, not before.
        read_operator_secret(client, &cluster).await?
    } else {
        ensure_base_objects(client, &cluster).await?
    };

    // Observe.
    let selector = format!("{}={name}", names::LABEL_INSTANCE);
    let lp = ListParams::default().labels(&selector);
    let stateful_sets = Api::<StatefulSet>::namespaced(client.clone(), &namespace)
        .list(&lp)
        .await?
        .items;
    let replica_sets = Api::<ReplicaSet>::namespaced(client.clone(), &namespace)
        .list(&lp)
        .await?
        .items;
    let pods = Api::<Pod>::namespaced(client.clone(), &namespace)
        .list(&lp)
        .await?
        .items;
    let live = observe::live_sets(&cluster, &stateful_sets, &replica_sets, &pods);
    let spec = desired_spec(&cluster, &live, annotations);
    let services_api = Api::<Service>::namespaced(client.clone(), &namespace);
    let listeners = services_api
        .get_opt(&names::listeners_service_name(&name))
        .await?;
    let dashboard = services_api
        .get_opt(&names::dashboard_service_name(&name))
        .await?;
    let mut services = observe::services(listeners.as_ref(), dashboard.as_ref());
    // A disabled Service has nothing to point; count it as pointed.
    let ((serving_role, serving_rev), core_rev) = (
        (
            spec.serving_role(),
            spec.role(spec.serving_role())
                .map(|r| r.revision.clone())
                .unwrap_or_default(),
        ),
        spec.core.revision.clone(),
    );
    if render::listeners_service(&cluster, serving_role, &serving_rev).is_none() {
        services.listeners = Some((serving_role, serving_rev.clone()));
    }
    if render::dashboard_service(&cluster, &core_rev).is_none() {
        services.dashboard = Some(core_rev.clone());
    }
    let sets: Vec<_> = live.iter().map(|s| s.view.clone()).collect();
    let emqx_observed =
        observe_emqx(&cluster, &spec, &live, &operator_secret, ctx.emqx_timeout).await;
    let emqx_failure = emqx_observed.as_ref().err();
    match emqx_failure {
        // A node answered badly: worth a warning.
        Some(EmqxUnavailable {
            node: Some(node),
            error,
        }) => tracing::warn!(%node, %error, "EMQX unavailable"),
        // No core ready yet, as while a cluster is being created.
        Some(failure) => tracing::debug!(error = %failure.error, "EMQX not reachable yet"),
        None => {}
    }
    let emqx = emqx_observed.as_ref().ok();
    let memory = memory::load(annotations);
    let observed = Observed {
        now: now_s(),
        sets: sets.clone(),
        emqx: emqx.map(|e| e.view.clone()),
        services,
        memory: memory.clone(),
    };

    // Decide and act.
    let mut decision = decide::decide(&spec, &observed);
    tracing::info!(
        cluster = %name,
        phase = ?decision.phase,
        wait = ?decision.wait.as_ref().map(|w| &w.message),
        actions = decision.actions.len(),
        "decided"
    );
    let mut memory = memory;
    let outcome = act(
        ctx,
        &cluster,
        &reference,
        &decision,
        &live,
        emqx,
        &mut memory,
    )
    .await;
    // The conditions say what really happens: which node failed and how.
    if let Some(failure) = emqx_failure {
        explain::unavailable(&mut decision, failure);
    }
    let outcome = outcome.map_err(|(step, error)| {
        let is_emqx = matches!(error, Error::Emqx(_));
        explain::step_failed(&mut decision, &step, is_emqx, &error.to_string());
        error
    });

    // Report.
    write_memory(client, object, &memory).await?;
    let labels = ClusterLabels {
        namespace: namespace.clone(),
        cluster: name.clone(),
    };
    let upgrading = sets
        .iter()
        .any(|s| spec.role(s.role).is_none_or(|r| r.revision != s.revision) && s.replicas > 0);
    ctx.metrics
        .upgrading
        .get_or_create(&labels)
        .set(i64::from(upgrading));
    if let Some(e) = emqx {
        for entry in &e.evacuations {
            let remaining = entry.stats.as_ref().map_or(0, |s| {
                i64::from(s.current_connected.unwrap_or(0))
                    + i64::from(s.current_sessions.unwrap_or(0))
            });
            ctx.metrics
                .evacuation_remaining
                .get_or_create(&NodeLabels {
                    namespace: namespace.clone(),
                    cluster: name.clone(),
                    node: entry.node.clone().unwrap_or_default(),
                })
                .set(remaining);
        }
    }
    let new_status = status::status(&status::StatusInput {
        generation: object.meta().generation.unwrap_or(0),
        now: observed.now,
        spec: &spec,
        sets: &sets,
        decision: &decision,
        traffic_on_desired: observed.services.listeners.as_ref().map(|(_, r)| r)
            == spec.role(spec.serving_role()).map(|r| &r.revision),
        nodes: emqx.map(|e| e.nodes.clone()),
        evacuations: emqx.map(|e| e.evacuations.clone()),
        evacuation_unsupported: emqx.is_some_and(|e| !e.view.evacuation_api),
        previous: object.hub_status(),
    });
    let new_status = if K::v1beta4_conditions() {
        crate::v1beta4_conditions::with_v1beta4_conditions(
            new_status,
            object.hub_status(),
            observed.now,
        )
    } else {
        new_status
    };
    if object.hub_status() != Some(&new_status) {
        let api: Api<K> = Api::namespaced(client.clone(), &namespace);
        let patch = json!({"apiVersion": api_version, "kind": kind, "status": new_status});
        api.patch_status(&name, &apply_params(), &Patch::Apply(&patch))
            .await?;
    }
    outcome?;
    Ok(match decision.requeue_after_s {
        Some(s) => Action::requeue(Duration::from_secs(s)),
        None => Action::await_change(),
    })
}

/// The revisions the spec asks for, found among the live sets by template.
fn desired_spec(
    cluster: &Cluster<'_>,
    live: &[LiveSet],
    annotations: Option<&BTreeMap<String, String>>,
) -> Spec {
    let revision_of = |role: Role| {
        let template =
            serde_json::to_value(render::pod_template(cluster, role)).unwrap_or_default();
        revision::resolve_revision(&template, &observe::live_templates(live, role))
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
    }
}

/// The ConfigMap, Secrets, headless Service and PDBs; returns the
/// operator's API secret.
async fn ensure_base_objects(client: &Client, cluster: &Cluster<'_>) -> Result<String, Error> {
    let ns = cluster.namespace;
    apply_if_changed(
        &Api::<ConfigMap>::namespaced(client.clone(), ns),
        &names::config_map_name(cluster.name),
        &render::config_map(cluster),
    )
    .await?;
    apply_if_changed(
        &Api::<Service>::namespaced(client.clone(), ns),
        &names::headless_service_name(cluster.name),
        &render::headless_service(cluster),
    )
    .await?;
    for role in [Role::Core, Role::Replicant] {
        if let Some(pdb) = render::pdb(cluster, role) {
            apply_if_changed(
                &Api::<PodDisruptionBudget>::namespaced(client.clone(), ns),
                &names::pdb_name(cluster.name, role),
                &pdb,
            )
            .await?;
        }
    }
    let secrets = Api::<Secret>::namespaced(client.clone(), ns);
    let cookie = names::node_cookie_secret_name(cluster.name);
    if secrets.get_opt(&cookie).await?.is_none() {
        let value = Alphanumeric.sample_string(&mut rand::rng(), 64);
        create_secret(&secrets, cluster, &cookie, names::NODE_COOKIE_KEY, value).await?;
    }
    let bootstrap = names::bootstrap_api_key_secret_name(cluster.name);
    let existing = secrets.get_opt(&bootstrap).await?;
    let file = match existing
        .as_ref()
        .and_then(|s| s.data.as_ref()?.get(names::BOOTSTRAP_API_KEY_KEY).cloned())
    {
        Some(data) => String::from_utf8_lossy(&data.0).into_owned(),
        None => {
            // Created once; EMQX reads it at boot, so it never changes after.
            let mut lines: Vec<String> = cluster
                .spec
                .bootstrap_api_keys
                .iter()
                .flatten()
                .filter_map(|k| Some(format!("{}:{}", k.key.as_ref()?, k.secret.as_ref()?)))
                .collect();
            let secret = Alphanumeric
                .sample_string(&mut rand::rng(), 64)
                .to_lowercase();
            lines.push(format!("{OPERATOR_API_KEY}:{secret}"));
            let file = lines.join("\n");
            create_secret(
                &secrets,
                cluster,
                &bootstrap,
                names::BOOTSTRAP_API_KEY_KEY,
                file.clone(),
            )
            .await?;
            file
        }
    };
    Ok(operator_secret_in(&file))
}

/// The operator's API secret from the bootstrap Secret, without writing
/// anything (empty when the Secret does not exist yet).
async fn read_operator_secret(client: &Client, cluster: &Cluster<'_>) -> Result<String, Error> {
    let secrets = Api::<Secret>::namespaced(client.clone(), cluster.namespace);
    let bootstrap = names::bootstrap_api_key_secret_name(cluster.name);
    Ok(secrets
        .get_opt(&bootstrap)
        .await?
        .and_then(|s| s.data?.get(names::BOOTSTRAP_API_KEY_KEY).cloned())
        .map(|data| operator_secret_in(&String::from_utf8_lossy(&data.0)))
        .unwrap_or_default())
}

/// The operator's secret in a bootstrap API-key file (`key:secret` lines).
fn operator_secret_in(file: &str) -> String {
    file.lines()
        .find_map(|l| l.strip_prefix(&format!("{OPERATOR_API_KEY}:")))
        .map(|s| s.split(':').next().unwrap_or_default().to_owned())
        .unwrap_or_default()
}

/// Server-side applies `desired` unless the live object already says it
/// ([`drift::needs_apply`]): a steady cluster costs reads, never writes.
async fn apply_if_changed<T>(api: &Api<T>, name: &str, desired: &T) -> Result<(), Error>
where
    T: kube::Resource + Clone + std::fmt::Debug + serde::Serialize + serde::de::DeserializeOwned,
{
    let stamped = drift::stamp(
        serde_json::to_value(desired).map_err(|_| Error::MissingField("a serialisable object"))?,
    );
    let live = api
        .get_opt(name)
        .await?
        .and_then(|o| serde_json::to_value(o).ok());
    if drift::needs_apply(&stamped, live.as_ref()) {
        api.patch(name, &apply_params(), &Patch::Apply(&stamped))
            .await?;
    }
    Ok(())
}

async fn create_secret(
    secrets: &Api<Secret>,
    cluster: &Cluster<'_>,
    name: &str,
    key: &str,
    value: String,
) -> Result<(), Error> {
    let secret = Secret {
        metadata: kube::api::ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some(cluster.namespace.to_owned()),
            labels: Some(names::instance_labels(cluster.name)),
            owner_references: Some(vec![render::owner_reference(cluster)]),
            ..Default::default()
        },
        data: Some(BTreeMap::from([(
            key.to_owned(),
            ByteString(value.into_bytes()),
        )])),
        ..Secret::default()
    };
    match secrets.create(&PostParams::default(), &secret).await {
        // Another pass (or replica) created it first: theirs stands.
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
        other => other.map(|_| ()).map_err(Error::from),
    }
}

/// What EMQX said this pass.
struct EmqxObservation {
    view: EmqxView,
    client: EmqxClient,
    nodes: Vec<(Role, EMQXNode)>,
    evacuations: Vec<NodeEvacuationStatus>,
    /// Nodes' versions, for `wait_health_check` support.
    version: Option<String>,
}

/// Reads EMQX through a ready core pod, preferring the desired revision
/// (it survives the upgrade). Any failure yields the node asked and the
/// error: `decide` then touches no old node, and the condition says why.
async fn observe_emqx(
    cluster: &Cluster<'_>,
    spec: &Spec,
    live: &[LiveSet],
    operator_secret: &str,
    timeout: Duration,
) -> Result<EmqxObservation, EmqxUnavailable> {
    let api = cluster.api();
    let mut cores: Vec<(&LiveSet, &crate::observed::Pod)> = live
        .iter()
        .filter(|s| s.view.role == Role::Core)
        .flat_map(|s| s.view.pods.iter().map(move |p| (s, p)))
        .filter(|(_, p)| p.ready && !p.terminating)
        .collect();
    cores.sort_by_key(|(s, p)| (s.view.revision != spec.core.revision, p.created_at));
    let (set, endpoint) = cores.first().ok_or_else(|| EmqxUnavailable {
        node: None,
        error: "no core pod is ready to answer".into(),
    })?;
    let failed = |error: String| EmqxUnavailable {
        node: Some(endpoint.node.clone()),
        error,
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
        timeout,
    )
    .map_err(|e| failed(e.to_string()))?;
    let nodes = client.nodes().await.map_err(|e| failed(e.to_string()))?;
    let (evacuation_api, evacuations) =
        match client.global_evacuations::<NodeEvacuationStatus>().await {
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
    let version = nodes.iter().find_map(|n| n.version.clone());
    Ok(EmqxObservation {
        view: EmqxView {
            members: emqx_api::members(&nodes),
            evacuations: view_evacuations,
            evacuation_api,
        },
        client,
        nodes: status_nodes,
        evacuations,
        version,
    })
}

async fn act(
    ctx: &Context,
    cluster: &Cluster<'_>,
    reference: &ObjectReference,
    decision: &Decision,
    live: &[LiveSet],
    emqx: Option<&EmqxObservation>,
    memory: &mut Memory,
) -> Result<(), (Step, Error)> {
    for step in &decision.actions {
        if let Err(e) = act_one(ctx, cluster, reference, step, live, emqx, memory).await {
            publish(
                ctx,
                reference,
                EventType::Warning,
                "ReconcilerFailed",
                format!("{} failed: {e}", explain::describe(step)),
            )
            .await;
            return Err((step.clone(), e));
        }
    }
    Ok(())
}

async fn publish(
    ctx: &Context,
    reference: &ObjectReference,
    type_: EventType,
    reason: &str,
    note: String,
) {
    publish_about(ctx, reference, None, type_, reason, note).await;
}

/// An Event about the cluster that names the set or pod the step concerns.
/// The recorder folds Events of one reason and related object into a
/// series that keeps the first note: without the pod, every evacuation
/// after the first would only count up under the first node's name.
async fn publish_about(
    ctx: &Context,
    reference: &ObjectReference,
    related: Option<&ObjectReference>,
    type_: EventType,
    reason: &str,
    note: String,
) {
    let event = Event {
        type_,
        reason: reason.to_owned(),
        note: Some(note.chars().take(1000).collect()),
        action: reason.to_owned(),
        secondary: related.cloned(),
    };
    if let Err(error) = ctx.recorder.publish(&event, reference).await {
        tracing::warn!(%error, "event not recorded");
    }
}

/// The set or pod a step acts on, for its Event.
fn related_object(step: &Step, cluster: &Cluster<'_>, live: &[LiveSet]) -> Option<ObjectReference> {
    let object = |kind: &str, api_version: &str, name: &str| ObjectReference {
        api_version: Some(api_version.to_owned()),
        kind: Some(kind.to_owned()),
        name: Some(name.to_owned()),
        namespace: Some(cluster.namespace.to_owned()),
        ..ObjectReference::default()
    };
    let set = |name: &str| {
        live.iter()
            .find(|s| s.view.name == name)
            .map(|s| match s.view.role {
                Role::Core => object("StatefulSet", "apps/v1", name),
                Role::Replicant => object("ReplicaSet", "apps/v1", name),
            })
    };
    let pod = |node: &str| {
        live.iter()
            .flat_map(|s| &s.view.pods)
            .find(|p| p.node == node)
            .map(|p| object("Pod", "v1", &p.name))
    };
    match step {
        Step::CreateSet {
            role: Role::Core,
            revision,
            ..
        } => Some(object(
            "StatefulSet",
            "apps/v1",
            &names::core_set_name(cluster.name, revision),
        )),
        Step::CreateSet {
            role: Role::Replicant,
            revision,
            ..
        } => Some(object(
            "ReplicaSet",
            "apps/v1",
            &names::replicant_set_name(cluster.name, revision),
        )),
        Step::ScaleSet { name, .. } | Step::DeleteSet { name } => set(name),
        Step::RemoveOldNode {
            set: name, node, ..
        } => node.as_deref().and_then(pod).or_else(|| set(name)),
        Step::StartEvacuation { node, .. } | Step::StopEvacuation { node } => pod(node),
        _ => None,
    }
}

fn emqx_client(emqx: Option<&EmqxObservation>) -> Result<&EmqxObservation, Error> {
    emqx.ok_or(Error::Emqx(EmqxError::Transport {
        call: "EMQX",
        detail: "no EMQX endpoint this pass".into(),
    }))
}

async fn act_one(
    ctx: &Context,
    cluster: &Cluster<'_>,
    reference: &ObjectReference,
    step: &Step,
    live: &[LiveSet],
    emqx: Option<&EmqxObservation>,
    memory: &mut Memory,
) -> Result<(), Error> {
    let client = ctx.client.clone();
    let ns = cluster.namespace;
    let params = apply_params();
    let related = related_object(step, cluster, live);
    match step {
        Step::CreateSet {
            role,
            revision,
            replicas,
        } => {
            match role {
                Role::Core => {
                    let set = render::core_set(cluster, revision, *replicas);
                    Api::<StatefulSet>::namespaced(client, ns)
                        .patch(
                            &names::core_set_name(cluster.name, revision),
                            &params,
                            &Patch::Apply(&set),
                        )
                        .await?;
                }
                Role::Replicant => {
                    let set = render::replicant_set(cluster, revision, *replicas);
                    Api::<ReplicaSet>::namespaced(client, ns)
                        .patch(
                            &names::replicant_set_name(cluster.name, revision),
                            &params,
                            &Patch::Apply(&set),
                        )
                        .await?;
                }
            }
            let reason = if live.iter().any(|s| s.view.role == *role) {
                "CreateNewSet"
            } else {
                "CreateSet"
            };
            publish_about(
                ctx,
                reference,
                related.as_ref(),
                EventType::Normal,
                reason,
                format!("created the {} set of revision {revision}", role.as_str()),
            )
            .await;
        }
        Step::ScaleSet { name, from, to } => {
            scale(&client, ns, live, name, *from, *to).await?;
            publish_about(
                ctx,
                reference,
                related.as_ref(),
                EventType::Normal,
                "ScaleSet",
                format!("scaled {name} from {from} to {to}"),
            )
            .await;
        }
        Step::PointServices {
            listeners,
            dashboard,
        } => {
            let api = Api::<Service>::namespaced(client, ns);
            if let Some(svc) = render::listeners_service(cluster, listeners.0, &listeners.1) {
                api.patch(
                    &names::listeners_service_name(cluster.name),
                    &params,
                    &Patch::Apply(&svc),
                )
                .await?;
            }
            if let Some(svc) = render::dashboard_service(cluster, dashboard) {
                api.patch(
                    &names::dashboard_service_name(cluster.name),
                    &params,
                    &Patch::Apply(&svc),
                )
                .await?;
            }
            publish_about(
                ctx,
                reference,
                related.as_ref(),
                EventType::Normal,
                "SwitchTraffic",
                format!(
                    "the listeners Service now selects {} revision {}",
                    listeners.0.as_str(),
                    listeners.1
                ),
            )
            .await;
        }
        Step::RecordNewNodesReady { revision, at } => {
            memory.new_nodes_ready_at = Some((revision.clone(), *at));
        }
        Step::RecordDrainStart { node, at } => {
            memory.drain = Some(crate::observed::Drain {
                node: node.clone(),
                started_at: *at,
            });
            publish_about(
                ctx,
                reference,
                related.as_ref(),
                EventType::Normal,
                "DrainWithoutEvacuation",
                format!("node {node} gets no new clients and is removed after waitTakeover"),
            )
            .await;
        }
        Step::RecordProgress { marker, at } => {
            memory.progress = Some((marker.clone(), *at));
        }
        Step::MarkForDeletion { pod } => {
            let patch = json!({"metadata": {"annotations": {names::ANNOTATION_POD_DELETION_COST: VICTIM_DELETION_COST}}});
            Api::<Pod>::namespaced(client, ns)
                .patch(pod, &PatchParams::default(), &Patch::Merge(&patch))
                .await?;
        }
        Step::StartEvacuation {
            node,
            migrate_to,
            strategy,
        } => {
            let emqx = emqx_client(emqx)?;
            let knows = emqx
                .version
                .as_deref()
                .is_some_and(emqx_api::knows_wait_health_check);
            let outcome = emqx
                .client
                .start_evacuation(node, strategy, migrate_to, knows)
                .await?;
            publish_about(ctx, reference, related.as_ref(), EventType::Normal, "NodeEvacuation", format!("evacuating node {node} at {} connections/s and {} sessions/s to {} new nodes ({outcome:?})", strategy.conn_evict_rate, strategy.sess_evict_rate, migrate_to.len())).await;
        }
        Step::StopEvacuation { node } => {
            let emqx = emqx_client(emqx)?;
            emqx.client.stop_evacuation(node).await?;
            publish_about(
                ctx,
                reference,
                related.as_ref(),
                EventType::Normal,
                "StopEvacuation",
                format!("stopped the evacuation of node {node}, which the desired revision keeps"),
            )
            .await;
        }
        Step::RemoveOldNode { set, node, from } => {
            let to = from.saturating_sub(1);
            scale(&client, ns, live, set, *from, to).await?;
            publish_about(
                ctx,
                reference,
                related.as_ref(),
                EventType::Normal,
                "RemoveOldNode",
                format!(
                    "scaled {set} from {from} to {to}, removing node {}",
                    node.as_deref().unwrap_or("(none)")
                ),
            )
            .await;
        }
        Step::ForceLeave { node } => {
            let emqx = emqx_client(emqx)?;
            if emqx.client.api() == ApiGeneration::V5 {
                emqx.client.force_leave(node).await?;
                publish_about(
                    ctx,
                    reference,
                    related.as_ref(),
                    EventType::Normal,
                    "ForceLeave",
                    format!("removed stopped node {node} from the EMQX cluster"),
                )
                .await;
            }
        }
        Step::DeleteSet { name } => {
            let role = live
                .iter()
                .find(|s| &s.view.name == name)
                .map(|s| s.view.role);
            let dp = DeleteParams::background();
            match role {
                Some(Role::Core) => {
                    Api::<StatefulSet>::namespaced(client, ns)
                        .delete(name, &dp)
                        .await?;
                }
                Some(Role::Replicant) => {
                    Api::<ReplicaSet>::namespaced(client, ns)
                        .delete(name, &dp)
                        .await?;
                }
                None => {}
            }
            publish_about(ctx, reference, related.as_ref(), EventType::Normal, "DeleteOldSet", format!("deleted {name} beyond revisionHistoryLimit; its PersistentVolumeClaims are kept")).await;
        }
    }
    Ok(())
}

/// `spec.replicas: from → to`, only if it is still `from` (JSON Patch
/// `test`): a retried pass can never remove two nodes.
async fn scale(
    client: &Client,
    ns: &str,
    live: &[LiveSet],
    name: &str,
    from: u32,
    to: u32,
) -> Result<(), Error> {
    let patch: json_patch::Patch = serde_json::from_value(json!([
        {"op": "test", "path": "/spec/replicas", "value": from},
        {"op": "replace", "path": "/spec/replicas", "value": to},
    ]))
    .map_err(|_| Error::MissingField("a valid scale patch"))?;
    let role = live
        .iter()
        .find(|s| s.view.name == name)
        .map(|s| s.view.role);
    let pp = PatchParams::default();
    match role {
        Some(Role::Core) => {
            Api::<StatefulSet>::namespaced(client.clone(), ns)
                .patch(name, &pp, &Patch::<()>::Json(patch))
                .await?;
        }
        Some(Role::Replicant) => {
            Api::<ReplicaSet>::namespaced(client.clone(), ns)
                .patch(name, &pp, &Patch::<()>::Json(patch))
                .await?;
        }
        None => return Err(Error::MissingField("the set to scale")),
    }
    Ok(())
}

async fn write_memory<K: HubObject>(
    client: &Client,
    object: &K,
    memory: &Memory,
) -> Result<(), Error> {
    let value = memory::store(memory);
    let current = object
        .meta()
        .annotations
        .as_ref()
        .and_then(|a| a.get(memory::ANNOTATION_PROGRESS));
    if current == Some(&value) {
        return Ok(());
    }
    let namespace = object.namespace().unwrap_or_default();
    let patch = json!({"metadata": {"annotations": {memory::ANNOTATION_PROGRESS: value}}});
    if let Some(version) = K::metadata_version() {
        let gvk = kube::api::GroupVersionKind::gvk(&K::group(&()), version, &K::kind(&()));
        let resource = kube::api::ApiResource::from_gvk_with_plural(&gvk, &K::plural(&()));
        let api: Api<kube::api::DynamicObject> =
            Api::namespaced_with(client.clone(), &namespace, &resource);
        api.patch(
            &object.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await?;
        return Ok(());
    }
    let api: Api<K> = Api::namespaced(client.clone(), &namespace);
    api.patch(
        &object.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await?;
    Ok(())
}
