//! phonebill projector: consumes `phonebill.product-change`, `kos.billing` and
//! `phonebill.bill-inquiries` and maintains the read model (PostgreSQL read tables in
//! schema `read`, Redis views in front of them).
//!
//! Reading order: [`processor`] (one message: decode, checkpoint, apply, park, refresh
//! Redis), [`projections`] (one `apply` per input family), [`consumer`] (the handler of
//! service-kit's group worker, which stores offsets after effects, retries and
//! dead-letters), [`db`] (schema, migrations, the query role), [`startup`] (wiring,
//! health, admin endpoints, following the active namespace). Analysts: [`namespace`] (namespaces and the active pointer),
//! [`replay`] (rebuild into a fresh namespace, switch), [`time_travel`] (a line as of a
//! moment, from its events), [`analytics`] (its HTTP endpoint), [`export`] (a topic
//! into a JSONL, CSV or Parquet file). Schema checks:
//! `events::schema::SchemaSet`.
//! View shapes, Redis keys and the PostgreSQL loaders live in the `read-model` crate,
//! shared with query-service.

pub mod analytics;
pub mod configuration;
pub mod consumer;
pub mod db;
pub mod export;
pub mod namespace;
pub mod processor;
pub mod projections;
pub mod replay;
pub mod startup;
pub mod time_travel;
