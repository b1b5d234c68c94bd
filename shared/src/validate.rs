//! Validation of typed objects: field-path errors (with the allowed range in
//! the message) and admission warnings, for create and update. What the CRD's
//! CEL rules check is checked here too, with the same bounds
//! ([`crate::limits`]), so a denial reads the same whichever layer catches it.

use crate::dynamic::{FieldError, Verdict};
use crate::evacuation::EvacuationStrategy;
use crate::image::{split_tag, tag_version};
use crate::limits::{
    DELAY_MAX, LONG_EVACUATION_SECONDS, MAX_BOOTSTRAP_KEYS, NAME_MAX, RATE_MAX, RATE_MIN,
    RATE_STORM_WARNING,
};
use crate::{v1beta4, v2alpha2, v2beta1};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

const PULL_POLICIES: &[&str] = &["Always", "Never", "IfNotPresent"];
const MAX_REPLICAS: i64 = 1000;
const MAX_HISTORY: i64 = 100;

/// Collects errors and warnings while walking an object.
#[derive(Debug, Default)]
struct Checker {
    verdict: Verdict,
}

impl Checker {
    fn error(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.verdict.errors.push(FieldError {
            path: path.into(),
            message: message.into(),
        });
    }

    fn warn(&mut self, message: impl Into<String>) {
        self.verdict.warnings.push(message.into());
    }

    fn range(&mut self, path: &str, value: Option<i32>, min: i64, max: i64) {
        let Some(value) = value.map(i64::from) else {
            return;
        };
        if value < min {
            self.error(
                path,
                format!("must be at least {min} (allowed: {min}..={max}), got {value}"),
            );
        } else if value > max {
            self.error(
                path,
                format!("must be at most {max} (allowed: {min}..={max}), got {value}"),
            );
        }
    }

    fn one_of(&mut self, path: &str, value: Option<&str>, allowed: &[&str]) {
        if let Some(value) = value
            && !allowed.contains(&value)
        {
            self.error(
                path,
                format!("must be one of {} (got {value:?})", allowed.join(", ")),
            );
        }
    }

    fn length(&mut self, path: &str, value: &str, min: usize, max: usize) {
        let len = value.chars().count();
        if len < min || len > max {
            self.error(
                path,
                format!("length must be {min}..={max} characters, got {len}"),
            );
        }
    }
}

/// Validates an `EMQX` v2beta1 (`enterprise == false`) or `EmqxEnterprise`
/// v2beta1 spec; `old` is the previous object's spec on update.
pub fn validate_hub(
    spec: &v2beta1::EMQXSpec,
    status: Option<&v2beta1::EMQXStatus>,
    old: Option<&v2beta1::EMQXSpec>,
    enterprise: bool,
) -> Verdict {
    let mut c = Checker::default();
    check_image(&mut c, "spec.image", &spec.image, enterprise);
    c.one_of(
        "spec.imagePullPolicy",
        spec.image_pull_policy.as_deref(),
        PULL_POLICIES,
    );
    // Keys are immutable: an object admitted before these checks existed
    // must not be locked against every other update.
    let new_keys = old.is_none_or(|o| o.bootstrap_api_keys != spec.bootstrap_api_keys);
    if let Some(keys) = &spec.bootstrap_api_keys {
        check_key_count(&mut c, keys.len());
        for (i, key) in keys.iter().enumerate() {
            let path = format!("spec.bootstrapAPIKeys[{i}]");
            let inline = key.key.is_some() || key.secret.is_some();
            if inline == key.secret_ref.is_some()
                || (inline && (key.key.is_none() || key.secret.is_none()))
            {
                c.error(&path, "set either key and secret, or secretRef (not both)");
            }
            if let Some(k) = &key.key {
                check_key_name(&mut c, &format!("{path}.key"), k, true);
                if new_keys {
                    check_bootstrap_key(&mut c, &format!("{path}.key"), k);
                }
            }
            if let Some(s) = &key.secret {
                c.length(&format!("{path}.secret"), s, 3, 128);
                if new_keys {
                    check_bootstrap_secret(&mut c, &format!("{path}.secret"), s);
                }
            }
        }
    }
    if let Some(config) = &spec.config {
        c.one_of(
            "spec.config.mode",
            config.mode.as_deref(),
            &["Merge", "Replace"],
        );
    }
    warn_node_cookie(
        &mut c,
        &spec.image,
        old.map(|o| o.config.as_ref().and_then(|c| c.data.as_deref())),
        spec.config.as_ref().and_then(|c| c.data.as_deref()),
    );
    check_cluster_domain(&mut c, spec.cluster_domain.as_deref());
    c.range(
        "spec.revisionHistoryLimit",
        spec.revision_history_limit,
        0,
        MAX_HISTORY,
    );
    check_templates(
        &mut c,
        &spec.image,
        spec.config.as_ref().and_then(|c| c.data.as_deref()),
        spec.update_strategy.as_ref(),
        spec.core_template.as_ref(),
        spec.replicant_template.as_ref(),
    );
    check_v2_tail(
        &mut c,
        spec.update_strategy.as_ref(),
        status.map(|s| [s.core_nodes.as_ref(), s.replicant_nodes.as_ref()]),
        old.map(|o| (o.bootstrap_api_keys.as_ref(), o.image.as_str())),
        (spec.bootstrap_api_keys.as_ref(), &spec.image),
    );
    c.verdict
}

