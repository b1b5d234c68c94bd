//! One rumqttc client (MQTT 5 or 3.1.1) behind a protocol-neutral face.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use rumqttc::v5;

/// MQTT version the load speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// MQTT 5 (default).
    V5,
    /// MQTT 3.1.1.
    V311,
}

/// Session settings of a client.
#[derive(Debug, Clone, Copy)]
pub struct SessionSettings {
    /// MQTT version.
    pub protocol: Protocol,
    /// Keep-alive.
    pub keep_alive: Duration,
    /// Session expiry (MQTT 5; MQTT 3 persistent sessions use the broker's).
    pub session_expiry: Duration,
    /// `clean_start` / `clean_session`.
    pub clean_start: bool,
}

/// What one poll of the event loop produced.
#[derive(Debug)]
pub enum Polled {
    /// CONNACK accepted.
    ConnAck {
        /// Session present flag.
        session_present: bool,
        /// MQTT 5 `Receive-Maximum`: how many QoS 1 publishes the broker
        /// takes unacknowledged (EMQX sends its `max_inflight`, 32 by default).
        receive_maximum: Option<u16>,
    },
    /// SUBACK.
    SubAck,
    /// A PUBLISH arrived.
    Publish {
        /// Payload.
        payload: Bytes,
    },
    /// A PUBLISH we sent went out with this packet id.
    Sent {
        /// Packet id.
        pkid: u16,
    },
    /// PUBACK for a PUBLISH we sent.
    Acked {
        /// Packet id.
        pkid: u16,
    },
    /// CONNACK refused.
    Refused(String),
    /// Connection failed or ended.
    Failed(String),
    /// Anything else.
    Other,
}

/// The client and its event loop.
pub enum MqttClient {
    /// MQTT 5.
    V5(v5::AsyncClient, Box<v5::EventLoop>),
    /// MQTT 3.1.1.
    V311(rumqttc::AsyncClient, Box<rumqttc::EventLoop>),
}

impl MqttClient {
    /// A client that will connect to `addr` on first poll. `cap` bounds both
    /// the request queue and the outgoing QoS 1 window.
    pub fn new(client_id: &str, addr: SocketAddr, s: SessionSettings, cap: usize) -> MqttClient {
        match s.protocol {
            Protocol::V5 => {
                let mut options = options_v5(client_id, addr, s);
                // rumqttc sizes a per-client table by this limit; left unset it is
                // 65,535 entries, about 7 MB per client.
                options.set_outgoing_inflight_upper_limit(
                    u16::try_from(cap.max(1)).unwrap_or(u16::MAX),
                );
                let (c, l) = v5::AsyncClient::new(options, cap);
                MqttClient::V5(c, Box::new(l))
            }
            Protocol::V311 => {
                let mut options = options_v4(client_id, addr, s);
                options.set_inflight(u16::try_from(cap.max(1)).unwrap_or(u16::MAX));
                let (c, mut l) = rumqttc::AsyncClient::new(options, cap);
                let mut network = rumqttc::NetworkOptions::new();
                network.set_connection_timeout(10);
                l.set_network_options(network);
                MqttClient::V311(c, Box::new(l))
            }
        }
    }

    /// Points the next reconnect at `addr`, keeping the client's state.
    pub fn retarget(&mut self, client_id: &str, addr: SocketAddr, s: SessionSettings) {
        match self {
            MqttClient::V5(_, l) => {
                let mut options = options_v5(client_id, addr, s);
                if let Some(limit) = l.options.get_outgoing_inflight_upper_limit() {
                    options.set_outgoing_inflight_upper_limit(limit);
                }
                l.options = options;
            }
            MqttClient::V311(_, l) => {
                let inflight = l.mqtt_options.inflight();
                l.mqtt_options = options_v4(client_id, addr, s);
                l.mqtt_options.set_inflight(inflight);
            }
        }
    }

    /// Queues a QoS 1 subscription.
    pub fn subscribe(&self, topic: &str) -> Result<(), String> {
        match self {
            MqttClient::V5(c, _) => c
                .try_subscribe(topic, v5::mqttbytes::QoS::AtLeastOnce)
                .map_err(|e| e.to_string()),
            MqttClient::V311(c, _) => c
                .try_subscribe(topic, rumqttc::QoS::AtLeastOnce)
                .map_err(|e| e.to_string()),
        }
    }

    /// Queues a QoS 1 publish without waiting; `Err` when the request queue is full.
    pub fn try_publish(&self, topic: &str, payload: &[u8]) -> Result<(), String> {
        match self {
            MqttClient::V5(c, _) => c
                .try_publish(
                    topic,
                    v5::mqttbytes::QoS::AtLeastOnce,
                    false,
                    payload.to_vec(),
                )
                .map_err(|e| e.to_string()),
            MqttClient::V311(c, _) => c
                .try_publish(topic, rumqttc::QoS::AtLeastOnce, false, payload.to_vec())
                .map_err(|e| e.to_string()),
        }
    }

