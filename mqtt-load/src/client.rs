//! One subscriber: connects through the endpoints, subscribes to its topic once
//! (the session keeps it), reconnects with backoff, records everything.

use std::sync::Arc;

use tokio::sync::watch;
use tokio::time::Instant;

use super::protocol::{MqttClient, Polled};
use super::record::{ClientEvent, ClientEventKind};
use super::{Shared, topic_of};

/// Runs client number `idx` until `stop` flips or `deadline` passes.
pub async fn run(
    shared: Arc<Shared>,
    idx: usize,
    mut stop: watch::Receiver<bool>,
    deadline: Instant,
) {
    let id = shared.client_id(idx);
    let topic = topic_of(&id);
    let settings = shared.config.session;
    let mut rng_attempt: u32 = 0;
    let mut connected = false;
    let mut client: Option<MqttClient> = None;
    loop {
        if *stop.borrow() || Instant::now() >= deadline {
            break;
        }
        let Some(addr) = shared.endpoints.pick() else {
            tokio::time::sleep(shared.config.backoff.initial).await;
            continue;
        };
        let c = match client.as_mut() {
            Some(c) => {
                c.retarget(&id, addr, settings);
                c
            }
            None => client.insert(MqttClient::new(&id, addr, settings, 16)),
        };
        // Poll until the connection fails or the run ends.
        let failure = loop {
            let polled = tokio::select! {
                p = c.poll() => p,
                _ = stop.changed() => return shared.set_connected(connected, false),
                _ = tokio::time::sleep_until(deadline) => return shared.set_connected(connected, false),
            };
            match polled {
                Polled::ConnAck {
                    session_present, ..
                } => {
                    rng_attempt = 0;
                    let node = shared.sampler.locate(&id);
                    shared.record(
                        idx,
                        ClientEventKind::Connected {
                            session_present,
                            node,
                        },
                    );
                    shared.set_connected(connected, true);
                    connected = true;
                    // A session that never confirmed the subscription (its first
                    // CONNACK was lost to a timeout) must subscribe even when present.
                    if (!session_present || !shared.is_subscribed(idx))
                        && let Err(e) = c.subscribe(&topic)
                    {
                        tracing::warn!(client = %id, error = %e, "subscribe request failed");
                    }
                }
                Polled::SubAck => shared.mark_subscribed(idx),
                Polled::Publish { payload } => shared.receive(idx, &payload),
                Polled::Refused(reason) => break ClientEventKind::Refused { reason },
                Polled::Failed(reason) if connected => {
                    break ClientEventKind::Disconnected { reason };
                }
                Polled::Failed(reason) => break ClientEventKind::ConnectFailed { reason },
                Polled::Sent { .. } | Polled::Acked { .. } | Polled::Other => {}
            }
        };
        shared.record(idx, failure);
        shared.set_connected(connected, false);
        connected = false;
        let delay = shared.config.backoff.delay(rng_attempt, &mut rand::rng());
        rng_attempt = rng_attempt.saturating_add(1);
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = stop.changed() => break,
            _ = tokio::time::sleep_until(deadline) => break,
        }
    }
}

impl Shared {
    fn record(&self, idx: usize, kind: ClientEventKind) {
        let at = self.started.elapsed();
        if let Some(log) = self.logs.get(idx) {
            log.lock()
                .unwrap_or_else(|e| e.into_inner())
                .events
                .push(ClientEvent { at, kind });
        }
    }
}
