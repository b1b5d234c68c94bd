//! The blue-green upgrade engine behind `emqx-reconciler`.
//!
//! [`decide`] holds the whole state machine as a pure function of what
//! [`observed`] describes; the controller shell (issue 6) only observes,
//! calls it and carries out the actions.

pub mod decide;
pub mod emqx_api;
pub mod emqx_client;
pub mod observed;
pub mod revision;
