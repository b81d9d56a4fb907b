//! The product-change loop closed through the broker: command-service (in process) and
//! kos-mock (its binary, `e2e-kos-mock`, so it can be stopped and killed) share one topic
//! prefix and nothing else. Each test has its own schemas, topics and consumer groups.
//! (Moved from kos-mock's tests: it runs two services.)

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use command_service::startup::Application;
use events::schema::SchemaSet;
use events::topics::Topics;
use serde_json::{json, Value};
use service_kit::auth::Role;
use sqlx::PgPool;
use test_support::{
    brokers, client_with_token, database_url, line, read_topic, wait_until, Namespace, Running,
    PARTITIONS,
};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// KOS's behaviour for one test.
struct Kos {
    success_rate: &'static str,
    latency_ms: (u64, u64),
}

struct World {
    topic_prefix: String,
    topics: Topics,
    kos_schema: String,
    kos_group: String,
    kos_behaviour: Kos,
    kos_pool: PgPool,
    kos: Option<Running>,
    command_pool: PgPool,
    command_schema: String,
    command_address: String,
    http: reqwest::Client,
    shutdown: CancellationToken,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl World {
    /// kos-mock seeded with the demo data and serving, and command-service whose
    /// reference data has been built from kos-mock's facts.
    async fn start(kos: Kos, kos_answer_timeout: Duration) -> World {
        let ns = Namespace::new();
        let topics = Topics::new(ns.topic_prefix());
        let kos_schema = format!("{}_kos", ns.schema());
        let kos_pool = service_kit::database::connect(&database_url(), &kos_schema, 4)
            .await
            .unwrap();
        let mut config = command_service::configuration::Cli::try_parse_from(["command-service"])
            .unwrap()
            .config;
        config.http_addr = "127.0.0.1:0".parse().unwrap();
        ns.database(&mut config.database, 8);
        config.database.schema = format!("{}_cmd", ns.schema());
        ns.kafka(&mut config.kafka);
        config.relay.poll_interval_ms = 20;
        config.kos.answer_timeout_secs = kos_answer_timeout.as_secs();
        config.kos.timeout_sweep_ms = 100;
        config.kos.consumer_group = ns.group("command");
        // The loop tests drive many changes from one address; limits are tested elsewhere.
        config.hardening.per_ip_per_minute = 0;
        config.hardening.per_customer_per_minute = 0;
        let app = Application::build(config.clone())
            .await
            .expect("command-service builds");
        // An admin may change any line: the loop tests are not about ownership.
        let admin_token = app
            .authenticator()
            .tokens()
            .issue("admin", Role::Admin, vec![])
            .0;
        let command_pool = app.pool().clone();
        let command_address = format!("http://{}", app.local_addr());
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(app.run_until_stopped(shutdown.clone()));
        let mut world = World {
            topic_prefix: ns.topic_prefix(),
            topics,
            kos_schema,
            kos_group: ns.group("kos"),
            kos_behaviour: kos,
            kos_pool,
            kos: None,
            command_pool,
            command_schema: config.database.schema,
            command_address,
            http: client_with_token(&admin_token),
            shutdown,
            task: Some(task),
        };
        let seeded = world.kos_mock(&["seed-demo"]).output().unwrap();
        assert!(seeded.status.success(), "kos-mock seed-demo failed");
        world.start_kos();
        world
            .wait_for(
                "the command side's reference data from KOS's facts",
                || async {
                    let (lines, products): (i64, i64) = sqlx::query_as(
                    "SELECT (SELECT count(*) FROM ref_lines), (SELECT count(*) FROM ref_products)",
                )
                .fetch_one(&world.command_pool)
                .await
                .unwrap();
                    lines == 100 && products >= 8
                },
            )
            .await;
        world
    }

    fn kos_mock(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_e2e-kos-mock"));
        command
            .args(args)
            .env("PHONEBILL_HTTP_ADDR", "127.0.0.1:0")
            .env("PHONEBILL_DATABASE_URL", database_url())
            .env("PHONEBILL_DATABASE_SCHEMA", &self.kos_schema)
            .env("PHONEBILL_KAFKA_BROKERS", brokers())
            .env("PHONEBILL_TOPIC_PREFIX", &self.topic_prefix)
            .env("PHONEBILL_TOPIC_PARTITIONS", PARTITIONS.to_string())
            .env("PHONEBILL_KOS_CONSUMER_GROUP", &self.kos_group)
            .env(
                "PHONEBILL_KOS_LATENCY_MIN_MS",
                self.kos_behaviour.latency_ms.0.to_string(),
            )
            .env(
                "PHONEBILL_KOS_LATENCY_MAX_MS",
                self.kos_behaviour.latency_ms.1.to_string(),
            )
            .env(
                "PHONEBILL_KOS_SUCCESS_RATE",
                self.kos_behaviour.success_rate,
            )
            .env("PHONEBILL_KOS_RANDOM_SEED", "11")
            .env("PHONEBILL_KAFKA_SESSION_TIMEOUT_MS", "6000")
            .env("PHONEBILL_KOS_PUBLISH_POLL_MS", "50")
            .env(
                "RUST_LOG",
                std::env::var("KOS_LOG").unwrap_or("warn".into()),
            )
            .stdout(Stdio::piped())
            .stderr(if std::env::var("TEST_LOG").is_ok() {
                Stdio::inherit()
            } else {
                Stdio::null()
            });
        command
    }

    fn start_kos(&mut self) {
        let mut command = self.kos_mock(&[]);
        // Logs go to stdout; shown with TEST_LOG, else dropped (a full pipe must never
        // block the child).
        command.stdout(if std::env::var("TEST_LOG").is_ok() {
            Stdio::inherit()
        } else {
            Stdio::null()
        });
        self.kos = Some(Running(command.spawn().expect("kos-mock starts")));
    }

    /// SIGKILL: no shutdown work at all.
    fn kill_kos(&mut self) {
        self.kos.take();
    }

    /// SIGTERM, as an orchestrator stops it: it finishes in-flight work, commits its
    /// offsets and leaves its consumer group.
    fn stop_kos(&mut self) {
        if let Some(mut running) = self.kos.take() {
            let pid = running.0.id().to_string();
            let sent = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
            assert!(sent.success());
            let status = running.0.wait().unwrap();
            assert!(status.success(), "kos-mock exited with {status}");
        }
    }

    async fn wait_for<F, Fut>(&self, what: &str, check: F)
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        wait_until(what, Duration::from_secs(90), check).await
    }

