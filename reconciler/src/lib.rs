//! The blue-green upgrade engine behind `emqx-reconciler`.
//!
//! [`decide`] holds the whole state machine as a pure function of what
//! [`observed`] describes; [`controller`] only observes (through
//! [`observe`] and [`emqx_client`]), calls it, carries out the actions and
//! writes [`status`].

pub mod controller;
pub mod decide;
pub mod drift;
pub mod emqx_api;
pub mod emqx_client;
pub mod explain;
pub mod hub;
pub mod leader;
pub mod memory;
pub mod metrics;
pub mod observe;
pub mod observed;
pub mod render;
pub mod revision;
pub mod status;
pub mod v1beta4_conditions;
pub mod v1beta4_template;
