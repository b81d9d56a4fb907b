//! Integration tests against the real PostgreSQL and broker. Each test gets its own
//! database schema, topic prefix and consumer group, so tests run in parallel and again
//! and again.

mod helpers;

mod access;
mod admin;
mod changes;
mod contract;
mod crash;
