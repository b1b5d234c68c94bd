//! `emqx-listener`: the connection limits both binaries' listeners share.
//!
//! - [`connections`]: who keeps a slot when a listener is full (oldest-idle
//!   eviction with a per-peer quota), as a pure decision and the table it
//!   reads. The webhook's TLS and health listeners and the reconciler's
//!   admin port all use it.
//! - [`plain`]: a plain-HTTP/1.1 listener for probes and `/metrics` (the
//!   reconciler's admin port): the table, a first-byte (idle) timeout, a
//!   header timeout, and a bounded shutdown. The webhook keeps its own loop
//!   for its TLS port (handshake deadline, ALPN, h2).

pub mod connections;
pub mod plain;