    /// The command side's reference product of a line.
    async fn reference_product(&self, line_number: &str) -> String {
        sqlx::query_scalar("SELECT product_code FROM ref_lines WHERE line_number = $1")
            .bind(line_number)
            .fetch_one(&self.command_pool)
            .await
            .unwrap()
    }

    /// KOS's own record of a line's product.
    async fn kos_product(&self, line_number: &str) -> String {
        sqlx::query_scalar("SELECT product_code FROM lines WHERE line_number = $1")
            .bind(line_number)
            .fetch_one(&self.kos_pool)
            .await
            .unwrap()
    }

    async fn request(&self, line_number: &str, current: &str, target: &str) -> Uuid {
        let response = self
            .http
            .post(format!("{}/api/v1/product-changes", self.command_address))
            .json(&json!({"lineNumber": line_number, "currentProductCode": current, "targetProductCode": target}))
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap();
        assert_eq!(status, 202, "{body}");
        body["requestId"].as_str().unwrap().parse().unwrap()
    }

    /// The events the line recorded for a request: (type, payload body).
    async fn outcome_events(&self, request_id: Uuid) -> Vec<(String, Value)> {
        let rows: Vec<(String, Value)> = sqlx::query_as(
            "SELECT event_type, payload::jsonb FROM events
              WHERE event_type IN ('ProductChangeCompleted', 'ProductChangeFailed',
                                   'ProductChangeLateAnswerRecorded')
                AND payload::jsonb -> event_type ->> 'request_id' = $1
              ORDER BY sequence",
        )
        .bind(request_id.to_string())
        .fetch_all(&self.command_pool)
        .await
        .unwrap();
        rows.into_iter()
            .map(|(t, p)| {
                let body = p[&t].clone();
                (t, body)
            })
            .collect()
    }

