//! The query side in one process: a projector (consuming) in a fresh namespace and a
//! query-service connected to its schema as the query role; events produced as the command
//! side and KOS publish them (`test-support`'s builders, re-exported here).

use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use events::topics::Topics;
use query_service::configuration::Config;
use query_service::startup::Application;
use rdkafka::producer::FutureProducer;
use reqwest::Response;
use service_kit::auth::{Role, SystemClock, Tokens};
use service_kit::redis_conn::RedisConn;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

pub use test_support::fixtures::*;
use test_support::{client_with_token, Namespace};
pub use test_support::{producer, publish, wait_until};

/// A fresh projector configuration: its own schema, key prefix, topic prefix, group and
/// query role (rate limits off: polling in tests would trip them).
pub fn projector_config() -> projector::configuration::Config {
    test_support::env::init_logging();
    let ns = Namespace::new();
    let mut config = projector::configuration::Cli::try_parse_from(["projector"])
        .unwrap()
        .config;
    config.http_addr = "127.0.0.1:0".parse().unwrap();
    ns.database(&mut config.database, 4);
    ns.kafka(&mut config.kafka);
    ns.redis(&mut config.redis);
    config.query_role = ns.role();
    config.query_role_login = true;
    config.consumer_group = ns.group("projector");
    config.hardening.per_ip_per_minute = 0;
    config.hardening.per_customer_per_minute = 0;
    config
}

/// A projector running in this process.
pub struct Projector {
    pub config: projector::configuration::Config,
    pub pool: PgPool,
    pub redis: RedisConn,
    shutdown: CancellationToken,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl Projector {
    pub async fn start(config: projector::configuration::Config) -> Self {
        let app = projector::startup::Application::build(config.clone())
            .await
            .expect("projector builds");
        let pool = app.pool().clone();
        let redis = RedisConn::connect(&config.redis).await.unwrap();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(app.run_until_stopped(shutdown.clone()));
        Self {
            config,
            pool,
            redis,
            shutdown,
            task: Some(task),
        }
    }

    /// Stops it and drops its namespace (schemas, query role, Redis keys).
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            task.await.unwrap().unwrap();
        }
        test_support::namespace::cleanup(
            &self.pool,
            &self.config.database.schema,
            &self.config.query_role,
            &self.redis,
            &self.config.redis.key_prefix,
        )
        .await;
    }
}

pub struct TestApp {
    pub address: String,
    /// Sends an analyst's token (reads every line) on every request.
    pub http: reqwest::Client,
    /// Sends no token.
    pub anonymous: reqwest::Client,
    /// Signs with the service's keys.
    pub tokens: Tokens,
    pub projector: Projector,
    pub config: Config,
    pub topics: Topics,
    pub producer: FutureProducer,
    shutdown: CancellationToken,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(2_000).await
}

pub async fn spawn_app_with(min_position_wait_ms: u64) -> TestApp {
    let (mut config, projector) = test_config().await;
    config.min_position_wait_ms = min_position_wait_ms;
    spawn_with_config(projector, config).await
}

/// query-service's configuration for the read side `projector` writes: its schema, as
/// the query role (with its password if it has one), the same broker and Redis (rate
/// limits off: polling in tests would trip them; the limit has its own test).
pub fn query_config(projector: &projector::configuration::Config) -> Config {
    let mut config = Config::from_env().unwrap();
    config.http_addr = "127.0.0.1:0".parse().unwrap();
    let host = projector.database.url.split('@').nth(1).unwrap().to_owned();
    let role = match &projector.query_role_password {
        Some(password) => format!("{}:{password}", projector.query_role),
        None => projector.query_role.clone(),
    };
    config.database.url = format!("postgres://{role}@{host}");
    config.database.schema = projector.database.schema.clone();
    config.database.max_connections = 4;
    config.kafka = projector.kafka.clone();
    config.redis = projector.redis.clone();
    config.hardening.per_ip_per_minute = 0;
    config.hardening.per_customer_per_minute = 0;
    config
}

/// A running projector in a fresh namespace and a query-service configuration for it.
pub async fn test_config() -> (Config, Projector) {
    let pconfig = projector_config();
    let projector = Projector::start(pconfig.clone()).await;
    let config = query_config(&pconfig);
    (config, projector)
}

pub async fn spawn_with_config(projector: Projector, config: Config) -> TestApp {
    let app = Application::build(config.clone())
        .await
        .expect("query-service builds");
    let address = format!("http://{}", app.local_addr());
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(app.run_until_stopped(shutdown.clone()));
    let tokens = Tokens::new(
        &config.jwt,
        config.jwt.signing_keys(false).unwrap(),
        Arc::new(SystemClock),
    );
    let analyst = tokens.issue("analyst", Role::Analyst, vec![]).0;
    let app = TestApp {
        address,
        http: client_with_token(&analyst),
        anonymous: reqwest::Client::new(),
        tokens,
        topics: Topics::new(&config.kafka.topic_prefix),
        projector,
        config,
        producer: producer(),
        shutdown,
        task: Some(task),
    };
    // The L1 cache turns on once the invalidation subscription is up.
    wait_until(
        "the query-service is ready",
        Duration::from_secs(10),
        || async {
            app.get("/health/ready")
                .await
                .json::<serde_json::Value>()
                .await
                .unwrap()["checks"]["l1"]
                == "UP"
        },
    )
    .await;
    app
}

impl TestApp {
    pub async fn get(&self, path: &str) -> Response {
        self.http
            .get(format!("{}{path}", self.address))
            .send()
            .await
            .expect("request is sent")
    }

    pub async fn line_events(
        &self,
        line: &str,
        first: u64,
        events: &[events::product_change::ProductChangeEvent],
    ) {
        for (i, e) in events.iter().enumerate() {
            let bytes = line_event(line, first + i as u64, e);
            publish(&self.producer, &self.topics.product_change(), line, &bytes).await;
        }
    }

    pub async fn kos_facts(&self, facts: &[(u64, events::kos::KosFact)]) {
        for (sequence, fact) in facts {
            let bytes = kos_event(*sequence, fact);
            publish(
                &self.producer,
                &self.topics.kos_billing(),
                fact.aggregate_id(),
                &bytes,
            )
            .await;
        }
    }

    /// GET with `token` as the bearer (None: no Authorization header).
    pub async fn get_as(&self, token: Option<&str>, path: &str) -> Response {
        let request = self.anonymous.get(format!("{}{path}", self.address));
        let request = match token {
            Some(token) => request.bearer_auth(token),
            None => request,
        };
        request.send().await.expect("request is sent")
    }

    /// A customer's token for `lines`.
    pub fn customer_token(&self, customer: &str, lines: &[&str]) -> String {
        let lines = lines.iter().map(|l| l.to_string()).collect();
        self.tokens.issue(customer, Role::Customer, lines).0
    }

    /// Waits until `path` answers `status`.
    pub async fn wait_for_status(&self, path: &str, status: u16) {
        wait_until(
            &format!("GET {path} answers {status}"),
            Duration::from_secs(30),
            || async { self.get(path).await.status().as_u16() == status },
        )
        .await;
    }

    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            task.await.unwrap().unwrap();
        }
        self.projector.stop().await;
    }
}
