//! What a simulated EMQX node is, derived the way the real container derives it:
//! from its pod's name, namespace, hostname, IP, environment, mounted files and
//! image. [`NodeConfig::from_pod`] is a pure function so the kubelet can call it.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::Duration;

use super::api_key::{ApiKey, parse_apps_file_v4, parse_bootstrap_file};
use super::hocon_env;
use super::licence::Licence;
use super::version::{ApiGeneration, BrokerVersion, Edition};

/// Everything a pod gives the EMQX container, as plain values.
#[derive(Debug, Clone)]
pub struct PodFacts {
    /// `metadata.name`.
    pub pod_name: String,
    /// `metadata.namespace`.
    pub namespace: String,
    /// The pod's hostname (`spec.hostname`, else the pod name).
    pub hostname: String,
    /// The pod IP the kubelet assigned (a loopback address in the sandbox).
    pub pod_ip: Ipv4Addr,
    /// The container image, e.g. `emqx/emqx-enterprise:5.8.9`.
    pub image: String,
    /// The container environment after the kubelet resolved references.
    pub env: BTreeMap<String, String>,
    /// Mounted files by absolute path (the bootstrap API-key file).
    pub files: BTreeMap<String, String>,
    /// Whether `/opt/emqx/data` outlives the pod (a PVC): then an evacuation
    /// persisted there resumes when a pod of the same name boots again.
    pub persistent_data: bool,
}

/// Node role in an EMQX 5 (Mria) cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Holds the database; the default.
    Core,
    /// Stateless node that replicates from cores.
    Replicant,
}

impl Role {
    /// The name EMQX prints in `/nodes`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Core => "core",
            Role::Replicant => "replicant",
        }
    }
}

/// What makes nodes find each other: DNS discovery name plus Erlang cookie.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DiscoveryKey {
    /// Headless Service DNS name (`EMQX_CLUSTER__DNS__NAME`), or the node name
    /// when the node has no discovery configured (a cluster of one).
    pub dns_name: String,
    /// `EMQX_NODE__COOKIE`; nodes with different cookies cannot connect.
    pub cookie: String,
}

/// Full configuration of one simulated node.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// Erlang node name, e.g. `emqx@emqx-core-0.emqx-headless.ns.svc.cluster.local`.
    pub node_name: String,
    /// Address the node binds its listeners on.
    pub ip: Ipv4Addr,
    /// Broker version from the image tag.
    pub version: BrokerVersion,
    /// Open source (no rebalance app) or Enterprise.
    pub edition: Edition,
    /// Core or replicant.
    pub role: Role,
    /// Cluster discovery.
    pub discovery: DiscoveryKey,
    /// API keys this node writes into the cluster's key table at boot (5.x
    /// bootstrap file on core nodes only; 4.4 apps). Requests are checked
    /// against the table, which every member shares ([`crate::cluster`]).
    pub api_keys: Vec<ApiKey>,
    /// Why the bootstrap file did not load in full (unreadable, or a bad
    /// line): EMQX logs it and boots with the keys it got.
    pub bootstrap_problem: Option<String>,
    /// HTTP API port: 18083 (5.x) or 8081 (4.4).
    pub http_port: u16,
    /// MQTT TCP port, 1883.
    pub mqtt_port: u16,
    /// Evacuation tick length; 1 s as in EMQX. Tests may shorten it.
    pub tick: Duration,
    /// Pause before retrying session migration when no recipient is available (30 s).
    pub no_recipient_retry: Duration,
    /// Whether the data dir survives a restart (evacuation resume, §5.5).
    pub persistent_data: bool,
    /// §5.6 switch: send `Server-Reference` for evacuations started over REST
    /// with `redirect_to` (EMQX probably does not; default false).
    pub rest_redirect_sets_server_reference: bool,
    /// What the licence allows (5.9+: a single-node licence shuts a node
    /// down when it joins others; [`crate::licence`]).
    pub licence: Licence,
}

