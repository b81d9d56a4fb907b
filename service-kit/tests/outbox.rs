//! The outbox publisher against the real broker and PostgreSQL: a small outbox table of
//! the test's own (schema and topic per test), published by `OutboxPublisher`.
//!
//! Needs `PHONEBILL_TEST_KAFKA_BROKERS` and `PHONEBILL_TEST_DATABASE_URL` (set by
//! `infra/local/stack test`).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::Utc;
use events::Envelope;
use rdkafka::ClientConfig;
use service_kit::kafka::{ensure_topics, Admin};
use service_kit::outbox::{
    Outbox, OutboxError, OutboxPublisher, OutboxSession, Outgoing, PublisherSettings, Record,
};
use sqlx::PgPool;
use test_support::topic::read_topic_blocking;
use test_support::{brokers, database_url, Namespace, PARTITIONS};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

fn kafka() -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", brokers());
    config
}

/// An outbox of `(id, key, sequence, on_broker, published)` rows; `on_broker` rows stand
/// for rows an outbox knows the broker already holds.
struct TestOutbox {
    pool: PgPool,
    topic: String,
}

struct TestSession {
    pool: PgPool,
    topic: String,
}

#[async_trait]
impl Outbox for TestOutbox {
    type Session = TestSession;

    fn name(&self) -> &'static str {
        "test-outbox"
    }

    async fn open(
        &self,
        _producer: &service_kit::kafka::Producer,
    ) -> Result<TestSession, OutboxError> {
        Ok(TestSession {
            pool: self.pool.clone(),
            topic: self.topic.clone(),
        })
    }
}

#[async_trait]
impl OutboxSession for TestSession {
    type Row = i64;

