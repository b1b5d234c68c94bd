//! The MQTT TCP listener (1883) of a simulated node.

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;

use super::channel;
use crate::cluster::BrokerCluster;
use crate::faults::Faults;

/// Accepts connections until `shutdown` flips; each runs in its own task.
pub async fn accept_loop(
    listener: TcpListener,
    node: String,
    cluster: Arc<BrokerCluster>,
    faults: Arc<Faults>,
    caps: channel::Caps,
    shutdown: watch::Receiver<bool>,
) {
    let mut stop = shutdown.clone();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _peer)) = accepted else {
                    // Out of descriptors and the like: back off instead of spinning.
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                    continue;
                };
                if faults.drop_mqtt() {
                    drop(stream);
                    continue;
                }
                let node = node.clone();
                let cluster = cluster.clone();
                let shutdown = shutdown.clone();
                let faults = faults.clone();
                tokio::spawn(async move {
                    if let Err(e) = channel::serve(stream, node, cluster, faults, caps, shutdown).await {
                        tracing::trace!(error = %e, "mqtt connection ended");
                    }
                });
            }
            _ = stop.changed() => return,
        }
    }
}
