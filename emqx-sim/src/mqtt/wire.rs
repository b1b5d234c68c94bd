//! Protocol-neutral view of the MQTT packets the simulator handles, over the
//! packet codecs of `rumqttc` (`mqttbytes::v4` for 3.1.1, `v5::mqttbytes::v5`).

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use rumqttc::mqttbytes::{self as mb4, v4};
use rumqttc::v5::mqttbytes::{self as mb5, v5};

use crate::session::MqttVersion;

/// MQTT 3 persistent sessions expire after `mqtt.session_expiry_interval` (2 h).
pub const V3_SESSION_EXPIRY: Duration = Duration::from_secs(2 * 3600);

/// A packet from a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    /// CONNECT.
    Connect {
        /// Client identifier.
        client_id: String,
        /// `clean_start` (MQTT 5) / `clean_session` (3.1.1).
        clean_start: bool,
        /// Keep-alive in seconds; 0 disables it.
        keep_alive: u16,
        /// Session expiry after disconnect.
        expiry: Duration,
        /// MQTT 5 `Receive-Maximum`: QoS 1 deliveries the client takes
        /// unacknowledged (absent: no limit of its own).
        receive_maximum: Option<u16>,
    },
    /// PUBLISH.
    Publish {
        /// Topic.
        topic: String,
        /// Payload.
        payload: Bytes,
        /// QoS 0, 1 or 2.
        qos: u8,
        /// Packet id (QoS > 0).
        pkid: u16,
    },
    /// PUBACK.
    PubAck {
        /// Packet id.
        pkid: u16,
    },
    /// SUBSCRIBE.
    Subscribe {
        /// Packet id.
        pkid: u16,
        /// Filters with requested QoS.
        filters: Vec<(String, u8)>,
    },
    /// UNSUBSCRIBE.
    Unsubscribe {
        /// Packet id.
        pkid: u16,
        /// Filters.
        filters: Vec<String>,
    },
    /// PINGREQ.
    PingReq,
    /// DISCONNECT.
    Disconnect,
    /// A packet a client must not send or the simulator does not implement (QoS 2 flow, AUTH…).
    Unsupported(&'static str),
}

/// A packet to a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outgoing {
    /// CONNACK accepting the connection.
    ConnAckAccepted {
        /// Session present flag.
        session_present: bool,
        /// MQTT 5 `Receive-Maximum` property, when the broker sends one.
        receive_maximum: Option<u16>,
    },
    /// CONNACK refusing: MQTT 5 0x9C (Use another server), MQTT 3 rc 3.
    ConnAckUseAnotherServer {
        /// `Server-Reference` (MQTT 5 only).
        server_reference: Option<String>,
    },
    /// CONNACK refusing an unsupported protocol level.
    ConnAckBadProtocol,
    /// CONNACK refusing bad credentials: MQTT 5 0x86 (Bad User Name or
    /// Password), MQTT 3.1.1 return code 4, as EMQX maps
    /// `bad_username_or_password` (`emqx_reason_codes.erl` `compat/2`).
    ConnAckBadCredentials,
    /// PUBLISH.
    Publish {
        /// Topic.
        topic: String,
        /// Payload.
        payload: Bytes,
        /// QoS 0 or 1.
        qos: u8,
        /// Packet id (QoS 1).
        pkid: u16,
        /// Redelivery.
        dup: bool,
    },
    /// PUBACK.
    PubAck {
        /// Packet id.
        pkid: u16,
    },
    /// SUBACK with one code per filter (0, 1 or 0x80).
    SubAck {
        /// Packet id.
        pkid: u16,
        /// Granted QoS or failure.
        codes: Vec<u8>,
    },
    /// UNSUBACK.
    UnsubAck {
        /// Packet id.
        pkid: u16,
        /// Number of filters.
        count: usize,
    },
    /// PINGRESP.
    PingResp,
    /// MQTT 5 DISCONNECT with a reason code (0x9C, 0x8E, 0x81 …).
    Disconnect {
        /// Reason code.
        reason: u8,
        /// `Server-Reference` property.
        server_reference: Option<String>,
    },
}

