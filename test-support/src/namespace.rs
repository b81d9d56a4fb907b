//! A namespace per test: one unique id names the test's PostgreSQL schema, Redis key
//! prefix, topic prefix, consumer groups and query role, so tests run in parallel and
//! again and again against the same servers.

use redis::AsyncCommands;
use service_kit::database::{DatabaseConfig, DatabaseDefaults};
use service_kit::kafka::KafkaConfig;
use service_kit::redis_conn::{RedisConfig, RedisConn};
use sqlx::PgPool;
use uuid::Uuid;

use crate::env::{brokers, database_url, redis_target};
use crate::topic::PARTITIONS;

/// The names of one test's resources, all made from one fresh id.
#[derive(Debug, Clone)]
pub struct Namespace {
    /// 32 hex digits, unique to this test.
    pub id: String,
}

impl Default for Namespace {
    fn default() -> Self {
        Self::new()
    }
}

impl Namespace {
    pub fn new() -> Self {
        Self {
            id: Uuid::new_v4().simple().to_string(),
        }
    }

    /// The PostgreSQL schema: `test_<id>`.
    pub fn schema(&self) -> String {
        format!("test_{}", self.id)
    }

    /// The Redis key prefix: `test-<id>:`.
    pub fn key_prefix(&self) -> String {
        format!("test-{}:", self.id)
    }

    /// The topic prefix: `test-<id>.`.
    pub fn topic_prefix(&self) -> String {
        format!("test-{}.", self.id)
    }

    /// A consumer group (or a topic) of this test: `test-<id>.<name>`.
    pub fn group(&self, name: &str) -> String {
        format!("{}{name}", self.topic_prefix())
    }

    /// The query role: `q_<id>`.
    pub fn role(&self) -> String {
        format!("q_{}", self.id)
    }

    /// A service's database settings: the test database, this namespace's schema, a pool
    /// of `max_connections`.
    pub fn database<D: DatabaseDefaults>(
        &self,
        database: &mut DatabaseConfig<D>,
        max_connections: u32,
    ) {
        database.url = database_url();
        database.schema = self.schema();
        database.max_connections = max_connections;
    }

    /// A service's broker settings: the test broker, this namespace's topic prefix,
    /// [`PARTITIONS`] partitions a topic.
    pub fn kafka(&self, kafka: &mut KafkaConfig) {
        kafka.brokers = brokers();
        kafka.topic_prefix = self.topic_prefix();
        kafka.topic_partitions = PARTITIONS;
    }

    /// A service's Redis settings: the test Redis ([`redis_target`]: the single node, or
    /// the cluster when the test command asks for it), this namespace's key prefix. A
    /// cluster the service's own settings name (`PHONEBILL_REDIS_CLUSTER`, as the
    /// production-shaped profile sets it, with the cluster in `PHONEBILL_TEST_REDIS_URL`)
    /// stays one.
    pub fn redis(&self, redis: &mut RedisConfig) {
        let (url, cluster) = redis_target();
        redis.url = url;
        redis.cluster |= cluster;
        redis.key_prefix = self.key_prefix();
    }
}

/// Drops `schema`, every schema named `<schema>_…` beside it (namespace control, replay
/// namespaces), the role `role` and every Redis key under `key_prefix`. Errors are
/// ignored: cleanup never fails a test.
pub async fn cleanup(pool: &PgPool, schema: &str, role: &str, redis: &RedisConn, key_prefix: &str) {
    let schemas: Vec<String> = sqlx::query_scalar(
        "SELECT nspname::text FROM pg_namespace WHERE nspname = $1 OR nspname LIKE $1 || '\\_%'",
    )
    .bind(schema)
    .fetch_all(pool)
    .await
    .unwrap_or_default();
    for s in schemas {
        drop_schema(pool, &s).await;
    }
    let _ = sqlx::query(&format!("DROP ROLE IF EXISTS \"{role}\""))
        .execute(pool)
        .await;
    let mut redis = redis.clone();
    let keys = redis
        .scan_match(&[format!("{key_prefix}*")])
        .await
        .unwrap_or_default();
    if !keys.is_empty() {
        let _: Result<(), _> = redis.del(keys).await;
    }
}

/// `DROP SCHEMA … CASCADE`, errors ignored.
pub async fn drop_schema(pool: &PgPool, schema: &str) {
    let _ = sqlx::query(&format!("DROP SCHEMA \"{schema}\" CASCADE"))
        .execute(pool)
        .await;
}

/// The JSON document at `<prefix><key>` in Redis; an error (a connection broken by a
/// Redis restart) reads as absent.
pub async fn redis_json(redis: &RedisConn, prefix: &str, key: &str) -> Option<serde_json::Value> {
    let mut redis = redis.clone();
    let bytes: Option<Vec<u8>> = redis.get(format!("{prefix}{key}")).await.ok().flatten();
    bytes.map(|b| serde_json::from_slice(&b).unwrap())
}
