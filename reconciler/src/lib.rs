//! The blue-green upgrade engine behind `emqx-reconciler`.
//!
//! A pass ([`reconcile`]) is a straight pipeline: [`render`] the object once,
//! [`gather`] one observation, apply the [`base`] objects (after reading,
//! because a taken-over cluster keeps its own), [`decide`] (the
//! whole state machine, a pure function of [`observed`]), [`act`] on the
//! actions, [`report`] (Events from [`events`], the memory of [`memory`],
//! [`metrics`], and the [`status`] with the wait [`explain`]ed). [`watch`]
//! wires the controllers, [`context`] and [`error`] are what every pass
//! shares, and [`kind`] makes it generic over `EMQX` and `EmqxEnterprise`.
//!
//! [`go_operator`] reads sets the Go EMQX Operator created in our spelling,
//! so a cluster it made is taken over as it runs.
//!
//! The blue-green memory (what the cluster cannot show again after a
//! restart) is kept in the annotation `apps.emqx.io/blue-green-progress`;
//! [`memory`] says why not in the status.

pub mod act;
pub mod base;
pub mod bootstrap;
pub mod cluster_secrets;
pub mod context;
pub mod decide;
pub mod drift;
pub mod emqx_api;
pub mod emqx_client;
pub mod error;
pub mod events;
pub mod explain;
pub mod gather;
pub mod go_operator;
pub mod json_subset;
pub mod kind;
pub mod leader;
pub mod licence;
pub mod live;
pub mod memory;
pub mod metrics;
pub mod observed;
pub mod pass_lanes;
pub mod pass_trigger;
pub mod reconcile;
pub mod render;
pub mod report;
pub mod revision;
pub mod sent_status;
pub mod slow_nodes;
pub mod status;
pub mod upgrade_slots;
pub mod v1beta4_conditions;
pub mod v1beta4_template;
pub mod watch;
