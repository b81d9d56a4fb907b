//! What the integration tests of every crate share, once: the test environment
//! ([`env`]), a namespace per test ([`namespace`]), polling with a deadline ([`wait`]),
//! publishing to and reading back a topic ([`topic`]), HTTP clients ([`http`]), the
//! event and fact builders ([`fixtures`]), child processes ([`process`]) and the
//! broker's identity side: a local token endpoint and Kafka ACLs ([`broker_identity`]).
//!
//! A dev-dependency only, and on no service crate: whatever is specific to one service
//! (`spawn_app`, `test_config`, `TestApp`) stays in that crate's tests.

pub mod broker_identity;
pub mod env;
pub mod fixtures;
pub mod http;
pub mod namespace;
pub mod process;
pub mod topic;
pub mod wait;

pub use env::{brokers, database_url, redis_cluster_url, redis_target, redis_url};
pub use fixtures::line;
pub use http::client_with_token;
pub use namespace::Namespace;
pub use process::{printed_openapi, Running};
pub use topic::{kos_signed, producer, publish, publish_signed, read_topic, Received, PARTITIONS};
pub use wait::{eventually, wait_until};
