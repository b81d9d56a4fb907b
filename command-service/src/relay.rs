//! The outbox relay: publishes the event store's rows to `phonebill.product-change`.
//!
//! The events table is the outbox (postgres-es commits an aggregate's events atomically),
//! so there is no dual write. What the relay must get right:
//!
//! - **No gaps.** A row's position is fixed before it commits, so rows commit out of
//!   order. The relay reads only rows written by transactions older than the oldest one
//!   still open (`tx_id < pg_snapshot_xmin`): nothing can later commit behind its cursor.
//! - **Order.** Rows go out ordered by (tx_id, position), which keeps each line's order
//!   (a line's next events are written by a transaction that started after the previous
//!   one committed). The idempotent producer keeps that order per partition.
//! - **No loss, no duplicate.** The cursor moves only after the broker acknowledged. After a
//!   crash between acknowledgement and cursor update, a new session reads the last message
//!   of every partition and skips rows at or below the position found there; this works
//!   because the relay picks partitions itself (Kafka's murmur2 on the key, like Java
//!   clients and Event Hubs) and one relay at a time holds the lead (an advisory lock).
//! - **Outages** of the broker or the database end the session; it starts over after a
//!   backoff, from the durable cursor.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use backon::{ExponentialBuilder, Retryable};
use events::stored::StoredEvent;
use events::topics::partition_for;
use events::{codec, Envelope};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Headers, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::util::Timeout;
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use sqlx::{PgConnection, PgPool};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::configuration::RelayConfig;
use crate::domain::line::Line;

/// Header carrying the outbox position (`tx_id:position`) of a published event.
pub const POSITION_HEADER: &str = "outbox-position";
const RELAY_NAME: &str = "product-change";
/// How long the relay waits after a wake-up so that concurrent commits share a batch.
const LINGER: Duration = Duration::from_millis(2);
/// How often the durable cursor is written while events keep coming.
const CURSOR_SAVE_INTERVAL: Duration = Duration::from_millis(200);

/// The relay's read (`$1`, `$2` the cursor, `$3` the batch size, `$4` the aggregate
/// type): a range scan of the `events_outbox` index (migration 0006) from the cursor to
/// the snapshot's `xmin`, whatever the table's size. The columns are qualified on
/// purpose: an unqualified `ORDER BY tx_id` would name the output column (the `bigint`
/// conversion), which no index serves, and every batch would sort what it read.
pub const NEXT_BATCH: &str =
    "SELECT e.tx_id::text::bigint AS tx_id, e.position, e.aggregate_id, e.sequence,
        e.event_type, e.event_version, e.payload, e.metadata, e.recorded_at
   FROM events e
  WHERE e.aggregate_type = $4
    AND (e.tx_id, e.position) > ($1::text::xid8, $2)
    AND e.tx_id < pg_snapshot_xmin(pg_current_snapshot())
  ORDER BY e.tx_id, e.position
  LIMIT $3";

/// An outbox position: transaction id, then the row's position within the table.
pub type OutboxPosition = (u64, i64);

#[derive(Clone)]
pub struct Relay {
    pool: PgPool,
    kafka: ClientConfig,
    topic: String,
    config: RelayConfig,
    committed: Arc<Notify>,
}

/// One row of the outbox, ready to publish.
#[derive(Debug, Clone)]
pub struct OutboxEvent {
    pub position: OutboxPosition,
    pub envelope: Envelope,
}

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("another instance leads the relay")]
    NotLeader,
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("broker: {0}")]
    Broker(#[from] rdkafka::error::KafkaError),
    #[error("delivery: {0}")]
    Delivery(String),
    #[error("outbox row {0:?} cannot be published: {1}")]
    BadRow(OutboxPosition, String),
}

impl Relay {
    pub fn new(
        pool: PgPool,
        kafka: ClientConfig,
        topic: String,
        config: RelayConfig,
        committed: Arc<Notify>,
    ) -> Self {
        Self {
            pool,
            kafka,
            topic,
            config,
            committed,
        }
    }

