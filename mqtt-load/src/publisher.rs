//! The publisher: every interval, one QoS 1 message to each subscribed client's
//! topic; tracks which (client, sequence) the broker acknowledged.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::protocol::{MqttClient, Polled, SessionSettings};
use super::{Shared, topic_of};

/// Client id of the publisher.
pub const PUBLISHER_ID: &str = "load-publisher";

/// Publishes until `stop_publishing` flips, then keeps the connection until
/// every publish is acknowledged, `stop` flips, or `deadline` passes.
pub async fn run(
    shared: Arc<Shared>,
    mut stop_publishing: watch::Receiver<bool>,
    mut stop: watch::Receiver<bool>,
    deadline: Instant,
) {
    let settings = SessionSettings {
        clean_start: false,
        ..shared.config.session
    };
    // Issued (client, seq) in request order; the event loop pairs them with
    // packet ids as the PUBLISHes go out.
    let issued: Arc<Mutex<VecDeque<(usize, u64)>>> = Arc::default();
    let (client_tx, mut client_rx) = mpsc::channel::<(String, Vec<u8>)>(256);
    let loop_shared = shared.clone();
    let loop_issued = issued.clone();
    let mut loop_stop = stop.clone();
    let event_loop = tokio::spawn(async move {
        let shared = loop_shared;
        let mut attempt = 0u32;
        let Some(addr) = shared.publisher_endpoints.pick() else {
            return;
        };
        let mut client = MqttClient::new(PUBLISHER_ID, addr, settings, 1024);
        let mut by_pkid: HashMap<u16, (usize, u64)> = HashMap::new();
        // Requests not yet accepted by the client's bounded request queue.
        let mut backlog: VecDeque<(String, Vec<u8>)> = VecDeque::new();
        let mut publishing_done = false;
        loop {
            while let Some((topic, payload)) = backlog.front() {
                if client.try_publish(topic, payload).is_err() {
                    break;
                }
                backlog.pop_front();
            }
            tokio::select! {
                polled = client.poll() => match polled {
                    Polled::ConnAck { .. } => attempt = 0,
                    Polled::Sent { pkid } => {
                        // A resend after reconnect reuses a pkid still in the map.
                        if let std::collections::hash_map::Entry::Vacant(slot) = by_pkid.entry(pkid)
                            && let Some(entry) = loop_issued.lock().unwrap_or_else(|e| e.into_inner()).pop_front()
                        {
                            slot.insert(entry);
                        }
                    }
                    Polled::Acked { pkid } => {
                        if let Some((idx, seq)) = by_pkid.remove(&pkid) {
                            shared.confirm(idx, seq);
                        }
                    }
                    Polled::Refused(_) | Polled::Failed(_) => {
                        let delay = shared.config.backoff.delay(attempt, &mut rand::rng());
                        attempt = attempt.saturating_add(1);
                        tokio::time::sleep(delay).await;
                        if let Some(addr) = shared.publisher_endpoints.pick() {
                            client.retarget(PUBLISHER_ID, addr, settings);
                        }
                    }
                    _ => {}
                },
                req = client_rx.recv(), if backlog.len() < 1024 && !publishing_done => match req {
                    Some(r) => backlog.push_back(r),
                    None => publishing_done = true,
                },
                _ = loop_stop.changed() => return,
                _ = tokio::time::sleep_until(deadline) => return,
            }
            let idle = publishing_done
                && backlog.is_empty()
                && client.outstanding() == 0
                && by_pkid.is_empty();
            shared.set_publisher_drained(idle);
            shared.set_unconfirmed(
                by_pkid.len() as u64
                    + loop_issued.lock().unwrap_or_else(|e| e.into_inner()).len() as u64,
            );
        }
    });

    let mut seq: u64 = 0;
    let interval = shared.config.publish_interval;
    loop {
        if *stop_publishing.borrow() || *stop.borrow() || Instant::now() >= deadline {
            break;
        }
        seq += 1;
        for idx in 0..shared.config.clients {
            if !shared.is_subscribed(idx) {
                continue;
            }
            let topic = topic_of(&shared.client_id(idx));
            issued
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push_back((idx, seq));
            shared.count_published();
            if client_tx
                .send((topic, seq.to_string().into_bytes()))
                .await
                .is_err()
            {
                return;
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = stop_publishing.changed() => {}
            _ = stop.changed() => {}
        }
    }
    drop(client_tx);
    let _ = event_loop.await;
}
