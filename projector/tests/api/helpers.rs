//! Test harness: a projector (in-process or as a child process) in its own schema, Redis
//! key prefix, topic prefix and consumer group. The environment, waits, producer, topic
//! reader and event builders are `test-support`'s.
#![allow(dead_code)] // shared by the test files; not each uses every helper

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use clap::Parser;
use events::kos::KosFact;
use events::product_change::ProductChangeEvent;
use events::topics::Topics;
use projector::configuration::{Cli, Config};
use projector::processor::{Incoming, Processor};
use projector::startup::{self, Application};
use redis::AsyncCommands;
use service_kit::redis_conn::{RedisConfig, RedisConn};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

pub use test_support::fixtures::*;
pub use test_support::namespace::redis_json;
pub use test_support::topic::Received;
pub use test_support::{brokers, producer, publish, wait_until, Namespace, PARTITIONS};

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

/// A processor without a consumer: feeds messages straight in (PostgreSQL and Redis
/// only, no broker).
pub struct TestProcessor {
    pub processor: Processor,
    pub config: Config,
    pub pool: PgPool,
    pub redis: RedisConn,
    pub topics: Topics,
    offset: i64,
}

impl TestProcessor {
    pub async fn new() -> Self {
        Self::with_config(test_config()).await
    }

    pub async fn with_config(config: Config) -> Self {
        let pool = startup::prepare_database(&config).await.unwrap();
        let processor = startup::processor(&config, pool.clone()).await.unwrap();
        let redis = RedisConn::connect(&config.redis).await.unwrap();
        Self {
            processor,
            topics: Topics::new(&config.kafka.topic_prefix),
            config,
            pool,
            redis,
            offset: 0,
        }
    }

    /// A message as the broker would hand it over, signed with KOS's development key
    /// as kos-mock signs (only KOS's topic is checked).
    pub fn incoming(&mut self, topic: String, bytes: Vec<u8>) -> Incoming {
        self.offset += 1;
        let kos = service_kit::signed::Signer::local_dev();
        let headers = vec![
            (
                service_kit::signed::SIGNER.to_owned(),
                kos.kid().as_bytes().to_vec(),
            ),
            (
                service_kit::signed::SIGNATURE.to_owned(),
                kos.sign(b"", &bytes).into_bytes(),
            ),
        ];
        Incoming {
            topic,
            partition: 0,
            offset: self.offset,
            key: None,
            payload: bytes,
            headers,
        }
    }

    pub async fn feed_line(
        &mut self,
        line: &str,
        sequence: u64,
        event: ProductChangeEvent,
    ) -> projector::processor::Outcome {
        let msg = self.incoming(
            self.topics.product_change(),
            line_event(line, sequence, &event),
        );
        self.processor.handle(&msg).await.unwrap()
    }

    pub async fn feed_kos(
        &mut self,
        sequence: u64,
        fact: KosFact,
    ) -> projector::processor::Outcome {
        let msg = self.incoming(self.topics.kos_billing(), kos_event(sequence, &fact));
        self.processor.handle(&msg).await.unwrap()
    }

    pub async fn redis_json(&self, key: &str) -> Option<serde_json::Value> {
        redis_json(&self.redis, &self.config.redis.key_prefix, key).await
    }

    pub async fn cleanup(self) {
        cleanup(&self.pool, &self.config, &self.redis).await;
    }
}

/// Drops the test's schemas (the namespace control and replay namespaces beside it),
/// its query role and its Redis keys.
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

/// A projector running in this process.
pub struct TestApp {
    pub config: Config,
    pub pool: PgPool,
    pub redis: RedisConn,
    pub topics: Topics,
    pub address: String,
    shutdown: CancellationToken,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

pub async fn spawn_app(config: Config) -> TestApp {
    let app = Application::build(config.clone())
        .await
        .expect("projector builds");
    let pool = app.pool().clone();
    let address = format!("http://{}", app.local_addr());
    let redis = RedisConn::connect(&config.redis).await.unwrap();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(app.run_until_stopped(shutdown.clone()));
    TestApp {
        topics: Topics::new(&config.kafka.topic_prefix),
        config,
        pool,
        redis,
        address,
        shutdown,
        task: Some(task),
    }
}

impl TestApp {
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            task.await.unwrap().unwrap();
        }
        cleanup(&self.pool, &self.config, &self.redis).await;
    }

    pub async fn line_position(&self, line: &str) -> i64 {
        read_model::keys::position(&self.pool, line).await.unwrap()
    }
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

/// Reads `topic` to its end (`test-support`'s reader on the test broker).
pub async fn read_topic(topic: &str) -> Vec<Received> {
    test_support::read_topic(&brokers(), topic).await
}

/// Every read table and every Redis key under the prefix of a projection (the pool's
/// own schema), for comparing two of them.
pub async fn dump(pool: &PgPool, redis: &RedisConn, prefix: &str) -> BTreeMap<String, String> {
    let schema: String = sqlx::query_scalar("SELECT current_schema()")
        .fetch_one(pool)
        .await
        .unwrap();
    let mut out = projector::namespace::dump_tables(pool, &schema)
        .await
        .unwrap();
    let mut redis = redis.clone();
    let keys: Vec<String> = redis.keys(format!("{prefix}*")).await.unwrap();
    for key in keys {
        let value: Vec<u8> = redis.get(&key).await.unwrap();
        out.insert(
            format!("redis:{}", key.trim_start_matches(prefix)),
            String::from_utf8_lossy(&value).into_owned(),
        );
    }
    out
}

/// A redis-server of the test's own on a free port (stopped on drop).
pub struct OwnRedis {
    pub port: u16,
    child: Option<std::process::Child>,
}

impl OwnRedis {
    pub fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut redis = Self { port, child: None };
        redis.resume();
        redis
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn resume(&mut self) {
        let child = std::process::Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server starts");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "own redis did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

pub fn redis_config(url: String, prefix: &str) -> RedisConfig {
    RedisConfig {
        url,
        cluster: false,
        key_prefix: prefix.to_owned(),
        timeout_ms: 500,
    }
}
