//! The objects every cluster has whatever its revision: the ConfigMap, the
//! headless Service, the PodDisruptionBudgets, the node-cookie and
//! bootstrap-API-key Secrets. Applied at the start of a pass (before the
//! sets they serve); yields the operator's EMQX API secret.

use crate::bootstrap;
use crate::cluster_secrets::{OperatorKey, Purpose, SecretSource, derive};
use crate::context::apply_params;
use crate::drift;
use crate::error::Error;
use crate::render::{self, Cluster, OPERATOR_API_KEY, Rendered};
use emqx_crd::names;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Patch, PostParams};
use kube::{Api, Client};
use rand::distr::{Alphanumeric, SampleString};
use std::collections::BTreeMap;

/// Applies the base objects and creates the Secrets that are missing (the
/// pass reads the operator's API secret beforehand: [`operator_secret`]).
///
/// `adopted`: the cluster runs a Go-created revision taken over as it is
/// ([`crate::go_operator`]). Its ConfigMap, headless Service and PDBs are
/// then left exactly as the Go operator wrote them, until an upgrade
/// replaces that revision: ours would rewrite `emqx.conf` (Go's carries the
/// listener binds), add `maxUnavailable` to the PDBs and our drift
/// annotation to the Service — changes to a running cluster nobody asked
/// for. Go's versions serve its pods as they are: the same names, the
/// headless Service selects every core. Only Secrets that are missing are
/// created; an existing Secret is never written, so no running broker sees
/// a change. Once a spec change starts an upgrade, ours are applied before
/// the new set is created; a Go pod restarting then reads our `emqx.conf`,
/// whose omitted listener binds are EMQX's defaults (1883/8883/8083/8084,
/// the values Go wrote), and running pods keep the file they booted with
/// (a `subPath` mount is never updated in place).
///
/// `pods_waiting`: a pod of the cluster waits to start
/// ([`crate::live::waits_to_start`]); derived Secrets are then created
/// again, in case that pod waits for one someone deleted.
pub async fn ensure(
    client: &Client,
    rendered: &Rendered<'_>,
    adopted: bool,
    source: &SecretSource,
    created: &CreatedSecrets,
    pods_waiting: bool,
) -> Result<(), Error> {
    let cluster = &rendered.cluster;
    if !adopted {
        apply_base_objects(client, rendered).await?;
    }
    match source {
        SecretSource::Read => ensure_secrets(client, cluster).await,
        SecretSource::Derived(key) => {
            create_derived_secrets(client, cluster, key, created, pods_waiting).await
        }
    }
}

/// The clusters whose Secrets this process has seen created (201 or 409),
/// by cluster key ([`crate::upgrade_slots::key`]) with the uid of the
/// object seen (a cluster deleted and created again under its name is a
/// new one). With derived values nothing is read, so without this every
/// pass would cost two refused creates. A Secret someone deletes matters
/// once a pod needs it: that pod then waits to start, its changes bring a
/// pass, and the pass creates the Secrets again ([`must_create_secrets`]).
/// A steady cluster costs no write at all, however long it runs.
#[derive(Debug, Default)]
pub struct CreatedSecrets(std::sync::Mutex<BTreeMap<String, String>>);

impl CreatedSecrets {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, String>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn contains(&self, key: &str, uid: &str) -> bool {
        self.lock().get(key).is_some_and(|seen| seen == uid)
    }

    fn insert(&self, key: &str, uid: &str) {
        self.lock().insert(key.to_owned(), uid.to_owned());
    }

    /// Forgets a deleted cluster, so that entries do not pile up.
    pub fn forget(&self, key: &str) {
        self.lock().remove(key);
    }
}

/// Whether a pass creates the cluster's derived Secrets (refused with 409
/// when they exist): the first time this process sees the cluster, and
/// whenever one of its pods waits to start, which is what a missing Secret
/// does to a pod. Time plays no part: a steady cluster is never written.
pub fn must_create_secrets(seen_created: bool, pods_waiting: bool) -> bool {
    !seen_created || pods_waiting
}