/// Validates an `EMQX` v2alpha2 spec.
pub fn validate_v2alpha2(
    spec: &v2alpha2::EMQXSpec,
    status: Option<&v2alpha2::EMQXStatus>,
    old: Option<&v2alpha2::EMQXSpec>,
) -> Verdict {
    let mut c = Checker::default();
    c.warn("apps.emqx.io/v2alpha2 EMQX is deprecated; use apps.emqx.io/v2beta1");
    check_image(&mut c, "spec.image", &spec.image, false);
    c.one_of(
        "spec.imagePullPolicy",
        spec.image_pull_policy.as_deref(),
        PULL_POLICIES,
    );
    let new_keys = old.is_none_or(|o| o.bootstrap_api_keys != spec.bootstrap_api_keys);
    if let Some(keys) = &spec.bootstrap_api_keys {
        check_key_count(&mut c, keys.len());
        for (i, key) in keys.iter().enumerate() {
            let path = format!("spec.bootstrapAPIKeys[{i}]");
            check_key_name(&mut c, &format!("{path}.key"), &key.key, true);
            c.length(&format!("{path}.secret"), &key.secret, 3, 32);
            if new_keys {
                check_bootstrap_key(&mut c, &format!("{path}.key"), &key.key);
                check_bootstrap_secret(&mut c, &format!("{path}.secret"), &key.secret);
            }
        }
    }
    if let Some(config) = &spec.config {
        c.one_of(
            "spec.config.mode",
            config.mode.as_deref(),
            &["merge", "replace"],
        );
    }
    warn_node_cookie(
        &mut c,
        &spec.image,
        old.map(|o| o.config.as_ref().and_then(|c| c.data.as_deref())),
        spec.config.as_ref().and_then(|c| c.data.as_deref()),
    );
    check_cluster_domain(&mut c, spec.cluster_domain.as_deref());
    check_templates(
        &mut c,
        &spec.image,
        spec.config.as_ref().and_then(|c| c.data.as_deref()),
        spec.update_strategy.as_ref(),
        spec.core_template.as_ref(),
        spec.replicant_template.as_ref(),
    );
    check_v2_tail(
        &mut c,
        spec.update_strategy.as_ref(),
        status.map(|s| [s.core_nodes.as_ref(), s.replicant_nodes.as_ref()]),
        old.map(|o| (o.bootstrap_api_keys.as_ref(), o.image.as_str())),
        (spec.bootstrap_api_keys.as_ref(), &spec.image),
    );
    c.verdict
}

/// What v2beta1 and v2alpha2 check of their pod templates (same types), in
/// this order: the rollout settings, replicant support of the image, env
/// that overrides the operator's, and the licence the nodes get.
fn check_templates(
    c: &mut Checker,
    image: &str,
    config_data: Option<&str>,
    update_strategy: Option<&v2beta1::UpdateStrategy>,
    core: Option<&v2beta1::EMQXCoreTemplate>,
    replicant: Option<&v2beta1::EMQXReplicantTemplate>,
) {
    check_rollout(c, update_strategy, core, replicant);
    check_replicant_support(c, image, replicant);
    warn_env_overrides(c, image, core, replicant);
    if let Some(w) = crate::licence::spec_warning(image, config_data, core, replicant) {
        c.warn(w);
    }
}

/// `node.cookie` in `spec.config.data` becomes the cluster's cookie when
/// the cluster is created (Secret `<name>-node-cookie`, as the Go operator
/// does); pods get it as `EMQX_NODE__COOKIE`, which EMQX's `bin/emqx`
/// prefers over `emqx.conf`. Warns when it cannot be read, and when an
/// update changes it (no effect on a running cluster). `old` is `Some` on
/// update, with the previous `config.data`.
fn warn_node_cookie(c: &mut Checker, image: &str, old: Option<Option<&str>>, new: Option<&str>) {
    if crate::image::is_emqx4(image) {
        return;
    }
    let read = |data: Option<&str>| {
        data.map_or(Ok(None), |d| crate::hocon::lookup_string(d, "node.cookie"))
    };
    let new_cookie = match read(new) {
        Ok(cookie) => cookie,
        Err(e) => {
            c.warn(format!(
                "spec.config.data: node.cookie cannot be read ({e}); the operator generates the cluster's cookie instead"
            ));
            return;
        }
    };
    if let Some(old) = old
        && let Ok(old_cookie) = read(old)
        && old_cookie != new_cookie
    {
        c.warn(
            "spec.config.data: node.cookie is taken once, when the cluster is created (Secret <name>-node-cookie, given to pods as EMQX_NODE__COOKIE, which EMQX prefers over emqx.conf); changing it has no effect on this cluster",
        );
    }
}

/// A key of EMQX's bootstrap file, by what EMQX can read back
/// ([`crate::bootstrap_keys`]); the CRD's pattern already keeps inline keys
/// to letters, digits, `-` and `_`, so here only the operator's name is new.
fn check_bootstrap_key(c: &mut Checker, path: &str, key: &str) {
    if key == crate::bootstrap_keys::OPERATOR_API_KEY
        && let Some(problem) = crate::bootstrap_keys::key_problem(key)
    {
        c.error(path, problem);
    }
}

/// A secret of EMQX's bootstrap file ([`crate::bootstrap_keys`]); an empty
/// one is already denied by the length check.
fn check_bootstrap_secret(c: &mut Checker, path: &str, secret: &str) {
    if !secret.is_empty()
        && let Some(problem) = crate::bootstrap_keys::secret_problem(secret)
    {
        c.error(path, problem);
    }
}

/// Replicant pods of an image that refuses the replicant role at boot
/// ([`crate::edition::replicant_refusal`]) would restart without end; the
/// template's `replicas` defaults to 2 when omitted.
fn check_replicant_support(
    c: &mut Checker,
    image: &str,
    replicant: Option<&v2beta1::EMQXReplicantTemplate>,
) {
    let Some(template) = replicant else { return };
    let replicas = template.spec.as_ref().and_then(|s| s.replicas).unwrap_or(2);
    if replicas > 0
        && let Some(why) = crate::edition::replicant_refusal(image)
    {
        c.error(
            "spec.replicantTemplate.spec.replicas",
            format!("must be 0 with spec.image {image}: {why}"),
        );
    }
}

