//! `spawn_app()`: a projector (consuming) and a query-service connected as the query role.

use std::sync::Arc;
use std::time::Duration;

use events::topics::Topics;
use query_service::configuration::Config;
use query_service::startup::Application;
use rdkafka::producer::FutureProducer;
use reqwest::Response;
use service_kit::auth::{Role, SystemClock, Tokens};
use tokio_util::sync::CancellationToken;

use crate::events_helpers::{self as h, publish};

pub struct TestApp {
    pub address: String,
    /// Sends an analyst's token (reads every line) on every request.
    pub http: reqwest::Client,
    /// Sends no token.
    pub anonymous: reqwest::Client,
    /// Signs with the service's keys.
    pub tokens: Tokens,
    pub projector: h::TestApp,
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

/// A running projector in a fresh namespace and a query-service configuration for it
/// (rate limits off: polling in tests would trip them; the limit has its own test).
pub async fn test_config() -> (Config, h::TestApp) {
    let pconfig = h::test_config();
    let projector = h::spawn_app(pconfig.clone()).await;
    let mut config = Config::from_env().unwrap();
    config.http_addr = "127.0.0.1:0".parse().unwrap();
    let host = pconfig.database.url.split('@').nth(1).unwrap().to_owned();
    config.database.url = format!("postgres://{}@{host}", pconfig.query_role);
    config.database.schema = pconfig.database.schema.clone();
    config.database.max_connections = 4;
    config.kafka = pconfig.kafka.clone();
    config.redis = pconfig.redis.clone();
    config.hardening.per_ip_per_minute = 0;
    config.hardening.per_customer_per_minute = 0;
    (config, projector)
}

pub async fn spawn_with_config(projector: h::TestApp, config: Config) -> TestApp {
    let app = Application::build(config.clone())
        .await
        .expect("query-service builds");
    let address = format!("http://{}", app.local_addr());
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(app.run_until_stopped(shutdown.clone()));
    let tokens = Tokens::new(
        &config.jwt,
        config.jwt.keys(false).unwrap(),
        Arc::new(SystemClock),
    );
    let analyst = tokens.issue("analyst", Role::Analyst, vec![]).0;
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {analyst}").parse().unwrap(),
    );
    let app = TestApp {
        address,
        http: reqwest::Client::builder()
            .default_headers(headers)
            .build()
            .unwrap(),
        anonymous: reqwest::Client::new(),
        tokens,
        topics: Topics::new(&config.kafka.topic_prefix),
        projector,
        config,
        producer: h::producer(),
        shutdown,
        task: Some(task),
    };
    // The L1 cache turns on once the invalidation subscription is up.
    h::wait_until(
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
            let bytes = h::line_event(line, first + i as u64, e);
            publish(&self.producer, &self.topics.product_change(), line, &bytes).await;
        }
    }

    pub async fn kos_facts(&self, facts: &[(u64, events::kos::KosFact)]) {
        for (sequence, fact) in facts {
            let bytes = h::kos_event(*sequence, fact);
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
        h::wait_until(
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