    /// Publishes until `shutdown`, starting over after any failure.
    pub async fn run(self, shutdown: CancellationToken) {
        let backoff = ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(100))
            .with_max_delay(Duration::from_secs(5))
            .without_max_times()
            .with_jitter();
        let session = || async {
            let mut session = self.start_session().await?;
            session.run(&shutdown).await
        };
        let _ = session
            .retry(backoff)
            .when(|_| !shutdown.is_cancelled())
            .adjust(|e, wait| match e {
                RelayError::NotLeader => Some(service_kit::kafka::STANDBY_POLL),
                _ => wait,
            })
            .notify(|e, wait| {
                if !matches!(e, RelayError::NotLeader) {
                    metrics::counter!("outbox_relay_failures_total").increment(1);
                    tracing::warn!(error = %e, retry_in = ?wait, "outbox relay session ended");
                }
            })
            .await;
        tracing::info!("outbox relay stopped");
    }

    /// Takes the lead, connects to the broker and recovers what was already published.
    pub async fn start_session(&self) -> Result<RelaySession, RelayError> {
        // A connection of its own, not returned to the pool: the session-level lock must
        // end with the session, and closing the connection is what ends it.
        let mut lock = self.pool.acquire().await?.detach();
        let leader: bool = sqlx::query_scalar(
            "SELECT pg_try_advisory_lock(hashtext(current_schema() || '.outbox-relay'))",
        )
        .fetch_one(&mut lock)
        .await?;
        if !leader {
            return Err(RelayError::NotLeader);
        }
        let mut producer_config = self.kafka.clone();
        producer_config
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "2")
            .set(
                "message.timeout.ms",
                self.config.delivery_timeout_ms.to_string(),
            );
        let producer: FutureProducer = producer_config.create()?;
        let partitions = partition_count(&producer, &self.topic).await?;
        let published = last_published(&self.kafka, &self.topic, partitions).await?;
        let cursor = load_cursor(&self.pool).await?;
        tracing::info!(topic = %self.topic, partitions, ?cursor, "outbox relay leads");
        Ok(RelaySession {
            relay: self.clone(),
            _lock: lock,
            producer,
            partitions,
            published,
            cursor,
        })
    }
}

/// A relay that holds the lead and a producer. Dropping it gives up the lead.
pub struct RelaySession {
    relay: Relay,
    /// The connection holding the advisory lock; the lock goes with it.
    _lock: PgConnection,
    producer: FutureProducer,
    partitions: i32,
    /// Per partition, the last outbox position found on the broker at session start.
    published: HashMap<i32, OutboxPosition>,
    cursor: OutboxPosition,
}

impl RelaySession {
    async fn run(&mut self, shutdown: &CancellationToken) -> Result<(), RelayError> {
        let mut unsaved: Option<OutboxPosition> = None;
        let mut last_save = Instant::now();
        loop {
            let batch = self.next_batch().await?;
            if batch.is_empty() {
                if let Some(position) = unsaved.take() {
                    self.save_cursor(position).await?;
                    last_save = Instant::now();
                }
                tokio::select! {
                    _ = shutdown.cancelled() => return Ok(()),
                    _ = self.relay.committed.notified() => {
                        // Let concurrent commits join this round: fewer, fuller batches.
                        tokio::time::sleep(LINGER).await;
                    }
                    _ = tokio::time::sleep(self.relay.config.poll_interval()) => {}
                }
                continue;
            }
            self.publish(&batch).await?;
            let position = batch.last().expect("batch is not empty").position;
            self.cursor = position;
            // The durable cursor may lag: after a crash the partition tails tell what was
            // already published, so a stale cursor costs a re-read, never a duplicate.
            if last_save.elapsed() >= CURSOR_SAVE_INTERVAL || shutdown.is_cancelled() {
                self.save_cursor(position).await?;
                last_save = Instant::now();
                unsaved = None;
            } else {
                unsaved = Some(position);
            }
            if shutdown.is_cancelled() {
                return Ok(());
            }
        }
    }