/// The rollout settings v2beta1 and v2alpha2 share (same types): the update
/// strategy and both pod templates.
fn check_rollout(
    c: &mut Checker,
    strategy: Option<&v2beta1::UpdateStrategy>,
    core: Option<&v2beta1::EMQXCoreTemplate>,
    replicant: Option<&v2beta1::EMQXReplicantTemplate>,
) {
    if let Some(strategy) = strategy {
        c.one_of(
            "spec.updateStrategy.type",
            strategy.type_.as_deref(),
            &["Recreate"],
        );
        c.one_of(
            "spec.updateStrategy.promotion",
            strategy.promotion.as_deref(),
            v2beta1::PROMOTIONS,
        );
        check_evacuation(
            c,
            "spec.updateStrategy",
            strategy.initial_delay_seconds,
            strategy.evacuation_strategy.as_ref(),
        );
        if let Some(guard) = &strategy.guard {
            check_guard(c, guard);
        }
    }
    if let Some(core) = core.and_then(|t| t.spec.as_ref()) {
        check_pod(c, "spec.coreTemplate.spec", &core.pod);
    }
    if let Some(replicant) = replicant.and_then(|t| t.spec.as_ref()) {
        check_pod(c, "spec.replicantTemplate.spec", replicant);
    }
}

/// What v2beta1 and v2alpha2 check after their own fields (the status type
/// is v2beta1's in both): the long-evacuation warning from the load in
/// `status`, and on update the transition rules of [`check_v2_update`].
fn check_v2_tail<K: PartialEq, N: NodeLoad>(
    c: &mut Checker,
    strategy: Option<&v2beta1::UpdateStrategy>,
    status_nodes: Option<[Option<&Vec<N>>; 2]>,
    old: Option<(Option<&Vec<K>>, &str)>,
    new: (Option<&Vec<K>>, &str),
) {
    if let Some(nodes) = status_nodes {
        let load: Vec<(i64, i64)> = nodes.into_iter().flatten().flatten().map(N::load).collect();
        let evacuation = strategy.and_then(|s| s.evacuation_strategy.as_ref());
        warn_long_evacuation(c, evacuation, &load);
    }
    if let Some(old) = old {
        check_v2_update(c, old, new);
    }
}

/// `(live connections, sessions)` of a node in `status`.
trait NodeLoad {
    fn load(&self) -> (i64, i64);
}

impl NodeLoad for v2beta1::EMQXNode {
    fn load(&self) -> (i64, i64) {
        (
            self.live_connections.unwrap_or(0),
            self.connections.unwrap_or(0),
        )
    }
}

impl NodeLoad for v2alpha2::EMQXNode {
    fn load(&self) -> (i64, i64) {
        (
            self.live_connections.unwrap_or(0),
            self.connections.unwrap_or(0),
        )
    }
}

/// The object's name: see [`NAME_MAX`] for where the limit comes from. An
/// empty name (a `generateName` create, at `/mutate`) is checked once the
/// apiserver has generated it, at `/validate`. Like the CRD's CEL rule, also
/// on update: an object named longer never reconciled and can be deleted.
pub fn check_name(name: Option<&str>) -> Option<FieldError> {
    let len = name?.chars().count();
    (len > NAME_MAX).then(|| FieldError {
        path: "metadata.name".into(),
        message: format!(
            "must be at most {NAME_MAX} characters, got {len}: the operator names the core StatefulSet <name>-core-<revision>, and Kubernetes labels its pods with <set>-<hash>, which must fit in 63 characters"
        ),
    })
}

/// v2 update rules: bootstrap keys are immutable once set, and no in-place
/// move between EMQX 4 and 5. Arguments are (keys, image), old then new.
fn check_v2_update<K: PartialEq>(
    c: &mut Checker,
    old: (Option<&Vec<K>>, &str),
    new: (Option<&Vec<K>>, &str),
) {
    if old.0.is_some() && new.0 != old.0 {
        c.error(
            "spec.bootstrapAPIKeys",
            "bootstrapAPIKeys cannot be updated",
        );
    }
    check_major_change(c, old.1, new.1);
}

/// Validates an `EmqxEnterprise` v1beta4 spec, with the Go operator's checks
/// and messages plus the evacuation bounds.
pub fn validate_v1beta4(
    spec: &v1beta4::EmqxEnterpriseSpec,
    status: Option<&v1beta4::EmqxEnterpriseStatus>,
    old: Option<&v1beta4::EmqxEnterpriseSpec>,
) -> Verdict {
    let mut c = Checker::default();
    c.range("spec.replicas", spec.replicas, 0, MAX_REPLICAS);
    check_cluster_domain(&mut c, spec.cluster_domain.as_deref());
    if let Some(update) = &spec.blue_green_update {
        check_evacuation(
            &mut c,
            "spec.blueGreenUpdate",
            update.initial_delay_seconds,
            update.evacuation_strategy.as_ref(),
        );
    }
    let container = spec
        .template
        .as_ref()
        .and_then(|t| t.spec.as_ref())
        .and_then(|s| s.emqx_container.as_ref());
    let container_path = "spec.template.spec.emqxContainer";
    if let Some(container) = container {
        check_v4_version(
            &mut c,
            &format!("{container_path}.image.version"),
            &container.image.version,
        );
        c.one_of(
            &format!("{container_path}.image.pullPolicy"),
            container.image.pull_policy.as_deref(),
            PULL_POLICIES,
        );
        if let Some(keys) = &container.bootstrap_api_keys {
            check_key_count(&mut c, keys.len());
            for (i, key) in keys.iter().enumerate() {
                let path = format!("{container_path}.bootstrapAPIKeys[{i}]");
                check_key_name(&mut c, &format!("{path}.key"), &key.key, false);
                c.length(&format!("{path}.secret"), &key.secret, 3, 32);
            }
        }
        // A v1beta4 object is served as a v2beta1 one whose core pods get
        // this env (`convert.rs`), so the same names are the operator's here;
        // the image decides the list exactly as the renderer sees it.
        warn_overrides_in(
            &mut c,
            &format!("{container_path}.env"),
            crate::image::is_emqx4(&container.image.reference()),
            crate::names::DbRole::Core,
            container.env.as_deref(),
        );
    }
    if let Some(status) = status {
        let load: Vec<(i64, i64)> = status
            .emqx_nodes
            .iter()
            .flatten()
            .map(|n| (n.connections.unwrap_or(0), n.connections.unwrap_or(0)))
            .collect();
        let evacuation = spec
            .blue_green_update
            .as_ref()
            .and_then(|b| b.evacuation_strategy.as_ref());
        warn_long_evacuation(&mut c, evacuation, &load);
    }
    if let Some(old) = old {
        let old_container = old
            .template
            .as_ref()
            .and_then(|t| t.spec.as_ref())
            .and_then(|s| s.emqx_container.as_ref());
        let keys =
            |c: Option<&v1beta4::EmqxContainer>| c.and_then(|c| c.bootstrap_api_keys.clone());
        if keys(old_container).is_some() && keys(container) != keys(old_container) {
            c.error(
                format!("{container_path}.bootstrapAPIKeys"),
                "bootstrap APIKey cannot be updated",
            );
        }
        if old.persistent.is_some() && spec.persistent != old.persistent {
            c.error("spec.persistent", "refuse to update Persistent");
        }
        let config = |c: Option<&v1beta4::EmqxContainer>| {
            c.and_then(|c| c.emqx_config.clone()).unwrap_or_default()
        };
        let (new_config, old_config) = (config(container), config(old_container));
        let config_path = format!("{container_path}.emqxConfig");
        if let (Some(was), Some(now)) = (old_config.get("name"), new_config.get("name"))
            && was != now
        {
            c.error(
                    format!("{config_path}.name"),
                    "refuse to update the \"name\" field in \".spec.template.spec.emqxContainer.emqxConfig\"",
                );
        }
        for (key, was) in old_config.iter().filter(|(k, _)| k.starts_with("cluster")) {
            if new_config.get(key).is_some_and(|now| now != was) {
                c.error(
                    format!("{config_path}.{key}"),
                    "refuse to update the \"^cluster.*$\" field in \".spec.template.spec.emqxContainer.emqxConfig\"",
                );
            }
        }
    }
    c.verdict
}

