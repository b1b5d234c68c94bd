//! One engine, two kinds: `EMQX` v2beta1 and `EmqxEnterprise` read as
//! v2beta1 (the API server converts stored v1beta4 objects through the
//! webhook) have the same spec and status, so the pass is generic over
//! [`ClusterKind`].

use emqx_crd::v2beta1::{EMQX, EMQXSpec, EMQXStatus, EmqxEnterprise};
use kube::Resource;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::fmt::Debug;

/// A custom resource reconciled as the v2beta1 hub shape.
pub trait ClusterKind:
    Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
    + Clone
    + Debug
    + Serialize
    + DeserializeOwned
    + Send
    + Sync
    + 'static
{
    /// The spec, in the hub shape.
    fn hub_spec(&self) -> &EMQXSpec;
    /// The status, if any was written.
    fn hub_status(&self) -> Option<&EMQXStatus>;
    /// Whether users also read this kind as v1beta4, whose status carries
    /// the `Running` and `BlueGreenUpdating` conditions.
    fn v1beta4_conditions() -> bool {
        false
    }
    /// The version to write metadata (the operator's annotations) through:
    /// the storage version when it differs from the hub. A write through
    /// v2beta1 applies v2beta1's schema defaults (a liveness probe, ...) to
    /// a stored v1beta4 object, which changes its pod template and would
    /// start an upgrade nobody asked for.
    fn metadata_version() -> Option<&'static str> {
        None
    }
}

impl ClusterKind for EMQX {
    fn hub_spec(&self) -> &EMQXSpec {
        &self.spec
    }
    fn hub_status(&self) -> Option<&EMQXStatus> {
        self.status.as_ref()
    }
}

impl ClusterKind for EmqxEnterprise {
    fn hub_spec(&self) -> &EMQXSpec {
        &self.spec.emqx
    }
    fn hub_status(&self) -> Option<&EMQXStatus> {
        self.status.as_ref()
    }
    fn v1beta4_conditions() -> bool {
        true
    }
    fn metadata_version() -> Option<&'static str> {
        Some("v1beta4")
    }
}