    async fn settled(&self, request_id: Uuid) -> Option<(String, Value)> {
        self.outcome_events(request_id)
            .await
            .into_iter()
            .find(|(t, _)| t != "ProductChangeLateAnswerRecorded")
    }

    /// How many times KOS changed the line for a request.
    async fn executions(&self, request_id: Uuid) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM line_product_history WHERE request_id = $1")
            .bind(request_id)
            .fetch_one(&self.kos_pool)
            .await
            .unwrap()
    }

    /// Every message on the loop's three topics validates against `schemas/`.
    async fn assert_every_message_matches_its_schema(&self) -> HashMap<String, usize> {
        let schemas = SchemaSet::load();
        let mut counts = HashMap::new();
        for topic in [
            self.topics.product_change(),
            self.topics.kos_results(),
            self.topics.kos_billing(),
        ] {
            let messages = read_topic(&brokers(), &topic).await;
            assert!(!messages.is_empty(), "nothing on {topic}");
            for bytes in messages.iter().map(|m| &m.payload) {
                let json: Value = serde_json::from_slice(bytes)
                    .unwrap_or_else(|e| panic!("{topic}: not JSON ({e})"));
                schemas
                    .validate(&json)
                    .unwrap_or_else(|e| panic!("{topic}: {e}\n{json}"));
                *counts
                    .entry(json["event_type"].as_str().unwrap().to_owned())
                    .or_default() += 1;
            }
        }
        counts
    }

    async fn stop(mut self) {
        self.kill_kos();
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            task.await.unwrap().unwrap();
        }
        for schema in [&self.command_schema, &self.kos_schema] {
            let _ = sqlx::query(&format!("DROP SCHEMA \"{schema}\" CASCADE"))
                .execute(&self.kos_pool)
                .await;
        }
    }
}

/// Demo lines' products: odd lines are KT, even lines LGU (see kos-mock's demo set).
fn other_product(current: &str) -> &'static str {
    match current {
        "5G-STANDARD-001" => "5G-PREMIUM-001",
        "5G-PREMIUM-001" => "5G-STANDARD-001",
        "5G-LITE-002" => "5G-PREMIUM-002",
        "5G-PREMIUM-002" => "5G-LITE-002",
        other => panic!("unexpected product {other}"),
    }
}

#[tokio::test]
async fn a_change_kos_completes_is_completed_and_the_line_moves_in_kos_and_in_reference_data() {
    // Given kos-mock with the demo data and command-service built from its facts
    let world = World::start(
        Kos {
            success_rate: "1",
            latency_ms: (300, 800),
        },
        Duration::from_secs(300),
    )
    .await;
    let number = line(1);
    let current = world.reference_product(&number).await;
    let target = other_product(&current);

    // When a customer asks for a change
    let request_id = world.request(&number, &current, target).await;

    // Then KOS carries it out and the line records COMPLETED
    world
        .wait_for("the change to settle", || async {
            world.settled(request_id).await.is_some()
        })
        .await;
    let (event_type, body) = world.settled(request_id).await.unwrap();
    assert_eq!(event_type, "ProductChangeCompleted", "{body}");
    assert_eq!(body["new_product_code"], target);
    assert_eq!(world.kos_product(&number).await, target);
    assert_eq!(world.executions(request_id).await, 1);
    // and the command side's reference data follows KOS's fact
    world
        .wait_for("the reference data to follow", || async {
            world.reference_product(&number).await == target
        })
        .await;
    let counts = world.assert_every_message_matches_its_schema().await;
    assert_eq!(counts.get("ProductChangeExecuted"), Some(&1));
    assert_eq!(counts.get("LineProductChanged"), Some(&1));
    world.stop().await;
}

