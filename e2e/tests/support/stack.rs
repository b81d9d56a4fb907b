//! The whole system in one process for end-to-end tests: kos-mock (seeded with the demo
//! data set), command-service, projector and query-service, sharing one broker topic
//! prefix, one Redis key prefix and nothing else; each service in its own PostgreSQL
//! schema (and query-service as its own read-only role), as deployed. A [`Stack`] is a
//! fresh namespace, so tests run in parallel and again and again.
//!
//! Tests talk to the services only over HTTP, as a customer's browser or KOS's operator
//! would; [`Stack::kos_pool`] is there to compare with KOS's own records.

use std::time::Duration;

use clap::Parser;
use serde_json::{json, Value};
use sqlx::PgPool;
use test_support::{wait_until, Namespace};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// The four services, running.
pub struct Stack {
    /// command-service's base URL (login, product changes).
    pub command: String,
    /// query-service's base URL (bills, lines, change status).
    pub query: String,
    /// kos-mock's base URL (its admin API: bill cycles, bills as KOS issued them).
    pub kos: String,
    /// An admin's token from command-service's login, for kos-mock's admin API.
    pub kos_token: String,
    /// Each service's name, API base URL and metrics base URL (every service here has a
    /// metrics port of its own, as the chart deploys them).
    pub metrics: Vec<(&'static str, String, String)>,
    pub http: reqwest::Client,
    pub kos_pool: PgPool,
    /// kos-mock's schema (its `orders`).
    pub kos_schema: String,
    /// The projector's configuration (its `event_store_schema` is command-service's
    /// schema, as deployed), for running `phonebill-analyst replay` against this stack.
    pub projector: projector::configuration::Config,
    /// The projector's pool (its read schema).
    pub read_pool: PgPool,
    shutdown: CancellationToken,
    tasks: Vec<JoinHandle<anyhow::Result<()>>>,
}

fn any_port() -> std::net::SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

fn metrics_of(
    service: &'static str,
    api: &str,
    metrics: Option<std::net::SocketAddr>,
) -> (&'static str, String, String) {
    let metrics = metrics.expect("a metrics port was asked for");
    (service, api.to_owned(), format!("http://{metrics}"))
}

/// The demo password of a demo customer (`CUST0001` -> `demo-CUST0001`).
pub fn demo_password(customer: &str) -> String {
    format!("demo-{customer}")
}

impl Stack {
    /// Starts everything and returns once the command side knows every demo line and
    /// the read side has projected them: `customers` get their demo passwords.
    pub async fn start(customers: &[&str]) -> Stack {
        let ns = Namespace::new();
        let shutdown = CancellationToken::new();
        let mut tasks = Vec::new();

        // KOS first: its demo facts are what the other services learn from.
        let mut kos = kos_mock::configuration::Cli::try_parse_from(["kos-mock"])
            .unwrap()
            .config;
        kos.http_addr = "127.0.0.1:0".parse().unwrap();
        ns.database(&mut kos.database, 4);
        kos.database.schema = format!("{}_kos", ns.schema());
        ns.kafka(&mut kos.kafka);
        ns.redis(&mut kos.redis);
        kos.kos.consumer_group = ns.group("kos");
        kos.kos.latency_min_ms = 10;
        kos.kos.latency_max_ms = 50;
        kos.kos.success_rate = 1.0;
        kos.kos.publish_poll_ms = 20;
        kos.seed_demo = true;
        kos.metrics.metrics_addr = Some(any_port());
        let kos_schema = kos.database.schema.clone();
        let kos = kos_mock::startup::Application::build(kos)
            .await
            .expect("kos-mock builds");
        let kos_address = format!("http://{}", kos.local_addr());
        let mut metrics = vec![metrics_of("kos-mock", &kos_address, kos.metrics_addr())];
        let kos_pool = kos.pool().clone();
        tasks.push(tokio::spawn(kos.run_until_stopped(shutdown.clone())));

        let mut command = command_service::configuration::Cli::try_parse_from(["command-service"])
            .unwrap()
            .config;
        command.http_addr = "127.0.0.1:0".parse().unwrap();
        ns.database(&mut command.database, 6);
        command.database.schema = format!("{}_cmd", ns.schema());
        ns.kafka(&mut command.kafka);
        ns.redis(&mut command.redis);
        command.relay.poll_interval_ms = 20;
        command.kos.consumer_group = ns.group("command");
        // Cheap hashes: these tests are about the flow, not the password cost.
        command.auth.argon2_memory_kib = 1024;
        command.auth.argon2_iterations = 1;
        // Tests poll from one address; the limits have their own tests.
        command.hardening.per_ip_per_minute = 0;
        command.hardening.per_customer_per_minute = 0;
        command.metrics.metrics_addr = Some(any_port());
        let command_app = command_service::startup::Application::build(command.clone())
            .await
            .expect("command-service builds");
        let command_pool = command_app.pool().clone();
        let command_address = format!("http://{}", command_app.local_addr());
        metrics.push(metrics_of(
            "command-service",
            &command_address,
            command_app.metrics_addr(),
        ));
        tasks.push(tokio::spawn(
            command_app.run_until_stopped(shutdown.clone()),
        ));
        set_passwords(&command, customers).await;

        let mut projector = projector::configuration::Cli::try_parse_from(["projector"])
            .unwrap()
            .config;
        projector.http_addr = "127.0.0.1:0".parse().unwrap();
        ns.database(&mut projector.database, 4);
        projector.database.schema = format!("{}_read", ns.schema());
        ns.kafka(&mut projector.kafka);
        ns.redis(&mut projector.redis);
        projector.query_role = ns.role();
        projector.query_role_login = true;
        // A password, as a server that requires them (the production-shaped profile's)
        // refuses a login role without one; a trusting local server ignores it.
        projector.query_role_password = Some(Uuid::new_v4().simple().to_string());
        projector.consumer_group = ns.group("projector");
        projector.event_store_schema = command.database.schema.clone();
        projector.metrics.metrics_addr = Some(any_port());
        // The continuous reconciliation runs in every test of the whole system.
        projector.reconcile_every_secs = 1;
        projector.reconcile_wait_secs = 2;
        let projector_app = projector::startup::Application::build(projector.clone())
            .await
            .expect("projector builds");
        metrics.push(metrics_of(
            "projector",
            &format!("http://{}", projector_app.local_addr()),
            projector_app.metrics_addr(),
        ));
        let read_pool = projector_app.pool().clone();
        tasks.push(tokio::spawn(
            projector_app.run_until_stopped(shutdown.clone()),
        ));

        let mut query = super::query::query_config(&projector);
        query.metrics.metrics_addr = Some(any_port());
        let query_app = query_service::startup::Application::build(query)
            .await
            .expect("query-service builds");
        let query_address = format!("http://{}", query_app.local_addr());
        metrics.push(metrics_of(
            "query-service",
            &query_address,
            query_app.metrics_addr(),
        ));
        tasks.push(tokio::spawn(query_app.run_until_stopped(shutdown.clone())));

        let mut stack = Stack {
            command: command_address,
            query: query_address,
            kos: kos_address,
            kos_token: String::new(),
            metrics,
            http: reqwest::Client::new(),
            kos_pool,
            kos_schema,
            projector: projector.clone(),
            read_pool: read_pool.clone(),
            shutdown,
            tasks,
        };
        wait_until(
            "the command side knows the 100 demo lines",
            Duration::from_secs(60),
            || async { count(&command_pool, "SELECT count(*) FROM ref_lines").await == 100 },
        )
        .await;
        wait_until(
            "the read side has projected the 100 demo lines",
            Duration::from_secs(60),
            || async { count(&read_pool, "SELECT count(*) FROM lines").await == 100 },
        )
        .await;
        stack.kos_token = stack.login("admin").await.0;
        stack
    }

