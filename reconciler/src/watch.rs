//! The controllers' wiring: which objects are watched and map to which
//! cluster, the pass counted in the metrics, the retry after a failure,
//! and the series of clusters that are gone removed.

use crate::context::Context;
use crate::error::Error;
use crate::kind::ClusterKind;
use crate::metrics::{ClusterLabels, ErrorLabels, KindLabels};
use crate::reconcile::reconcile_pass;
use crate::upgrade_slots;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::{ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::Pod;
use kube::core::PartialObjectMeta;
use kube::runtime::controller::{self, Action};
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::{Controller, PredicateConfig, WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use std::hash::{DefaultHasher, Hash, Hasher};
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
    // The store keeps every cluster object as the passes read it, without
    // `managedFields` (no pass reads them, and they are often the largest
    // part of an object); a change starts a pass only when it is
    // `worth_a_pass`.
    let (store, writer) = reflector::store();
    let clusters = watcher(objects, watcher::Config::default())
        .modify(|object: &mut K| object.managed_fields_mut().clear())
        .reflect(writer)
        .applied_objects()
        .predicate_filter(worth_a_pass::<K>, PredicateConfig::default());
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
            // forgotten.
            if let Err(controller::Error::ObjectNotFound(gone)) = &result {
                let namespace = gone.namespace.clone().unwrap_or_default();
                let key = upgrade_slots::key(&kind, &namespace, &gone.name);
                gone_ctx.upgrade_slots.forget(&key);
                gone_ctx.created_secrets.forget(&key);
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

/// What of a cluster object's change calls for a pass: its spec (the
/// generation), labels, annotations (abort, promote, pause, retry, the
/// progress the passes record), finalizers and deletion. Not its status:
/// a pass writes the status whenever it says something new (the guard's
/// live figures, seconds left, a node's connections), and if the watch
/// event of that write started the next pass, an upgrade would be passed
/// over as fast as passes go (about every 100 ms) for as long as the
/// message keeps changing. Every phase that waits on EMQX or on time
/// comes back on its own requeue (`decide`), the others on a watched
/// change of the object, its sets or its pods.
pub fn worth_a_pass<K: Resource>(object: &K) -> Option<u64> {
    let meta = object.meta();
    let mut hasher = DefaultHasher::new();
    (
        meta.generation,
        &meta.labels,
        &meta.annotations,
        &meta.finalizers,
        meta.deletion_timestamp.is_some(),
    )
        .hash(&mut hasher);
    Some(hasher.finish())
}

/// One pass, counted and timed in the metrics.
pub async fn reconcile<K: ClusterKind>(object: Arc<K>, ctx: Arc<Context>) -> Result<Action, Error> {
    // Bounded concurrency: many clusters created at once (or a relist of
    // all of them) would otherwise run every pass at the same moment, and
    // the memory of that peak stays with the process. Waiting passes are
    // served in the order they came (the semaphore is fair); a pass that
    // waits holds only its object and the context.
    let _permit = match ctx.pass_permits.clone() {
        Some(permits) => permits.acquire_owned().await.ok(),
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

#[cfg(test)]
mod tests {
    use super::worth_a_pass;
    use emqx_crd::v2beta1::EMQX;
    use serde_json::json;

    fn cluster() -> EMQX {
        serde_json::from_value(json!({
            "apiVersion": "apps.emqx.io/v2beta1",
            "kind": "EMQX",
            "metadata": {"name": "emqx", "namespace": "default", "generation": 3,
                         "resourceVersion": "10", "annotations": {"a": "1"}},
            "spec": {"image": "emqx/emqx:5.8.9"},
            "status": {"conditions": []}
        }))
        .expect("an EMQX object")
    }

    #[test]
    fn a_status_write_starts_no_pass() {
        let before = cluster();
        let mut after = before.clone();
        after.metadata.resource_version = Some("11".into());
        after.metadata.managed_fields = Some(vec![Default::default()]);
        after.status = serde_json::from_value(json!({"conditions": [
            {"type": "Ready", "status": "False", "reason": "Waiting", "message": "12 s left",
             "lastTransitionTime": "2026-12-03T11:00:00Z"}
        ]}))
        .expect("a status");
        assert_eq!(worth_a_pass(&before), worth_a_pass(&after));
    }

    #[test]
    fn spec_labels_annotations_finalizers_and_deletion_start_a_pass() {
        type Change = (&'static str, fn(&mut EMQX));
        let before = cluster();
        let changes: [Change; 5] = [
            ("generation", |o| o.metadata.generation = Some(4)),
            ("label", |o| {
                o.metadata.labels = Some([("l".to_owned(), "x".to_owned())].into())
            }),
            ("annotation", |o| {
                o.metadata.annotations =
                    Some([("apps.emqx.io/abort".to_owned(), "r".to_owned())].into())
            }),
            ("finalizer", |o| {
                o.metadata.finalizers = Some(vec!["f".into()])
            }),
            ("deletion", |o| {
                o.metadata.deletion_timestamp =
                    Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                        k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
                    ))
            }),
        ];
        for (what, change) in changes {
            let mut after = before.clone();
            change(&mut after);
            assert_ne!(worth_a_pass(&before), worth_a_pass(&after), "{what}");
        }
    }
}