/// Why a pod cannot become a node; names the field at fault.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    /// The image tag carries no usable version.
    #[error("image: {0}")]
    Image(String),
    /// An environment variable has a bad value.
    #[error("env {name}: {message}")]
    Env {
        /// Variable name.
        name: String,
        /// What is wrong.
        message: String,
    },
    /// A file the environment names is not mounted.
    #[error("env {name}: file {path} is not mounted in the pod")]
    MissingFile {
        /// Variable naming the file.
        name: String,
        /// Path it names.
        path: String,
    },
    /// A file the node reads at boot is malformed: the 4.4 bootstrap apps
    /// file (5.x never fails on its key file), or `emqx.conf`.
    #[error("{file}: {message}")]
    MalformedFile {
        /// File path.
        file: String,
        /// What is wrong, with the line number.
        message: String,
    },
    /// The licence key (or the config holding it) cannot be read: EMQX's
    /// licence app fails to start and the node shuts down.
    #[error("licence: {0}")]
    Licence(String),
}

impl ConfigError {
    /// Whether EMQX itself would start and then stop on this error (its
    /// boot script or config check exits non-zero: the container crashes
    /// and restarts) — every error but an image without a usable version,
    /// which in a real cluster never gets as far as running.
    pub fn is_boot_failure(&self) -> bool {
        !matches!(self, ConfigError::Image(_))
    }
}

/// The build's `EMQX_DEFAULT_ERLANG_COOKIE` (`rebar.config.erl`, v5.8.9).
const DEFAULT_COOKIE: &str = "emqxsecretcookie";

/// Where the container's `emqx.conf` is (`$EMQX_ETC_DIR`).
pub const EMQX_CONF: &str = "/opt/emqx/etc/emqx.conf";

/// The Erlang cookie as `bin/emqx` resolves it (v5.8.9 and e6.0.1, "Resolve
/// Erlang cookie"): the legacy `EMQX_NODE_COOKIE` replaces
/// `EMQX_NODE__COOKIE`; a non-empty `EMQX_NODE__COOKIE` is used as it is;
/// else `node.cookie` from `emqx.conf`; else the build default. 4.4 reads
/// no HOCON file here: env or default.
fn cookie(
    env: &BTreeMap<String, String>,
    files: &BTreeMap<String, String>,
    api: ApiGeneration,
) -> Result<String, ConfigError> {
    let from_env = env
        .get("EMQX_NODE_COOKIE")
        .filter(|c| !c.is_empty())
        .or_else(|| env.get("EMQX_NODE__COOKIE"))
        .filter(|c| !c.is_empty());
    if let Some(c) = from_env {
        return Ok(c.clone());
    }
    let conf = files.get(EMQX_CONF).filter(|_| api == ApiGeneration::V5);
    if let Some(text) = conf {
        let found = crate::hocon_paths::lookup(text, "node.cookie").map_err(|e| {
            ConfigError::MalformedFile {
                file: EMQX_CONF.into(),
                message: format!("node.cookie not readable: {e}"),
            }
        })?;
        if let Some(c) = found.filter(|c| !c.is_empty()) {
            return Ok(c);
        }
    }
    Ok(DEFAULT_COOKIE.to_string())
}

