//! phonebill command-service: customers' product-change commands become events in the
//! event store, the outbox relay publishes them to the broker, and KOS's answers close
//! each change.
//!
//! Reading order: [`domain`] (the line aggregate and the pre-checks, no I/O), then
//! [`product_change`] (loads facts, runs the aggregate, commits), [`routes`] (thin HTTP
//! handlers), [`relay`] (event table to Kafka), [`kos_inbox`] (KOS's results and facts
//! from Kafka), [`kos_timeouts`] (changes KOS never answered) and [`startup`] (wiring).
//! [`reference`] keeps the KOS facts the pre-checks read; [`error`] maps every failure to
//! one problem+json answer; [`auth`] holds logins, passwords and logout (token checks and
//! the line-ownership rule are shared in `service_kit::auth`).

pub mod auth;
pub mod configuration;
pub mod db;
pub mod domain;
pub mod error;
pub mod event_store;
pub mod kos_inbox;
pub mod kos_timeouts;
pub mod product_change;
pub mod reference;
pub mod relay;
pub mod routes;
pub mod startup;
