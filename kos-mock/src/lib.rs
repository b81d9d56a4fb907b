//! phonebill kos-mock: the carrier's back office (KOS), simulated. It integrates through
//! the broker alone: it consumes `ProductChangeSentToKos` from `phonebill.product-change`,
//! answers on `kos.product-change-results`, and publishes its catalog, line, bill and
//! payment facts on `kos.billing`, in the contract of `events::kos` and `schemas/`.
//!
//! Reading order: [`catalog`], [`lines`] and [`billing`] (KOS's own data; each change
//! commits with its facts), [`changes`] (the consumer that carries product changes out,
//! once per request), [`simulation`] (seeded latency and success), [`outbox`] (facts and
//! results to the broker, no dual write), [`demo`] (the demo data set), [`routes`] (the
//! admin API), and [`startup`] (wiring). [`error`] maps every failure to one problem+json
//! answer.

pub mod billing;
pub mod catalog;
pub mod changes;
pub mod cli;
pub mod configuration;
pub mod db;
pub mod demo;
pub mod error;
pub mod lines;
pub mod outbox;
pub mod routes;
pub mod simulation;
pub mod startup;
pub mod validate;
