//! `spawn_app()` and what every test uses: kos-mock on a free port in its own schema,
//! topic prefix and consumer group; a plain producer standing in for the command side;
//! a plain consumer reading a topic back to its end.

#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeDelta, Utc};
use clap::Parser;
use events::product_change::{ProductChangeEvent, ProductChangeSentToKos};
use events::topics::Topics;
use events::{codec, event_id_for, Envelope, EventPayload};
use kos_mock::configuration::{Cli, Config};
use kos_mock::startup::Application;
use rdkafka::producer::FutureProducer;
use serde_json::Value;
use service_kit::auth::{Role, SystemClock, Tokens};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

pub use test_support::{
    brokers, client_with_token, eventually, line, producer, publish, read_topic, Namespace,
    Received, PARTITIONS,
};

pub struct Options {
    pub seed_demo: bool,
    pub success_rate: f64,
    pub latency_ms: (u64, u64),
}

impl Default for Options {
    fn default() -> Self {
        Self {
            seed_demo: true,
            success_rate: 1.0,
            latency_ms: (10, 40),
        }
    }
}

pub struct TestApp {
    pub address: String,
    pub pool: PgPool,
    pub config: Config,
    pub topics: Topics,
    /// Sends an admin token (the admin API takes nothing else).
    pub http: reqwest::Client,
    pub admin_token: String,
    shutdown: CancellationToken,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

/// A fresh configuration: its own schema, topic prefix and consumer group.
pub fn test_config(options: &Options) -> Config {
    let ns = Namespace::new();
    let mut config = Cli::try_parse_from(["kos-mock"]).unwrap().config;
    config.http_addr = "127.0.0.1:0".parse().unwrap();
    ns.database(&mut config.database, 8);
    ns.redis(&mut config.redis);
    ns.kafka(&mut config.kafka);
    config.kos.consumer_group = ns.group("kos");
    config.kos.latency_min_ms = options.latency_ms.0;
    config.kos.latency_max_ms = options.latency_ms.1;
    config.kos.success_rate = options.success_rate;
    config.kos.random_seed = Some(42);
    config.kos.publish_poll_ms = 50;
    config.kos.delivery_timeout_ms = 10_000;
    config.seed_demo = options.seed_demo;
    config
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(Options::default()).await
}

pub async fn spawn_app_with(options: Options) -> TestApp {
    start(test_config(&options)).await
}

/// Starts kos-mock with `config` (a restart when the schema already exists).
pub async fn start(config: Config) -> TestApp {
    test_support::env::init_logging();
    let app = Application::build(config.clone())
        .await
        .expect("app builds");
    let pool = app.pool().clone();
    let address = format!("http://{}", app.local_addr());
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(app.run_until_stopped(shutdown.clone()));
    let pool_for_tests = kos_mock::db::connect(&config.database).await.unwrap();
    drop(pool);
    let admin_token = token(&config, "admin", Role::Admin);
    TestApp {
        address,
        pool: pool_for_tests,
        topics: Topics::new(&config.kafka.topic_prefix),
        http: client_with_token(&admin_token),
        admin_token,
        config,
        shutdown,
        task: Some(task),
    }
}

/// A token as command-service's login issues it, signed with the configured key.
pub fn token(config: &Config, subject: &str, role: Role) -> String {
    tokens(config).issue(subject, role, vec![]).0
}

pub fn tokens(config: &Config) -> Tokens {
    Tokens::new(
        &config.jwt,
        config.jwt.signing_keys(false).unwrap(),
        Arc::new(SystemClock),
    )
}

/// A `ProductChangeSentToKos` as the command side sends it, with `answer_by` `ttl` away.
pub fn change_request(line_number: &str, current: &str, target: &str, ttl: TimeDelta) -> Envelope {
    change_request_with_id(Uuid::new_v4(), line_number, current, target, ttl)
}

pub fn change_request_with_id(
    request_id: Uuid,
    line_number: &str,
    current: &str,
    target: &str,
    ttl: TimeDelta,
) -> Envelope {
    let now = Utc::now();
    let event = ProductChangeEvent::ProductChangeSentToKos(ProductChangeSentToKos {
        request_id,
        line_number: line_number.to_owned(),
        customer_id: "CUST0001".to_owned(),
        current_product_code: current.to_owned(),
        target_product_code: target.to_owned(),
        sent_at: now,
        answer_by: now + ttl,
    });
    // Any sequence will do for KOS; make it unique per request.
    let sequence = (request_id.as_u128() as u64) >> 1;
    let event_id = event_id_for("Line", line_number, sequence);
    Envelope {
        event_id,
        event_type: event.event_type().to_owned(),
        event_version: event.event_version(),
        aggregate_id: line_number.to_owned(),
        sequence,
        occurred_at: now,
        correlation_id: Uuid::new_v4(),
        causation_id: event_id,
        payload: event.to_payload(),
    }
}

pub fn request_id(envelope: &Envelope) -> Uuid {
    Uuid::parse_str(envelope.payload["request_id"].as_str().unwrap()).unwrap()
}

pub async fn produce_request(producer: &FutureProducer, topics: &Topics, envelope: &Envelope) {
    publish(
        producer,
        &topics.product_change(),
        &envelope.aggregate_id,
        &codec::encode(envelope),
    )
    .await;
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http.get(self.url(path)).send().await.unwrap()
    }

