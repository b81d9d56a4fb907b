//! The binary killed with SIGKILL while customers' requests are being committed in
//! groups, then started again: every change it accepted is stored and published once,
//! and each request repeated with its Idempotency-Key gets the answer it had (or, if it
//! never got one, is decided exactly once now).

use std::collections::{HashMap, HashSet};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::stream::{self, StreamExt};
use serde_json::Value;
use tokio::sync::Mutex;
use uuid::Uuid;

use test_support::Running;

use crate::helpers::*;

struct Service {
    schema: String,
    prefix: String,
    port: u16,
}

impl Service {
    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_command-service"));
        command
            .args(args)
            .env("PHONEBILL_HTTP_ADDR", format!("127.0.0.1:{}", self.port))
            .env("PHONEBILL_DATABASE_URL", database_url())
            .env("PHONEBILL_DATABASE_SCHEMA", &self.schema)
            .env("PHONEBILL_KAFKA_BROKERS", brokers())
            .env("PHONEBILL_TOPIC_PREFIX", &self.prefix)
            .env("PHONEBILL_TOPIC_PARTITIONS", PARTITIONS.to_string())
            .env(
                "PHONEBILL_KOS_CONSUMER_GROUP",
                format!("{}command", self.prefix),
            )
            .env("PHONEBILL_REDIS_URL", redis_target().0)
            .env("PHONEBILL_REDIS_CLUSTER", redis_target().1.to_string())
            .env("PHONEBILL_REDIS_KEY_PREFIX", &self.prefix)
            .env("PHONEBILL_RATE_LIMIT_PER_IP_PER_MINUTE", "0")
            .env("PHONEBILL_RATE_LIMIT_PER_CUSTOMER_PER_MINUTE", "0")
            .env("PHONEBILL_ARGON2_MEMORY_KIB", "256")
            .env("PHONEBILL_ARGON2_ITERATIONS", "1")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(if std::env::var("TEST_LOG").is_ok() {
                Stdio::inherit()
            } else {
                Stdio::null()
            });
        command
    }

    async fn serve(&self) -> Running {
        let running = Running(self.command(&[]).spawn().expect("command-service starts"));
        let url = format!("http://127.0.0.1:{}/health/ready", self.port);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(r) = reqwest::get(&url).await {
                if r.status().is_success() {
                    return running;
                }
            }
            assert!(Instant::now() < deadline, "command-service never got ready");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Posts line `n`'s change with key `key-n`: the answer's status and request id, or
/// `None` if no answer came (the service died).
async fn post(client: &reqwest::Client, port: u16, n: u32) -> Option<(u16, String)> {
    let response = client
        .post(format!("http://127.0.0.1:{port}/api/v1/product-changes"))
        .header("Idempotency-Key", format!("key-{n}"))
        .json(&valid_change(n))
        .send()
        .await
        .ok()?;
    let status = response.status().as_u16();
    let body: Value = response.json().await.ok()?;
    Some((status, body["requestId"].as_str()?.to_owned()))
}

#[tokio::test]
async fn killed_while_committing_groups_and_restarted_every_accepted_change_is_stored_and_published_once(
) {
    // Given the service binary on its own schema and topics, with the demo lines
    let id = Uuid::new_v4().simple().to_string();
    let service = Service {
        schema: format!("test_{id}"),
        prefix: format!("test-{id}."),
        port: free_port(),
    };
    let facts = demo_facts();
    let loaded = service
        .command(&["load-facts", facts.to_str().unwrap()])
        .status()
        .unwrap();
    assert!(loaded.success(), "load-facts failed");
    let password = service
        .command(&[
            "set-password",
            "admin",
            "--role",
            "admin",
            "--password",
            "crash-test-admin",
        ])
        .status()
        .unwrap();
    assert!(password.success(), "set-password failed");
    let first = service.serve().await;
    let login: Value = reqwest::Client::new()
        .post(format!(
            "http://127.0.0.1:{}/api/v1/auth/login",
            service.port
        ))
        .json(&serde_json::json!({"customerId": "admin", "password": "crash-test-admin"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = login["accessToken"].as_str().unwrap();
    let client = client_with_token(token);

    // When 96 changes (one per active demo line, each with its own key) are sent by 16
    // clients, and the service is killed once 30 of them were accepted
    let lines: Vec<u32> = (1..=100).filter(|n| n % 25 != 0).collect();
    let answered: Arc<Mutex<HashMap<u32, String>>> = Arc::default();
    let first = Arc::new(Mutex::new(Some(first)));
    stream::iter(lines.clone())
        .for_each_concurrent(16, |n| {
            let (client, answered, first) = (&client, answered.clone(), first.clone());
            async move {
                if let Some((status, request_id)) = post(client, service.port, n).await {
                    assert_eq!(status, 202, "line {n}");
                    let mut answered = answered.lock().await;
                    answered.insert(n, request_id);
                    if answered.len() == 30 {
                        first.lock().await.take(); // SIGKILL
                    }
                }
            }
        })
        .await;
    let before_kill = answered.lock().await.clone();
    assert!(
        before_kill.len() >= 30 && before_kill.len() < lines.len(),
        "{} answered before the kill",
        before_kill.len()
    );

    // And it is started again, and every request is repeated with its key
    let second = service.serve().await;
    let mut request_ids = HashMap::new();
    for &n in &lines {
        let (status, request_id) = post(&client, service.port, n).await.expect("answered");
        assert_eq!(status, 202, "line {n}");
        request_ids.insert(n, request_id);
    }

    // Then a change accepted before the kill keeps its request id
    for (n, request_id) in &before_kill {
        assert_eq!(&request_ids[n], request_id, "line {n}");
    }

    // And the store holds each line's change exactly once: one request, sent to KOS
    let pool = service_kit::database::connect(&database_url(), &service.schema, 2)
        .await
        .unwrap();
    let stored: Vec<(String, String, i64)> = sqlx::query_as(
        "SELECT aggregate_id, event_type, sequence FROM events ORDER BY aggregate_id, sequence",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(stored.len(), lines.len() * 2, "{stored:?}");
    for &n in &lines {
        let of_line: Vec<_> = stored.iter().filter(|(l, ..)| *l == line(n)).collect();
        assert_eq!(
            of_line
                .iter()
                .map(|(_, t, s)| (t.as_str(), *s))
                .collect::<Vec<_>>(),
            [("ProductChangeRequested", 1), ("ProductChangeSentToKos", 2)],
            "line {n}"
        );
    }

    // And the broker gets every event once, in per-line order, with the answered ids
    let topic = events::topics::Topics::new(&service.prefix).product_change();
    let deadline = Instant::now() + Duration::from_secs(90);
    let messages = loop {
        let messages = read_topic(&brokers(), &topic).await;
        if messages.len() >= lines.len() * 2 || Instant::now() > deadline {
            break messages;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(messages.len(), lines.len() * 2);
    assert_exactly_once_in_order(&messages);
    let published: HashSet<&str> = messages
        .iter()
        .filter_map(|m| m.json["payload"]["request_id"].as_str())
        .collect();
    let expected: HashSet<&str> = request_ids.values().map(String::as_str).collect();
    assert_eq!(published, expected);

    drop(second);
    let _ = sqlx::query(&format!("DROP SCHEMA \"{}\" CASCADE", service.schema))
        .execute(&pool)
        .await;
}
