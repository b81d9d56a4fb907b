//! query-service's API tests: a projector and a query-service in their own schema, Redis
//! key prefix, topic prefix and query role; events produced as the command side and KOS
//! do. (Moved from query-service's tests: they run a projector beside it.)

#[path = "../support/mod.rs"]
mod support;

/// The query side's harness (a projector and a query-service) and the event builders.
use support::query as helpers;

mod auth;
mod bills;
mod fuzz;
mod lines;