/// Creates the node-cookie and bootstrap-API-key Secrets with values
/// derived from the operator's key, never reading a Secret: one that exists
/// (409) is left as it is.
async fn create_derived_secrets(
    client: &Client,
    cluster: &Cluster<'_>,
    key: &OperatorKey,
    created: &CreatedSecrets,
    pods_waiting: bool,
) -> Result<(), Error> {
    let seen_key = crate::upgrade_slots::key(cluster.kind, cluster.namespace, cluster.name);
    if !must_create_secrets(created.contains(&seen_key, cluster.uid), pods_waiting) {
        return Ok(());
    }
    let derive = |purpose| derive(key, purpose, cluster.namespace, cluster.name, cluster.uid);
    let operator_secret = derive(Purpose::OperatorApiSecret);
    // Nothing is read in this mode, so keys behind a `secretRef` cannot be
    // honoured: refused with the field named before anything is written.
    bootstrap::refuse_secret_refs(cluster.spec)?;
    let file = bootstrap::bootstrap_file(
        cluster.spec,
        &operator_secret,
        &bootstrap::SecretEntries::new(),
    )?;
    let cookie =
        bootstrap::user_cookie(cluster.spec).unwrap_or_else(|| derive(Purpose::NodeCookie));
    let secrets = Api::<Secret>::namespaced(client.clone(), cluster.namespace);
    create_secret(
        &secrets,
        cluster,
        &names::node_cookie_secret_name(cluster.name),
        names::NODE_COOKIE_KEY,
        cookie,
    )
    .await?;
    create_secret(
        &secrets,
        cluster,
        &names::bootstrap_api_key_secret_name(cluster.name),
        names::BOOTSTRAP_API_KEY_KEY,
        file,
    )
    .await?;
    created.insert(&seen_key, cluster.uid);
    Ok(())
}

async fn apply_base_objects(client: &Client, rendered: &Rendered<'_>) -> Result<(), Error> {
    let cluster = &rendered.cluster;
    let ns = cluster.namespace;
    apply_if_changed(
        &Api::<ConfigMap>::namespaced(client.clone(), ns),
        &names::config_map_name(cluster.name),
        &rendered.config_map,
    )
    .await?;
    apply_if_changed(
        &Api::<Service>::namespaced(client.clone(), ns),
        &names::headless_service_name(cluster.name),
        &rendered.headless_service,
    )
    .await?;
    for (role, pdb) in &rendered.pdbs {
        apply_if_changed(
            &Api::<PodDisruptionBudget>::namespaced(client.clone(), ns),
            &names::pdb_name(cluster.name, *role),
            pdb,
        )
        .await?;
    }
    Ok(())
}

/// Creates the node-cookie and bootstrap-API-key Secrets if missing.
async fn ensure_secrets(client: &Client, cluster: &Cluster<'_>) -> Result<(), Error> {
    let ns = cluster.namespace;
    let secrets = Api::<Secret>::namespaced(client.clone(), ns);
    let cookie = names::node_cookie_secret_name(cluster.name);
    if secrets.get_opt(&cookie).await?.is_none() {
        let value = bootstrap::user_cookie(cluster.spec)
            .unwrap_or_else(|| Alphanumeric.sample_string(&mut rand::rng(), 64));
        create_secret(&secrets, cluster, &cookie, names::NODE_COOKIE_KEY, value).await?;
    }
    let bootstrap = names::bootstrap_api_key_secret_name(cluster.name);
    let has_file = secrets.get_opt(&bootstrap).await?.is_some_and(|s| {
        s.data
            .is_some_and(|d| d.contains_key(names::BOOTSTRAP_API_KEY_KEY))
    });
    if !has_file {
        // Created once; EMQX reads it at boot, so it never changes after.
        let referenced = read_referenced(&secrets, cluster.spec).await?;
        let secret = Alphanumeric
            .sample_string(&mut rand::rng(), 64)
            .to_lowercase();
        let file = bootstrap::bootstrap_file(cluster.spec, &secret, &referenced)?;
        create_secret(
            &secrets,
            cluster,
            &bootstrap,
            names::BOOTSTRAP_API_KEY_KEY,
            file,
        )
        .await?;
    }
    Ok(())
}

/// Reads the Secret entries the `secretRef` keys name (in the cluster's
/// namespace; `reconciler.readClusterSecrets=true` grants `get` on Secrets).
async fn read_referenced(
    secrets: &Api<Secret>,
    spec: &emqx_crd::v2beta1::EMQXSpec,
) -> Result<bootstrap::SecretEntries, Error> {
    let mut found = bootstrap::SecretEntries::new();
    let mut read: BTreeMap<String, Option<Secret>> = BTreeMap::new();
    for (name, entry) in bootstrap::referenced_entries(spec) {
        if !read.contains_key(&name) {
            read.insert(name.clone(), secrets.get_opt(&name).await?);
        }
        if let Some(secret) = read.get(&name).and_then(Option::as_ref) {
            let value = secret
                .data
                .as_ref()
                .and_then(|d| d.get(&entry))
                .map(|v| v.0.clone());
            found.insert((name, entry), value);
        }
    }
    Ok(found)
}