    /// Logs in; the token and the customer's lines.
    pub async fn login(&self, customer: &str) -> (String, Vec<String>) {
        let response = self
            .http
            .post(format!("{}/api/v1/auth/login", self.command))
            .json(&json!({"customerId": customer, "password": demo_password(customer)}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "login of {customer}");
        let body: Value = response.json().await.unwrap();
        let lines = body["lines"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l.as_str().unwrap().to_owned())
            .collect();
        (body["accessToken"].as_str().unwrap().to_owned(), lines)
    }

    /// GET on query-service with `token`: status and body.
    pub async fn query(&self, token: &str, path: &str) -> (u16, Value) {
        let response = self
            .http
            .get(format!("{}{path}", self.query))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// The line's current product and a premium plan it may change to, as
    /// `GET /api/v1/products/available` offers them.
    pub async fn premium_offer(&self, token: &str, line: &str) -> (String, String) {
        let (status, available) = self
            .query(
                token,
                &format!("/api/v1/products/available?lineNumber={line}"),
            )
            .await;
        assert_eq!(status, 200, "{available}");
        let current = available["currentProduct"]["productCode"]
            .as_str()
            .unwrap()
            .to_owned();
        let target = available["availableProducts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["productCode"].as_str().unwrap().to_owned())
            .find(|code| code.starts_with("5G-PREMIUM"))
            .expect("a premium plan is offered");
        (current, target)
    }

    /// Waits (30 s at most) until the read side shows the change COMPLETED by KOS.
    pub async fn wait_completed(&self, token: &str, request_id: &str) {
        wait_until(
            "KOS completes the change",
            Duration::from_secs(30),
            || async {
                let (_, request) = self
                    .query(token, &format!("/api/v1/product-changes/{request_id}"))
                    .await;
                request["status"] == "COMPLETED"
            },
        )
        .await;
    }

    /// Asks for a change of the customer's first line to a premium plan and waits until
    /// the read side shows it COMPLETED: the line, the plan and the request id.
    pub async fn change_to_premium(&self, customer: &str) -> (String, String, String) {
        let (token, lines) = self.login(customer).await;
        let line = lines[0].clone();
        let (current, target) = self.premium_offer(&token, &line).await;
        let (status, accepted) = self
            .command(
                &token,
                "/api/v1/product-changes",
                &serde_json::json!({"lineNumber": line, "currentProductCode": current, "targetProductCode": target}),
            )
            .await;
        assert_eq!(status, 202, "{accepted}");
        let request_id = accepted["requestId"].as_str().unwrap().to_owned();
        self.wait_completed(&token, &request_id).await;
        (line, target, request_id)
    }

    /// POST a JSON body to command-service with `token`: status and body.
    pub async fn command(&self, token: &str, path: &str, body: &Value) -> (u16, Value) {
        let response = self
            .http
            .post(format!("{}{path}", self.command))
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// POST a JSON body to kos-mock's admin API.
    pub async fn kos_admin(&self, path: &str, body: &Value) -> Value {
        let response = self
            .http
            .post(format!("{}{path}", self.kos))
            .bearer_auth(&self.kos_token)
            .json(body)
            .send()
            .await
            .unwrap();
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        assert!(status.is_success(), "kos-mock {path}: {status} {body}");
        body
    }

    /// GET on kos-mock's admin API.
    pub async fn kos_get(&self, path: &str) -> Value {
        let response = self
            .http
            .get(format!("{}{path}", self.kos))
            .bearer_auth(&self.kos_token)
            .send()
            .await
            .unwrap();
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        assert!(status.is_success(), "kos-mock {path}: {status} {body}");
        body
    }

    pub async fn stop(mut self) {
        self.shutdown.cancel();
        for task in self.tasks.drain(..) {
            task.await.unwrap().unwrap();
        }
    }
}

async fn set_passwords(config: &command_service::configuration::Config, customers: &[&str]) {
    use command_service::auth::{Credentials, Passwords};
    use service_kit::auth::{Role, SystemClock, Tokens};
    let pool = config.database.connect().await.unwrap();
    let tokens = Tokens::new(
        &config.jwt,
        config.jwt.signing_keys(false).unwrap(),
        std::sync::Arc::new(SystemClock),
    );
    let credentials = Credentials::new(
        pool.clone(),
        Passwords::new(&config.auth).unwrap(),
        tokens,
        &config.auth,
    );
    for customer in customers {
        credentials
            .set_password(customer, &demo_password(customer), None)
            .await
            .unwrap();
    }
    // The admin account too: kos-mock's admin API takes admin tokens only.
    credentials
        .set_password("admin", &demo_password("admin"), Some(Role::Admin))
        .await
        .unwrap();
    pool.close().await;
}

async fn count(pool: &PgPool, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(pool).await.unwrap_or(0)
}