    pub async fn post(&self, path: &str, body: &Value) -> reqwest::Response {
        self.http
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .unwrap()
    }

    pub async fn put(&self, path: &str, body: &Value) -> reqwest::Response {
        self.http
            .put(self.url(path))
            .json(body)
            .send()
            .await
            .unwrap()
    }

    pub async fn post_raw(
        &self,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> reqwest::Response {
        self.http
            .post(self.url(path))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap()
    }

    pub async fn line_state(&self, n: u32) -> Value {
        let response = self.get(&format!("/admin/lines/{}", line(n))).await;
        assert_eq!(response.status(), 200);
        response.json().await.unwrap()
    }

    /// KOS's order for a request, once it exists.
    pub async fn order(&self, request_id: Uuid) -> Option<Value> {
        let response = self.get(&format!("/admin/orders/{request_id}")).await;
        (response.status() == 200).then_some(())?;
        Some(response.json().await.unwrap())
    }

    pub async fn wait_for_order(&self, request_id: Uuid) -> Value {
        eventually("KOS's order", Duration::from_secs(30), || {
            self.order(request_id)
        })
        .await
    }

    /// Waits until every committed fact and result is on the broker.
    pub async fn wait_until_published(&self) {
        eventually("the outbox to drain", Duration::from_secs(30), || async {
            let left = kos_mock::outbox::backlog(&self.pool).await.unwrap();
            (left == 0).then_some(())
        })
        .await
    }

    /// Rows in KOS's tables (to show a refused request changed nothing).
    pub async fn row_counts(&self) -> Vec<i64> {
        let mut counts = Vec::new();
        for table in [
            "products",
            "customers",
            "lines",
            "bills",
            "orders",
            "outbox",
            "line_product_history",
        ] {
            let n: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {table}"))
                .fetch_one(&self.pool)
                .await
                .unwrap();
            counts.push(n);
        }
        counts
    }

    /// Answers on the results topic for `request_id`.
    pub async fn answers_for(&self, request_id: Uuid) -> Vec<Received> {
        read_topic(&brokers(), &self.topics.kos_results())
            .await
            .into_iter()
            .filter(|m| m.json["payload"]["request_id"] == request_id.to_string())
            .collect()
    }

    /// Waits until the results topic holds at least `n` answers for `request_id`.
    pub async fn wait_for_answers(&self, request_id: Uuid, n: usize) -> Vec<Received> {
        eventually("KOS's answer", Duration::from_secs(30), || async {
            let answers = self.answers_for(request_id).await;
            (answers.len() >= n).then_some(answers)
        })
        .await
    }

    /// Stops the service and keeps its schema (for a restart).
    pub async fn stop_keep(mut self) -> Config {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            task.await.unwrap().unwrap();
        }
        self.config.clone()
    }

    pub async fn stop(self) {
        let pool = self.pool.clone();
        let config = self.stop_keep().await;
        drop_schema(&pool, &config).await;
    }
}

pub async fn drop_schema(pool: &PgPool, config: &Config) {
    test_support::namespace::drop_schema(pool, &config.database.schema).await;
}

/// Asserts every event id appears once (repeats of one event are byte-identical), and
/// each aggregate's sequences are 1, 2, 3... in offset order on one partition.
pub fn assert_facts_in_order(messages: &[Received]) {
    let mut first: HashMap<String, &Received> = HashMap::new();
    let mut by_key: HashMap<String, Vec<&Received>> = HashMap::new();
    for m in messages {
        let id = m.json["event_id"].as_str().unwrap().to_owned();
        assert_eq!(m.headers.get("event_id"), Some(&id));
        assert_eq!(m.key, m.json["aggregate_id"].as_str().unwrap());
        if let Some(seen) = first.get(&id) {
            assert_eq!(
                seen.payload, m.payload,
                "event {id} republished with other content"
            );
            continue;
        }
        first.insert(id, m);
        by_key.entry(m.key.clone()).or_default().push(m);
    }
    for (key, mut list) in by_key {
        list.sort_by_key(|m| m.offset);
        let partitions: std::collections::HashSet<i32> = list.iter().map(|m| m.partition).collect();
        assert_eq!(partitions.len(), 1, "{key} spread over partitions");
        let sequences: Vec<u64> = list
            .iter()
            .map(|m| m.json["sequence"].as_u64().unwrap())
            .collect();
        let expected: Vec<u64> = (1..=sequences.len() as u64).collect();
        assert_eq!(sequences, expected, "{key} out of order or with gaps");
    }
}