/// Why the byte stream cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// Malformed bytes.
    #[error("malformed MQTT packet: {0}")]
    Malformed(String),
    /// First packet is not a CONNECT.
    #[error("first packet must be CONNECT")]
    NotConnect,
    /// Unsupported protocol level (e.g. MQTT 3.1).
    #[error("unsupported protocol level {0}")]
    ProtocolLevel(u8),
}

/// Reads the first packet, which must be a CONNECT; decides the protocol.
/// `Ok(None)` means more bytes are needed.
pub fn read_connect(
    buf: &mut BytesMut,
    max: usize,
) -> Result<Option<(MqttVersion, Incoming)>, WireError> {
    // Reject anything but a CONNECT fixed header at once, before waiting for a
    // length that garbage may claim.
    if buf.first().is_some_and(|b| *b != 0x10) {
        return Err(WireError::NotConnect);
    }
    let mut trial = buf.clone();
    match v5::Packet::read(&mut trial, Some(u32::try_from(max).unwrap_or(u32::MAX))) {
        Ok(v5::Packet::Connect(c, _, _)) => {
            *buf = trial;
            let expiry = c
                .properties
                .as_ref()
                .and_then(|p| p.session_expiry_interval)
                .map(|s| Duration::from_secs(u64::from(s)))
                .unwrap_or(Duration::ZERO);
            let receive_maximum = c.properties.as_ref().and_then(|p| p.receive_maximum);
            Ok(Some((
                MqttVersion::V5,
                Incoming::Connect {
                    client_id: c.client_id,
                    clean_start: c.clean_start,
                    keep_alive: c.keep_alive,
                    expiry,
                    receive_maximum,
                },
            )))
        }
        Ok(_) => Err(WireError::NotConnect),
        Err(mb5::Error::InsufficientBytes(_)) => Ok(None),
        Err(mb5::Error::InvalidProtocolLevel(4)) => match v4::Packet::read(buf, max) {
            Ok(v4::Packet::Connect(c)) => Ok(Some((
                MqttVersion::V311,
                Incoming::Connect {
                    client_id: c.client_id,
                    clean_start: c.clean_session,
                    keep_alive: c.keep_alive,
                    expiry: if c.clean_session {
                        Duration::ZERO
                    } else {
                        V3_SESSION_EXPIRY
                    },
                    receive_maximum: None,
                },
            ))),
            Ok(_) => Err(WireError::NotConnect),
            Err(e) => Err(WireError::Malformed(e.to_string())),
        },
        Err(mb5::Error::InvalidProtocolLevel(level)) => Err(WireError::ProtocolLevel(level)),
        // MQTT 3.1 names its protocol "MQIsdp"; the codecs here do not speak it,
        // so it is answered like any unsupported level.
        Err(mb5::Error::InvalidProtocol) if buf.windows(8).any(|w| w == b"\x00\x06MQIsdp") => {
            Err(WireError::ProtocolLevel(3))
        }
        Err(e) => Err(WireError::Malformed(e.to_string())),
    }
}

/// Reads one packet after CONNECT. `Ok(None)` means more bytes are needed.
pub fn read(
    version: MqttVersion,
    buf: &mut BytesMut,
    max: usize,
) -> Result<Option<Incoming>, WireError> {
    match version {
        MqttVersion::V311 => read_v4(buf, max),
        MqttVersion::V5 => read_v5(buf, max),
    }
}

fn qos4(q: mb4::QoS) -> u8 {
    q as u8
}

fn qos5(q: mb5::QoS) -> u8 {
    q as u8
}

fn read_v4(buf: &mut BytesMut, max: usize) -> Result<Option<Incoming>, WireError> {
    let packet = match v4::Packet::read(buf, max) {
        Ok(p) => p,
        Err(mb4::Error::InsufficientBytes(_)) => return Ok(None),
        Err(e) => return Err(WireError::Malformed(e.to_string())),
    };
    Ok(Some(match packet {
        v4::Packet::Publish(p) => Incoming::Publish {
            topic: p.topic,
            payload: p.payload,
            qos: qos4(p.qos),
            pkid: p.pkid,
        },
        v4::Packet::PubAck(a) => Incoming::PubAck { pkid: a.pkid },
        v4::Packet::Subscribe(s) => Incoming::Subscribe {
            pkid: s.pkid,
            filters: s
                .filters
                .into_iter()
                .map(|f| (f.path, qos4(f.qos)))
                .collect(),
        },
        v4::Packet::Unsubscribe(u) => Incoming::Unsubscribe {
            pkid: u.pkid,
            filters: u.topics,
        },
        v4::Packet::PingReq => Incoming::PingReq,
        v4::Packet::Disconnect => Incoming::Disconnect,
        v4::Packet::Connect(_) => Incoming::Unsupported("second CONNECT"),
        _ => Incoming::Unsupported("packet type not handled"),
    }))
}

