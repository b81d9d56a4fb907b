//! `spawn_app()` and the helpers every test uses: a service on a free port, in its own
//! schema and topic prefix, whose reference data is built from the demo KOS facts
//! published on its `kos.billing` topic (as KOS would); a plain rdkafka producer standing
//! in for KOS; and a plain rdkafka consumer that reads a topic back.
//!
//! Auth: the app runs on a [`ManualClock`] (tests move time) and cheap argon2 settings.
//! `app.http` sends an admin token by default; [`TestApp::post_change`] sends a token of
//! the customer owning the body's line (an admin's for unknown lines), as a customer's app
//! would; `app.anonymous` sends none.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use clap::Parser;
use command_service::configuration::{Cli, Config};
use command_service::relay::{self, Relay};
use command_service::startup::Application;
use events::codec::encode;
use events::kos::{KosFact, KosResult, ORDER_AGGREGATE};
use events::topics::Topics;
use events::{event_id_for, Envelope, EventPayload};
use rdkafka::producer::FutureProducer;
use rdkafka::ClientConfig;
use serde_json::{json, Value};
use service_kit::auth::{ManualClock, Role, Tokens};
use service_kit::signed::Signer;
use sqlx::PgPool;
use test_support::wait_until;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

pub use test_support::topic::publish_signed;
pub use test_support::{
    brokers, client_with_token, database_url, line, read_topic, redis_cluster_url, redis_target,
    Namespace, Received, PARTITIONS,
};

pub struct TestApp {
    pub address: String,
    pub pool: PgPool,
    pub config: Config,
    pub topics: Topics,
    /// Sends an admin token unless a request sets its own `Authorization`.
    pub http: reqwest::Client,
    /// Sends no token.
    pub anonymous: reqwest::Client,
    pub kos: Kos,
    /// The clock logins, lockouts and token expiry read.
    pub clock: ManualClock,
    /// Signs tokens with the app's key.
    pub tokens: Tokens,
    shutdown: CancellationToken,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

pub struct Options {
    pub relay: bool,
    pub brokers: String,
    /// How long KOS has to answer before a change fails with TIMEOUT.
    pub kos_timeout: Duration,
    /// Requests a minute per client IP (0: no limit, the default in tests).
    pub rate_limit_per_ip: u32,
    /// Where logouts are published (the test Redis unless set).
    pub redis_url: Option<String>,
    /// Publish logouts to the test Redis Cluster instead.
    pub redis_cluster: bool,
    /// `X-Forwarded-For` hops to trust (0: the peer's address is the client's).
    pub trusted_proxy_hops: usize,
    /// Count the rate limits in Redis, under this key prefix (replicas share it).
    pub shared_rate_limit: Option<String>,
    /// Requests a minute per customer (0: no limit, the default in tests).
    pub rate_limit_per_customer: u32,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            relay: true,
            brokers: brokers(),
            kos_timeout: Duration::from_secs(300),
            rate_limit_per_ip: 0,
            redis_url: None,
            redis_cluster: false,
            trusted_proxy_hops: 0,
            shared_rate_limit: None,
            rate_limit_per_customer: 0,
        }
    }
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(Options::default()).await
}

pub async fn spawn_app_with(options: Options) -> TestApp {
    test_support::env::init_logging();
    let ns = Namespace::new();
    let mut config = Cli::try_parse_from(["command-service"]).unwrap().config;
    config.http_addr = "127.0.0.1:0".parse().unwrap();
    ns.database(&mut config.database, 8);
    ns.kafka(&mut config.kafka);
    ns.redis(&mut config.redis);
    config.kafka.brokers = options.brokers;
    // Its own KOS-inbox group: one group shared by every parallel test stalled whenever
    // a member left it uncleanly (the group then waits out that member's session).
    config.kos.consumer_group = ns.group("command");
    config.relay.enabled = options.relay;
    config.relay.poll_interval_ms = 20;
    config.relay.delivery_timeout_ms = 5_000;
    config.kos.answer_timeout_secs = options.kos_timeout.as_secs();
    config.kos.timeout_sweep_ms = 100;
    if let Some(url) = options.redis_url {
        (config.redis.url, config.redis.cluster) = (url, false);
    }
    if options.redis_cluster {
        config.redis.url = redis_cluster_url();
        config.redis.cluster = true;
    }
    config.redis.timeout_ms = 300;
    config.hardening.per_ip_per_minute = options.rate_limit_per_ip;
    config.hardening.per_customer_per_minute = options.rate_limit_per_customer;
    config.hardening.trusted_proxy_hops = options.trusted_proxy_hops;
    if let Some(prefix) = options.shared_rate_limit {
        config.hardening.shared = true;
        config.redis.key_prefix = prefix;
    }
    config.auth.argon2_memory_kib = 256;
    config.auth.argon2_iterations = 1;
    config.auth.revocation_resync_ms = 100;
    let clock = ManualClock::new(Utc::now());
    let app = Application::build_with_clock(config.clone(), Arc::new(clock.clone()))
        .await
        .expect("app builds");
    let tokens = app.authenticator().tokens().clone();
    let pool = app.pool().clone();
    let address = format!("http://{}", app.local_addr());
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(app.run_until_stopped(shutdown.clone()));
    let topics = Topics::new(&config.kafka.topic_prefix);
    let kos = Kos::new(&config.kafka.brokers, topics.clone());
    let facts = std::fs::read_to_string(demo_facts()).expect("demo facts are readable");
    for fact in facts.lines().filter(|l| !l.trim().is_empty()) {
        kos.publish_raw(&topics.kos_billing(), fact.as_bytes())
            .await;
    }
    let app = TestApp {
        address,
        pool,
        topics,
        config,
        http: client_with_token(&tokens.issue("admin", Role::Admin, vec![]).0),
        anonymous: reqwest::Client::new(),
        kos,
        clock,
        tokens,
        shutdown,
        task: Some(task),
    };
    app.wait_for("the demo facts to reach the reference tables", || async {
        let (lines, products): (i64, i64) = sqlx::query_as(
            "SELECT (SELECT count(*) FROM ref_lines), (SELECT count(*) FROM ref_products)",
        )
        .fetch_one(&app.pool)
        .await
        .unwrap();
        lines == 100 && products == 8
    })
    .await;
    app
}