    /// The next committed events past the cursor that no open transaction can precede.
    pub async fn next_batch(&self) -> Result<Vec<OutboxEvent>, RelayError> {
        let rows: Vec<OutboxRow> = sqlx::query_as(NEXT_BATCH)
            .bind(self.cursor.0.to_string())
            .bind(self.cursor.1)
            .bind(self.relay.config.batch_size)
            .bind(<Line as cqrs_es::Aggregate>::TYPE)
            .fetch_all(&self.relay.pool)
            .await?;
        rows.into_iter().map(OutboxRow::into_event).collect()
    }

    /// Sends a batch and waits for every acknowledgement. Rows the broker already holds
    /// (found at session start) are skipped.
    pub async fn publish(&mut self, batch: &[OutboxEvent]) -> Result<(), RelayError> {
        let started = Instant::now();
        let mut pending = Vec::with_capacity(batch.len());
        for event in batch {
            let partition = partition_for(&event.envelope.aggregate_id, self.partitions);
            if self
                .published
                .get(&partition)
                .is_some_and(|&p| event.position <= p)
            {
                continue;
            }
            let payload = codec::encode(&event.envelope);
            let position = format!("{}:{}", event.position.0, event.position.1);
            let event_id = event.envelope.event_id.to_string();
            let version = event.envelope.event_version.to_string();
            let correlation = event.envelope.correlation_id.to_string();
            let headers = OwnedHeaders::new()
                .insert(Header {
                    key: "event_id",
                    value: Some(&event_id),
                })
                .insert(Header {
                    key: "event_type",
                    value: Some(&event.envelope.event_type),
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
                })
                .insert(Header {
                    key: POSITION_HEADER,
                    value: Some(&position),
                });
            let record = FutureRecord::to(&self.relay.topic)
                .partition(partition)
                .key(&event.envelope.aggregate_id)
                .payload(&payload)
                .headers(headers);
            // Enqueue in order without awaiting each one: the idempotent producer keeps
            // per-partition order across the in-flight requests.
            let delivery = self
                .producer
                .send_result(record)
                .map_err(|(e, _)| RelayError::Broker(e))?;
            pending.push(delivery);
        }
        let sent = pending.len();
        for delivery in pending {
            match delivery.await {
                Ok(Ok(_)) => {}
                Ok(Err((e, _))) => return Err(RelayError::Delivery(e.to_string())),
                Err(_) => return Err(RelayError::Delivery("producer dropped".into())),
            }
        }
        metrics::counter!("outbox_relay_published_total").increment(sent as u64);
        metrics::histogram!("outbox_relay_batch_seconds").record(started.elapsed().as_secs_f64());
        Ok(())
    }

    pub async fn save_cursor(&mut self, position: OutboxPosition) -> Result<(), RelayError> {
        sqlx::query(
            "INSERT INTO outbox_cursor (relay, tx_id, position) VALUES ($1, $2::text::xid8, $3)
             ON CONFLICT (relay) DO UPDATE SET tx_id = EXCLUDED.tx_id, position = EXCLUDED.position",
        )
        .bind(RELAY_NAME)
        .bind(position.0.to_string())
        .bind(position.1)
        .execute(&self.relay.pool)
        .await?;
        self.cursor = position;
        Ok(())
    }
}

#[derive(sqlx::FromRow)]
struct OutboxRow {
    tx_id: i64,
    position: i64,
    #[sqlx(flatten)]
    stored: StoredEvent,
}

impl OutboxRow {
    fn into_event(self) -> Result<OutboxEvent, RelayError> {
        let position = (self.tx_id as u64, self.position);
        let envelope = self
            .stored
            .into_envelope()
            .map_err(|reason| RelayError::BadRow(position, reason))?;
        Ok(OutboxEvent { position, envelope })
    }
}

