//! Integration tests: a projector and a query-service in their own schema, Redis key
//! prefix, topic prefix and query role; events produced as the command side and KOS do.

/// The projector's harness (configuration, event builders, producer, waits), reused.
#[path = "../../../projector/tests/api/helpers.rs"]
mod events_helpers;
mod helpers;

mod auth;
mod bills;
mod fuzz;
mod lines;
