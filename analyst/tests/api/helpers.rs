//! Test harness of the analyst tools: a projector configuration of its own (schema,
//! Redis key prefix, topic prefix, consumer group). The producer, waits and event
//! builders enveloped exactly as on the wire are `test-support`'s.

use clap::Parser;
use events::topics::Topics;
use projector::configuration::{Cli, Config};
use service_kit::redis_conn::RedisConn;
use sqlx::PgPool;

pub use test_support::fixtures::*;
pub use test_support::namespace::redis_json;
pub use test_support::topic::publish_at;
pub use test_support::{producer, publish, Namespace};

/// A fresh configuration: its own schema, key prefix, topic prefix, group and role.
pub fn test_config() -> Config {
    test_support::env::init_logging();
    let ns = Namespace::new();
    let mut config = Cli::try_parse_from(["projector"]).unwrap().config;
    config.http_addr = "127.0.0.1:0".parse().unwrap();
    ns.database(&mut config.database, 4);
    ns.kafka(&mut config.kafka);
    ns.redis(&mut config.redis);
    config.query_role = ns.role();
    config.query_role_login = true;
    config.consumer_group = ns.group("projector");
    // Tests poll from one address; the limits have their own test.
    config.hardening.per_ip_per_minute = 0;
    config.hardening.per_customer_per_minute = 0;
    config
}

/// Drops the test's schemas (with the replay namespaces beside them), its query role and
/// its Redis keys.
pub async fn cleanup(pool: &PgPool, config: &Config, redis: &RedisConn) {
    test_support::namespace::cleanup(
        pool,
        &config.database.schema,
        &config.query_role,
        redis,
        &config.redis.key_prefix,
    )
    .await;
}

/// Creates the topics the projector reads, for tests that run no projector.
pub async fn create_topics(config: &Config) {
    let topics = Topics::new(&config.kafka.topic_prefix);
    let admin = service_kit::kafka::admin(&config.kafka, "projector-test")
        .await
        .unwrap();
    service_kit::kafka::ensure_topics(
        &admin,
        &[
            topics.product_change(),
            topics.kos_billing(),
            topics.bill_inquiries(),
        ],
        config.kafka.topic_partitions,
    )
    .await
    .unwrap();
}