async fn partition_count(producer: &FutureProducer, topic: &str) -> Result<i32, RelayError> {
    let producer = producer.clone();
    let name = topic.to_owned();
    let metadata = tokio::task::spawn_blocking(move || {
        producer
            .client()
            .fetch_metadata(Some(&name), Timeout::After(Duration::from_secs(10)))
    })
    .await
    .map_err(|e| RelayError::Delivery(format!("metadata task: {e}")))??;
    let count = metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .map(|t| t.partitions().len() as i32)
        .unwrap_or(0);
    if count == 0 {
        return Err(RelayError::Delivery(format!(
            "topic {topic} has no partitions"
        )));
    }
    Ok(count)
}

/// Reads the tail of every partition and returns the highest outbox position on it.
///
/// Reads from one before the reported high watermark up to the partition's end (EOF)
/// rather than trusting the watermark alone: Tansu 0.6 reports the base offset of the
/// last record batch plus one, which hides all but the first record of a batch.
async fn last_published(
    kafka: &ClientConfig,
    topic: &str,
    partitions: i32,
) -> Result<HashMap<i32, OutboxPosition>, RelayError> {
    let mut config = kafka.clone();
    config
        .set(
            "group.id",
            format!("outbox-relay-recovery-{}", Uuid::new_v4()),
        )
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true");
    let topic = topic.to_owned();
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = config.create()?;
        let timeout = Duration::from_secs(10);
        let mut assignment = TopicPartitionList::new();
        for partition in 0..partitions {
            let (low, high) = consumer.fetch_watermarks(&topic, partition, timeout)?;
            if high > low {
                assignment.add_partition_offset(&topic, partition, Offset::Offset(high - 1))?;
            }
        }
        let mut found: HashMap<i32, OutboxPosition> = HashMap::new();
        let mut open: std::collections::HashSet<i32> =
            assignment.elements().iter().map(|e| e.partition()).collect();
        if open.is_empty() {
            return Ok(found);
        }
        consumer.assign(&assignment)?;
        let deadline = Instant::now() + Duration::from_secs(30);
        while !open.is_empty() {
            if Instant::now() > deadline {
                return Err(RelayError::Delivery(format!(
                    "could not read the tail of partitions {open:?} of {topic}"
                )));
            }
            let message = match consumer.poll(Duration::from_millis(200)) {
                None => continue,
                Some(Err(rdkafka::error::KafkaError::PartitionEOF(p))) => {
                    open.remove(&p);
                    continue;
                }
                Some(result) => result?,
            };
            let position = message
                .headers()
                .and_then(|h| h.iter().find(|h| h.key == POSITION_HEADER))
                .and_then(|h| h.value)
                .and_then(|v| std::str::from_utf8(v).ok())
                .and_then(parse_position)
                .ok_or_else(|| {
                    RelayError::Delivery(format!(
                        "message at {topic}/{}@{} has no {POSITION_HEADER} header; is another producer writing to the topic?",
                        message.partition(),
                        message.offset()
                    ))
                })?;
            let best = found.entry(message.partition()).or_insert(position);
            *best = (*best).max(position);
        }
        Ok(found)
    })
    .await
    .map_err(|e| RelayError::Delivery(format!("recovery task: {e}")))?
}

fn parse_position(text: &str) -> Option<OutboxPosition> {
    let (tx, pos) = text.split_once(':')?;
    Some((tx.parse().ok()?, pos.parse().ok()?))
}

async fn load_cursor(pool: &PgPool) -> Result<OutboxPosition, RelayError> {
    let row: Option<(i64, i64)> =
        sqlx::query_as("SELECT tx_id::text::bigint, position FROM outbox_cursor WHERE relay = $1")
            .bind(RELAY_NAME)
            .fetch_optional(pool)
            .await?;
    Ok(row.map(|(tx, pos)| (tx as u64, pos)).unwrap_or((0, 0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_round_trip_through_the_header_text() {
        assert_eq!(parse_position("740:12"), Some((740, 12)));
        assert_eq!(parse_position("740"), None);
        assert_eq!(parse_position("x:1"), None);
    }
}