    async fn next_batch(&mut self) -> Result<Vec<Outgoing<i64>>, OutboxError> {
        let rows: Vec<(i64, String, i64, bool)> = sqlx::query_as(
            "SELECT id, key, sequence, on_broker FROM rows WHERE NOT published ORDER BY id LIMIT 7",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(id, key, sequence, on_broker)| Outgoing {
                row: id,
                record: (!on_broker)
                    .then(|| Record::envelope(&self.topic, &key, &envelope(&key, sequence))),
            })
            .collect())
    }

    async fn delivered(&mut self, ids: Vec<i64>, _complete: bool) -> Result<(), OutboxError> {
        sqlx::query("UPDATE rows SET published = true WHERE id = ANY($1)")
            .bind(&ids)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

fn envelope(key: &str, sequence: i64) -> Envelope {
    let event_id = events::event_id_for("Test", key, sequence as u64);
    Envelope {
        event_id,
        event_type: "TestHappened".into(),
        event_version: 1,
        aggregate_id: key.into(),
        sequence: sequence as u64,
        occurred_at: Utc::now(),
        correlation_id: Uuid::new_v4(),
        causation_id: event_id,
        payload: serde_json::json!({ "n": sequence }),
    }
}

struct Fixture {
    pool: PgPool,
    topic: String,
    committed: Arc<Notify>,
}

impl Fixture {
    async fn new() -> Self {
        let ns = Namespace::new();
        let pool = service_kit::database::connect(&database_url(), &ns.schema(), 4)
            .await
            .expect("PostgreSQL is reachable");
        sqlx::query(
            "CREATE TABLE rows (id bigserial PRIMARY KEY, key text NOT NULL, sequence bigint NOT NULL,
                                on_broker bool NOT NULL DEFAULT false, published bool NOT NULL DEFAULT false)",
        )
        .execute(&pool)
        .await
        .unwrap();
        let topic = ns.group("outbox");
        let admin = Admin::new(kafka()).unwrap();
        ensure_topics(&admin, std::slice::from_ref(&topic), PARTITIONS)
            .await
            .expect("the broker is reachable");
        Self {
            pool,
            topic,
            committed: Arc::new(Notify::new()),
        }
    }

    fn publisher(&self) -> OutboxPublisher<TestOutbox> {
        let outbox = TestOutbox {
            pool: self.pool.clone(),
            topic: self.topic.clone(),
        };
        let settings = PublisherSettings {
            poll: Duration::from_millis(50),
            delivery_timeout_ms: 10_000,
        };
        OutboxPublisher::new(
            outbox,
            self.pool.clone(),
            &kafka(),
            settings,
            self.committed.clone(),
        )
    }

    /// Commits `per_key` rows for each key, sequences following what the key has.
    async fn commit_rows(&self, keys: &[&str], per_key: i64, on_broker: bool) {
        for key in keys {
            sqlx::query(
                "INSERT INTO rows (key, sequence, on_broker)
                 SELECT $1, coalesce((SELECT max(sequence) FROM rows WHERE key = $1), 0) + g, $3
                   FROM generate_series(1, $2) g",
            )
            .bind(key)
            .bind(per_key)
            .bind(on_broker)
            .execute(&self.pool)
            .await
            .unwrap();
        }
        self.committed.notify_one();
    }

    async fn unpublished(&self) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM rows WHERE NOT published")
            .fetch_one(&self.pool)
            .await
            .unwrap()
    }

    async fn wait_until_published(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.unpublished().await > 0 {
            assert!(Instant::now() < deadline, "rows left unpublished");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Every message on the topic: (key, sequence, event id), in partition order.
    fn read_topic(&self) -> Vec<(String, u64, Uuid)> {
        read_topic_blocking(&brokers(), &self.topic)
            .into_iter()
            .map(|m| {
                let envelope = events::codec::decode_envelope(&m.payload).unwrap();
                assert_eq!(m.key, envelope.aggregate_id, "keyed by its aggregate");
                (m.key, envelope.sequence, envelope.event_id)
            })
            .collect()
    }
}

/// Each key's sequences as read, in order.
fn sequences_by_key(messages: &[(String, u64, Uuid)]) -> HashMap<String, Vec<u64>> {
    let mut by_key: HashMap<String, Vec<u64>> = HashMap::new();
    for (key, sequence, _) in messages {
        by_key.entry(key.clone()).or_default().push(*sequence);
    }
    by_key
}

#[tokio::test]
async fn rows_committed_before_and_while_it_runs_reach_the_topic_once_each_in_order() {
    // Given rows committed before the publisher starts
    let fixture = Fixture::new().await;
    fixture.commit_rows(&["a", "b", "c"], 10, false).await;

    // When it runs and more rows are committed meanwhile
    let stop = CancellationToken::new();
    let task = tokio::spawn(fixture.publisher().run(stop.clone()));
    fixture.commit_rows(&["a", "b", "d"], 10, false).await;
    fixture.wait_until_published().await;
    stop.cancel();
    task.await.unwrap();

    // Then every row is on the topic exactly once, each key's rows in order
    let messages = fixture.read_topic();
    assert_eq!(messages.len(), 60);
    let ids: HashSet<Uuid> = messages.iter().map(|m| m.2).collect();
    assert_eq!(ids.len(), 60, "no row published twice");
    let by_key = sequences_by_key(&messages);
    for (key, expected) in [("a", 20), ("b", 20), ("c", 10), ("d", 10)] {
        assert_eq!(
            by_key[key],
            (1..=expected).collect::<Vec<u64>>(),
            "key {key}"
        );
    }
}

#[tokio::test]
async fn rows_the_outbox_knows_are_on_the_broker_are_recorded_as_delivered_without_being_sent() {
    // Given rows of which the outbox says the broker already holds the first five
    let fixture = Fixture::new().await;
    fixture.commit_rows(&["a"], 5, true).await;
    fixture.commit_rows(&["a"], 2, false).await;

    // When a leading publisher publishes a batch
    let publisher = fixture.publisher();
    let mut leading = publisher.lead().await.unwrap();
    assert_eq!(leading.publish_batch().await.unwrap(), 7);

    // Then all seven are recorded as delivered, and only the two others were sent
    assert_eq!(fixture.unpublished().await, 0);
    let by_key = sequences_by_key(&fixture.read_topic());
    assert_eq!(by_key["a"], vec![6, 7]);
    // And nothing is left for the next round
    assert_eq!(leading.publish_batch().await.unwrap(), 0);
}

#[tokio::test]
async fn one_publisher_leads_a_schema_and_a_standby_takes_over_when_the_leader_goes() {
    // Given two publishers of the same outbox, one of them leading
    let fixture = Fixture::new().await;
    let first = fixture.publisher();
    let standby = fixture.publisher();
    let leading = first.lead().await.unwrap();

    // When the other tries to lead, then it is refused
    assert!(matches!(standby.lead().await, Err(OutboxError::NotLeader)));

    // When the leader goes (its lock's connection closes) and the standby runs
    drop(leading);
    let stop = CancellationToken::new();
    let task = tokio::spawn(standby.run(stop.clone()));
    fixture.commit_rows(&["z"], 3, false).await;

    // Then the standby takes the lead and publishes
    fixture.wait_until_published().await;
    stop.cancel();
    task.await.unwrap();
    assert_eq!(sequences_by_key(&fixture.read_topic())["z"], vec![1, 2, 3]);
}