fn check_key_count(c: &mut Checker, count: usize) {
    if count as u64 > MAX_BOOTSTRAP_KEYS {
        c.error(
            "spec.bootstrapAPIKeys",
            format!("at most {MAX_BOOTSTRAP_KEYS} keys (got {count})"),
        );
    }
}

fn check_key_name(c: &mut Checker, path: &str, key: &str, dash_allowed: bool) {
    let ok = !key.is_empty()
        && key.len() <= 128
        && key
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || ch == '_' || (dash_allowed && ch == '-'));
    if !ok {
        let allowed = if dash_allowed {
            "letters, digits, '-' and '_'"
        } else {
            "letters, digits and '_'"
        };
        c.error(path, format!("must be 1..=128 characters of {allowed}"));
    }
}

fn check_cluster_domain(c: &mut Checker, domain: Option<&str>) {
    let Some(domain) = domain else { return };
    let ok = !domain.is_empty()
        && domain.len() <= 253
        && domain.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || ch == '-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        });
    if !ok {
        c.error(
            "spec.clusterDomain",
            "must be a DNS domain such as cluster.local",
        );
    }
}

/// `updateStrategy.guard`: the same ranges as the CRD's `minimum`/`maximum`.
fn check_guard(c: &mut Checker, guard: &crate::guard::Guard) {
    use crate::guard::{
        FAILURES_MAX, FAILURES_MIN, MIN_PERCENT_MAX, MIN_PERCENT_MIN, WINDOW_MAX, WINDOW_MIN,
    };
    const PATH: &str = "spec.updateStrategy.guard";
    if let Some(r) = &guard.connection_recovery {
        c.range(
            &format!("{PATH}.connectionRecovery.minPercent"),
            r.min_percent,
            MIN_PERCENT_MIN,
            MIN_PERCENT_MAX,
        );
        c.range(
            &format!("{PATH}.connectionRecovery.windowSeconds"),
            r.window_seconds,
            WINDOW_MIN,
            WINDOW_MAX,
        );
    }
    if let Some(f) = &guard.connect_failures {
        c.range(
            &format!("{PATH}.connectFailures.maxPerMinute"),
            f.max_per_minute,
            FAILURES_MIN,
            FAILURES_MAX,
        );
    }
}

fn check_evacuation(
    c: &mut Checker,
    prefix: &str,
    initial_delay: Option<i32>,
    evacuation: Option<&EvacuationStrategy>,
) {
    c.range(
        &format!("{prefix}.initialDelaySeconds"),
        initial_delay,
        0,
        DELAY_MAX,
    );
    let Some(e) = evacuation else { return };
    let path = format!("{prefix}.evacuationStrategy");
    c.range(
        &format!("{path}.waitTakeover"),
        e.wait_takeover,
        0,
        DELAY_MAX,
    );
    c.range(
        &format!("{path}.connEvictRate"),
        e.conn_evict_rate,
        RATE_MIN,
        RATE_MAX,
    );
    c.range(
        &format!("{path}.sessEvictRate"),
        e.sess_evict_rate,
        RATE_MIN,
        RATE_MAX,
    );
    for (name, rate) in [
        ("connEvictRate", e.conn_evict_rate),
        ("sessEvictRate", e.sess_evict_rate),
    ] {
        if let Some(rate) = rate
            .map(i64::from)
            .filter(|r| (RATE_STORM_WARNING + 1..=RATE_MAX).contains(r))
        {
            c.warn(format!(
                "{path}.{name} is {rate}/s: evicting more than {RATE_STORM_WARNING} per second invites a reconnect storm on the new nodes"
            ));
        }
    }
}

/// Warns when draining every node at the configured rates, with the load in
/// `status` (`(connections, sessions)` per node), would take over an hour.
fn warn_long_evacuation(
    c: &mut Checker,
    evacuation: Option<&EvacuationStrategy>,
    load: &[(i64, i64)],
) {
    let Some(e) = evacuation else { return };
    let conn_rate = i64::from(e.conn_evict_rate.unwrap_or(1000)).max(1);
    let sess_rate = i64::from(e.sess_evict_rate.unwrap_or(1000)).max(1);
    let wait = i64::from(e.wait_takeover.unwrap_or(0)).max(0);
    let seconds: i64 = load
        .iter()
        .map(|(conns, sessions)| conns.max(&0) / conn_rate + wait + sessions.max(&0) / sess_rate)
        .fold(0i64, i64::saturating_add);
    if seconds > LONG_EVACUATION_SECONDS {
        c.warn(format!(
            "evacuating the current {} nodes at these rates takes about {} minutes (over an hour); consider higher connEvictRate/sessEvictRate",
            load.len(),
            seconds / 60
        ));
    }
}

