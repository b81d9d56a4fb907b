//! Integration tests against the real PostgreSQL, Redis and broker. Each test has its own
//! schema, Redis key prefix, topic prefix, consumer group and query role.

mod helpers;

mod consumer;
mod projections;
mod redis_cluster;
mod time_travel;
