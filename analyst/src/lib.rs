//! phonebill analyst tools (`phonebill-analyst`), apart from the projector daemon: they
//! read the broker (and the event store) and write namespaces beside the live one, but
//! never run in the daemon's process. They reuse the projector library: its
//! configuration, its projections (a replay applies exactly what the daemon applies), its
//! namespace control and its time travel.
//!
//! Reading order: [`replay`] (rebuild into a fresh namespace, switch), [`compare`] (a
//! namespace's views against the active one's), [`export`] (a topic into a JSONL, CSV or
//! Parquet file), [`reconcile`] (the event store against a namespace's views, line by
//! line), [`configuration`] (the subcommands over the projector's `Config`).

pub mod compare;
pub mod configuration;
pub mod export;
pub mod reconcile;
pub mod replay;
