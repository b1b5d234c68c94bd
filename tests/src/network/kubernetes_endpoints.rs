//! The `kubernetes` Service's EndpointSlice. A cluster's kube-apiserver
//! writes it itself (its endpoint reconciler); the sandbox's runs with
//! `--endpoint-reconciler-type=none`, so the sandbox writes the one endpoint
//! (the apiserver's address and port) once. The service proxy then serves
//! the `kubernetes` ClusterIP as kube-proxy does, which is what in-cluster
//! clients (`KUBERNETES_SERVICE_HOST`) connect to.

use std::net::Ipv4Addr;

use anyhow::{Context, Result};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde_json::json;

/// The slice's name, as the apiserver names it.
pub const NAME: &str = "kubernetes";

/// The EndpointSlice of the `kubernetes` Service: port `https` → `ip:port`.
pub fn slice(ip: Ipv4Addr, port: u16) -> Result<EndpointSlice> {
    Ok(serde_json::from_value(json!({
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": NAME,
            "namespace": "default",
            "labels": {
                "kubernetes.io/service-name": "kubernetes",
                "endpointslice.kubernetes.io/managed-by": "sandbox",
            },
        },
        "addressType": "IPv4",
        "endpoints": [{"addresses": [ip.to_string()], "conditions": {"ready": true}}],
        "ports": [{"name": "https", "port": port, "protocol": "TCP"}],
    }))?)
}

/// Writes the slice (server-side apply).
pub async fn publish(client: &kube::Client, ip: Ipv4Addr, port: u16) -> Result<()> {
    let api: Api<EndpointSlice> = Api::namespaced(client.clone(), "default");
    api.patch(
        NAME,
        &PatchParams::apply("sandbox").force(),
        &Patch::Apply(&slice(ip, port)?),
    )
    .await
    .context("writing the kubernetes Service's EndpointSlice")?;
    Ok(())
}
