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
//!
//! Leadership, the producer and the publishing loop are service-kit's
//! [`OutboxPublisher`]; this module is what the event store adds: its read, its cursor
//! and its recovery.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use events::stored::StoredEvent;
use events::topics::partition_for;
use events::Envelope;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Headers;
use rdkafka::producer::Producer;
use rdkafka::util::Timeout;
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use service_kit::kafka::{self, BrokerContext};
use service_kit::outbox::{
    Outbox, OutboxError, OutboxPublisher, OutboxSession, Outgoing, PublisherSettings, Record,
};
use sqlx::PgPool;
use tokio::sync::Notify;
use uuid::Uuid;

use crate::configuration::RelayConfig;
use crate::domain::line::Line;

/// Header carrying the outbox position (`tx_id:position`) of a published event.
pub const POSITION_HEADER: &str = "outbox-position";
/// The relay's cursor row, and (with the schema) its advisory lock.
const RELAY_NAME: &str = "product-change";
/// The advisory lock's name, unchanged since the relay had a loop of its own, so
/// versions side by side in a rolling deploy never both lead.
const LOCK_NAME: &str = "outbox-relay";
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

/// The event store as an outbox, published to `phonebill.product-change` by
/// [`service_kit::outbox::OutboxPublisher`].
pub struct EventStoreOutbox {
    pool: PgPool,
    kafka: ClientConfig,
    topic: String,
    batch_size: i64,
}

/// The relay: the event store's outbox and its publisher.
pub type Relay = OutboxPublisher<EventStoreOutbox>;

/// One row of the outbox, ready to publish.
#[derive(Debug, Clone)]
pub struct OutboxEvent {
    pub position: OutboxPosition,
    pub envelope: Envelope,
    /// The W3C `traceparent` the event was committed under, if traced.
    pub trace: Option<String>,
}

/// The relay for `topic`; `kafka`: the service's client settings.
pub fn relay(
    pool: PgPool,
    kafka: ClientConfig,
    topic: String,
    config: &RelayConfig,
    committed: Arc<Notify>,
) -> Relay {
    let settings = PublisherSettings {
        poll: config.poll_interval(),
        delivery_timeout_ms: config.delivery_timeout_ms,
    };
    let outbox = EventStoreOutbox {
        pool: pool.clone(),
        kafka: kafka.clone(),
        topic,
        batch_size: config.batch_size,
    };
    OutboxPublisher::new(outbox, pool, &kafka, settings, committed)
}

#[async_trait]
impl Outbox for EventStoreOutbox {
    type Session = RelaySession;

    fn name(&self) -> &'static str {
        LOCK_NAME
    }

    /// Recovers what was already published: the durable cursor, and per partition the
    /// last position the broker holds (the cursor may lag it after a crash).
    async fn open(&self, producer: &kafka::Producer) -> Result<RelaySession, OutboxError> {
        let partitions = partition_count(producer, &self.topic).await?;
        let published = last_published(&self.kafka, &self.topic, partitions).await?;
        let cursor = load_cursor(&self.pool).await?;
        tracing::info!(topic = %self.topic, partitions, ?cursor, "outbox relay recovered");
        Ok(RelaySession {
            pool: self.pool.clone(),
            topic: self.topic.clone(),
            batch_size: self.batch_size,
            partitions,
            published,
            cursor,
            saved: cursor,
            last_save: Instant::now(),
            pending: metrics::gauge!("phonebill_outbox_pending"),
        })
    }
}

/// A leading relay's state: its cursor (saved now and then) and what it found on the
/// broker at the start.
pub struct RelaySession {
    pool: PgPool,
    topic: String,
    batch_size: i64,
    partitions: i32,
    /// Per partition, the last outbox position found on the broker at session start.
    published: HashMap<i32, OutboxPosition>,
    /// Past the last acknowledged row.
    cursor: OutboxPosition,
    /// What the outbox_cursor row holds.
    saved: OutboxPosition,
    last_save: Instant,
    /// The backlog as the last read saw it (at most a batch): what the HPA scales on.
    pending: metrics::Gauge,
}

#[async_trait]
impl OutboxSession for RelaySession {
    type Row = OutboxPosition;

    /// The next committed events past the cursor that no open transaction can precede;
    /// rows the broker already holds (found at session start) are not sent again.
    async fn next_batch(&mut self) -> Result<Vec<Outgoing<OutboxPosition>>, OutboxError> {
        let rows: Vec<OutboxRow> = sqlx::query_as(NEXT_BATCH)
            .bind(self.cursor.0.to_string())
            .bind(self.cursor.1)
            .bind(self.batch_size)
            .bind(<Line as cqrs_es::Aggregate>::TYPE)
            .fetch_all(&self.pool)
            .await?;
        self.pending.set(rows.len() as f64);
        rows.into_iter()
            .map(|row| {
                let event = row.into_event()?;
                let partition = partition_for(&event.envelope.aggregate_id, self.partitions);
                let on_broker = self
                    .published
                    .get(&partition)
                    .is_some_and(|&p| event.position <= p);
                let record = (!on_broker).then(|| {
                    let (tx, pos) = event.position;
                    Record::envelope(&self.topic, &event.envelope.aggregate_id, &event.envelope)
                        .partition(partition)
                        .header(POSITION_HEADER, &format!("{tx}:{pos}"))
                        .traced(event.trace.clone())
                });
                Ok(Outgoing {
                    row: event.position,
                    record,
                })
            })
            .collect()
    }