impl NodeConfig {
    /// Derives the node's configuration from what its pod provides, as the
    /// EMQX container's entrypoint would.
    pub fn from_pod(pod: &PodFacts) -> Result<NodeConfig, ConfigError> {
        let env = resolve_references(&pod.env);
        let version = BrokerVersion::from_image(&pod.image).map_err(ConfigError::Image)?;
        let edition = Edition::from_image(&pod.image, &version);
        let hostname = if pod.hostname.is_empty() {
            pod.pod_name.clone()
        } else {
            pod.hostname.clone()
        };
        let v5 = version.api() == ApiGeneration::V5;
        // 5.x and later read EMQX_* values as HOCON (`hocon_env`); 4.4 and
        // the shell scripts (node name, host, cookie) take the raw text.
        let dns_name = match version.api() {
            ApiGeneration::V5 => hocon_env::string_field(
                "EMQX_CLUSTER__DNS__NAME",
                env.get("EMQX_CLUSTER__DNS__NAME"),
            )?,
            ApiGeneration::V4 => env.get("EMQX_CLUSTER__DNS__NAME").cloned(),
        };
        let node_name = match version.api() {
            ApiGeneration::V5 => node_name_v5(&env, pod.pod_ip)?,
            ApiGeneration::V4 => node_name_v4(&env, &hostname, dns_name.as_deref(), pod.pod_ip)?,
        };
        let role = if v5 {
            hocon_env::enum_field(
                "EMQX_NODE__ROLE",
                env.get("EMQX_NODE__ROLE"),
                &["core", "replicant"],
            )?
        } else {
            env.get("EMQX_NODE__ROLE").cloned()
        };
        let role = match role.as_deref() {
            None | Some("core") => Role::Core,
            Some("replicant") if v5 => {
                if let Some(refusal) = version.replicant_refusal(edition) {
                    return Err(ConfigError::Env {
                        name: "EMQX_NODE__ROLE".into(),
                        message: format!("{refusal} (image {})", pod.image),
                    });
                }
                Role::Replicant
            }
            Some(other) => {
                return Err(ConfigError::Env {
                    name: "EMQX_NODE__ROLE".into(),
                    message: format!("`{other}` is not a role (core, replicant on 5.x)"),
                });
            }
        };
        let cookie = cookie(&env, &pod.files, version.api())?;
        let discovery = DiscoveryKey {
            dns_name: dns_name.unwrap_or_else(|| node_name.clone()),
            cookie,
        };
        let (api_keys, bootstrap_problem) =
            api_keys(&env, &pod.files, version.api(), edition, role)?;
        let licence =
            Licence::from_pod(&version, &env, &pod.files).map_err(ConfigError::Licence)?;
        Ok(NodeConfig {
            node_name,
            ip: pod.pod_ip,
            http_port: version.api().default_http_port(),
            mqtt_port: 1883,
            version,
            edition,
            role,
            discovery,
            api_keys,
            bootstrap_problem,
            tick: Duration::from_secs(1),
            no_recipient_retry: Duration::from_secs(30),
            persistent_data: pod.persistent_data,
            rest_redirect_sets_server_reference: false,
            licence,
        })
    }
}

/// Kubernetes `$(VAR)` expansion, for env handed over unresolved.
fn resolve_references(env: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    env.iter()
        .map(|(k, v)| {
            let mut value = v.clone();
            for (name, replacement) in env {
                if name != k && !replacement.contains("$(") {
                    value = value.replace(&format!("$({name})"), replacement);
                }
            }
            (k.clone(), value)
        })
        .collect()
}

fn check_host(name: &str, host: &str) -> Result<(), ConfigError> {
    let ok = !host.is_empty()
        && host.len() <= 253
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
    if ok {
        Ok(())
    } else {
        Err(ConfigError::Env {
            name: name.into(),
            message: format!("`{host}` is not a host name or IP address"),
        })
    }
}

fn node_prefix(env: &BTreeMap<String, String>) -> Result<String, ConfigError> {
    let name = env
        .get("EMQX_NAME")
        .cloned()
        .unwrap_or_else(|| "emqx".into());
    let ok = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'));
    if ok {
        Ok(name)
    } else {
        Err(ConfigError::Env {
            name: "EMQX_NAME".into(),
            message: format!("`{name}` is not a valid node name prefix"),
        })
    }
}

/// 5.x: `EMQX_NODE__NAME` wins; else `<EMQX_NAME|emqx>@<EMQX_HOST|pod IP>`.
fn node_name_v5(env: &BTreeMap<String, String>, ip: Ipv4Addr) -> Result<String, ConfigError> {
    if let Some(full) = env.get("EMQX_NODE__NAME") {
        return validate_full_name("EMQX_NODE__NAME", full);
    }
    let host = env
        .get("EMQX_HOST")
        .cloned()
        .unwrap_or_else(|| ip.to_string());
    check_host("EMQX_HOST", &host)?;
    Ok(format!("{}@{host}", node_prefix(env)?))
}

/// 4.4: `<EMQX_NAME>@<host>`; with SRV discovery the host is
/// `<hostname>.<cluster.dns.name>` (what the v1beta4 operator relies on).
fn node_name_v4(
    env: &BTreeMap<String, String>,
    hostname: &str,
    dns_name: Option<&str>,
    ip: Ipv4Addr,
) -> Result<String, ConfigError> {
    if let Some(full) = env.get("EMQX_NODE__NAME") {
        return validate_full_name("EMQX_NODE__NAME", full);
    }
    let srv = env.get("EMQX_CLUSTER__DNS__TYPE").map(String::as_str) == Some("srv");
    let host = match (env.get("EMQX_HOST"), srv, dns_name) {
        (Some(h), _, _) => h.clone(),
        (None, true, Some(dns)) => format!("{hostname}.{dns}"),
        _ => ip.to_string(),
    };
    check_host("EMQX_HOST", &host)?;
    Ok(format!("{}@{host}", node_prefix(env)?))
}

