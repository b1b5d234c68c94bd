//! `emqx-crd`: the `apps.emqx.io` API.
//!
//! Types of every served version, CRD generation, and the pure functions that
//! default, validate and convert objects. No I/O, no async: the webhook and the
//! reconciler call the same functions, so they can never disagree. The one
//! exception is [`logging`], the log convention both binaries share.
//!
//! - Served versions ([`served::Served`]): `EMQX` [`v2beta1`] (storage, the
//!   hub) and [`v2alpha2`]; `EmqxEnterprise` [`v1beta4`] (storage) and
//!   [`v2beta1::EmqxEnterprise`] (the hub's spec under that kind).
//! - The webhook calls the JSON-level entry points in [`dynamic`]:
//!   [`dynamic::default_object`], [`dynamic::validate_object`],
//!   [`dynamic::convert_object`]. They take whole objects as
//!   `serde_json::Value`, so the webhook never needs the typed model.
//! - The reconciler reads the hub: [`v2beta1::EMQX`] (an `EmqxEnterprise`
//!   v2beta1 object converts with `From`), [`hub`] for effective settings and
//!   condition types, [`names`] for the objects it owns.
//! - [`crd`] builds both CRDs (`cargo run -p emqx-crd --bin crdgen` writes them
//!   under `charts/emqx-operator/files/crds/`); [`migrate`] backs the
//!   `emqx-migrate` command (v1beta4 `EmqxEnterprise` → `EMQX` v2beta1).
//!
//! Deliberate differences from the Go operator: `API-DIFFERENCES.md`.

#![warn(missing_docs)]

pub mod bootstrap_keys;
pub mod conversion_data;
pub mod convert;
pub mod crd;
pub mod defaults;
pub mod dynamic;
pub mod edition;
pub mod evacuation;
pub mod guard;
pub mod hocon;
pub mod hub;
pub mod image;
pub mod licence;
pub mod limits;
pub mod logging;
pub mod migrate;
pub mod names;
pub mod schema;
pub mod served;
pub mod v1beta4;
pub mod v2alpha2;
pub mod v2beta1;
pub mod validate;