fn read_v5(buf: &mut BytesMut, max: usize) -> Result<Option<Incoming>, WireError> {
    // rumqttc's v5 reader wants a reason code; a bare DISCONNECT (E0 00) is valid.
    if buf.len() >= 2 && buf[0] == 0xE0 && buf[1] == 0x00 {
        let _ = buf.split_to(2);
        return Ok(Some(Incoming::Disconnect));
    }
    let packet = match v5::Packet::read(buf, Some(u32::try_from(max).unwrap_or(u32::MAX))) {
        Ok(p) => p,
        Err(mb5::Error::InsufficientBytes(_)) => return Ok(None),
        Err(e) => return Err(WireError::Malformed(e.to_string())),
    };
    Ok(Some(match packet {
        v5::Packet::Publish(p) => Incoming::Publish {
            topic: String::from_utf8(p.topic.to_vec())
                .map_err(|_| WireError::Malformed("topic is not UTF-8".into()))?,
            payload: p.payload,
            qos: qos5(p.qos),
            pkid: p.pkid,
        },
        v5::Packet::PubAck(a) => Incoming::PubAck { pkid: a.pkid },
        v5::Packet::Subscribe(s) => Incoming::Subscribe {
            pkid: s.pkid,
            filters: s
                .filters
                .into_iter()
                .map(|f| (f.path, qos5(f.qos)))
                .collect(),
        },
        v5::Packet::Unsubscribe(u) => Incoming::Unsubscribe {
            pkid: u.pkid,
            filters: u.filters,
        },
        v5::Packet::PingReq(_) => Incoming::PingReq,
        v5::Packet::Disconnect(_) => Incoming::Disconnect,
        v5::Packet::Connect(..) => Incoming::Unsupported("second CONNECT"),
        _ => Incoming::Unsupported("packet type not handled"),
    }))
}

/// Encodes a packet for a connection of `version`. MQTT 3 has no DISCONNECT
/// from the server: nothing is written for it.
pub fn write(version: MqttVersion, packet: Outgoing, buf: &mut BytesMut) -> Result<(), WireError> {
    let result = match version {
        MqttVersion::V311 => match to_v4(packet) {
            Some(p) => p
                .write(buf, usize::MAX)
                .map(|_| ())
                .map_err(|e| e.to_string()),
            None => Ok(()),
        },
        MqttVersion::V5 => match packet {
            // rumqttc's v5 writer drops the reason code of a DISCONNECT without
            // properties (it emits E0 00), and its reader rejects one that ends
            // after the reason code; so this one packet is written here:
            // reason code plus an empty property list, valid MQTT 5.
            Outgoing::Disconnect {
                reason,
                server_reference: None,
            } => {
                buf.extend_from_slice(&[0xE0, 0x02, reason, 0x00]);
                Ok(())
            }
            other => to_v5(other)
                .write(buf, None)
                .map(|_| ())
                .map_err(|e| e.to_string()),
        },
    };
    result.map_err(WireError::Malformed)
}

fn v4_qos(q: u8) -> mb4::QoS {
    if q == 0 {
        mb4::QoS::AtMostOnce
    } else {
        mb4::QoS::AtLeastOnce
    }
}

fn v5_qos(q: u8) -> mb5::QoS {
    if q == 0 {
        mb5::QoS::AtMostOnce
    } else {
        mb5::QoS::AtLeastOnce
    }
}

