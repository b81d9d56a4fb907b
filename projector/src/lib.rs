//! phonebill projector: consumes `phonebill.product-change`, `kos.billing` and
//! `phonebill.bill-inquiries` and maintains the read model (PostgreSQL read tables in
//! schema `read`, Redis views in front of them).
//!
//! Reading order: [`processor`] (one message: decode, checkpoint, apply, park, refresh
//! Redis), [`projections`] (one `apply` per input family), [`consumer`] (the handler of
//! service-kit's group worker, which stores offsets after effects, retries and
//! dead-letters), [`db`] (schema, migrations, the query role), [`startup`] (wiring,
//! health, following the active namespace), [`admin`] (the parked events' endpoints),
//! [`openapi`] (the document of the HTTP endpoints), [`namespace`] (namespaces
//! and the active pointer, which the daemon opens at startup and follows), [`time_travel`]
//! (a line as of a moment, from its events) and [`analytics`] (its HTTP endpoint, served
//! by the daemon), [`reconcile`] (the event store against the views, line by line, and
//! the continuous check behind its metrics). Schema checks: `events::schema::SchemaSet`.
//! The analyst tools (replay, switch, compare, as-of, export) are the `analyst` crate's
//! `phonebill-analyst`, which uses this library; nothing here depends on it.
//! View shapes, Redis keys and the PostgreSQL loaders live in the `read-model` crate,
//! shared with query-service.

pub mod admin;
pub mod analytics;
pub mod configuration;
pub mod consumer;
pub mod db;
#[cfg(feature = "fault-injection")]
pub mod faults;
pub mod namespace;
pub mod openapi;
pub mod processor;
pub mod projections;
pub mod reconcile;
pub mod startup;
pub mod time_travel;
