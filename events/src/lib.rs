//! The wire contract of phonebill: every event that crosses a process boundary.
//!
//! - [`envelope`]: the envelope every message carries (ids, sequence, times, payload).
//! - [`product_change`]: events of the line aggregate about product changes
//!   (topic `phonebill.product-change`).
//! - [`kos`]: what KOS publishes: facts on `kos.billing` (catalog, lines, bills) and
//!   its answers on `kos.product-change-results`.
//! - [`bill_inquiry`]: a bill was looked at (topic `phonebill.bill-inquiries`).
//! - [`dead_letter`]: the headers a dead-lettered message carries.
//! - [`stored`]: an event store row as the envelope it is published as.
//! - [`topics`]: topic names, with the configurable prefix that keeps test runs apart,
//!   and `partition_for` (the partition a key lands on, as every producer here puts it).
//! - [`codec`]: JSON in and out, with clear errors for bad or unknown-version input.
//! - `schema` (feature `validation`): checks envelopes against `schemas/`.
//!
//! API boundary: outside consumers (KOS) read the JSON Schemas in `schemas/`, which tests
//! keep in step with these types. This crate does no I/O.

pub mod bill_inquiry;
pub mod codec;
pub mod dead_letter;
pub mod envelope;
pub mod kos;
pub mod product_change;
#[cfg(feature = "validation")]
pub mod schema;
pub mod stored;
pub mod topics;

pub use codec::{DecodeError, EventPayload};
pub use envelope::{event_id_for, Envelope};
