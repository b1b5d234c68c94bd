//! The cluster the benchmarks create and upgrade (`reconciler_bench`,
//! `concurrent_upgrades_bench`): seed 003 with a number of cores, a
//! readiness probe every second and an update strategy, and how they wait
//! for it to be Ready.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use emqx_crd::v2beta1::EMQX;
use kube::Api;
use kube::runtime::wait::await_condition;
use serde_json::{Value, json};

use crate::seed_003::{seed_003_manifest, update_revision};

/// Seed 003 as `name` in `namespace` with `cores` core nodes, probed for
/// readiness every second, upgraded by `strategy` (`spec.updateStrategy`).
pub fn cluster_manifest(namespace: &str, name: &str, cores: u32, strategy: Value) -> Result<EMQX> {
    let mut object = seed_003_manifest()?;
    json_patch::merge(
        &mut object,
        &json!({
            "metadata": {"name": name, "namespace": namespace},
            "spec": {
                "updateStrategy": strategy,
                "coreTemplate": {"spec": {
                    "replicas": cores,
                    "readinessProbe": {"httpGet": {"path": "/status", "port": "dashboard"}, "periodSeconds": 1, "failureThreshold": 3}
                }}
            }
        }),
    );
    Ok(serde_json::from_value(object)?)
}

/// Whether the object's `Ready` condition is True.
pub fn is_ready(emqx: &EMQX) -> bool {
    emqx.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Waits until `name` is Ready on a revision other than `not_revision`.
///
/// It watches the one object instead of polling it: twenty clusters
/// polled every 100 ms were 200 GETs a second, the largest share of the
/// API server's requests while `concurrent_upgrades_bench` measured them
/// (161 of 467 a second), loading the machine the upgrades ran on; and a
/// watch sees the moment itself, not the next poll after it.
pub async fn wait_ready(
    api: &Api<EMQX>,
    name: &str,
    not_revision: Option<&str>,
    limit: Duration,
) -> Result<()> {
    let condition = |emqx: Option<&EMQX>| {
        emqx.is_some_and(|emqx| {
            let revision = update_revision(emqx);
            is_ready(emqx) && revision.is_some() && revision.as_deref() != not_revision
        })
    };
    match tokio::time::timeout(limit, await_condition(api.clone(), name, condition)).await {
        Ok(done) => done.map(drop).with_context(|| format!("watching {name}")),
        Err(_) => bail!("{name} not Ready within {limit:?}"),
    }
}
