//! The MQTT side of a simulated node: wire format, connections, listener.

pub mod channel;
pub mod listener;
pub mod wire;
