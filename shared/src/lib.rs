//! `emqx-crd`: the `apps.emqx.io` API.
//!
//! Types of every served version, CRD generation, and the pure functions that
//! default, validate and convert objects. No I/O, no async: the webhook and the
//! reconciler call the same functions, so they can never disagree.
//!
//! The JSON-level entry points in [`dynamic`] are what the webhook calls: they
//! take whole objects (`apiVersion`, `kind`, `metadata`, `spec`, `status`) as
//! `serde_json::Value`, so the webhook never needs to know the typed model.

pub mod conversion_data;
pub mod convert;
pub mod crd;
pub mod defaults;
pub mod dynamic;
pub mod evacuation;
pub mod image;
pub mod limits;
pub mod names;
pub mod schema;
pub mod served;
pub mod v1beta4;
pub mod v2alpha2;
pub mod v2beta1;
pub mod validate;
