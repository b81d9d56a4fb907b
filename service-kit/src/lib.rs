//! What every phonebill service shares, so each service crate holds only its own role.
//!
//! - [`kafka`]: the Kafka settings (local Tansu or Azure Event Hubs by configuration
//!   alone), client config, topic creation, a reachability probe.
//! - [`database`]: a PostgreSQL pool bound to one schema (each service owns a schema).
//! - [`telemetry`]: JSON logs and the Prometheus recorder.
//! - [`http`]: the `observe` layer (correlation id, deadline, request metrics) and
//!   `application/problem+json` documents.

pub mod database;
pub mod http;
pub mod kafka;
pub mod telemetry;
