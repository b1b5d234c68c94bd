//! Time to default + validate + convert one realistic object, the work the
//! webhook does per object (`cargo bench -p emqx-crd --bench pipeline`).
//! Criterion prints the estimates; the median is in
//! `target/criterion/<name>/new/estimates.json`.

#![allow(clippy::unwrap_used, clippy::panic)] // bench code: failing loudly is the point

use criterion::{Criterion, criterion_group, criterion_main};
use emqx_crd::dynamic::{convert_object, default_object, validate_object};
use serde_json::{Value, json};
use std::hint::black_box;

/// Seed 003's EMQX with a core + replicant cluster, Services and a status
/// mid-upgrade: about what `kubectl get emqx -o json` returns.
fn realistic_emqx() -> Value {
    json!({
        "apiVersion": "apps.emqx.io/v2beta1",
        "kind": "EMQX",
        "metadata": {"name": "emqx-ee", "namespace": "default", "generation": 3,
            "labels": {"app": "emqx"}, "annotations": {"team": "iot"}},
        "spec": {
            "image": "emqx/emqx-enterprise:5.10.0",
            "imagePullPolicy": "IfNotPresent",
            "config": {"data": "license {\n  key = \"...\"\n}\n"},
            "bootstrapAPIKeys": [{"key": "ops", "secret": "s3cr3t-value"}],
            "updateStrategy": {"type": "Recreate", "initialDelaySeconds": 10,
                "evacuationStrategy": {"connEvictRate": 1000, "sessEvictRate": 1000, "waitTakeover": 10}},
            "coreTemplate": {"metadata": {"labels": {"tier": "core"}}, "spec": {
                "replicas": 3,
                "resources": {"requests": {"cpu": "500m", "memory": "512Mi"}, "limits": {"cpu": "2", "memory": "2Gi"}},
                "env": [{"name": "EMQX_LOG__CONSOLE__LEVEL", "value": "info"}],
                "volumeClaimTemplates": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "10Gi"}}},
                "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "emqx", "effect": "NoSchedule"}],
                "affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 100,
                    "podAffinityTerm": {"topologyKey": "kubernetes.io/hostname",
                        "labelSelector": {"matchLabels": {"apps.emqx.io/instance": "emqx-ee"}}}}]}}
            }},
            "replicantTemplate": {"spec": {"replicas": 3, "maxUnavailable": 1,
                "resources": {"requests": {"cpu": "500m", "memory": "512Mi"}}}},
            "listenersServiceTemplate": {"spec": {"type": "LoadBalancer",
                "ports": [{"name": "mqtt", "port": 1883, "targetPort": 1883}]}}
        },
        "status": {
            "conditions": [{"type": "Available", "status": "True", "reason": "ServiceSwitched", "message": "",
                "lastTransitionTime": "2026-11-22T07:00:00Z", "observedGeneration": 3}],
            "coreNodesStatus": {"replicas": 6, "readyReplicas": 6, "currentRevision": "54fc496fb4",
                "currentReplicas": 3, "updateRevision": "5d87d4c6bd", "updateReplicas": 3},
            "coreNodes": [
                {"node": "emqx@emqx-ee-core-54fc496fb4-0.emqx-ee-headless.default.svc.cluster.local", "node_status": "running",
                 "otp_release": "26.2.5-3", "version": "5.10.0", "role": "core", "edition": "Enterprise", "connections": 3300, "live_connections": 3300}
            ],
            "nodeEvacuationsStatus": [{"node": "emqx@emqx-ee-replicant-54fc496fb4-xk2p9", "state": "evicting_conns",
                "connection_eviction_rate": 1000, "session_eviction_rate": 1000, "connection_goal": 0, "session_goal": 0,
                "session_recipients": ["emqx@10.0.0.7", "emqx@10.0.0.8"],
                "stats": {"initial_connected": 3300, "current_connected": 1200, "initial_sessions": 3300, "current_sessions": 3300}}]
        }
    })
}

fn realistic_v1beta4() -> Value {
    let text = include_str!("../tests/seeds/seed000-emqxenterprise-v1beta4.yaml");
    serde_saphyr::from_str(text).unwrap()
}

fn pipeline(obj: &Value, target: &str) -> Value {
    let defaulted = default_object(obj).unwrap();
    let verdict = validate_object(&defaulted, Some(obj)).unwrap();
    assert!(verdict.errors.is_empty(), "{:?}", verdict.errors);
    convert_object(&defaulted, target).unwrap()
}

fn bench(c: &mut Criterion) {
    let emqx = realistic_emqx();
    let v1beta4 = realistic_v1beta4();
    // Builds the schema cache outside the measurement, as a running webhook has.
    pipeline(&emqx, "apps.emqx.io/v2alpha2");
    c.bench_function("default+validate+convert EMQX v2beta1 -> v2alpha2", |b| {
        b.iter(|| pipeline(black_box(&emqx), "apps.emqx.io/v2alpha2"))
    });
    c.bench_function(
        "default+validate+convert EmqxEnterprise v1beta4 -> v2beta1",
        |b| b.iter(|| pipeline(black_box(&v1beta4), "apps.emqx.io/v2beta1")),
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