fn check_pod(c: &mut Checker, prefix: &str, pod: &v2beta1::EMQXReplicantTemplateSpec) {
    c.range(&format!("{prefix}.replicas"), pod.replicas, 0, MAX_REPLICAS);
    if pod.min_available.is_some() && pod.max_unavailable.is_some() {
        c.error(
            format!("{prefix}.minAvailable"),
            "minAvailable cannot be set when maxUnavailable is specified. These fields are mutually exclusive in PodDisruptionBudget.",
        );
    }
    for (name, value) in [
        ("minAvailable", &pod.min_available),
        ("maxUnavailable", &pod.max_unavailable),
    ] {
        match value {
            Some(IntOrString::Int(n)) if *n < 0 => c.error(
                format!("{prefix}.{name}"),
                format!("must be at least 0, got {n}"),
            ),
            Some(IntOrString::String(s)) if !is_percent(s) => c.error(
                format!("{prefix}.{name}"),
                format!("must be an integer or a percentage such as \"50%\", got {s:?}"),
            ),
            _ => {}
        }
    }
}

fn is_percent(s: &str) -> bool {
    s.strip_suffix('%')
        .and_then(|n| n.parse::<u32>().ok())
        .is_some_and(|n| n <= 100)
}

/// v2 images: a pinned tag (not `latest`) or a digest; the `EMQX` kind needs
/// EMQX 5 or later, `EmqxEnterprise` v2beta1 also runs EMQX 4.4.
fn check_image(c: &mut Checker, path: &str, image: &str, enterprise: bool) {
    if image.trim().is_empty() {
        c.error(
            path,
            "must name an EMQX image, e.g. emqx/emqx-enterprise:5.10.0",
        );
        return;
    }
    if image.len() > 1024 || image.chars().any(char::is_whitespace) {
        c.error(
            path,
            "must be an image reference without spaces, at most 1024 characters",
        );
        return;
    }
    if image.contains('@') {
        return;
    }
    let (_, tag) = split_tag(image);
    let Some(tag) = tag.filter(|t| !t.is_empty() && *t != "latest") else {
        c.error(
            path,
            "must pin a version: a tag other than latest (e.g. :5.10.0) or a digest",
        );
        return;
    };
    match tag_version(tag) {
        Some(v) if v[0] < 5 && !enterprise => c.error(
            path,
            format!("the EMQX kind runs EMQX 5.1.1 or later (got {tag}); EMQX 4.4 clusters are EmqxEnterprise objects"),
        ),
        Some(v) if v[0] < 4 || (v[0] == 4 && v.get(1).is_some_and(|m| *m < 4)) => c.error(
            path,
            format!("EMQX {tag} is not supported (allowed: 4.4.14 up to 5.0, or 5.1.1 and later)"),
        ),
        Some(_) => {}
        None => c.warn(format!("{path}: tag {tag:?} does not name an EMQX version; version checks skipped")),
    }
}

/// v1beta4's version rules and messages (upstream webhook).
fn check_v4_version(c: &mut Checker, path: &str, version: &str) {
    if version == "latest" {
        c.error(path, "image version can not be latest");
        return;
    }
    let Some(v) = tag_version(version) else {
        c.error(path, format!("invalid image version: {version}"));
        return;
    };
    let padded = [
        v[0],
        v.get(1).copied().unwrap_or(0),
        v.get(2).copied().unwrap_or(0),
    ];
    if padded < [4, 4, 14] {
        c.error(
            path,
            format!("image version {version} is too old, please upgrade to 4.4.14 or later"),
        );
    } else if padded >= [5, 0, 0] {
        c.error(
            path,
            format!("image version {version} is too new, please downgrade to 5.0.0 earlier"),
        );
    }
}

/// No in-place upgrade from EMQX 4 to 5 (or back): the data is incompatible.
fn check_major_change(c: &mut Checker, old: &str, new: &str) {
    let major = |image: &str| split_tag(image).1.and_then(tag_version).map(|v| v[0]);
    if let (Some(was), Some(now)) = (major(old), major(new))
        && (was <= 4) != (now <= 4)
    {
        c.error(
                "spec.image",
                format!("cannot change EMQX {was} to {now} in place; create a new cluster (see emqx-migrate)"),
            );
    }
}

/// A user env entry named like one the operator sets replaces the
/// operator's (as under the Go operator, where the later duplicate wins):
/// allowed, but said, since those variables make the node join its cluster
/// and let the operator reach EMQX's API. The names come from
/// [`crate::names::env`], the list the renderer builds the env from.
fn warn_env_overrides(
    c: &mut Checker,
    image: &str,
    core: Option<&v2beta1::EMQXCoreTemplate>,
    replicant: Option<&v2beta1::EMQXReplicantTemplate>,
) {
    use crate::names::DbRole;
    let emqx4 = crate::image::is_emqx4(image);
    let core = core.and_then(|t| t.spec.as_ref()).map(|s| &s.pod);
    let replicant = replicant.and_then(|t| t.spec.as_ref());
    warn_overrides_in(
        c,
        "spec.coreTemplate.spec.env",
        emqx4,
        DbRole::Core,
        core.and_then(|p| p.env.as_deref()),
    );
    warn_overrides_in(
        c,
        "spec.replicantTemplate.spec.env",
        emqx4,
        DbRole::Replicant,
        replicant.and_then(|p| p.env.as_deref()),
    );
}

