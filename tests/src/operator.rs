//! The operator inside the sandbox, for the demo and the end-to-end tests:
//! the generated CRDs, and the reconciler's controller run in this process
//! (with the sandbox's admin client). Installing the chart with helm, with
//! both binaries as pods, is the chart's own test (issue 7).

pub mod chart;
pub mod monitoring;
pub mod project_binary;
pub mod project_image;
pub mod reconciler_process;
pub mod service_account_login;
pub mod webhook_process;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use emqx_crd::v2beta1::EMQX;
use emqx_reconciler::context::Context;
use emqx_reconciler::kind::ClusterKind;
use emqx_reconciler::metrics::Metrics;
use emqx_reconciler::watch::{Shutdown, run};
use futures::FutureExt;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client};

/// The generated CRD files (`cargo run -p emqx-crd --bin crdgen`).
pub fn crd_files() -> Vec<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../charts/emqx-operator/files/crds");
    [
        "emqxes.apps.emqx.io.yaml",
        "emqxenterprises.apps.emqx.io.yaml",
    ]
    .iter()
    .map(|f| dir.join(f))
    .collect()
}

/// Server-side applies the CRDs and waits until both are established.
pub async fn install_crds(client: &Client) -> Result<()> {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let mut names = Vec::new();
    for path in crd_files() {
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let crd: CustomResourceDefinition =
            serde_saphyr::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        let name = crd.metadata.name.clone().context("CRD without a name")?;
        crds.patch(
            &name,
            &PatchParams::apply("sandbox").force(),
            &Patch::Apply(&crd),
        )
        .await
        .with_context(|| format!("applying CRD {name}"))?;
        names.push(name);
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    for name in names {
        loop {
            let crd = crds.get(&name).await?;
            let established = crd.status.and_then(|s| s.conditions).is_some_and(|cs| {
                cs.iter()
                    .any(|c| c.type_ == "Established" && c.status == "True")
            });
            if established {
                break;
            }
            if tokio::time::Instant::now() > deadline {
                bail!("CRD {name} not established after 30 s");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    Ok(())
}

/// The reconciler's `EMQX` controller running in this process.
pub struct InProcessReconciler {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl InProcessReconciler {
    /// Starts the `EMQX` controller for `namespace`.
    pub fn start(client: Client, namespace: &str) -> InProcessReconciler {
        Self::start_kind::<EMQX>(client, namespace)
    }

    /// Starts the `EMQX` controller for `namespace`, passing over Ready
    /// clusters every `resync` (the reconciler's `--resync-seconds`).
    pub fn start_with_resync(
        client: Client,
        namespace: &str,
        resync: Duration,
    ) -> InProcessReconciler {
        Self::start_context::<EMQX>(client, namespace, |ctx| ctx.with_resync(resync))
    }

    /// Starts the `EMQX` controller for `namespace` with at most `limit`
    /// upgrades at once (the reconciler's `--max-concurrent-upgrades`).
    pub fn start_with_upgrade_limit(
        client: Client,
        namespace: &str,
        limit: usize,
    ) -> InProcessReconciler {
        Self::start_context::<EMQX>(client, namespace, |ctx| ctx.with_upgrade_limit(limit))
    }

    /// Starts the `EMQX` controller for `namespace` with the context
    /// `configure` makes of the default one.
    pub fn start_with(
        client: Client,
        namespace: &str,
        configure: impl FnOnce(Context) -> Context,
    ) -> InProcessReconciler {
        Self::start_context::<EMQX>(client, namespace, configure)
    }

    /// Starts the controller of kind `K` (`EMQX` or `EmqxEnterprise`, read
    /// as the v2beta1 hub) for `namespace`.
    pub fn start_kind<K: ClusterKind>(client: Client, namespace: &str) -> InProcessReconciler {
        Self::start_context::<K>(client, namespace, |ctx| ctx)
    }

    fn start_context<K: ClusterKind>(
        client: Client,
        namespace: &str,
        configure: impl FnOnce(Context) -> Context,
    ) -> InProcessReconciler {
        let ctx = Arc::new(configure(Context::new(
            client.clone(),
            "sandbox",
            Arc::new(Metrics::default()),
            Duration::from_secs(5),
        )));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let shutdown: Shutdown = async move {
            let _ = stopped.await;
        }
        .boxed()
        .shared();
        let namespace = namespace.to_owned();
        let task = tokio::spawn(async move {
            run::<K>(client, Some(&namespace), ctx, shutdown).await;
        });
        InProcessReconciler {
            stop: Some(stop),
            task,
        }
    }

    /// Stops the controller and waits for it (bounded).
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = tokio::time::timeout(Duration::from_secs(10), &mut self.task).await;
        self.task.abort();
    }
}