fn to_v4(packet: Outgoing) -> Option<v4::Packet> {
    Some(match packet {
        Outgoing::ConnAckAccepted {
            session_present, ..
        } => v4::Packet::ConnAck(v4::ConnAck::new(
            v4::ConnectReturnCode::Success,
            session_present,
        )),
        Outgoing::ConnAckUseAnotherServer { .. } => v4::Packet::ConnAck(v4::ConnAck::new(
            v4::ConnectReturnCode::ServiceUnavailable,
            false,
        )),
        Outgoing::ConnAckBadProtocol => v4::Packet::ConnAck(v4::ConnAck::new(
            v4::ConnectReturnCode::RefusedProtocolVersion,
            false,
        )),
        Outgoing::ConnAckBadCredentials => v4::Packet::ConnAck(v4::ConnAck::new(
            v4::ConnectReturnCode::BadUserNamePassword,
            false,
        )),
        Outgoing::Publish {
            topic,
            payload,
            qos,
            pkid,
            dup,
        } => v4::Packet::Publish(v4::Publish {
            dup,
            qos: v4_qos(qos),
            retain: false,
            topic,
            pkid,
            payload,
        }),
        Outgoing::PubAck { pkid } => v4::Packet::PubAck(v4::PubAck::new(pkid)),
        Outgoing::SubAck { pkid, codes } => v4::Packet::SubAck(v4::SubAck::new(
            pkid,
            codes
                .into_iter()
                .map(|c| match c {
                    0 => v4::SubscribeReasonCode::Success(mb4::QoS::AtMostOnce),
                    1 => v4::SubscribeReasonCode::Success(mb4::QoS::AtLeastOnce),
                    _ => v4::SubscribeReasonCode::Failure,
                })
                .collect(),
        )),
        Outgoing::UnsubAck { pkid, .. } => v4::Packet::UnsubAck(v4::UnsubAck::new(pkid)),
        Outgoing::PingResp => v4::Packet::PingResp,
        Outgoing::Disconnect { .. } => return None,
    })
}

/// CONNACK properties with none set.
fn connack_properties() -> v5::ConnAckProperties {
    v5::ConnAckProperties {
        session_expiry_interval: None,
        receive_max: None,
        max_qos: None,
        retain_available: None,
        max_packet_size: None,
        assigned_client_identifier: None,
        topic_alias_max: None,
        reason_string: None,
        user_properties: Vec::new(),
        wildcard_subscription_available: None,
        subscription_identifiers_available: None,
        shared_subscription_available: None,
        server_keep_alive: None,
        response_information: None,
        server_reference: None,
        authentication_method: None,
        authentication_data: None,
    }
}