/// Stands in for KOS: publishes on KOS's topics with a plain producer, enveloped exactly
/// as on the wire and signed with KOS's development key, as kos-mock signs.
pub struct Kos {
    producer: FutureProducer,
    topics: Topics,
    signer: Option<Signer>,
}

impl Kos {
    fn new(brokers: &str, topics: Topics) -> Self {
        let producer = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("enable.idempotence", "true")
            .create()
            .unwrap();
        Self {
            producer,
            topics,
            signer: Some(Signer::local_dev()),
        }
    }

    /// Someone else with the broker's credentials publishing as KOS: signing with
    /// `signer` (not KOS's key), or not at all.
    pub fn impostor(&self, signer: Option<Signer>) -> Self {
        Self {
            producer: self.producer.clone(),
            topics: self.topics.clone(),
            signer,
        }
    }

    /// Publishes bytes as they are (keyed by the envelope's aggregate id if it has one).
    pub async fn publish_raw(&self, topic: &str, bytes: &[u8]) {
        let key = serde_json::from_slice::<Value>(bytes)
            .ok()
            .and_then(|v| v["aggregate_id"].as_str().map(str::to_owned))
            .unwrap_or_default();
        publish_signed(&self.producer, topic, &key, bytes, self.signer.as_ref()).await;
    }

    /// KOS answers a request on `kos.product-change-results`.
    pub async fn answer(&self, result: &KosResult) {
        let order = result.kos_order_id().to_owned();
        let envelope = Envelope {
            event_id: event_id_for(ORDER_AGGREGATE, &order, 1),
            event_type: result.event_type().to_owned(),
            event_version: result.event_version(),
            aggregate_id: order,
            sequence: 1,
            occurred_at: Utc::now(),
            correlation_id: result.request_id(),
            causation_id: result.request_id(),
            payload: result.to_payload(),
        };
        self.publish_keyed(&self.topics.kos_results(), result.line_number(), &envelope)
            .await;
    }

    /// KOS publishes a fact about a line or product at `sequence` on `kos.billing`.
    pub async fn fact(&self, fact: &KosFact, sequence: u64) {
        let envelope = Envelope {
            event_id: event_id_for(fact.aggregate_type(), fact.aggregate_id(), sequence),
            event_type: fact.event_type().to_owned(),
            event_version: fact.event_version(),
            aggregate_id: fact.aggregate_id().to_owned(),
            sequence,
            occurred_at: Utc::now(),
            correlation_id: Uuid::new_v4(),
            causation_id: Uuid::new_v4(),
            payload: fact.to_payload(),
        };
        self.publish_keyed(&self.topics.kos_billing(), fact.aggregate_id(), &envelope)
            .await;
    }

    async fn publish_keyed(&self, topic: &str, key: &str, envelope: &Envelope) {
        let bytes = encode(envelope);
        publish_signed(&self.producer, topic, key, &bytes, self.signer.as_ref()).await;
    }
}

pub fn demo_facts() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/kos-facts.jsonl")
}

/// A change that passes every pre-check for demo line `n` (see bench/generate_facts.py, which made the fixture).
pub fn valid_change(n: u32) -> Value {
    let (current, target) = if n % 2 == 1 {
        ("5G-STANDARD-001", "5G-PREMIUM-001")
    } else {
        ("5G-LITE-002", "5G-PREMIUM-002")
    };
    json!({"lineNumber": line(n), "currentProductCode": current, "targetProductCode": target})
}

