//! A watch run as a task for the test recorders (`upgrade_timeline`,
//! `condition_history`): every event goes to a callback until the task is
//! aborted.

use futures::StreamExt;
use kube::Api;
use kube::runtime::{WatchStreamExt, watcher};
use tokio::task::JoinHandle;

/// Hands every event of a watch on `api` to `on_event` until the task is
/// aborted. Errors are skipped: the watcher retries by itself, with kube's
/// default backoff, so a watch whose apiserver is gone (a sandbox stopped
/// before its recorder is dropped) waits between tries instead of retrying
/// in a tight loop on a core.
pub fn watch<K>(
    api: Api<K>,
    config: watcher::Config,
    mut on_event: impl FnMut(watcher::Event<K>) + Send + 'static,
) -> JoinHandle<()>
where
    K: kube::Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + 'static,
{
    tokio::spawn(async move {
        let mut stream = std::pin::pin!(watcher(api, config).default_backoff());
        while let Some(event) = stream.next().await {
            if let Ok(event) = event {
                on_event(event);
            }
        }
    })
}