#[tokio::test]
async fn with_kos_failing_every_change_the_change_ends_failed_with_kos_reason() {
    let world = World::start(
        Kos {
            success_rate: "0",
            latency_ms: (10, 50),
        },
        Duration::from_secs(300),
    )
    .await;
    let number = line(3);
    let current = world.reference_product(&number).await;
    let request_id = world
        .request(&number, &current, other_product(&current))
        .await;

    world
        .wait_for("the change to settle", || async {
            world.settled(request_id).await.is_some()
        })
        .await;
    let (event_type, body) = world.settled(request_id).await.unwrap();
    assert_eq!(event_type, "ProductChangeFailed", "{body}");
    assert_eq!(body["reason_code"], "KOS_REJECTED");
    assert_eq!(body["kos_reason_code"], "SYSTEM_ERROR");
    assert_eq!(world.kos_product(&number).await, current);
    assert_eq!(world.executions(request_id).await, 0);
    world.stop().await;
}

#[tokio::test]
async fn with_kos_down_the_change_times_out_and_kos_restarted_does_not_execute_it() {
    // Given KOS has two seconds to answer, and KOS is down
    let mut world = World::start(
        Kos {
            success_rate: "1",
            latency_ms: (10, 50),
        },
        Duration::from_secs(2),
    )
    .await;
    // KOS has been working (a change went through), then it goes down.
    let warm = line(7);
    let warm_current = world.reference_product(&warm).await;
    let warm_id = world
        .request(&warm, &warm_current, other_product(&warm_current))
        .await;
    world
        .wait_for("a first change to go through", || async {
            world.settled(warm_id).await.is_some()
        })
        .await;
    world.stop_kos();
    let number = line(5);
    let current = world.reference_product(&number).await;

    // When a change is requested, then it fails with TIMEOUT
    let request_id = world
        .request(&number, &current, other_product(&current))
        .await;
    world
        .wait_for("the timeout", || async {
            world.settled(request_id).await.is_some()
        })
        .await;
    let (event_type, body) = world.settled(request_id).await.unwrap();
    assert_eq!(event_type, "ProductChangeFailed");
    assert_eq!(body["reason_code"], "TIMEOUT");

    // When KOS comes back, then it answers REQUEST_EXPIRED and never executes the change
    world.start_kos();
    world
        .wait_for("KOS's late answer to be kept", || async {
            world
                .outcome_events(request_id)
                .await
                .iter()
                .any(|(t, _)| t == "ProductChangeLateAnswerRecorded")
        })
        .await;
    let events = world.outcome_events(request_id).await;
    let late = &events.last().unwrap().1;
    assert_eq!(late["executed"], false);
    assert_eq!(late["kos_reason_code"], "REQUEST_EXPIRED");
    assert_eq!(world.executions(request_id).await, 0);
    assert_eq!(world.kos_product(&number).await, current);
    // and the outcome stays FAILED (TIMEOUT)
    assert_eq!(
        world.settled(request_id).await.unwrap().1["reason_code"],
        "TIMEOUT"
    );
    world.stop().await;
}

