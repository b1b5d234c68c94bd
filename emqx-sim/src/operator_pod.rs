//! Pods as the EMQX operators build them (`docs/upstream-operator.md` §1.4,
//! §1.8), as [`PodFacts`]: for tests and the demo, and as a reference for what
//! the kubelet hook passes to [`super::NodeConfig::from_pod`].

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use super::config::{PodFacts, Role};

/// Mount path of the bootstrap API-key file (v2 operator).
pub const BOOTSTRAP_FILE: &str = "/opt/emqx/data/bootstrap_api_key";

/// A v2beta1 `EMQX` pod of cluster `cr` in `namespace`: core pods get
/// `EMQX_HOST=<pod>.<headless>`, replicants the pod IP.
pub fn v2_pod(
    cr: &str,
    namespace: &str,
    pod_name: &str,
    role: Role,
    ip: Ipv4Addr,
    image: &str,
    bootstrap_keys: &str,
) -> PodFacts {
    let dns = format!("{cr}-headless.{namespace}.svc.cluster.local");
    let host = match role {
        Role::Core => format!("{pod_name}.{dns}"),
        Role::Replicant => ip.to_string(),
    };
    let env: BTreeMap<String, String> = [
        ("POD_NAME", pod_name.to_string()),
        ("EMQX_CLUSTER__DISCOVERY_STRATEGY", "dns".into()),
        ("EMQX_CLUSTER__DNS__RECORD_TYPE", "srv".into()),
        ("EMQX_CLUSTER__DNS__NAME", dns),
        ("EMQX_HOST", host),
        ("EMQX_NODE__DATA_DIR", "data".into()),
        ("EMQX_NODE__ROLE", role.as_str().into()),
        ("EMQX_NODE__COOKIE", format!("{cr}-cookie")),
        ("EMQX_API_KEY__BOOTSTRAP_FILE", BOOTSTRAP_FILE.into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let files = BTreeMap::from([(BOOTSTRAP_FILE.to_string(), bootstrap_keys.to_string())]);
    PodFacts {
        pod_name: pod_name.into(),
        namespace: namespace.into(),
        hostname: pod_name.into(),
        pod_ip: ip,
        image: image.into(),
        env,
        files,
        // Cores keep /opt/emqx/data on a PVC when one is configured; the
        // fixture assumes none (emptyDir), as the operator's default.
        persistent_data: false,
    }
}

/// Mount path of the bootstrap apps file (v1beta4 operator, Secret `<cr>-bootstrap-user`).
pub const BOOTSTRAP_APPS_FILE: &str = "/opt/emqx/data/bootstrap_user";

/// A v1beta4 `EmqxEnterprise` pod (EMQX 4.4): identity from `emqxConfig` env,
/// API apps (`appid:secret` lines) from the mounted bootstrap-user file.
pub fn v1beta4_pod(
    cr: &str,
    namespace: &str,
    pod_name: &str,
    ip: Ipv4Addr,
    image: &str,
    bootstrap_apps: &str,
) -> PodFacts {
    let dns = format!("{cr}-headless.{namespace}.svc.cluster.local");
    let env: BTreeMap<String, String> = [
        ("EMQX_NAME", cr.to_string()),
        ("EMQX_LOG__TO", "console".into()),
        ("EMQX_CLUSTER__DISCOVERY", "dns".into()),
        ("EMQX_CLUSTER__DNS__TYPE", "srv".into()),
        ("EMQX_CLUSTER__DNS__APP", cr.to_string()),
        ("EMQX_CLUSTER__DNS__NAME", dns),
        ("EMQX_LISTENER__TCP__INTERNAL", String::new()),
        (
            "EMQX_MANAGEMENT__BOOTSTRAP_APPS_FILE",
            BOOTSTRAP_APPS_FILE.into(),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    PodFacts {
        pod_name: pod_name.into(),
        namespace: namespace.into(),
        hostname: pod_name.into(),
        pod_ip: ip,
        image: image.into(),
        env,
        files: BTreeMap::from([(BOOTSTRAP_APPS_FILE.to_string(), bootstrap_apps.to_string())]),
        persistent_data: false,
    }
}
