//! When each step of one blue-green upgrade happened, seen from outside the
//! reconciler: kube watchers on the EMQX object, its pods and its listeners
//! Service, and a sampler of the simulated EMQX cluster's member list (what
//! `GET /nodes` answers: a node joins, stops, leaves on `force_leave`). The
//! evacuation steps come from the simulator's own history
//! ([`BrokerCluster::evacuation_history`]), which keeps the step times of
//! nodes that left. For `reconciler_bench`'s per-phase breakdown.
//!
//! Marks are first times, by key: `set:<statefulset>` (a StatefulSet of
//! the cluster exists), `created:<pod>`, `ready:<pod>`,
//! `deleting:<pod>` (deletionTimestamp set), `gone:<pod>` (deleted),
//! `switch` (the listeners Service no longer selects the old revision),
//! `joined:<node>`, `stopped:<node>`, `left:<node>`, `reason:<reason>`
//! (a condition of the object with that reason, e.g. `InitialDelay`: the
//! reconciler's pass that saw the new nodes ready and joined has written
//! its status), `ready` (the object Ready on a revision other than the old
//! one).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use emqx_crd::v2beta1::EMQX;
use emqx_sim::cluster::BrokerCluster;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::runtime::watcher;
use kube::{Api, Client, ResourceExt};
use tokio::task::JoinHandle;

use crate::watch_task::watch;

use crate::seed_003::update_revision;

/// How often the member list is sampled: the resolution of `joined`,
/// `stopped` and `left`.
const MEMBER_SAMPLE: Duration = Duration::from_millis(10);

type Marks = Arc<Mutex<BTreeMap<String, Instant>>>;

fn mark(marks: &Marks, key: String) {
    marks
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .entry(key)
        .or_insert_with(Instant::now);
}

/// The recorder; its tasks end when it is dropped or stopped.
pub struct UpgradeTimeline {
    marks: Marks,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for UpgradeTimeline {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

fn pod_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn emqx_ready(emqx: &EMQX) -> bool {
    emqx.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

impl UpgradeTimeline {
    /// Starts watching the EMQX object `name` in `namespace` (now on
    /// `old_revision`) and the simulated `cluster`. Call before the patch;
    /// the watchers' first lists mark what already exists.
    pub fn start(
        client: &Client,
        namespace: &str,
        name: &str,
        old_revision: &str,
        cluster: Arc<BrokerCluster>,
    ) -> UpgradeTimeline {
        let marks: Marks = Arc::default();
        let mut tasks = Vec::new();
        let instance = format!("apps.emqx.io/instance={name}");

        let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
        let m = marks.clone();
        tasks.push(watch(
            pods,
            watcher::Config::default().labels(&instance),
            move |event| match event {
                watcher::Event::Apply(p) | watcher::Event::InitApply(p) => {
                    let pod = p.name_any();
                    mark(&m, format!("created:{pod}"));
                    if pod_ready(&p) {
                        mark(&m, format!("ready:{pod}"));
                    }
                    if p.metadata.deletion_timestamp.is_some() {
                        mark(&m, format!("deleting:{pod}"));
                    }
                }
                watcher::Event::Delete(p) => {
                    let pod = p.name_any();
                    mark(&m, format!("deleting:{pod}"));
                    mark(&m, format!("gone:{pod}"));
                }
                _ => {}
            },
        ));

        // The reconciler's share of the way to new pods: its StatefulSet
        // exists (the rest is kube-controller-manager and the kubelet).
        let sets: Api<StatefulSet> = Api::namespaced(client.clone(), namespace);
        let m = marks.clone();
        tasks.push(watch(
            sets,
            watcher::Config::default().labels(&instance),
            move |event| {
                if let watcher::Event::Apply(s) | watcher::Event::InitApply(s) = event {
                    mark(&m, format!("set:{}", s.name_any()));
                }
            },
        ));

        let services: Api<Service> = Api::namespaced(client.clone(), namespace);
        let old = old_revision.to_owned();
        let m = marks.clone();
        tasks.push(watch(
            services,
            watcher::Config::default().fields(&format!("metadata.name={name}-listeners")),
            move |event| {
                if let watcher::Event::Apply(s) | watcher::Event::InitApply(s) = event {
                    let selector = s.spec.and_then(|s| s.selector).unwrap_or_default();
                    if !selector.is_empty() && !selector.values().any(|v| v.contains(&old)) {
                        mark(&m, "switch".into());
                    }
                }
            },
        ));

        let objects: Api<EMQX> = Api::namespaced(client.clone(), namespace);
        let old = old_revision.to_owned();
        let m = marks.clone();
        tasks.push(watch(
            objects,
            watcher::Config::default().fields(&format!("metadata.name={name}")),
            move |event| {
                let (watcher::Event::Apply(e) | watcher::Event::InitApply(e)) = event else {
                    return;
                };
                let conditions = e.status.as_ref().and_then(|s| s.conditions.as_ref());
                for c in conditions.into_iter().flatten() {
                    mark(&m, format!("reason:{}", c.reason));
                }
                if emqx_ready(&e) && update_revision(&e).is_some_and(|r| r != old) {
                    mark(&m, "ready".into());
                }
            },
        ));

        let m = marks.clone();
        tasks.push(tokio::spawn(async move {
            let mut known: BTreeSet<String> = BTreeSet::new();
            loop {
                let members = cluster.membership();
                for (node, running) in &members {
                    if *running {
                        mark(&m, format!("joined:{node}"));
                    } else {
                        mark(&m, format!("stopped:{node}"));
                    }
                    known.insert(node.clone());
                }
                for node in &known {
                    if !members.iter().any(|(n, _)| n == node) {
                        mark(&m, format!("left:{node}"));
                    }
                }
                tokio::time::sleep(MEMBER_SAMPLE).await;
            }
        }));
        UpgradeTimeline { marks, tasks }
    }

    /// The latest of the marks whose key starts with `prefix` and does not
    /// contain `except` (e.g. `ready:` of the pods not of the old revision).
    pub fn latest(&self, prefix: &str, except: &str) -> Option<Instant> {
        self.marks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .filter(|(k, _)| k.starts_with(prefix) && !k.contains(except))
            .map(|(_, at)| *at)
            .max()
    }

    /// The first time of `key`, if it happened.
    pub fn at(&self, key: &str) -> Option<Instant> {
        self.marks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(key)
            .copied()
    }
}