fn validate_full_name(var: &str, full: &str) -> Result<String, ConfigError> {
    match full.split_once('@') {
        Some((prefix, host)) if !prefix.is_empty() => {
            check_host(var, host)?;
            Ok(full.to_string())
        }
        _ => Err(ConfigError::Env {
            name: var.into(),
            message: format!("`{full}` is not of the form name@host"),
        }),
    }
}

fn api_keys(
    env: &BTreeMap<String, String>,
    files: &BTreeMap<String, String>,
    api: ApiGeneration,
    edition: Edition,
    role: Role,
) -> Result<(Vec<ApiKey>, Option<String>), ConfigError> {
    match api {
        ApiGeneration::V5 => bootstrap_keys_v5(env, files, edition, role),
        ApiGeneration::V4 => apps_v4(env, files).map(|keys| (keys, None)),
    }
}

/// 5.x/6.x: `try_init_bootstrap_file/0` (`emqx_mgmt_auth.erl`, v5.8.9 and
/// e6.0.1) reads the file on core nodes only — replicants get the keys
/// through the replicated table — and ignores every failure: a file that
/// cannot be opened or a bad line is logged, and the node boots.
fn bootstrap_keys_v5(
    env: &BTreeMap<String, String>,
    files: &BTreeMap<String, String>,
    edition: Edition,
    role: Role,
) -> Result<(Vec<ApiKey>, Option<String>), ConfigError> {
    const VAR: &str = "EMQX_API_KEY__BOOTSTRAP_FILE";
    // The value is HOCON (`hocon_env`): quoted or not, the same path; a
    // value that is no string fails EMQX's config check at boot. Empty is
    // the schema's default `<<>>`, no bootstrap file
    // (`emqx_mgmt_api_key_schema.erl`, e6.0.1).
    let Some(path) = hocon_env::string_field(VAR, env.get(VAR))?.filter(|p| !p.is_empty()) else {
        return Ok((Vec::new(), None));
    };
    if role != Role::Core {
        return Ok((Vec::new(), None));
    }
    let Some(contents) = files.get(&path) else {
        return Ok((
            Vec::new(),
            Some(format!("{VAR}: failed_to_open_the_bootstrap_file {path}")),
        ));
    };
    let load = parse_bootstrap_file(contents, edition);
    let problem = load
        .stopped
        .map(|why| format!("{path}: failed_to_load_bootstrap_file, {why}"));
    Ok((load.keys, problem))
}

