//! The controllers' wiring: which objects are watched and map to which
//! cluster, the pass counted in the metrics, the retry after a failure,
//! and the series of clusters that are gone removed.

use crate::context::Context;
use crate::error::Error;
use crate::kind::ClusterKind;
use crate::metrics::{ClusterLabels, ErrorLabels, KindLabels, LaneLabels};
use crate::reconcile::reconcile_pass;
use crate::{pass_lanes, pass_trigger, upgrade_slots};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::{ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::Pod;
use kube::core::PartialObjectMeta;
use kube::runtime::controller::{self, Action};
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::{Controller, PredicateConfig, WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Resolves when the controllers should stop: SIGTERM, or leadership lost.
pub type Shutdown =
    futures::future::Shared<std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>>;

/// Runs the controller for kind `K` until `shutdown` resolves.
pub async fn run<K: ClusterKind>(
    client: Client,
    namespace: Option<&str>,
    ctx: Arc<Context>,
    shutdown: Shutdown,
) {
    let api = |c: Client| -> (
        Api<K>,
        Api<StatefulSet>,
        Api<ReplicaSet>,
        Api<PartialObjectMeta<Pod>>,
    ) {
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
    let metrics = ctx.metrics.clone();
    let gone_ctx = ctx.clone();
    let kind = K::kind(&()).to_string();
    metrics.start_kind(&kind);
    // The controller's store keeps every cluster object as the passes read
    // it, without `managedFields`: no pass reads them, and parsed they are
    // the largest part of an object whose status the reconciler writes
    // (1,000 clusters: 78.4 MiB resident with them, see the README).
    // The store sees every change; only a change of what a pass reads
    // from the object starts one (`pass_trigger`: not its status).
    let (store, writer) = reflector::store();
    let clusters = watcher(objects, watcher::Config::default())
        .modify(|object: &mut K| object.managed_fields_mut().clear())
        .reflect(writer)
        .applied_objects()
        .predicate_filter(pass_trigger::pass_inputs::<K>, PredicateConfig::default())
        // On the heap: with the filter's state inline, the controller's
        // future overflowed a worker's stack in debug builds (blue_green).
        .boxed();
    // No bound here: kube's `concurrency` starves some clusters under load
    // (see `Context::pass_permits`, which bounds the work of passes fairly).
    // The owned sets and the pods only start passes (each pass lists them
    // afresh), so their watches ask for metadata only: kube's `owns` does
    // that itself, and `Api<PartialObjectMeta<Pod>>` does for the pods.
    Controller::for_stream(clusters, store)
        .owns(stateful_sets, owned.clone())
        .owns(replica_sets, owned.clone())
        // Pod readiness and termination drive the upgrade (a metadata watch
        // sees every change: each moves the resourceVersion); pods are owned
        // by the sets, so map them to their cluster by label.
        .watches(pods, owned, |pod: PartialObjectMeta<Pod>| {
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
        .for_each(|result| {
            // A pass asked for (a requeue, an owned object changing) after
            // the cluster was deleted: its series go too.
            // An object without finalizers is gone before a pass sees its
            // deletion: its upgrade slot is freed here too, and its Secrets
            // forgotten, and its last status.
            if let Err(controller::Error::ObjectNotFound(gone)) = &result {
                let namespace = gone.namespace.clone().unwrap_or_default();
                let key = upgrade_slots::key(&kind, &namespace, &gone.name);
                gone_ctx.upgrade_slots.forget(&key);
                gone_ctx.created_secrets.forget(&key);
                gone_ctx.sent_statuses.forget(&key);
                metrics.forget_cluster(&ClusterLabels {
                    namespace,
                    cluster: gone.name.clone(),
                });
            }
            async move {
                if let Err(error) = result {
                    tracing::debug!(%error, "reconcile");
                }
            }
        })
        .await;
}

/// One pass, counted and timed in the metrics.
pub async fn reconcile<K: ClusterKind>(object: Arc<K>, ctx: Arc<Context>) -> Result<Action, Error> {
    // Bounded concurrency: many clusters created at once (or a relist of
    // all of them) would otherwise run every pass at the same moment, and
    // the memory of that peak stays with the process. Waiting passes are
    // served in the order they came, a changed or unsettled cluster's
    // before a Ready one's routine look (`pass_lanes`); a pass that waits
    // holds only its object and the context.
    let _permit = match ctx.pass_permits.clone() {
        Some(permits) => {
            let lane = pass_lanes::lane(object.meta().generation, object.hub_status());
            let asked = Instant::now();
            let permit = permits.acquire(lane).await;
            ctx.metrics
                .slot_wait
                .get_or_create(&LaneLabels {
                    lane: lane.label().to_owned(),
                })
                .observe(asked.elapsed().as_secs_f64());
            permit
        }
        None => None,
    };
    // Boxed: a waiting pass's future is then a pointer, not the whole
    // pass's state, so a thousand waiting passes cost little.
    Box::pin(counted_pass(object, ctx)).await
}

/// One pass, counted and timed.
async fn counted_pass<K: ClusterKind>(object: Arc<K>, ctx: Arc<Context>) -> Result<Action, Error> {
    let kind = K::kind(&()).to_string();
    let started = Instant::now();
    ctx.metrics
        .reconciles
        .get_or_create(&KindLabels { kind: kind.clone() })
        .inc();
    let result = reconcile_pass(&*object, &ctx).await;
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
pub fn error_policy<K: ClusterKind>(_object: Arc<K>, error: &Error, _ctx: Arc<Context>) -> Action {
    tracing::warn!(%error, "reconcile failed");
    Action::requeue(Duration::from_secs(2))
}
