//! The outbox: every fact and result KOS sends is first a row written in the same
//! transaction as the state change it describes (no dual write), then the [`Publisher`]
//! sends unpublished rows in id order and marks them published once the broker has
//! acknowledged them.
//!
//! Order: a transaction that writes a line's (or a product's) facts holds that row's
//! lock, so the next transaction for it starts after the previous one committed and gets
//! higher outbox ids; reading "every unpublished row by id" never sends a later fact of an
//! aggregate before an earlier one. Rows committing out of id order across aggregates
//! are harmless: the published flag, not a cursor, says what is left. A crash between
//! publish and mark sends rows again with the same event ids; consumers drop them.

use std::sync::Arc;
use std::time::{Duration, Instant};

use backon::{ExponentialBuilder, Retryable};
use chrono::{DateTime, Utc};
use events::kos::{KosFact, KosResult, ORDER_AGGREGATE};
use events::topics::Topics;
use events::{codec, event_id_for, Envelope, EventPayload};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use sqlx::{PgConnection, PgPool};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// Rows published per round.
const BATCH: i64 = 500;

/// Where an outbox row goes (the configured prefix is applied when publishing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutboxTopic {
    /// `kos.billing`
    Billing,
    /// `kos.product-change-results`
    Results,
}

impl OutboxTopic {
    pub fn as_str(self) -> &'static str {
        match self {
            OutboxTopic::Billing => "billing",
            OutboxTopic::Results => "results",
        }
    }
}

/// Where a message comes from: its correlation id and the message that caused it.
#[derive(Debug, Clone, Copy)]
pub struct Cause {
    pub correlation_id: Uuid,
    /// The message that caused it; `None`: the fact is its own cause.
    pub causation_id: Option<Uuid>,
    pub occurred_at: DateTime<Utc>,
}

impl Cause {
    /// An admin or seed action with its correlation id, happening now.
    pub fn new(correlation_id: Uuid) -> Self {
        Self {
            correlation_id,
            causation_id: None,
            occurred_at: Utc::now(),
        }
    }
}

/// Writes a fact as the `sequence`-th event of its aggregate. The caller holds the
/// aggregate's row lock and has just advanced its sequence.
pub async fn append_fact(
    conn: &mut PgConnection,
    fact: &KosFact,
    sequence: i64,
    cause: &Cause,
) -> Result<Envelope, sqlx::Error> {
    let envelope = envelope_for(
        fact.aggregate_type(),
        fact.aggregate_id(),
        sequence as u64,
        fact,
        cause,
    );
    append_envelope(conn, OutboxTopic::Billing, fact.aggregate_id(), &envelope).await?;
    Ok(envelope)
}

/// The envelope of KOS's answer: aggregate `KosOrder`, id = KOS order id, sequence 1.
pub fn result_envelope(result: &KosResult, cause: &Cause) -> Envelope {
    envelope_for(ORDER_AGGREGATE, result.kos_order_id(), 1, result, cause)
}

fn envelope_for<E: EventPayload>(
    aggregate_type: &str,
    aggregate_id: &str,
    sequence: u64,
    event: &E,
    cause: &Cause,
) -> Envelope {
    let event_id = event_id_for(aggregate_type, aggregate_id, sequence);
    Envelope {
        event_id,
        event_type: event.event_type().to_owned(),
        event_version: event.event_version(),
        aggregate_id: aggregate_id.to_owned(),
        sequence,
        occurred_at: cause.occurred_at,
        correlation_id: cause.correlation_id,
        causation_id: cause.causation_id.unwrap_or(event_id),
        payload: event.to_payload(),
    }
}

/// Queues an envelope (also used to send a stored answer again, unchanged).
pub async fn append_envelope(
    conn: &mut PgConnection,
    topic: OutboxTopic,
    key: &str,
    envelope: &Envelope,
) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO outbox (topic, key, envelope) VALUES ($1, $2, $3)")
        .bind(topic.as_str())
        .bind(key)
        .bind(sqlx::types::Json(envelope))
        .execute(conn)
        .await?;
    Ok(())
}

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("another instance publishes the outbox")]
    NotLeader,
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("broker: {0}")]
    Broker(#[from] rdkafka::error::KafkaError),
    #[error("delivery: {0}")]
    Delivery(String),
}

/// Sends the outbox to the broker; one instance at a time (an advisory lock).
#[derive(Clone)]
pub struct Publisher {
    pool: PgPool,
    kafka: ClientConfig,
    topics: Topics,
    poll: Duration,
    delivery_timeout_ms: u64,
    committed: Arc<Notify>,
}

impl Publisher {
    pub fn new(
        pool: PgPool,
        kafka: ClientConfig,
        topics: Topics,
        poll: Duration,
        delivery_timeout_ms: u64,
        committed: Arc<Notify>,
    ) -> Self {
        Self {
            pool,
            kafka,
            topics,
            poll,
            delivery_timeout_ms,
            committed,
        }
    }