#[tokio::test]
async fn kos_killed_in_the_middle_of_200_changes_and_restarted_every_change_ends_once_and_runs_once(
) {
    let world = Arc::new(tokio::sync::Mutex::new(
        World::start(
            Kos {
                success_rate: "0.9",
                latency_ms: (50, 150),
            },
            Duration::from_secs(300),
        )
        .await,
    ));
    // 96 active demo lines (every 25th is suspended): the first 8 take three changes one
    // after another, the rest two: 200 changes.
    let active: Vec<u32> = (1..=100).filter(|n| n % 25 != 0).collect();
    let requests = Arc::new(std::sync::Mutex::new(Vec::new()));
    let settled_count = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (pool, address, http) = {
        let w = world.lock().await;
        (
            w.command_pool.clone(),
            w.command_address.clone(),
            w.http.clone(),
        )
    };
    let mut tasks = Vec::new();
    for (i, n) in active.iter().copied().enumerate() {
        let changes = if i < 8 { 3 } else { 2 };
        let (pool, address, http) = (pool.clone(), address.clone(), http.clone());
        let (requests, settled_count) = (requests.clone(), settled_count.clone());
        tasks.push(tokio::spawn(async move {
            let number = line(n);
            for _ in 0..changes {
                let current: String =
                    sqlx::query_scalar("SELECT product_code FROM ref_lines WHERE line_number = $1")
                        .bind(&number)
                        .fetch_one(&pool)
                        .await
                        .unwrap();
                let target = other_product(&current);
                let response = http
                    .post(format!("{address}/api/v1/product-changes"))
                    .json(&json!({"lineNumber": number, "currentProductCode": current, "targetProductCode": target}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(response.status().as_u16(), 202);
                let body: Value = response.json().await.unwrap();
                let id: Uuid = body["requestId"].as_str().unwrap().parse().unwrap();
                requests.lock().unwrap().push(id);
                // Wait until the line settles the change and, if KOS changed the line,
                // until its fact reached the reference data (the next request names it).
                let deadline = Instant::now() + Duration::from_secs(120);
                loop {
                    let row: Option<(String, String)> = sqlx::query_as(
                        "SELECT e.event_type, l.product_code FROM events e, ref_lines l
                          WHERE l.line_number = $2
                            AND e.event_type IN ('ProductChangeCompleted', 'ProductChangeFailed')
                            AND e.payload::jsonb -> e.event_type ->> 'request_id' = $1",
                    )
                    .bind(id.to_string())
                    .bind(&number)
                    .fetch_optional(&pool)
                    .await
                    .unwrap();
                    match row {
                        Some((t, product)) if t == "ProductChangeFailed" || product == target => {
                            break
                        }
                        _ => {}
                    }
                    assert!(Instant::now() < deadline, "change {id} did not settle");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                settled_count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
        }));
    }

    // When KOS is killed with SIGKILL once 60 changes have settled, then started again
    {
        let mut w = world.lock().await;
        w.wait_for("60 settled changes", || async {
            settled_count.load(std::sync::atomic::Ordering::SeqCst) >= 60
        })
        .await;
        w.kill_kos();
        w.start_kos();
    }
    for task in tasks {
        task.await.unwrap();
    }

    // Then every change ended exactly once, and KOS executed each at most once: exactly
    // the completed ones
    let world = Arc::try_unwrap(world).ok().unwrap().into_inner();
    let requests = requests.lock().unwrap().clone();
    assert_eq!(requests.len(), 200);
    let mut completed = 0;
    for id in &requests {
        let outcomes: Vec<String> = world
            .outcome_events(*id)
            .await
            .into_iter()
            .map(|(t, _)| t)
            .filter(|t| t != "ProductChangeLateAnswerRecorded")
            .collect();
        assert_eq!(outcomes.len(), 1, "request {id} ended {outcomes:?}");
        let executions = world.executions(*id).await;
        if outcomes[0] == "ProductChangeCompleted" {
            completed += 1;
            assert_eq!(
                executions, 1,
                "completed request {id} ran {executions} times in KOS"
            );
        } else {
            assert_eq!(executions, 0, "failed request {id} ran in KOS");
        }
    }
    assert!(
        completed > 100,
        "only {completed} of 200 completed at a 90 % success rate"
    );
    let counts = world.assert_every_message_matches_its_schema().await;
    assert_eq!(counts.get("ProductChangeSentToKos"), Some(&200));
    world.stop().await;
}
