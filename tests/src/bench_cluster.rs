//! The cluster the benchmarks create and upgrade (`reconciler_bench`,
//! `concurrent_upgrades_bench`): seed 003 with a number of cores, a
//! readiness probe every second and an update strategy, and how they wait
//! for it to be Ready.

use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use emqx_crd::v2beta1::EMQX;
use kube::Api;
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

/// Waits (polling every 100 ms) until `name` is Ready on a revision other
/// than `not_revision`.
pub async fn wait_ready(
    api: &Api<EMQX>,
    name: &str,
    not_revision: Option<&str>,
    limit: Duration,
) -> Result<()> {
    let deadline = Instant::now() + limit;
    loop {
        if let Ok(emqx) = api.get(name).await {
            let revision = update_revision(&emqx);
            if is_ready(&emqx) && revision.is_some() && revision.as_deref() != not_revision {
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            bail!("{name} not Ready within {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