    /// Publishes until `shutdown` (then sends what is left once), starting over with a
    /// backoff after any failure.
    pub async fn run(self, shutdown: CancellationToken) {
        let backoff = ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(100))
            .with_max_delay(Duration::from_secs(5))
            .without_max_times()
            .with_jitter();
        let session = || async { self.session(&shutdown).await };
        let _ = session
            .retry(backoff)
            .when(|_| !shutdown.is_cancelled())
            .adjust(|e, wait| match e {
                PublishError::NotLeader => Some(service_kit::kafka::STANDBY_POLL),
                _ => wait,
            })
            .notify(|e, wait| {
                if !matches!(e, PublishError::NotLeader) {
                    metrics::counter!("kos_outbox_publish_failures_total").increment(1);
                    tracing::warn!(error = %e, retry_in = ?wait, "outbox publisher session ended");
                }
            })
            .await;
        tracing::info!("outbox publisher stopped");
    }

    async fn session(&self, shutdown: &CancellationToken) -> Result<(), PublishError> {
        // A connection of its own, never returned to the pool: the session-level lock
        // ends when it closes.
        let mut lock = self.pool.acquire().await?.detach();
        let leader: bool = sqlx::query_scalar(
            "SELECT pg_try_advisory_lock(hashtext(current_schema() || '.kos-outbox'))",
        )
        .fetch_one(&mut lock)
        .await?;
        if !leader {
            return Err(PublishError::NotLeader);
        }
        let mut config = self.kafka.clone();
        config
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "2")
            // Java clients' and Event Hubs' partitioner, so every client agrees.
            .set("partitioner", "murmur2_random")
            .set("message.timeout.ms", self.delivery_timeout_ms.to_string());
        let producer: FutureProducer = config.create()?;
        loop {
            let sent = self.publish_batch(&producer).await?;
            if sent > 0 {
                continue;
            }
            if shutdown.is_cancelled() {
                return Ok(());
            }
            tokio::select! {
                _ = shutdown.cancelled() => {}
                _ = self.committed.notified() => {
                    // Let concurrent commits join this round.
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                _ = tokio::time::sleep(self.poll) => {}
            }
        }
    }

    /// Sends the oldest unpublished rows and marks them; returns how many it sent.
    async fn publish_batch(&self, producer: &FutureProducer) -> Result<usize, PublishError> {
        let rows: Vec<(i64, String, String, sqlx::types::Json<Envelope>)> = sqlx::query_as(
            "SELECT id, topic, key, envelope FROM outbox WHERE NOT published ORDER BY id LIMIT $1",
        )
        .bind(BATCH)
        .fetch_all(&self.pool)
        .await?;
        if rows.is_empty() {
            return Ok(0);
        }
        let started = Instant::now();
        let mut pending = Vec::with_capacity(rows.len());
        for (id, topic, key, envelope) in &rows {
            let topic = match topic.as_str() {
                "results" => self.topics.kos_results(),
                _ => self.topics.kos_billing(),
            };
            let envelope = &envelope.0;
            let payload = codec::encode(envelope);
            let event_id = envelope.event_id.to_string();
            let version = envelope.event_version.to_string();
            let correlation = envelope.correlation_id.to_string();
            let headers = OwnedHeaders::new()
                .insert(Header {
                    key: "event_id",
                    value: Some(&event_id),
                })
                .insert(Header {
                    key: "event_type",
                    value: Some(&envelope.event_type),
                })
                .insert(Header {
                    key: "event_version",
                    value: Some(&version),
                })
                .insert(Header {
                    key: "correlation_id",
                    value: Some(&correlation),
                })
                .insert(Header {
                    key: "content-type",
                    value: Some("application/json"),
                });
            let record = FutureRecord::to(&topic)
                .key(key)
                .payload(&payload)
                .headers(headers);
            // Enqueued in order without awaiting each: the idempotent producer keeps
            // per-partition order across in-flight requests.
            let delivery = producer
                .send_result(record)
                .map_err(|(e, _)| PublishError::Broker(e))?;
            pending.push((*id, delivery));
        }
        let mut delivered = Vec::with_capacity(pending.len());
        let mut failure = None;
        for (id, delivery) in pending {
            match delivery.await {
                Ok(Ok(_)) => delivered.push(id),
                Ok(Err((e, _))) => {
                    failure.get_or_insert(PublishError::Delivery(e.to_string()));
                }
                Err(_) => {
                    failure.get_or_insert(PublishError::Delivery("producer dropped".into()));
                }
            }
        }
        if !delivered.is_empty() {
            sqlx::query("UPDATE outbox SET published = true WHERE id = ANY($1)")
                .bind(&delivered)
                .execute(&self.pool)
                .await?;
        }
        if let Some(e) = failure {
            return Err(e);
        }
        metrics::counter!("kos_outbox_published_total").increment(delivered.len() as u64);
        metrics::histogram!("kos_outbox_batch_seconds").record(started.elapsed().as_secs_f64());
        Ok(delivered.len())
    }
}

/// Unpublished rows (readiness detail and tests).
pub async fn backlog(pool: &PgPool) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT count(*) FROM outbox WHERE NOT published")
        .fetch_one(pool)
        .await
}