    /// Moves the cursor past a wholly acknowledged batch (a partial one ends the session:
    /// the next one finds on the broker what did get there).
    async fn delivered(
        &mut self,
        rows: Vec<OutboxPosition>,
        complete: bool,
    ) -> Result<(), OutboxError> {
        if complete {
            if let Some(last) = rows.last() {
                self.cursor = *last;
            }
        }
        Ok(())
    }

    /// The durable cursor may lag: after a crash the partition tails tell what was
    /// already published, so a stale cursor costs a re-read, never a duplicate.
    async fn checkpoint(&mut self, idle: bool) -> Result<(), OutboxError> {
        if self.cursor != self.saved && (idle || self.last_save.elapsed() >= CURSOR_SAVE_INTERVAL) {
            save_cursor(&self.pool, self.cursor).await?;
            self.saved = self.cursor;
            self.last_save = Instant::now();
        }
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
    fn into_event(self) -> Result<OutboxEvent, OutboxError> {
        let position = (self.tx_id as u64, self.position);
        let trace = self.stored.metadata[service_kit::traces::TRACEPARENT]
            .as_str()
            .map(str::to_owned);
        let envelope = self.stored.into_envelope().map_err(|reason| {
            OutboxError::BadRow(format!("{position:?} cannot be published: {reason}"))
        })?;
        Ok(OutboxEvent {
            position,
            envelope,
            trace,
        })
    }
}

async fn partition_count(producer: &kafka::Producer, topic: &str) -> Result<i32, OutboxError> {
    let producer = producer.clone();
    let name = topic.to_owned();
    let metadata = tokio::task::spawn_blocking(move || {
        producer
            .client()
            .fetch_metadata(Some(&name), Timeout::After(Duration::from_secs(10)))
    })
    .await
    .map_err(|e| OutboxError::Delivery(format!("metadata task: {e}")))??;
    let count = metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .map(|t| t.partitions().len() as i32)
        .unwrap_or(0);
    if count == 0 {
        return Err(OutboxError::Delivery(format!(
            "topic {topic} has no partitions"
        )));
    }
    Ok(count)
}

/// Reads the last message of every partition (at its high watermark minus one) and
/// returns the outbox position it carries.
async fn last_published(
    kafka: &ClientConfig,
    topic: &str,
    partitions: i32,
) -> Result<HashMap<i32, OutboxPosition>, OutboxError> {
    let mut config = kafka.clone();
    config
        .set(
            "group.id",
            format!("outbox-relay-recovery-{}", Uuid::new_v4()),
        )
        .set("enable.auto.commit", "false");
    let topic = topic.to_owned();
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer<BrokerContext> = config.create_with_context(BrokerContext)?;
        // Watermarks are asked for before any poll, which is what serves token requests.
        kafka::identity::prime(consumer.client().native_client(), &config)
            .map_err(OutboxError::Delivery)?;
        let timeout = Duration::from_secs(10);
        let mut assignment = TopicPartitionList::new();
        // Per partition, the offset of its last message.
        let mut open: HashMap<i32, i64> = HashMap::new();
        for partition in 0..partitions {
            let (low, high) = consumer.fetch_watermarks(&topic, partition, timeout)?;
            if high > low {
                assignment.add_partition_offset(&topic, partition, Offset::Offset(high - 1))?;
                open.insert(partition, high - 1);
            }
        }
        let mut found: HashMap<i32, OutboxPosition> = HashMap::new();
        if open.is_empty() {
            return Ok(found);
        }
        consumer.assign(&assignment)?;
        let deadline = Instant::now() + Duration::from_secs(30);
        while !open.is_empty() {
            if Instant::now() > deadline {
                return Err(OutboxError::Delivery(format!(
                    "could not read the last message of partitions {:?} of {topic}",
                    open.keys()
                )));
            }
            let Some(message) = consumer.poll(Duration::from_millis(200)) else {
                continue;
            };
            let message = message?;
            if open.get(&message.partition()) != Some(&message.offset()) {
                continue;
            }
            let position = message
                .headers()
                .and_then(|h| h.iter().find(|h| h.key == POSITION_HEADER))
                .and_then(|h| h.value)
                .and_then(|v| std::str::from_utf8(v).ok())
                .and_then(parse_position)
                .ok_or_else(|| {
                    OutboxError::Delivery(format!(
                        "message at {topic}/{}@{} has no {POSITION_HEADER} header; is another producer writing to the topic?",
                        message.partition(),
                        message.offset()
                    ))
                })?;
            open.remove(&message.partition());
            found.insert(message.partition(), position);
        }
        Ok(found)
    })
    .await
    .map_err(|e| OutboxError::Delivery(format!("recovery task: {e}")))?
}

fn parse_position(text: &str) -> Option<OutboxPosition> {
    let (tx, pos) = text.split_once(':')?;
    Some((tx.parse().ok()?, pos.parse().ok()?))
}

async fn save_cursor(pool: &PgPool, position: OutboxPosition) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO outbox_cursor (relay, tx_id, position) VALUES ($1, $2::text::xid8, $3)
         ON CONFLICT (relay) DO UPDATE SET tx_id = EXCLUDED.tx_id, position = EXCLUDED.position",
    )
    .bind(RELAY_NAME)
    .bind(position.0.to_string())
    .bind(position.1)
    .execute(pool)
    .await?;
    Ok(())
}

async fn load_cursor(pool: &PgPool) -> Result<OutboxPosition, OutboxError> {
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
