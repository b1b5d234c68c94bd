//! Names and labels of the objects the operator owns for a cluster, as the Go
//! operator spells them (upstream-operator.md §1.8), so clusters it created
//! can be adopted.

use std::collections::BTreeMap;

/// Label: the owning `EMQX`/`EmqxEnterprise` object's name.
pub const LABEL_INSTANCE: &str = "apps.emqx.io/instance";
/// Label: who manages the object.
pub const LABEL_MANAGED_BY: &str = "apps.emqx.io/managed-by";
/// Value of [`LABEL_MANAGED_BY`].
pub const MANAGED_BY: &str = "emqx-operator";
/// Label: `core` or `replicant`.
pub const LABEL_DB_ROLE: &str = "apps.emqx.io/db-role";
/// Label: the revision (pod-template hash) on sets, selectors and pods.
pub const LABEL_POD_TEMPLATE_HASH: &str = "apps.emqx.io/pod-template-hash";
/// Annotation carrying fields that have no counterpart in the object's
/// current version (JSON), restored when converted back.
pub const ANNOTATION_CONVERSION_DATA: &str = "apps.emqx.io/conversion-data";
/// Annotation: last `config.data` applied to EMQX.
pub const ANNOTATION_LAST_EMQX_CONFIGURATION: &str = "apps.emqx.io/last-emqx-configuration";
/// Annotation on the cluster: the revision (`status.coreNodesStatus.
/// updateRevision`, or `core/replicant` revisions with replicants) whose
/// upgrade with `updateStrategy.promotion: Manual` may move traffic. Naming
/// the revision keeps an annotation left from one upgrade from promoting
/// the next.
pub const ANNOTATION_PROMOTE: &str = "apps.emqx.io/promote";
/// Annotation on the cluster: the revision whose upgrade is aborted. Traffic
/// stays on (or goes back to) the old nodes and the new ones are scaled
/// away, until the spec asks for another revision or the annotation is
/// removed (a retry).
pub const ANNOTATION_ABORT: &str = "apps.emqx.io/abort";
/// Annotation on the cluster: `"true"` pauses reconciliation; the
/// operator observes and reports only.
pub const ANNOTATION_PAUSED: &str = "apps.emqx.io/reconcile-paused";
/// Pod annotation choosing the replicant ReplicaSet removes next.
pub const ANNOTATION_POD_DELETION_COST: &str = "controller.kubernetes.io/pod-deletion-cost";
/// Pod readiness gate that switches traffic.
pub const READINESS_GATE_ON_SERVING: &str = "apps.emqx.io/on-serving";
/// Key of `emqx.conf` in the `<name>-configs` ConfigMap.
pub const CONFIG_KEY: &str = "emqx.conf";
/// Key of the bootstrap API key file in `<name>-bootstrap-api-key`.
pub const BOOTSTRAP_API_KEY_KEY: &str = "bootstrap_api_key";
/// Key of the Erlang cookie in `<name>-node-cookie`.
pub const NODE_COOKIE_KEY: &str = "node_cookie";

/// The environment variables the operator sets on the EMQX container.
/// The renderer builds the container's env from these names and lets a user
/// entry of the same name replace the operator's; validation warns about
/// such overrides. One list for both, so they cannot drift apart.
pub mod env {
    use super::DbRole;