    /// Queues a QoS 1 PUBLISH with the caller's packet id, behind any resends
    /// of the last connection; it goes out on the next polls. The caller
    /// owns the ids: one must not be reused before its PUBACK, and must not
    /// exceed the `cap` the client was made with. rumqttc numbers the
    /// publishes it is handed itself, and when a reconnect leaves new
    /// publishes queued behind resends it can meet an id still in flight
    /// and keep only the last such publish (rumqttc 0.25.1
    /// `v5/state.rs` `outgoing_publish`, one `collision` slot), losing the
    /// others without an event: a publisher that pairs PUBACKs with its
    /// messages must not let it choose.
    pub fn publish_with_pkid(&mut self, topic: &str, payload: &[u8], pkid: u16) {
        match self {
            MqttClient::V5(_, l) => {
                let mut p = v5::mqttbytes::v5::Publish::new(
                    topic,
                    v5::mqttbytes::QoS::AtLeastOnce,
                    payload.to_vec(),
                    None,
                );
                p.pkid = pkid;
                l.pending.push_back(v5::Request::Publish(p));
            }
            MqttClient::V311(_, l) => {
                let mut p = rumqttc::Publish::new(topic, rumqttc::QoS::AtLeastOnce, payload);
                p.pkid = pkid;
                l.pending.push_back(rumqttc::Request::Publish(p));
            }
        }
    }

    /// Polls the event loop once.
    pub async fn poll(&mut self) -> Polled {
        match self {
            MqttClient::V5(_, l) => match l.poll().await {
                Ok(v5::Event::Incoming(p)) => match p {
                    v5::mqttbytes::v5::Packet::ConnAck(a) => Polled::ConnAck {
                        session_present: a.session_present,
                        receive_maximum: a.properties.and_then(|p| p.receive_max),
                    },
                    v5::mqttbytes::v5::Packet::SubAck(_) => Polled::SubAck,
                    v5::mqttbytes::v5::Packet::Publish(p) => Polled::Publish { payload: p.payload },
                    v5::mqttbytes::v5::Packet::PubAck(a) => Polled::Acked { pkid: a.pkid },
                    _ => Polled::Other,
                },
                Ok(v5::Event::Outgoing(rumqttc::Outgoing::Publish(pkid))) => Polled::Sent { pkid },
                Ok(v5::Event::Outgoing(_)) => Polled::Other,
                Err(v5::ConnectionError::ConnectionRefused(code)) => {
                    Polled::Refused(format!("{code:?}"))
                }
                Err(e) => Polled::Failed(e.to_string()),
            },
            MqttClient::V311(_, l) => match l.poll().await {
                Ok(rumqttc::Event::Incoming(p)) => match p {
                    rumqttc::Packet::ConnAck(a) => Polled::ConnAck {
                        session_present: a.session_present,
                        receive_maximum: None,
                    },
                    rumqttc::Packet::SubAck(_) => Polled::SubAck,
                    rumqttc::Packet::Publish(p) => Polled::Publish { payload: p.payload },
                    rumqttc::Packet::PubAck(a) => Polled::Acked { pkid: a.pkid },
                    _ => Polled::Other,
                },
                Ok(rumqttc::Event::Outgoing(rumqttc::Outgoing::Publish(pkid))) => {
                    Polled::Sent { pkid }
                }
                Ok(rumqttc::Event::Outgoing(_)) => Polled::Other,
                Err(rumqttc::ConnectionError::ConnectionRefused(code)) => {
                    Polled::Refused(format!("{code:?}"))
                }
                Err(e) => Polled::Failed(e.to_string()),
            },
        }
    }
}

fn options_v5(client_id: &str, addr: SocketAddr, s: SessionSettings) -> v5::MqttOptions {
    let mut o = v5::MqttOptions::new(client_id, addr.ip().to_string(), addr.port());
    o.set_keep_alive(s.keep_alive);
    o.set_clean_start(s.clean_start);
    let expiry = u32::try_from(s.session_expiry.as_secs()).unwrap_or(u32::MAX);
    o.set_session_expiry_interval(Some(expiry));
    o.set_connection_timeout(10);
    o
}

fn options_v4(client_id: &str, addr: SocketAddr, s: SessionSettings) -> rumqttc::MqttOptions {
    let mut o = rumqttc::MqttOptions::new(client_id, addr.ip().to_string(), addr.port());
    o.set_keep_alive(s.keep_alive);
    o.set_clean_session(s.clean_start);
    o
}
