//! Where the tests find PostgreSQL, Redis and the broker: `PHONEBILL_TEST_*` variables,
//! else the local defaults.

/// `PHONEBILL_TEST_KAFKA_BROKERS`, else `127.0.0.1:9092`. The test command
/// (`infra/local/stack test`) always sets it (to the broker it starts for the tests).
pub fn brokers() -> String {
    std::env::var("PHONEBILL_TEST_KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".into())
}

/// `PHONEBILL_TEST_DATABASE_URL`, else the local `phonebill` database.
pub fn database_url() -> String {
    std::env::var("PHONEBILL_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/phonebill".into())
}

/// `PHONEBILL_TEST_REDIS_URL`, else the local single node.
pub fn redis_url() -> String {
    std::env::var("PHONEBILL_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// `PHONEBILL_TEST_REDIS_CLUSTER_URL`: the three-shard Redis Cluster the test command
/// starts (`infra/local/stack test`).
pub fn redis_cluster_url() -> String {
    std::env::var("PHONEBILL_TEST_REDIS_CLUSTER_URL").unwrap_or_else(|_| {
        "redis://127.0.0.1:17001,redis://127.0.0.1:17002,redis://127.0.0.1:17003".into()
    })
}

/// `PHONEBILL_TEST_REDIS_CLUSTER=true`: the tests use the Redis Cluster instead of the
/// single node (the test command runs the suites that touch Redis both ways). The URL
/// and whether it is a cluster.
pub fn redis_target() -> (String, bool) {
    if std::env::var("PHONEBILL_TEST_REDIS_CLUSTER").is_ok_and(|v| v == "true") {
        (redis_cluster_url(), true)
    } else {
        (redis_url(), false)
    }
}

/// `TEST_LOG` set: the in-process services log at `info` (or as `RUST_LOG` says), JSON
/// lines; the first call of a test binary sets it up, later ones do nothing.
pub fn init_logging() {
    if std::env::var("TEST_LOG").is_ok() {
        service_kit::telemetry::init_logging("info");
    }
}