impl TestApp {
    /// Polls `check` until it holds, failing the test after 90 seconds (generous: the
    /// whole suite runs in parallel against one broker).
    pub async fn wait_for<F, Fut>(&self, what: &str, check: F)
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        wait_until(what, Duration::from_secs(90), check).await
    }

    /// The line's events of one request, as stored: (event type, payload body).
    pub async fn events_of(&self, request_id: Uuid) -> Vec<(String, Value)> {
        let rows: Vec<(String, Value)> = sqlx::query_as(
            "SELECT event_type, payload::jsonb FROM events ORDER BY aggregate_id, sequence",
        )
        .fetch_all(&self.pool)
        .await
        .unwrap();
        rows.into_iter()
            .filter_map(|(t, p)| {
                let body = p[&t].clone();
                (body["request_id"].as_str() == Some(&request_id.to_string())).then_some((t, body))
            })
            .collect()
    }

    /// Posts a valid change for demo line `n` and returns its request id.
    pub async fn accepted_change(&self, n: u32) -> Uuid {
        let response = self.post_change(&valid_change(n), None).await;
        assert_eq!(response.status().as_u16(), 202);
        let body: Value = response.json().await.unwrap();
        body["requestId"].as_str().unwrap().parse().unwrap()
    }

    /// A token of customer `customer_id` with the lines the reference data gives them.
    pub async fn customer_token(&self, customer_id: &str) -> String {
        let lines: Vec<String> = sqlx::query_scalar(
            "SELECT line_number FROM ref_lines WHERE customer_id = $1 ORDER BY line_number",
        )
        .bind(customer_id)
        .fetch_all(&self.pool)
        .await
        .unwrap();
        self.tokens.issue(customer_id, Role::Customer, lines).0
    }

    /// The owner's token for `line` (an admin's if nobody owns it).
    pub async fn owner_token(&self, line: &str) -> String {
        let owner: Option<String> =
            sqlx::query_scalar("SELECT customer_id FROM ref_lines WHERE line_number = $1")
                .bind(line)
                .fetch_optional(&self.pool)
                .await
                .unwrap();
        match owner {
            Some(owner) => self.customer_token(&owner).await,
            None => self.tokens.issue("admin", Role::Admin, vec![]).0,
        }
    }

    pub async fn post_change(&self, body: &Value, key: Option<&str>) -> reqwest::Response {
        let token = self
            .owner_token(body["lineNumber"].as_str().unwrap_or_default())
            .await;
        let mut request = self
            .http
            .post(format!("{}/api/v1/product-changes", self.address))
            .bearer_auth(token)
            .json(body);
        if let Some(key) = key {
            request = request.header("Idempotency-Key", key);
        }
        request.send().await.expect("request is sent")
    }

    pub async fn post_raw(
        &self,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> reqwest::Response {
        self.http
            .post(format!("{}{path}", self.address))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .expect("request is sent")
    }

    pub async fn event_count(&self) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM events")
            .fetch_one(&self.pool)
            .await
            .unwrap()
    }

    /// A relay for this app's schema and topic, as a second process would run it.
    pub fn relay(&self) -> Relay {
        let mut kafka = ClientConfig::new();
        kafka.set("bootstrap.servers", &self.config.kafka.brokers);
        relay::relay(
            self.pool.clone(),
            kafka,
            self.topics.product_change(),
            &self.config.relay,
            Arc::new(Notify::new()),
        )
    }

    /// Waits until the relay has published every committed event of this schema.
    pub async fn wait_until_relayed(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let caught_up: bool = sqlx::query_scalar(
                "SELECT NOT EXISTS (
                     SELECT 1 FROM events e LEFT JOIN outbox_cursor c ON true
                      WHERE c.relay IS NULL OR (e.tx_id, e.position) > (c.tx_id, c.position))",
            )
            .fetch_one(&self.pool)
            .await
            .unwrap();
            if caught_up {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "relay did not catch up within {timeout:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            task.await.unwrap().unwrap();
        }
        let _ = sqlx::query(&format!(
            "DROP SCHEMA \"{}\" CASCADE",
            self.config.database.schema
        ))
        .execute(&self.pool)
        .await;
    }
}

/// Asserts every event id appears once, and each line's sequences are 1, 2, 3... in
/// offset order (per-line order kept, nothing lost, nothing repeated).
pub fn assert_exactly_once_in_order(messages: &[Received]) {
    let mut ids = std::collections::HashSet::new();
    for m in messages {
        let id = m.json["event_id"].as_str().unwrap().to_owned();
        assert!(ids.insert(id.clone()), "event {id} was published twice");
        assert_eq!(m.headers.get("event_id"), Some(&id));
        assert_eq!(m.key, m.json["aggregate_id"].as_str().unwrap());
    }
    let mut by_line: HashMap<String, Vec<&Received>> = HashMap::new();
    for m in messages {
        by_line.entry(m.key.clone()).or_default().push(m);
    }
    for (line, mut list) in by_line {
        list.sort_by_key(|m| m.offset);
        let partitions: std::collections::HashSet<i32> = list.iter().map(|m| m.partition).collect();
        assert_eq!(partitions.len(), 1, "line {line} spread over partitions");
        let sequences: Vec<u64> = list
            .iter()
            .map(|m| m.json["sequence"].as_u64().unwrap())
            .collect();
        let expected: Vec<u64> = (1..=sequences.len() as u64).collect();
        assert_eq!(sequences, expected, "line {line} out of order or with gaps");
    }
}
