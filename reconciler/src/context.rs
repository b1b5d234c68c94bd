//! What every reconcile pass needs: the API client, the Event recorder,
//! the metrics and the EMQX call timeout.

use crate::base::CreatedSecrets;
use crate::cluster_secrets::SecretSource;
use crate::metrics::Metrics;
use crate::pass_lanes::PassPermits;
use crate::sent_status::SentStatuses;
use crate::upgrade_slots::UpgradeSlots;
use kube::Client;
use kube::runtime::events::{Recorder, Reporter};
use std::sync::Arc;
use std::time::Duration;

/// The Events' reporting controller.
pub const EVENT_CONTROLLER: &str = "emqx-operator";

/// The one field manager every write uses.
pub const FIELD_MANAGER: &str = "emqx-operator";

/// How often a Ready cluster is looked at again when nothing it watches
/// changes (`--resync-seconds`): the steady-state EMQX polling interval.
pub const DEFAULT_RESYNC: Duration = Duration::from_secs(30);

/// How many passes run at once by default (`--max-concurrent-passes`).
pub const DEFAULT_CONCURRENT_PASSES: u16 = 16;

/// The slots bounding passes at once (0: none).
fn pass_permits(passes: u16) -> Option<Arc<PassPermits>> {
    (passes > 0).then(|| Arc::new(PassPermits::new(usize::from(passes))))
}

/// Shared by the passes of both kinds.
pub struct Context {
    pub client: Client,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    /// Bound on every EMQX call.
    pub emqx_timeout: Duration,
    /// Where the values of a cluster's Secrets come from.
    pub secret_source: SecretSource,
    /// Clusters whose Secrets are known to exist (derived values only).
    pub created_secrets: CreatedSecrets,
    /// The status last written per cluster: the previous status while the
    /// watch's store lags this process's writes ([`crate::sent_status`]).
    pub sent_statuses: SentStatuses,
    /// The pause before a Ready cluster's next pass ([`DEFAULT_RESYNC`]).
    pub resync: Duration,
    /// Bound on the passes that do their work at once, over every
    /// controller of this process (`None`: unbounded). Waiting passes are
    /// served first come, first served within two lanes, urgent before
    /// routine ([`crate::pass_lanes`]). kube's own bound
    /// (`controller::Config::concurrency`, kube-runtime 5.0) keeps the
    /// overflow in an unordered set and starts whichever it finds first, so
    /// under a steady stream of requeues some clusters never got a pass (1,000
    /// clusters, bound 16: 61 had none in 30 minutes).
    pub pass_permits: Option<Arc<PassPermits>>,
    /// Upgrades running at once, over every controller of this reconciler.
    pub upgrade_slots: Arc<UpgradeSlots>,
}

impl Context {
    /// A context whose Events name `instance` (the replica's identity).
    pub fn new(
        client: Client,
        instance: &str,
        metrics: Arc<Metrics>,
        emqx_timeout: Duration,
    ) -> Context {
        let recorder = Recorder::new(
            client.clone(),
            Reporter {
                controller: EVENT_CONTROLLER.into(),
                instance: Some(instance.to_owned()),
            },
        );
        Context {
            client,
            recorder,
            metrics,
            emqx_timeout,
            secret_source: SecretSource::Read,
            created_secrets: CreatedSecrets::default(),
            sent_statuses: SentStatuses::default(),
            resync: DEFAULT_RESYNC,
            pass_permits: pass_permits(DEFAULT_CONCURRENT_PASSES),
            upgrade_slots: Arc::new(UpgradeSlots::new(0)),
        }
    }

    /// The same context with at most `passes` passes at work at once
    /// (0: unbounded).
    pub fn with_concurrent_passes(mut self, passes: u16) -> Context {
        self.pass_permits = pass_permits(passes);
        self
    }

    /// The same context with at most `limit` upgrades at once (0: no bound).
    pub fn with_upgrade_limit(mut self, limit: usize) -> Context {
        self.upgrade_slots = Arc::new(UpgradeSlots::new(limit));
        self
    }

    /// The same context with Ready clusters looked at every `resync`.
    pub fn with_resync(mut self, resync: Duration) -> Context {
        self.resync = resync;
        self
    }

    /// The same context with Secrets' values from `source`.
    pub fn with_secret_source(mut self, source: SecretSource) -> Context {
        self.secret_source = source;
        self
    }
}

/// Server-side apply as [`FIELD_MANAGER`], taking fields over from others.
pub fn apply_params() -> kube::api::PatchParams {
    kube::api::PatchParams::apply(FIELD_MANAGER).force()
}