    /// The pod's name (field ref); EMQX_HOST of cores builds on it.
    pub const POD_NAME: &str = "POD_NAME";
    /// Replicants of EMQX 5 and later only: their node name is their IP.
    pub const POD_IP: &str = "POD_IP";
    /// EMQX 5+: cluster discovery (`dns`).
    pub const EMQX_CLUSTER__DISCOVERY_STRATEGY: &str = "EMQX_CLUSTER__DISCOVERY_STRATEGY";
    /// EMQX 5+: DNS record type (`srv`).
    pub const EMQX_CLUSTER__DNS__RECORD_TYPE: &str = "EMQX_CLUSTER__DNS__RECORD_TYPE";
    /// The headless Service's DNS name core nodes are found under.
    pub const EMQX_CLUSTER__DNS__NAME: &str = "EMQX_CLUSTER__DNS__NAME";
    /// The host part of the EMQX node name.
    pub const EMQX_HOST: &str = "EMQX_HOST";
    /// EMQX 5+: the data directory.
    pub const EMQX_NODE__DATA_DIR: &str = "EMQX_NODE__DATA_DIR";
    /// EMQX 5+: `core` or `replicant`.
    pub const EMQX_NODE__ROLE: &str = "EMQX_NODE__ROLE";
    /// EMQX 5+: the Erlang cookie (from the node-cookie Secret).
    pub const EMQX_NODE__COOKIE: &str = "EMQX_NODE__COOKIE";
    /// EMQX 5+: the bootstrap API-key file the operator calls EMQX with.
    pub const EMQX_API_KEY__BOOTSTRAP_FILE: &str = "EMQX_API_KEY__BOOTSTRAP_FILE";
    /// EMQX 5+: the dashboard (and REST API) port.
    pub const EMQX_DASHBOARD__LISTENERS__HTTP__BIND: &str = "EMQX_DASHBOARD__LISTENERS__HTTP__BIND";
    /// EMQX 4.4 (`emqxConfig` upstream): the node name's name part.
    pub const EMQX_NAME: &str = "EMQX_NAME";
    /// EMQX 4.4: cluster discovery (`dns`).
    pub const EMQX_CLUSTER__DISCOVERY: &str = "EMQX_CLUSTER__DISCOVERY";
    /// EMQX 4.4: DNS record type (`srv`).
    pub const EMQX_CLUSTER__DNS__TYPE: &str = "EMQX_CLUSTER__DNS__TYPE";
    /// EMQX 4.4: the node name's app part.
    pub const EMQX_CLUSTER__DNS__APP: &str = "EMQX_CLUSTER__DNS__APP";
    /// EMQX 4.4: log to the console.
    pub const EMQX_LOG__TO: &str = "EMQX_LOG__TO";
    /// EMQX 4.4: the bootstrap apps file the operator calls EMQX with.
    pub const EMQX_MANAGEMENT__BOOTSTRAP_APPS_FILE: &str = "EMQX_MANAGEMENT__BOOTSTRAP_APPS_FILE";

    const V5_CORE: &[&str] = &[
        POD_NAME,
        EMQX_CLUSTER__DISCOVERY_STRATEGY,
        EMQX_CLUSTER__DNS__RECORD_TYPE,
        EMQX_CLUSTER__DNS__NAME,
        EMQX_HOST,
        EMQX_NODE__DATA_DIR,
        EMQX_NODE__ROLE,
        EMQX_NODE__COOKIE,
        EMQX_API_KEY__BOOTSTRAP_FILE,
        EMQX_DASHBOARD__LISTENERS__HTTP__BIND,
    ];
    const V5_REPLICANT: &[&str] = &[
        POD_NAME,
        POD_IP,
        EMQX_CLUSTER__DISCOVERY_STRATEGY,
        EMQX_CLUSTER__DNS__RECORD_TYPE,
        EMQX_CLUSTER__DNS__NAME,
        EMQX_HOST,
        EMQX_NODE__DATA_DIR,
        EMQX_NODE__ROLE,
        EMQX_NODE__COOKIE,
        EMQX_API_KEY__BOOTSTRAP_FILE,
        EMQX_DASHBOARD__LISTENERS__HTTP__BIND,
    ];
    const V4: &[&str] = &[
        POD_NAME,
        EMQX_NAME,
        EMQX_HOST,
        EMQX_CLUSTER__DISCOVERY,
        EMQX_CLUSTER__DNS__TYPE,
        EMQX_CLUSTER__DNS__APP,
        EMQX_CLUSTER__DNS__NAME,
        EMQX_LOG__TO,
        EMQX_MANAGEMENT__BOOTSTRAP_APPS_FILE,
    ];

    /// The names the operator sets on a container of `role`, in the order it
    /// renders them: EMQX 4.4 (`emqx4`) or EMQX 5 and later.
    pub fn operator_set(emqx4: bool, role: DbRole) -> &'static [&'static str] {
        match (emqx4, role) {
            (true, _) => V4,
            (false, DbRole::Core) => V5_CORE,
            (false, DbRole::Replicant) => V5_REPLICANT,
        }
    }
}

/// The EMQX database role of a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DbRole {
    /// Core nodes (StatefulSet) hold the database.
    Core,
    /// Replicant nodes (ReplicaSet) replicate it.
    Replicant,
}

impl DbRole {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            DbRole::Core => "core",
            DbRole::Replicant => "replicant",
        }
    }
}

/// `<name>-core-<hash>`: the core StatefulSet of one revision.
pub fn core_set_name(name: &str, hash: &str) -> String {
    format!("{name}-core-{hash}")
}