/// The operator's secret, without writing anything: derived, or read from
/// the bootstrap Secret (empty when it does not exist yet). A paused
/// cluster is observed, not changed.
pub async fn operator_secret(
    client: &Client,
    cluster: &Cluster<'_>,
    source: &SecretSource,
) -> Result<String, Error> {
    match source {
        SecretSource::Derived(key) => Ok(derive(
            key,
            Purpose::OperatorApiSecret,
            cluster.namespace,
            cluster.name,
            cluster.uid,
        )),
        SecretSource::Read => read_operator_secret(client, cluster).await,
    }
}

async fn read_operator_secret(client: &Client, cluster: &Cluster<'_>) -> Result<String, Error> {
    let secrets = Api::<Secret>::namespaced(client.clone(), cluster.namespace);
    let bootstrap = names::bootstrap_api_key_secret_name(cluster.name);
    Ok(secrets
        .get_opt(&bootstrap)
        .await?
        .and_then(|s| s.data?.get(names::BOOTSTRAP_API_KEY_KEY).cloned())
        .map(|data| operator_secret_in(&String::from_utf8_lossy(&data.0)))
        .unwrap_or_default())
}

/// The operator's secret in a bootstrap API-key file (`key:secret` lines).
fn operator_secret_in(file: &str) -> String {
    file.lines()
        .find_map(|l| l.strip_prefix(&format!("{OPERATOR_API_KEY}:")))
        .map(|s| s.split(':').next().unwrap_or_default().to_owned())
        .unwrap_or_default()
}

/// Server-side applies `desired` unless the live object already says it
/// ([`drift::needs_apply`]): a steady cluster costs reads, never writes.
async fn apply_if_changed<T>(api: &Api<T>, name: &str, desired: &T) -> Result<(), Error>
where
    T: kube::Resource + Clone + std::fmt::Debug + serde::Serialize + serde::de::DeserializeOwned,
{
    let rendered = serde_json::to_value(desired).map_err(|source| Error::Render {
        what: "an owned object",
        source,
    })?;
    let stamped = drift::stamp(rendered);
    let live = api
        .get_opt(name)
        .await?
        .and_then(|o| serde_json::to_value(o).ok());
    if drift::needs_apply(&stamped, live.as_ref()) {
        api.patch(name, &apply_params(), &Patch::Apply(&stamped))
            .await?;
    }
    Ok(())
}

async fn create_secret(
    secrets: &Api<Secret>,
    cluster: &Cluster<'_>,
    name: &str,
    key: &str,
    value: String,
) -> Result<(), Error> {
    let secret = Secret {
        metadata: kube::api::ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some(cluster.namespace.to_owned()),
            labels: Some(names::instance_labels(cluster.name)),
            owner_references: Some(vec![render::owner_reference(cluster)]),
            ..Default::default()
        },
        data: Some(BTreeMap::from([(
            key.to_owned(),
            ByteString(value.into_bytes()),
        )])),
        ..Secret::default()
    };
    match secrets.create(&PostParams::default(), &secret).await {
        // Another pass (or replica) created it first: theirs stands.
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
        other => other.map(|_| ()).map_err(Error::from),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_secrets_are_created_when_first_seen_or_when_a_pod_waits_and_never_by_the_clock() {
        assert!(must_create_secrets(false, false));
        assert!(must_create_secrets(false, true));
        // A pod waiting to start may wait for a Secret someone deleted.
        assert!(must_create_secrets(true, true));
        // Steady: no write, however long ago the Secrets were seen.
        assert!(!must_create_secrets(true, false));
    }

    #[test]
    fn a_cluster_created_again_under_its_name_is_a_new_one() {
        let seen = CreatedSecrets::default();
        seen.insert("EMQX/ns/a", "uid-1");
        assert!(seen.contains("EMQX/ns/a", "uid-1"));
        assert!(!seen.contains("EMQX/ns/a", "uid-2"));
        seen.forget("EMQX/ns/a");
        assert!(!seen.contains("EMQX/ns/a", "uid-1"));
    }
}
