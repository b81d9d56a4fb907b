//! Integration tests of the analyst tools against the real PostgreSQL, Redis and broker.
//! Each test has its own schema, Redis key prefix, topic prefix, consumer group and query
//! role.

mod helpers;

mod dry_run;
mod export;
mod window_replay;