/// 4.4: the apps file named by the v1beta4 operator's env (Secret
/// `<name>-bootstrap-user`); a bad file stops the boot.
fn apps_v4(
    env: &BTreeMap<String, String>,
    files: &BTreeMap<String, String>,
) -> Result<Vec<ApiKey>, ConfigError> {
    const VAR: &str = "EMQX_MANAGEMENT__BOOTSTRAP_APPS_FILE";
    let mut keys = Vec::new();
    if let Some(path) = env.get(VAR) {
        let contents = files.get(path).ok_or_else(|| ConfigError::MissingFile {
            name: VAR.to_string(),
            path: path.clone(),
        })?;
        keys = parse_apps_file_v4(contents).map_err(|message| ConfigError::MalformedFile {
            file: path.clone(),
            message,
        })?;
    }
    // 4.4 ships a default application admin/public unless configured otherwise.
    let id = env
        .get("EMQX_MANAGEMENT__DEFAULT_APPLICATION__ID")
        .cloned()
        .unwrap_or_else(|| "admin".into());
    let secret = env
        .get("EMQX_MANAGEMENT__DEFAULT_APPLICATION__SECRET")
        .cloned()
        .unwrap_or_else(|| "public".into());
    keys.push(ApiKey::administrator(id, secret));
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn core_pod() -> PodFacts {
        let mut env = BTreeMap::new();
        env.insert("POD_NAME".into(), "emqx-core-abc-0".into());
        env.insert(
            "EMQX_CLUSTER__DNS__NAME".into(),
            "emqx-headless.default.svc.cluster.local".into(),
        );
        env.insert(
            "EMQX_HOST".into(),
            "$(POD_NAME).$(EMQX_CLUSTER__DNS__NAME)".into(),
        );
        env.insert("EMQX_NODE__ROLE".into(), "core".into());
        env.insert("EMQX_NODE__COOKIE".into(), "c00kie".into());
        env.insert(
            "EMQX_API_KEY__BOOTSTRAP_FILE".into(),
            "/opt/emqx/data/bootstrap_api_key".into(),
        );
        let mut files = BTreeMap::new();
        files.insert(
            "/opt/emqx/data/bootstrap_api_key".into(),
            "emqx-operator-controller:abc123\n\nviewer:pw:viewer\n".into(),
        );
        PodFacts {
            pod_name: "emqx-core-abc-0".into(),
            namespace: "default".into(),
            hostname: "emqx-core-abc-0".into(),
            pod_ip: Ipv4Addr::new(127, 1, 0, 5),
            image: "emqx/emqx-enterprise:5.8.9".into(),
            env,
            files,
            persistent_data: true,
        }
    }

    #[test]
    fn core_pod_gets_dns_node_name_and_keys() {
        let c = NodeConfig::from_pod(&core_pod()).expect("valid pod");
        assert_eq!(
            c.node_name,
            "emqx@emqx-core-abc-0.emqx-headless.default.svc.cluster.local"
        );
        assert_eq!(c.role, Role::Core);
        assert_eq!(c.edition, Edition::Enterprise);
        assert_eq!(c.http_port, 18083);
        assert_eq!(c.discovery.cookie, "c00kie");
        assert_eq!(c.api_keys.len(), 2);
    }

    #[test]
    fn replicant_uses_pod_ip() {
        let mut pod = core_pod();
        pod.env.insert("EMQX_NODE__ROLE".into(), "replicant".into());
        pod.env.insert("EMQX_HOST".into(), "127.1.0.5".into());
        let c = NodeConfig::from_pod(&pod).expect("valid pod");
        assert_eq!(c.node_name, "emqx@127.1.0.5");
        assert_eq!(c.role, Role::Replicant);
    }

    #[test]
    fn open_source_5_8_refuses_the_replicant_role() {
        let mut pod = core_pod();
        pod.env.insert("EMQX_NODE__ROLE".into(), "replicant".into());
        pod.image = "emqx/emqx:5.8.9".into();
        let e = NodeConfig::from_pod(&pod).expect_err("refused at boot");
        assert!(e.is_boot_failure());
        let e = e.to_string();
        assert!(e.contains("EMQX_NODE__ROLE"), "{e}");
        assert!(e.contains("only allowed in Enterprise edition"), "{e}");
        // Its cores boot; older open source and newer builds take replicants.
        pod.env.insert("EMQX_NODE__ROLE".into(), "core".into());
        assert!(NodeConfig::from_pod(&pod).is_ok());
        pod.env.insert("EMQX_NODE__ROLE".into(), "replicant".into());
        for image in ["emqx/emqx:5.7.2", "emqx/emqx:5.9.0", "emqx/emqx:6.0.1"] {
            pod.image = image.into();
            assert!(NodeConfig::from_pod(&pod).is_ok(), "{image}");
        }
    }

    #[test]
    fn cookie_from_env_then_emqx_conf_then_default() {
        let mut pod = core_pod();
        pod.files
            .insert(EMQX_CONF.into(), "node { cookie = \"from-conf\" }".into());
        // The operator's env wins over the file.
        let c = NodeConfig::from_pod(&pod).expect("valid");
        assert_eq!(c.discovery.cookie, "c00kie");
        pod.env.insert("EMQX_NODE_COOKIE".into(), "legacy".into());
        assert_eq!(
            NodeConfig::from_pod(&pod).expect("valid").discovery.cookie,
            "legacy"
        );
        pod.env.remove("EMQX_NODE_COOKIE");
        // Unset or empty env: the file's node.cookie.
        for env in [None, Some("")] {
            match env {
                None => pod.env.remove("EMQX_NODE__COOKIE"),
                Some(v) => pod.env.insert("EMQX_NODE__COOKIE".into(), v.into()),
            };
            let c = NodeConfig::from_pod(&pod).expect("valid");
            assert_eq!(c.discovery.cookie, "from-conf");
        }
        // No node.cookie anywhere: the build's default.
        pod.files
            .insert(EMQX_CONF.into(), "log.console.level = info".into());
        assert_eq!(
            NodeConfig::from_pod(&pod).expect("valid").discovery.cookie,
            "emqxsecretcookie"
        );
        pod.files
            .insert(EMQX_CONF.into(), "node { cookie = ".into());
        let e = NodeConfig::from_pod(&pod).expect_err("unreadable emqx.conf");
        assert!(e.to_string().contains(EMQX_CONF), "{e}");
    }

    #[test]
    fn v1beta4_pod_gets_name_from_emqx_name_and_dns() {
        let mut env = BTreeMap::new();
        env.insert("EMQX_NAME".into(), "emqx-ee".into());
        env.insert("EMQX_CLUSTER__DISCOVERY".into(), "dns".into());
        env.insert("EMQX_CLUSTER__DNS__TYPE".into(), "srv".into());
        env.insert("EMQX_CLUSTER__DNS__APP".into(), "emqx-ee".into());
        env.insert(
            "EMQX_CLUSTER__DNS__NAME".into(),
            "emqx-ee-headless.default.svc.cluster.local".into(),
        );
        let pod = PodFacts {
            pod_name: "emqx-ee-0".into(),
            namespace: "default".into(),
            hostname: "emqx-ee-0".into(),
            pod_ip: Ipv4Addr::new(127, 1, 0, 9),
            image: "emqx/emqx-ee:4.4.19".into(),
            env,
            files: BTreeMap::new(),
            persistent_data: false,
        };
        let c = NodeConfig::from_pod(&pod).expect("valid pod");
        assert_eq!(
            c.node_name,
            "emqx-ee@emqx-ee-0.emqx-ee-headless.default.svc.cluster.local"
        );
        assert_eq!(c.http_port, 8081);
        assert_eq!(c.edition, Edition::Enterprise);
        assert_eq!(c.api_keys.len(), 1, "default admin app");

        // 4.4 reads its apps file by 4.4's rules: a blank line stops the boot,
        // while a 5.x bootstrap file skips it.
        let mut pod = pod;
        pod.env.insert(
            "EMQX_MANAGEMENT__BOOTSTRAP_APPS_FILE".into(),
            "/opt/emqx/data/apps".into(),
        );
        pod.files
            .insert("/opt/emqx/data/apps".into(), "op:se:cret\n".into());
        let c = NodeConfig::from_pod(&pod).expect("valid apps file");
        assert!(
            c.api_keys
                .iter()
                .any(|k| k.key == "op" && k.secret == "se:cret")
        );
        pod.files
            .insert("/opt/emqx/data/apps".into(), "op:secret\n\n".into());
        let e = NodeConfig::from_pod(&pod).expect_err("blank line");
        assert!(e.to_string().contains("/opt/emqx/data/apps"), "{e}");
        assert!(e.to_string().contains("line 2"), "{e}");
    }

    /// The Go operator 2.2.29 writes the bootstrap path HOCON-quoted; EMQX
    /// reads quoted and unquoted values alike (`hocon_env`).
    #[test]
    fn env_values_are_read_as_hocon_on_5x() {
        let plain = NodeConfig::from_pod(&core_pod()).expect("valid pod");
        let mut pod = core_pod();
        // The host is the shell's business (raw text): written out, as a
        // quoted DNS name expanded into it would not be a host.
        let host = "emqx-core-abc-0.emqx-headless.default.svc.cluster.local";
        pod.env.insert("EMQX_HOST".into(), host.into());
        for (name, value) in [
            (
                "EMQX_API_KEY__BOOTSTRAP_FILE",
                "\"/opt/emqx/data/bootstrap_api_key\"",
            ),
            ("EMQX_NODE__ROLE", "\"core\""),
            (
                "EMQX_CLUSTER__DNS__NAME",
                "\"emqx-headless.default.svc.cluster.local\"",
            ),
        ] {
            pod.env.insert(name.into(), value.into());
        }
        let quoted = NodeConfig::from_pod(&pod).expect("quoted values are valid");
        assert_eq!(quoted.api_keys, plain.api_keys);
        assert_eq!(quoted.role, plain.role);
        assert_eq!(quoted.discovery, plain.discovery);

        // A value EMQX would not take for a path fails as it would.
        pod.env
            .insert("EMQX_API_KEY__BOOTSTRAP_FILE".into(), "[a, b]".into());
        let e = NodeConfig::from_pod(&pod).expect_err("an array is no path");
        assert!(
            e.to_string().contains("EMQX_API_KEY__BOOTSTRAP_FILE"),
            "{e}"
        );
        // Empty is the schema's default: no bootstrap file, no API key.
        pod.env
            .insert("EMQX_API_KEY__BOOTSTRAP_FILE".into(), String::new());
        assert!(
            NodeConfig::from_pod(&pod)
                .expect("valid")
                .api_keys
                .is_empty()
        );
        let mut pod = core_pod();
        pod.env
            .insert("EMQX_NODE__ROLE".into(), "\"replicant\"".into());
        let c = NodeConfig::from_pod(&pod).expect("quoted role");
        assert_eq!(c.role, Role::Replicant);
    }

    /// 4.4 is not configured through HOCON: a quoted value keeps its quotes.
    #[test]
    fn env_values_are_raw_on_4_4() {
        let mut pod = core_pod();
        pod.image = "emqx/emqx-ee:4.4.19".into();
        pod.env.remove("EMQX_API_KEY__BOOTSTRAP_FILE");
        pod.env.insert("EMQX_HOST".into(), "emqx-core-abc-0".into());
        pod.env.insert(
            "EMQX_CLUSTER__DNS__NAME".into(),
            "\"emqx-headless.default.svc.cluster.local\"".into(),
        );
        let c = NodeConfig::from_pod(&pod).expect("valid pod");
        assert_eq!(
            c.discovery.dns_name,
            "\"emqx-headless.default.svc.cluster.local\""
        );
    }

    #[test]
    fn bad_inputs_name_the_field() {
        let mut pod = core_pod();
        pod.env.insert("EMQX_NODE__ROLE".into(), "boss".into());
        let e = NodeConfig::from_pod(&pod).expect_err("bad role");
        assert!(e.to_string().contains("EMQX_NODE__ROLE"), "{e}");

        let mut pod = core_pod();
        pod.env.insert("EMQX_HOST".into(), "bad host/\n".into());
        let e = NodeConfig::from_pod(&pod).expect_err("bad host");
        assert!(e.to_string().contains("EMQX_HOST"), "{e}");

        let mut pod = core_pod();
        pod.image = "emqx/emqx:latest".into();
        let e = NodeConfig::from_pod(&pod).expect_err("no version");
        assert!(e.to_string().starts_with("image"), "{e}");
    }

    #[test]
    fn bootstrap_file_problems_do_not_stop_the_boot() {
        // A bad line: the keys before it load, the node still boots.
        let mut pod = core_pod();
        pod.files.insert(
            "/opt/emqx/data/bootstrap_api_key".into(),
            "k:s\nnocolon\nemqx-operator-controller:abc\n".into(),
        );
        let c = NodeConfig::from_pod(&pod).expect("boots");
        assert_eq!(c.api_keys, vec![ApiKey::administrator("k", "s")]);
        let problem = c.bootstrap_problem.expect("reported");
        assert!(problem.contains("line 2"), "{problem}");
        // A file that is not there: logged, no keys, boots.
        let mut pod = core_pod();
        pod.files.clear();
        let c = NodeConfig::from_pod(&pod).expect("boots");
        assert!(c.api_keys.is_empty());
        let problem = c.bootstrap_problem.expect("reported");
        assert!(
            problem.contains("EMQX_API_KEY__BOOTSTRAP_FILE"),
            "{problem}"
        );
    }

    #[test]
    fn replicants_do_not_load_the_bootstrap_file() {
        let mut pod = core_pod();
        pod.env.insert("EMQX_NODE__ROLE".into(), "replicant".into());
        pod.env.insert("EMQX_HOST".into(), "127.1.0.5".into());
        let c = NodeConfig::from_pod(&pod).expect("valid pod");
        assert!(c.api_keys.is_empty());
        assert_eq!(c.bootstrap_problem, None);
        // Not even opened: a missing file is no problem on a replicant.
        pod.files.clear();
        assert!(
            NodeConfig::from_pod(&pod)
                .expect("boots")
                .bootstrap_problem
                .is_none()
        );
    }
}
