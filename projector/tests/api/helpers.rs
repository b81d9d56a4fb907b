//! Test harness: a projector (in-process or as a child process) in its own schema, Redis
//! key prefix, topic prefix and consumer group; a plain rdkafka producer standing in for
//! the command side and KOS; event builders enveloped exactly as on the wire.
#![allow(dead_code)] // shared by the test files; not each uses every helper

use std::collections::BTreeMap;
use std::future::Future;
use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use clap::Parser;
use events::kos::{self, KosFact};
use events::product_change::{self, ProductChangeEvent};
use events::topics::Topics;
use events::{codec, event_id_for, Envelope, EventPayload};
use projector::configuration::{Cli, Config};
use projector::processor::{Incoming, Processor};
use projector::startup::{self, Application};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Headers, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use redis::AsyncCommands;
use service_kit::redis_conn::{RedisConfig, RedisConn};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

pub const PARTITIONS: i32 = 3;

pub fn brokers() -> String {
    std::env::var("PHONEBILL_TEST_KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:29092".into())
}

pub fn database_url() -> String {
    std::env::var("PHONEBILL_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/phonebill".into())
}

pub fn redis_url() -> String {
    std::env::var("PHONEBILL_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// `PHONEBILL_TEST_REDIS_CLUSTER=true`: every test on the test command's three-shard
/// Redis Cluster instead of the single node (the test command runs the suites that touch
/// Redis both ways; query-service's tests take their configuration from here too).
pub fn redis_target() -> (String, bool) {
    if std::env::var("PHONEBILL_TEST_REDIS_CLUSTER").is_ok_and(|v| v == "true") {
        let url = std::env::var("PHONEBILL_TEST_REDIS_CLUSTER_URL").unwrap_or_else(|_| {
            "redis://127.0.0.1:17001,redis://127.0.0.1:17002,redis://127.0.0.1:17003".into()
        });
        (url, true)
    } else {
        (redis_url(), false)
    }
}

/// A fresh configuration: its own schema, key prefix, topic prefix, group and role.
pub fn test_config() -> Config {
    if std::env::var("TEST_LOG").is_ok() {
        service_kit::telemetry::init_logging("info");
    }
    let id = Uuid::new_v4().simple().to_string();
    let mut config = Cli::try_parse_from(["projector"]).unwrap().config;
    config.http_addr = "127.0.0.1:0".parse().unwrap();
    config.database.url = database_url();
    config.database.schema = format!("test_{id}");
    config.database.max_connections = 4;
    config.query_role = format!("q_{id}");
    config.query_role_login = true;
    config.kafka.brokers = brokers();
    config.kafka.topic_prefix = format!("test-{id}.");
    config.kafka.topic_partitions = PARTITIONS;
    (config.redis.url, config.redis.cluster) = redis_target();
    config.redis.key_prefix = format!("test-{id}:");
    config.consumer_group = format!("test-{id}.projector");
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

    pub fn incoming(&mut self, topic: String, bytes: Vec<u8>) -> Incoming {
        self.offset += 1;
        Incoming {
            topic,
            partition: 0,
            offset: self.offset,
            key: None,
            payload: bytes,
            headers: vec![],
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

pub async fn redis_json(redis: &RedisConn, prefix: &str, key: &str) -> Option<serde_json::Value> {
    let mut redis = redis.clone();
    // An error (a connection broken by a Redis restart) reads as absent.
    let bytes: Option<Vec<u8>> = redis.get(format!("{prefix}{key}")).await.ok().flatten();
    bytes.map(|b| serde_json::from_slice(&b).unwrap())
}

pub async fn cleanup(pool: &PgPool, config: &Config, redis: &RedisConn) {
    let schema = &config.database.schema;
    let role = &config.query_role;
    // The schema, its namespace control schema and every replay namespace beside it.
    let schemas: Vec<String> = sqlx::query_scalar(
        "SELECT nspname::text FROM pg_namespace WHERE nspname = $1 OR nspname LIKE $1 || '\\_%'",
    )
    .bind(schema)
    .fetch_all(pool)
    .await
    .unwrap_or_default();
    for s in schemas {
        let _ = sqlx::query(&format!("DROP SCHEMA \"{s}\" CASCADE"))
            .execute(pool)
            .await;
    }
    let _ = sqlx::query(&format!("DROP ROLE IF EXISTS \"{role}\""))
        .execute(pool)
        .await;
    let mut redis = redis.clone();
    let keys = redis
        .scan_match(&[format!("{}*", config.redis.key_prefix)])
        .await
        .unwrap_or_default();
    if !keys.is_empty() {
        let _: Result<(), _> = redis.del(keys).await;
    }
}

/// The envelope of the `sequence`-th event of a line, as the relay publishes it.
pub fn line_event(line: &str, sequence: u64, event: &ProductChangeEvent) -> Vec<u8> {
    codec::encode(&envelope("Line", line, sequence, event))
}

pub fn kos_event(sequence: u64, fact: &KosFact) -> Vec<u8> {
    codec::encode(&envelope(
        fact.aggregate_type(),
        fact.aggregate_id(),
        sequence,
        fact,
    ))
}

fn envelope<E: EventPayload>(kind: &str, id: &str, sequence: u64, event: &E) -> Envelope {
    let event_id = event_id_for(kind, id, sequence);
    Envelope {
        event_id,
        event_type: event.event_type().to_owned(),
        event_version: event.event_version(),
        aggregate_id: id.to_owned(),
        sequence,
        occurred_at: Utc::now(),
        correlation_id: event_id,
        causation_id: event_id,
        payload: event.to_payload(),
    }
}

pub fn at(minute: u32) -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 1, 9, 0, 0).unwrap() + chrono::Duration::minutes(minute as i64)
}

pub fn line(n: u32) -> String {
    format!("010-{:04}-{:04}", n / 10000, n % 10000)
}

pub fn requested(line: &str, request_id: Uuid, minute: u32) -> ProductChangeEvent {
    ProductChangeEvent::ProductChangeRequested(product_change::ProductChangeRequested {
        request_id,
        line_number: line.into(),
        customer_id: "CUST001".into(),
        operator: "KT".into(),
        current_product_code: "5G-STANDARD-001".into(),
        target_product_code: "5G-PREMIUM-001".into(),
        requested_at: at(minute),
    })
}

pub fn sent(line: &str, request_id: Uuid, minute: u32) -> ProductChangeEvent {
    ProductChangeEvent::ProductChangeSentToKos(product_change::ProductChangeSentToKos {
        request_id,
        line_number: line.into(),
        customer_id: "CUST001".into(),
        current_product_code: "5G-STANDARD-001".into(),
        target_product_code: "5G-PREMIUM-001".into(),
        sent_at: at(minute),
        answer_by: at(minute + 5),
    })
}

pub fn completed(line: &str, request_id: Uuid, minute: u32) -> ProductChangeEvent {
    ProductChangeEvent::ProductChangeCompleted(product_change::ProductChangeCompleted {
        request_id,
        line_number: line.into(),
        kos_order_id: format!("KOS-{request_id}"),
        previous_product_code: "5G-STANDARD-001".into(),
        new_product_code: "5G-PREMIUM-001".into(),
        message: "changed".into(),
        completed_at: at(minute),
    })
}

pub fn failed(line: &str, request_id: Uuid, minute: u32) -> ProductChangeEvent {
    ProductChangeEvent::ProductChangeFailed(product_change::ProductChangeFailed {
        request_id,
        line_number: line.into(),
        kos_order_id: Some(format!("KOS-{request_id}")),
        reason_code: product_change::FailureReason::KosRejected,
        kos_reason_code: Some("SYSTEM_ERROR".into()),
        reason: "KOS refused".into(),
        failed_at: at(minute),
    })
}

pub fn product(code: &str, fee: i64) -> KosFact {
    KosFact::ProductPublished(kos::ProductPublished {
        product_code: code.into(),
        name: format!("name of {code}"),
        operator: "KT".into(),
        monthly_fee: fee,
        data_mb: None,
        voice_minutes: None,
        sms_count: None,
        on_sale: true,
    })
}

pub fn registered(line: &str) -> KosFact {
    KosFact::LineRegistered(kos::LineRegistered {
        line_number: line.into(),
        customer_id: "CUST001".into(),
        customer_name: "Kim".into(),
        operator: "KT".into(),
        status: kos::LineStatus::Active,
        product_code: "5G-STANDARD-001".into(),
        contract: contract(),
    })
}

fn contract() -> kos::Contract {
    kos::Contract {
        commitment_months: 24,
        started_on: chrono::NaiveDate::from_ymd_opt(2025, 1, 1).unwrap(),
        ends_on: chrono::NaiveDate::from_ymd_opt(2026, 12, 31).unwrap(),
    }
}

pub fn bill(line: &str, month: &str, total: i64) -> KosFact {
    KosFact::BillIssued(kos::BillIssued {
        line_number: line.into(),
        customer_id: "CUST001".into(),
        month: month.into(),
        product_code: "5G-STANDARD-001".into(),
        product_name: "5G Standard".into(),
        contract: contract(),
        monthly_fee: 69000,
        usage_charges: 1000,
        discounts: vec![kos::Discount {
            name: "family".into(),
            amount: 5000,
        }],
        total_amount: total,
        usage: kos::Usage {
            voice_minutes: 100,
            sms_count: 10,
            data_mb: 2048,
        },
        early_termination_fee: 120000,
        device_installment_balance: 300000,
        billing: kos::BillingInfo {
            billing_date: chrono::NaiveDate::from_ymd_opt(2026, 4, 1).unwrap(),
            due_date: chrono::NaiveDate::from_ymd_opt(2026, 4, 25).unwrap(),
            payment_status: kos::PaymentStatus::Unpaid,
            payment_method: "CARD".into(),
        },
        issued_at: at(0),
    })
}

pub fn payment(line: &str, month: &str) -> KosFact {
    KosFact::PaymentRecorded(kos::PaymentRecorded {
        line_number: line.into(),
        month: month.into(),
        amount: 65000,
        payment_method: "CARD".into(),
        paid_at: at(30),
    })
}

/// Waits until `check` is true, polling with a short pause; fails at the deadline.
pub async fn wait_until<F, Fut>(what: &str, timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if check().await {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
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

/// A long-lived producer (the test's stand-in for the relay and KOS).
pub fn producer() -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .create()
        .unwrap()
}

pub async fn publish(producer: &FutureProducer, topic: &str, key: &str, bytes: &[u8]) {
    let headers = OwnedHeaders::new().insert(Header {
        key: "source",
        value: Some("test"),
    });
    producer
        .send(
            FutureRecord::to(topic)
                .key(key)
                .payload(bytes)
                .headers(headers),
            Duration::from_secs(10),
        )
        .await
        .map_err(|(e, _)| e)
        .unwrap();
}

/// Publishes with the broker timestamp set: window tests stamp records in the past
/// instead of waiting for time to pass.
pub async fn publish_at(
    producer: &FutureProducer,
    topic: &str,
    key: &str,
    bytes: &[u8],
    at: chrono::DateTime<Utc>,
) {
    producer
        .send(
            FutureRecord::to(topic)
                .key(key)
                .payload(bytes)
                .timestamp(at.timestamp_millis()),
            Duration::from_secs(10),
        )
        .await
        .map_err(|(e, _)| e)
        .unwrap();
}

/// Creates the topics the projector reads, for tests that run no projector.
pub async fn create_topics(config: &Config) {
    let topics = Topics::new(&config.kafka.topic_prefix);
    let admin = service_kit::kafka::admin(&config.kafka, "projector-test").unwrap();
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

/// One message read back.
#[derive(Debug, Clone)]
pub struct Received {
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
    pub headers: BTreeMap<String, String>,
}

/// Reads `topic` to its end (PartitionEOF on every partition) with a fresh reader.
pub async fn read_topic(topic: &str) -> Vec<Received> {
    let topic = topic.to_owned();
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", brokers())
            .set("group.id", format!("test-reader-{}", Uuid::new_v4()))
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "true")
            .create()
            .unwrap();
        let metadata = consumer
            .fetch_metadata(Some(&topic), Duration::from_secs(10))
            .unwrap();
        let partitions = metadata.topics()[0].partitions().len() as i32;
        let mut assignment = TopicPartitionList::new();
        for p in 0..partitions {
            assignment
                .add_partition_offset(&topic, p, Offset::Beginning)
                .unwrap();
        }
        consumer.assign(&assignment).unwrap();
        let mut open: std::collections::HashSet<i32> = (0..partitions).collect();
        let mut out = vec![];
        let deadline = Instant::now() + Duration::from_secs(30);
        while !open.is_empty() {
            assert!(
                Instant::now() < deadline,
                "could not read {topic} to its end"
            );
            match consumer.poll(Duration::from_millis(200)) {
                None => {}
                Some(Err(rdkafka::error::KafkaError::PartitionEOF(p))) => {
                    open.remove(&p);
                }
                Some(m) => {
                    let m = m.unwrap();
                    out.push(Received {
                        key: m.key().map(<[u8]>::to_vec),
                        payload: m.payload().unwrap_or_default().to_vec(),
                        headers: m
                            .headers()
                            .map(|h| {
                                h.iter()
                                    .map(|h| {
                                        (
                                            h.key.to_owned(),
                                            String::from_utf8_lossy(h.value.unwrap_or_default())
                                                .into_owned(),
                                        )
                                    })
                                    .collect()
                            })
                            .unwrap_or_default(),
                    });
                }
            }
        }
        out
    })
    .await
    .unwrap()
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
