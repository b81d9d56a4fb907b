//! phonebill query-service: HTTP queries served only from the projections.
//!
//! Reading order: [`views`] (L1 -> Redis -> PostgreSQL read tables, refill, the
//! read-your-writes wait), [`invalidation`] (keeps L1 correct), [`routes`] (thin
//! handlers; [`inquiry_history`] reads the one read table that is not a view),
//! [`inquiries`] (bill-inquiry records to the broker, never blocking a
//! query), [`namespace`] (follows a replay's switch of the read model), [`startup`].
//!
//! Architecture invariant: this crate reads the read schema only, through a role that can
//! do nothing else; it never reads the event store, the command side's tables or KOS.

pub mod configuration;
pub mod error;
pub mod inquiries;
pub mod inquiry_history;
pub mod invalidation;
pub mod l1;
pub mod namespace;
pub mod routes;
pub mod startup;
pub mod views;
pub mod waiters;
