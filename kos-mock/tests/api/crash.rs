//! The binary killed with SIGKILL in the middle of 200 changes and started again: every
//! request is answered, all answers to one request are identical, none is executed twice.

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::time::Duration;

use chrono::TimeDelta;
use uuid::Uuid;

use test_support::Running;

use crate::helpers::*;

/// Lines used, and changes per line (they run one after another on a line).
const LINES: u32 = 20;
const PER_LINE: u32 = 10;

fn kos_mock(config: &kos_mock::configuration::Config, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_kos-mock"));
    command
        .args(args)
        .env("PHONEBILL_HTTP_ADDR", "127.0.0.1:0")
        .env("PHONEBILL_DATABASE_URL", &config.database.url)
        .env("PHONEBILL_DATABASE_SCHEMA", &config.database.schema)
        .env("PHONEBILL_KAFKA_BROKERS", &config.kafka.brokers)
        .env("PHONEBILL_TOPIC_PREFIX", &config.kafka.topic_prefix)
        .env("PHONEBILL_TOPIC_PARTITIONS", PARTITIONS.to_string())
        .env("PHONEBILL_KOS_CONSUMER_GROUP", &config.kos.consumer_group)
        .env("PHONEBILL_KOS_LATENCY_MIN_MS", "100")
        .env("PHONEBILL_KOS_LATENCY_MAX_MS", "300")
        .env("PHONEBILL_KOS_SUCCESS_RATE", "1")
        .env("PHONEBILL_KOS_RANDOM_SEED", "7")
        .env("PHONEBILL_KAFKA_SESSION_TIMEOUT_MS", "6000")
        .env("PHONEBILL_KOS_PUBLISH_POLL_MS", "50")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(if std::env::var("TEST_LOG").is_ok() {
            Stdio::inherit()
        } else {
            Stdio::null()
        });
    command
}

fn serve(config: &kos_mock::configuration::Config) -> Running {
    // Its logs are not read: a full pipe must never block it.
    let mut command = kos_mock(config, &[]);
    command.stdout(Stdio::null());
    Running(command.spawn().expect("kos-mock starts"))
}

async fn orders(pool: &sqlx::PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM orders")
        .fetch_one(pool)
        .await
        .unwrap_or(0)
}

#[tokio::test]
async fn killed_in_the_middle_of_200_changes_and_restarted_every_request_is_answered_once_alike() {
    let config = test_config(&Options::default());
    let pool = kos_mock::db::connect(&config.database).await.unwrap();
    let topics = events::topics::Topics::new(&config.kafka.topic_prefix);

    // The demo data set, by the subcommand; a second run adds nothing.
    for expected_lines in [100, 0] {
        let output = kos_mock(&config, &["seed-demo"]).output().unwrap();
        assert!(output.status.success(), "seed-demo failed");
        // The report is the last line (log lines may come before it).
        let stdout = String::from_utf8(output.stdout).unwrap();
        let report: serde_json::Value =
            serde_json::from_str(stdout.lines().last().unwrap_or_default()).unwrap();
        assert_eq!(report["lines"], expected_lines, "{report}");
    }

    let first = serve(&config);
    // Line n alternates between its current product and another of its operator.
    let producer = producer();
    let mut requests: Vec<(Uuid, String)> = Vec::new();
    for round in 0..PER_LINE {
        for n in 1..=LINES {
            let (a, b) = if n % 2 == 1 {
                ("5G-STANDARD-001", "5G-PREMIUM-001")
            } else {
                ("5G-LITE-002", "5G-STANDARD-002")
            };
            let (current, target) = if round % 2 == 0 { (a, b) } else { (b, a) };
            let request = change_request(&line(n), current, target, TimeDelta::seconds(600));
            requests.push((request_id(&request), line(n)));
            produce_request(&producer, &topics, &request).await;
        }
    }
    let total = requests.len() as i64;
    assert_eq!(total, 200);

    // Kill it once some, not all, requests are done.
    let done = eventually("some orders", Duration::from_secs(60), || async {
        let n = orders(&pool).await;
        (n >= 30).then_some(n)
    })
    .await;
    drop(first); // SIGKILL
    assert!(done < total, "all requests were done before the kill");
    let at_kill = orders(&pool).await;

    let second = serve(&config);
    eventually("every order", Duration::from_secs(120), || async {
        (orders(&pool).await == total).then_some(())
    })
    .await;
    assert!(at_kill < total);

    // Every request answered on the broker; all answers to a request identical.
    let answers = eventually(
        "every answer on the broker",
        Duration::from_secs(60),
        || async {
            let results = read_topic(&brokers(), &topics.kos_results()).await;
            let mut by_request: HashMap<String, Vec<Received>> = HashMap::new();
            for r in results {
                let id = r.json["payload"]["request_id"].as_str().unwrap().to_owned();
                by_request.entry(id).or_default().push(r);
            }
            (by_request.len() == requests.len()).then_some(by_request)
        },
    )
    .await;
    for (id, list) in &answers {
        assert!(
            list.iter().all(|a| a.payload == list[0].payload),
            "answers to {id} differ"
        );
        assert_eq!(list[0].json["event_type"], "ProductChangeExecuted", "{id}");
    }

    // Nothing executed twice: one history row per request, PER_LINE changes per line,
    // and each line's facts on the broker in sequence order.
    let executions: Vec<(Uuid, i64)> =
        sqlx::query_as("SELECT request_id, count(*) FROM line_product_history GROUP BY request_id")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(executions.len(), requests.len());
    assert!(executions.iter().all(|(_, n)| *n == 1));
    let per_line: Vec<(String, i64)> = sqlx::query_as(
        "SELECT line_number, count(*) FROM line_product_history GROUP BY line_number",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(per_line.len(), LINES as usize);
    assert!(per_line.iter().all(|(_, n)| *n == PER_LINE as i64));
    eventually("the outbox to drain", Duration::from_secs(30), || async {
        (kos_mock::outbox::backlog(&pool).await.unwrap() == 0).then_some(())
    })
    .await;
    let facts = read_topic(&brokers(), &topics.kos_billing()).await;
    assert_facts_in_order(&facts);
    let changed = facts
        .iter()
        .filter(|m| m.json["event_type"] == "LineProductChanged")
        .map(|m| m.json["event_id"].as_str().unwrap())
        .collect::<std::collections::HashSet<_>>();
    assert_eq!(changed.len(), requests.len());

    drop(second);
    drop_schema(&pool, &config).await;
}
