//! Test harness of the analyst tools (copied from the projector's, what these tests use):
//! a configuration of its own (schema, Redis key prefix, topic prefix, consumer group), a
//! plain rdkafka producer standing in for the command side and KOS, event builders
//! enveloped exactly as on the wire.

use std::time::Duration;

use chrono::{TimeZone, Utc};
use clap::Parser;
use events::kos::{self, KosFact};
use events::product_change::{self, ProductChangeEvent};
use events::topics::Topics;
use events::{codec, event_id_for, Envelope, EventPayload};
use projector::configuration::{Cli, Config};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use redis::AsyncCommands;
use service_kit::redis_conn::RedisConn;
use sqlx::PgPool;
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