fn to_v5(packet: Outgoing) -> v5::Packet {
    match packet {
        Outgoing::ConnAckAccepted {
            session_present,
            receive_maximum,
        } => v5::Packet::ConnAck(v5::ConnAck {
            session_present,
            code: v5::ConnectReturnCode::Success,
            properties: receive_maximum.map(|r| v5::ConnAckProperties {
                receive_max: Some(r),
                ..connack_properties()
            }),
        }),
        Outgoing::ConnAckUseAnotherServer { server_reference } => {
            let properties = server_reference.map(|r| v5::ConnAckProperties {
                server_reference: Some(r),
                ..connack_properties()
            });
            v5::Packet::ConnAck(v5::ConnAck {
                session_present: false,
                code: v5::ConnectReturnCode::UseAnotherServer,
                properties,
            })
        }
        Outgoing::ConnAckBadProtocol => v5::Packet::ConnAck(v5::ConnAck {
            session_present: false,
            code: v5::ConnectReturnCode::UnsupportedProtocolVersion,
            properties: None,
        }),
        Outgoing::ConnAckBadCredentials => v5::Packet::ConnAck(v5::ConnAck {
            session_present: false,
            code: v5::ConnectReturnCode::BadUserNamePassword,
            properties: None,
        }),
        Outgoing::Publish {
            topic,
            payload,
            qos,
            pkid,
            dup,
        } => v5::Packet::Publish(v5::Publish {
            dup,
            qos: v5_qos(qos),
            retain: false,
            topic: Bytes::from(topic),
            pkid,
            payload,
            properties: None,
        }),
        Outgoing::PubAck { pkid } => v5::Packet::PubAck(v5::PubAck {
            pkid,
            reason: v5::PubAckReason::Success,
            properties: None,
        }),
        Outgoing::SubAck { pkid, codes } => v5::Packet::SubAck(v5::SubAck {
            pkid,
            return_codes: codes
                .into_iter()
                .map(|c| match c {
                    0 => v5::SubscribeReasonCode::Success(mb5::QoS::AtMostOnce),
                    1 => v5::SubscribeReasonCode::Success(mb5::QoS::AtLeastOnce),
                    _ => v5::SubscribeReasonCode::Unspecified,
                })
                .collect(),
            properties: None,
        }),
        Outgoing::UnsubAck { pkid, count } => v5::Packet::UnsubAck(v5::UnsubAck {
            pkid,
            reasons: vec![v5::UnsubAckReason::Success; count],
            properties: None,
        }),
        Outgoing::PingResp => v5::Packet::PingResp(v5::PingResp),
        Outgoing::Disconnect {
            reason,
            server_reference,
        } => {
            let reason_code = v5::DisconnectReasonCode::try_from(reason)
                .unwrap_or(v5::DisconnectReasonCode::UnspecifiedError);
            let properties = server_reference.map(|r| v5::DisconnectProperties {
                session_expiry_interval: None,
                reason_string: None,
                user_properties: Vec::new(),
                server_reference: Some(r),
            });
            v5::Packet::Disconnect(v5::Disconnect {
                reason_code,
                properties,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4_connect(clean: bool) -> BytesMut {
        let mut c = v4::Connect::new("c1");
        c.clean_session = clean;
        let mut buf = BytesMut::new();
        v4::Packet::Connect(c)
            .write(&mut buf, 1024)
            .expect("encode");
        buf
    }

    #[test]
    fn detects_protocol_from_connect() {
        let mut buf = v4_connect(false);
        let (v, p) = read_connect(&mut buf, 1024).expect("ok").expect("complete");
        assert_eq!(v, MqttVersion::V311);
        assert!(
            matches!(p, Incoming::Connect { clean_start: false, expiry, .. } if expiry == V3_SESSION_EXPIRY)
        );
        assert!(buf.is_empty());

        let mut props = v5::ConnectProperties::new();
        props.session_expiry_interval = Some(300);
        let c = v5::Connect {
            keep_alive: 30,
            client_id: "c5".into(),
            clean_start: false,
            properties: Some(props),
        };
        let mut buf = BytesMut::new();
        v5::Packet::Connect(c, None, None)
            .write(&mut buf, None)
            .expect("encode");
        let (v, p) = read_connect(&mut buf, 1024).expect("ok").expect("complete");
        assert_eq!(v, MqttVersion::V5);
        assert!(
            matches!(p, Incoming::Connect { expiry, .. } if expiry == Duration::from_secs(300))
        );
    }

    #[test]
    fn partial_garbage_and_huge_lengths() {
        let full = v4_connect(true);
        let mut part = BytesMut::from(&full[..full.len() - 1]);
        assert!(read_connect(&mut part, 1024).expect("ok").is_none());
        let mut garbage = BytesMut::from(&b"GET / HTTP/1.1\r\n\r\n"[..]);
        assert!(read_connect(&mut garbage, 1024).is_err());
        // CONNECT claiming 268 MB.
        let mut huge = BytesMut::from(&[0x10u8, 0xff, 0xff, 0xff, 0x7f][..]);
        assert!(read_connect(&mut huge, 1024).is_err());
        // Remaining length with a 5th continuation byte.
        let mut bad_len = BytesMut::from(&[0x10u8, 0xff, 0xff, 0xff, 0xff, 0x01][..]);
        assert!(read_connect(&mut bad_len, 1024).is_err());
        let mut mqtt31 = BytesMut::from(&b"\x10\x0c\x00\x06MQIsdp\x03\x02\x00\x3c"[..]);
        assert!(read_connect(&mut mqtt31, 1024).is_err());
    }

    #[test]
    fn v3_has_no_server_disconnect() {
        let mut buf = BytesMut::new();
        let d = Outgoing::Disconnect {
            reason: 0x9C,
            server_reference: None,
        };
        write(MqttVersion::V311, d.clone(), &mut buf).expect("encode");
        assert!(buf.is_empty());
        write(MqttVersion::V5, d, &mut buf).expect("encode");
        assert_eq!(&buf[..], &[0xE0, 0x02, 0x9C, 0x00]);
    }
}