/// `<name>-replicant-<hash>`: the replicant ReplicaSet of one revision.
pub fn replicant_set_name(name: &str, hash: &str) -> String {
    format!("{name}-replicant-{hash}")
}

/// The set name of a role and revision.
pub fn set_name(name: &str, role: DbRole, hash: &str) -> String {
    match role {
        DbRole::Core => core_set_name(name, hash),
        DbRole::Replicant => replicant_set_name(name, hash),
    }
}

/// `<name>-headless`: all core pods, for EMQX cluster discovery.
pub fn headless_service_name(name: &str) -> String {
    format!("{name}-headless")
}

/// `<name>-listeners`: the MQTT listeners Service.
pub fn listeners_service_name(name: &str) -> String {
    format!("{name}-listeners")
}

/// `<name>-dashboard`: the dashboard Service.
pub fn dashboard_service_name(name: &str) -> String {
    format!("{name}-dashboard")
}

/// `<name>-configs`: the ConfigMap with `emqx.conf`.
pub fn config_map_name(name: &str) -> String {
    format!("{name}-configs")
}

/// `<name>-bootstrap-api-key`: the operator's API key Secret.
pub fn bootstrap_api_key_secret_name(name: &str) -> String {
    format!("{name}-bootstrap-api-key")
}

/// `<name>-node-cookie`: the Erlang cookie Secret.
pub fn node_cookie_secret_name(name: &str) -> String {
    format!("{name}-node-cookie")
}

/// `<name>-core` / `<name>-replicant`: the PodDisruptionBudget of a role.
pub fn pdb_name(name: &str, role: DbRole) -> String {
    format!("{name}-{}", role.as_str())
}

/// `<name>-headless.<namespace>.svc.<clusterDomain>`: the DNS name core nodes
/// are found under.
pub fn headless_dns_name(name: &str, namespace: &str, cluster_domain: &str) -> String {
    format!(
        "{}.{namespace}.svc.{cluster_domain}",
        headless_service_name(name)
    )
}

/// Labels every owned object carries.
pub fn instance_labels(name: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (LABEL_INSTANCE.to_owned(), name.to_owned()),
        (LABEL_MANAGED_BY.to_owned(), MANAGED_BY.to_owned()),
    ])
}

/// Labels selecting all pods of a role (every revision): what Services select.
pub fn role_labels(name: &str, role: DbRole) -> BTreeMap<String, String> {
    let mut labels = instance_labels(name);
    labels.insert(LABEL_DB_ROLE.to_owned(), role.as_str().to_owned());
    labels
}

/// Labels of one revision of a role: set selector and pod template.
pub fn revision_labels(name: &str, role: DbRole, hash: &str) -> BTreeMap<String, String> {
    let mut labels = role_labels(name, role);
    labels.insert(LABEL_POD_TEMPLATE_HASH.to_owned(), hash.to_owned());
    labels
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_go_operator() {
        assert_eq!(
            core_set_name("emqx-ee", "54fc496fb4"),
            "emqx-ee-core-54fc496fb4"
        );
        assert_eq!(set_name("e", DbRole::Replicant, "h"), "e-replicant-h");
        assert_eq!(headless_service_name("e"), "e-headless");
        assert_eq!(listeners_service_name("e"), "e-listeners");
        assert_eq!(dashboard_service_name("e"), "e-dashboard");
        assert_eq!(config_map_name("e"), "e-configs");
        assert_eq!(bootstrap_api_key_secret_name("e"), "e-bootstrap-api-key");
        assert_eq!(pdb_name("e", DbRole::Core), "e-core");
        assert_eq!(
            headless_dns_name("emqx-ee", "default", "cluster.local"),
            "emqx-ee-headless.default.svc.cluster.local"
        );
    }

    #[test]
    fn revision_labels_extend_role_labels() {
        let labels = revision_labels("e", DbRole::Core, "abc");
        assert_eq!(labels.get(LABEL_INSTANCE).map(String::as_str), Some("e"));
        assert_eq!(
            labels.get(LABEL_MANAGED_BY).map(String::as_str),
            Some(MANAGED_BY)
        );
        assert_eq!(labels.get(LABEL_DB_ROLE).map(String::as_str), Some("core"));
        assert_eq!(
            labels.get(LABEL_POD_TEMPLATE_HASH).map(String::as_str),
            Some("abc")
        );
        assert_eq!(role_labels("e", DbRole::Replicant).len(), 3);
    }
}
