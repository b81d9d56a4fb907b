//! Integration tests against the real PostgreSQL and broker. Each test gets its own
//! database schema and topic prefix, so they run in parallel and again and again.

mod helpers;

mod auth;
mod concurrency;
mod crash;
mod fuzz;
mod group_commit;
mod input;
mod kos_loop;
mod outbox;
mod service;