/// [`warn_env_overrides`] for one container's `env` at `path`, whose pods
/// have `role` and run EMQX 4.4 (`emqx4`) or a later EMQX.
fn warn_overrides_in(
    c: &mut Checker,
    path: &str,
    emqx4: bool,
    role: crate::names::DbRole,
    user: Option<&[k8s_openapi::api::core::v1::EnvVar]>,
) {
    let own = crate::names::env::operator_set(emqx4, role);
    for (i, entry) in user.unwrap_or_default().iter().enumerate() {
        if own.contains(&entry.name.as_str()) {
            c.warn(format!(
                "{path}[{i}]: {name} overrides the {name} the operator sets on {role} nodes; \
                 the value given here is used instead of the operator's (a wrong one can keep \
                 nodes from clustering or the operator from reaching the EMQX API)",
                name = entry.name,
                role = role.as_str(),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hub(image: &str) -> v2beta1::EMQXSpec {
        v2beta1::EMQXSpec {
            image: image.into(),
            ..Default::default()
        }
    }

    fn replicants(spec: &mut v2beta1::EMQXSpec, replicas: Option<i32>) {
        spec.replicant_template = Some(v2beta1::EMQXReplicantTemplate {
            metadata: None,
            spec: Some(v2beta1::EMQXReplicantTemplateSpec {
                replicas,
                ..Default::default()
            }),
        });
    }

    #[test]
    fn replicants_of_open_source_5_8_are_denied_naming_field_and_image() {
        let mut spec = hub("emqx/emqx:5.8.9");
        replicants(&mut spec, Some(3));
        let v = validate_hub(&spec, None, None, false);
        assert_eq!(v.errors.len(), 1, "{:?}", v.errors);
        assert_eq!(v.errors[0].path, "spec.replicantTemplate.spec.replicas");
        let message = &v.errors[0].message;
        assert!(message.contains("emqx/emqx:5.8.9"), "{message}");
        assert!(
            message.contains("only allowed in Enterprise edition"),
            "{message}"
        );
        // Omitted replicas default to 2: still replicants.
        replicants(&mut spec, None);
        assert_eq!(validate_hub(&spec, None, None, false).errors.len(), 1);
        // No replicant pods, no problem; other builds run replicants.
        replicants(&mut spec, Some(0));
        assert!(validate_hub(&spec, None, None, false).errors.is_empty());
        for image in [
            "emqx/emqx-enterprise:5.8.9",
            "emqx/emqx:5.7.2",
            "emqx/emqx:5.9.0",
            "emqx/emqx:6.0.1",
        ] {
            let mut spec = hub(image);
            replicants(&mut spec, Some(2));
            let v = validate_hub(&spec, None, None, false);
            assert!(v.errors.is_empty(), "{image}: {:?}", v.errors);
        }
        // v2alpha2 shares the rule.
        let spec = v2alpha2::EMQXSpec {
            image: "emqx/emqx:5.8.0".into(),
            replicant_template: Some(v2beta1::EMQXReplicantTemplate::default()),
            ..Default::default()
        };
        let v = validate_v2alpha2(&spec, None, None);
        assert!(
            v.errors
                .iter()
                .any(|e| e.path == "spec.replicantTemplate.spec.replicas"),
            "{:?}",
            v.errors
        );
    }

    #[test]
    fn node_cookie_changes_and_unreadable_cookies_are_warned_about() {
        let with = |data: &str| {
            let mut spec = hub("emqx/emqx-enterprise:5.8.9");
            spec.config = Some(v2beta1::Config {
                data: Some(data.into()),
                ..Default::default()
            });
            spec
        };
        let a = with("node.cookie = a");
        assert!(validate_hub(&a, None, None, false).warnings.is_empty());
        let v = validate_hub(&with("node { cookie = b }"), None, Some(&a), false);
        assert_eq!(v.warnings.len(), 1, "{:?}", v.warnings);
        assert!(v.warnings[0].contains("once, when the cluster is created"));
        assert!(v.errors.is_empty());
        let same = validate_hub(&with("node { cookie = \"a\" }"), None, Some(&a), false);
        assert!(same.warnings.is_empty(), "{:?}", same.warnings);
        let v = validate_hub(&with("node.cookie = ${COOKIE}"), None, None, false);
        assert!(v.warnings[0].contains("cannot be read"), "{:?}", v.warnings);
    }

    #[test]
    fn bootstrap_secrets_emqx_would_misread_are_denied() {
        let key = |k: &str, s: &str| v2beta1::BootstrapAPIKey {
            key: Some(k.into()),
            secret: Some(s.into()),
            secret_ref: None,
        };
        let mut spec = hub("emqx/emqx-enterprise:5.8.9");
        spec.bootstrap_api_keys = Some(vec![
            key("fine", "s3cret"),
            key("colon", "pa:ss"),
            key("newline", "pa\nss"),
            key("emqx-operator-controller", "s3cret"),
            key("spaced", "s3cret "),
        ]);
        let v = validate_hub(&spec, None, None, false);
        let paths: Vec<&str> = v.errors.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "spec.bootstrapAPIKeys[1].secret",
                "spec.bootstrapAPIKeys[2].secret",
                "spec.bootstrapAPIKeys[3].key",
                "spec.bootstrapAPIKeys[4].secret",
            ]
        );
        assert!(
            v.errors[0].message.contains("role"),
            "{}",
            v.errors[0].message
        );
        // An object admitted before this check can still be updated
        // otherwise: its keys are immutable and already written.
        let mut updated = spec.clone();
        updated.image = "emqx/emqx-enterprise:5.8.10".into();
        let v = validate_hub(&updated, None, Some(&spec), false);
        assert!(v.errors.is_empty(), "{:?}", v.errors);
        let spec = v2alpha2::EMQXSpec {
            image: "emqx/emqx-enterprise:5.8.9".into(),
            bootstrap_api_keys: Some(vec![v2alpha2::BootstrapAPIKey {
                key: "k".into(),
                secret: "a:viewer".into(),
            }]),
            ..Default::default()
        };
        let v = validate_v2alpha2(&spec, None, None);
        assert!(
            v.errors
                .iter()
                .any(|e| e.path == "spec.bootstrapAPIKeys[0].secret"),
            "{:?}",
            v.errors
        );
    }

    #[test]
    fn an_unknown_promotion_names_the_field_and_the_values() {
        let mut spec = hub("emqx/emqx:5.8.0");
        for ok in ["Automatic", "Manual"] {
            spec.update_strategy = Some(v2beta1::UpdateStrategy {
                promotion: Some(ok.into()),
                ..Default::default()
            });
            assert!(validate_hub(&spec, None, None, false).allowed(), "{ok}");
        }
        spec.update_strategy = Some(v2beta1::UpdateStrategy {
            promotion: Some("manual".into()),
            ..Default::default()
        });
        let v = validate_hub(&spec, None, None, false);
        assert_eq!(v.errors.len(), 1, "{:?}", v.errors);
        assert_eq!(v.errors[0].path, "spec.updateStrategy.promotion");
        assert!(
            v.errors[0].message.contains("Automatic, Manual")
                && v.errors[0].message.contains("\"manual\""),
            "{}",
            v.errors[0].message
        );
    }

    #[test]
    fn guard_thresholds_out_of_range_name_the_field() {
        use crate::guard::{ConnectFailures, ConnectionRecovery, Guard};
        let mut spec = hub("emqx/emqx:5.8.0");
        let with = |min_percent, window_seconds, max_per_minute| v2beta1::UpdateStrategy {
            guard: Some(Guard {
                enabled: Some(true),
                connection_recovery: Some(ConnectionRecovery {
                    min_percent: Some(min_percent),
                    window_seconds: Some(window_seconds),
                }),
                connect_failures: Some(ConnectFailures {
                    max_per_minute: Some(max_per_minute),
                }),
            }),
            ..Default::default()
        };
        spec.update_strategy = Some(with(80, 60, 60));
        assert!(validate_hub(&spec, None, None, false).allowed());
        spec.update_strategy = Some(with(1, 5, 1));
        assert!(validate_hub(&spec, None, None, false).allowed());
        spec.update_strategy = Some(with(0, 60, 60));
        let v = validate_hub(&spec, None, None, false);
        assert_eq!(v.errors.len(), 1, "{:?}", v.errors);
        assert_eq!(
            v.errors[0].path,
            "spec.updateStrategy.guard.connectionRecovery.minPercent"
        );
        assert!(
            v.errors[0].message.contains("1..=100"),
            "{}",
            v.errors[0].message
        );
        spec.update_strategy = Some(with(101, 4, 0));
        let paths: Vec<String> = validate_hub(&spec, None, None, false)
            .errors
            .into_iter()
            .map(|e| e.path)
            .collect();
        assert_eq!(
            paths,
            [
                "spec.updateStrategy.guard.connectionRecovery.minPercent",
                "spec.updateStrategy.guard.connectionRecovery.windowSeconds",
                "spec.updateStrategy.guard.connectFailures.maxPerMinute",
            ]
        );
    }

    #[test]
    fn rates_below_one_name_the_field_and_range() {
        let mut spec = hub("emqx/emqx:5.8.0");
        spec.update_strategy = Some(v2beta1::UpdateStrategy {
            evacuation_strategy: Some(EvacuationStrategy {
                conn_evict_rate: Some(0),
                ..Default::default()
            }),
            ..Default::default()
        });
        let v = validate_hub(&spec, None, None, false);
        assert_eq!(v.errors.len(), 1);
        assert_eq!(
            v.errors[0].path,
            "spec.updateStrategy.evacuationStrategy.connEvictRate"
        );
        assert!(
            v.errors[0]
                .message
                .contains("must be at least 1 (allowed: 1..=1000000)")
        );
    }

    #[test]
    fn latest_and_4x_images_are_refused_for_emqx() {
        assert!(
            !validate_hub(&hub("emqx/emqx:latest"), None, None, false)
                .errors
                .is_empty()
        );
        assert!(
            !validate_hub(&hub("emqx/emqx"), None, None, false)
                .errors
                .is_empty()
        );
        assert!(
            !validate_hub(&hub("emqx/emqx-ee:4.4.14"), None, None, false)
                .errors
                .is_empty()
        );
        assert!(
            validate_hub(&hub("emqx/emqx-ee:4.4.14"), None, None, true)
                .errors
                .is_empty()
        );
        assert!(
            validate_hub(&hub("emqx:5.1"), None, None, false)
                .errors
                .is_empty()
        );
    }

    #[test]
    fn bootstrap_keys_are_immutable_and_major_changes_refused() {
        let mut old = hub("emqx/emqx:5.8.0");
        old.bootstrap_api_keys = Some(vec![v2beta1::BootstrapAPIKey {
            key: Some("k".into()),
            secret: Some("secret".into()),
            secret_ref: None,
        }]);
        let mut new = old.clone();
        new.bootstrap_api_keys = None;
        let v = validate_hub(&new, None, Some(&old), true);
        assert_eq!(v.errors[0].path, "spec.bootstrapAPIKeys");
        let v = validate_hub(
            &hub("emqx/emqx:5.8.0"),
            None,
            Some(&hub("emqx/emqx-ee:4.4.14")),
            true,
        );
        assert!(v.errors.iter().any(|e| e.message.contains("in place")));
    }

    #[test]
    fn v1beta4_version_messages_match_upstream() {
        let mut c = Checker::default();
        check_v4_version(&mut c, "p", "4.4.13");
        check_v4_version(&mut c, "p", "5.0.0");
        check_v4_version(&mut c, "p", "latest");
        check_v4_version(&mut c, "p", "abc");
        check_v4_version(&mut c, "p", "4.4.14");
        let messages: Vec<_> = c
            .verdict
            .errors
            .iter()
            .map(|e| e.message.as_str())
            .collect();
        assert_eq!(
            messages,
            [
                "image version 4.4.13 is too old, please upgrade to 4.4.14 or later",
                "image version 5.0.0 is too new, please downgrade to 5.0.0 earlier",
                "image version can not be latest",
                "invalid image version: abc",
            ]
        );
    }

    #[test]
    fn the_name_limit_is_what_the_derived_names_allow() {
        use crate::limits::{CONTROLLER_REVISION_HASH_LEN, LABEL_VALUE_MAX, REVISION_LEN};
        use crate::names;
        let name = "n".repeat(NAME_MAX);
        let set = names::core_set_name(&name, &"r".repeat(REVISION_LEN));
        // controller-revision-hash: <set>-<hash>, exactly at the label limit.
        assert_eq!(
            set.len() + 1 + CONTROLLER_REVISION_HASH_LEN,
            LABEL_VALUE_MAX
        );
        for derived in [
            names::listeners_service_name(&name),
            names::dashboard_service_name(&name),
            names::headless_service_name(&name),
            format!("{set}-999"),
        ] {
            assert!(derived.len() <= LABEL_VALUE_MAX, "{derived}");
        }
        assert_eq!(check_name(Some(&name)), None);
        assert_eq!(check_name(Some("")), None);
        assert_eq!(check_name(None), None);
        let e = check_name(Some(&format!("{name}x"))).expect("too long");
        assert_eq!(e.path, "metadata.name");
        assert!(
            e.message
                .starts_with("must be at most 36 characters, got 37"),
            "{}",
            e.message
        );
    }

    #[test]
    fn storm_and_long_evacuation_warn() {
        let mut c = Checker::default();
        let e = EvacuationStrategy {
            conn_evict_rate: Some(50_000),
            sess_evict_rate: Some(1),
            wait_takeover: Some(0),
        };
        check_evacuation(&mut c, "spec.updateStrategy", None, Some(&e));
        assert_eq!(c.verdict.warnings.len(), 1);
        warn_long_evacuation(&mut c, Some(&e), &[(100, 5000)]);
        assert_eq!(c.verdict.warnings.len(), 2);
        assert!(c.verdict.errors.is_empty());
    }

    #[test]
    fn an_env_entry_the_operator_sets_warns_naming_it() {
        let env = |name: &str| k8s_openapi::api::core::v1::EnvVar {
            name: name.into(),
            value: Some("\"/opt/emqx/data/bootstrap_api_key\"".into()),
            value_from: None,
        };
        let mut spec = hub("emqx/emqx:6.0.1");
        // A licence, so the only warnings are the env ones.
        spec.config = Some(v2beta1::Config {
            mode: None,
            data: Some("license.key = evaluation".into()),
        });
        spec.core_template = Some(v2beta1::EMQXCoreTemplate {
            spec: Some(v2beta1::EMQXCoreTemplateSpec {
                pod: v2beta1::EMQXReplicantTemplateSpec {
                    // POD_IP is the operator's on replicants only.
                    env: Some(vec![
                        env("MY_OWN"),
                        env("EMQX_API_KEY__BOOTSTRAP_FILE"),
                        env("POD_IP"),
                    ]),
                    ..Default::default()
                },
                ..Default::default()
            }),
            ..Default::default()
        });
        spec.replicant_template = Some(v2beta1::EMQXReplicantTemplate {
            spec: Some(v2beta1::EMQXReplicantTemplateSpec {
                env: Some(vec![env("POD_IP")]),
                ..Default::default()
            }),
            ..Default::default()
        });
        let v = validate_hub(&spec, None, None, false);
        assert!(v.errors.is_empty(), "{:?}", v.errors);
        assert_eq!(v.warnings.len(), 2, "{:?}", v.warnings);
        assert!(
            v.warnings[0].starts_with(
                "spec.coreTemplate.spec.env[1]: EMQX_API_KEY__BOOTSTRAP_FILE overrides the \
                 EMQX_API_KEY__BOOTSTRAP_FILE the operator sets on core nodes"
            ),
            "{}",
            v.warnings[0]
        );
        assert!(
            v.warnings[1].starts_with("spec.replicantTemplate.spec.env[0]: POD_IP overrides"),
            "{}",
            v.warnings[1]
        );
        // EMQX 4.4 has its own list: EMQX_NAME is the operator's there only.
        let mut v4 = hub("emqx/emqx-ee:4.4.14");
        v4.replicant_template = Some(v2beta1::EMQXReplicantTemplate {
            spec: Some(v2beta1::EMQXReplicantTemplateSpec {
                env: Some(vec![env("EMQX_NAME"), env("EMQX_NODE__ROLE")]),
                ..Default::default()
            }),
            ..Default::default()
        });
        let v = validate_hub(&v4, None, None, true);
        assert_eq!(v.warnings.len(), 1, "{:?}", v.warnings);
        assert!(
            v.warnings[0].contains(": EMQX_NAME overrides"),
            "{}",
            v.warnings[0]
        );
    }

    #[test]
    fn a_v1beta4_env_entry_the_operator_sets_warns_naming_it() {
        let env = |name: &str| k8s_openapi::api::core::v1::EnvVar {
            name: name.into(),
            value: Some("x".into()),
            value_from: None,
        };
        let spec: v1beta4::EmqxEnterpriseSpec = serde_json::from_value(serde_json::json!({
            "template": {"spec": {"emqxContainer": {
                "image": {"repository": "emqx/emqx-ee", "version": "4.4.14"},
            }}},
        }))
        .expect("spec");
        let with_env = |names: &[&str]| {
            let mut spec = spec.clone();
            if let Some(container) = spec
                .template
                .as_mut()
                .and_then(|t| t.spec.as_mut())
                .and_then(|s| s.emqx_container.as_mut())
            {
                container.env = Some(names.iter().map(|n| env(n)).collect());
            }
            spec
        };
        // EMQX_NODE__ROLE is an EMQX 5 name: not the operator's on 4.4 nodes.
        let v = validate_v1beta4(
            &with_env(&[
                "MY_OWN",
                "EMQX_NODE__ROLE",
                "EMQX_CLUSTER__DNS__APP",
                "EMQX_NAME",
            ]),
            None,
            None,
        );
        assert!(v.errors.is_empty(), "{:?}", v.errors);
        assert_eq!(v.warnings.len(), 2, "{:?}", v.warnings);
        assert!(
            v.warnings[0].starts_with(
                "spec.template.spec.emqxContainer.env[2]: EMQX_CLUSTER__DNS__APP overrides the \
                 EMQX_CLUSTER__DNS__APP the operator sets on core nodes"
            ),
            "{}",
            v.warnings[0]
        );
        assert!(
            v.warnings[1]
                .starts_with("spec.template.spec.emqxContainer.env[3]: EMQX_NAME overrides"),
            "{}",
            v.warnings[1]
        );
        // No env, or only the user's own names: no warning.
        assert!(validate_v1beta4(&spec, None, None).warnings.is_empty());
        assert!(
            validate_v1beta4(&with_env(&["MY_OWN"]), None, None)
                .warnings
                .is_empty()
        );
    }
}
