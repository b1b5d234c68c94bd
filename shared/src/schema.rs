//! Schema fragments for the CRDs that the derive cannot express on its own.
//!
//! Embedded core/v1 types with large schemas (containers, volumes, affinity,
//! lifecycle hooks) are emitted as open objects (`x-kubernetes-preserve-unknown-fields`):
//! their full schemas would make each CRD several hundred KiB, past the 256 KiB
//! limit of client-side `kubectl apply`. The Rust side still parses them with the
//! k8s-openapi types, and the webhook rejects fields those types do not know
//! (see `dynamic::validate_object`), so nothing is silently dropped when the
//! webhook runs. The kube-apiserver validates them again when the reconciler
//! creates the pods.

use schemars::{Schema, SchemaGenerator, json_schema};

/// An object whose inner schema is not spelled out in the CRD.
pub fn open_object(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true,
    })
}

/// A list of open objects.
pub fn open_object_list(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "array",
        "items": {
            "type": "object",
            "x-kubernetes-preserve-unknown-fields": true,
        },
    })
}

/// An embedded `ObjectMeta` as a template carries it: only labels and
/// annotations matter; the rest is kept as written.
pub fn template_metadata(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true,
        "properties": {
            "labels": {"type": "object", "additionalProperties": {"type": "string"}},
            "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
            "name": {"type": "string"},
            "namespace": {"type": "string"},
        },
    })
}

/// `IntOrString` as Kubernetes spells it in a structural schema.
pub fn int_or_string(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "x-kubernetes-int-or-string": true,
    })
}
