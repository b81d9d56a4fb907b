//! The outbox: every fact and result KOS sends is first a row written in the same
//! transaction as the state change it describes (no dual write), then the [`Publisher`]
//! (service-kit's outbox publisher over [`KosOutbox`]) sends unpublished rows in id order
//! and marks them published once the broker has acknowledged them.
//!
//! Order: a transaction that writes a line's (or a product's) facts holds that row's
//! lock, so the next transaction for it starts after the previous one committed and gets
//! higher outbox ids; reading "every unpublished row by id" never sends a later fact of an
//! aggregate before an earlier one. Rows committing out of id order across aggregates
//! are harmless: the published flag, not a cursor, says what is left. A crash between
//! publish and mark sends rows again with the same event ids; consumers drop them.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use events::kos::{KosFact, KosResult, ORDER_AGGREGATE};
use events::topics::Topics;
use events::{event_id_for, Envelope, EventPayload};
use rdkafka::ClientConfig;
use service_kit::outbox::{
    Outbox, OutboxError, OutboxPublisher, OutboxSession, Outgoing, PublisherSettings, Record,
};
use service_kit::signed::Signer;
use sqlx::{PgConnection, PgPool};
use tokio::sync::Notify;
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
    let trace = service_kit::traces::traceparent_here().map(|(parent, _)| parent);
    sqlx::query("INSERT INTO outbox (topic, key, envelope, traceparent) VALUES ($1, $2, $3, $4)")
        .bind(topic.as_str())
        .bind(key)
        .bind(sqlx::types::Json(envelope))
        .bind(trace)
        .execute(conn)
        .await?;
    Ok(())
}

/// The outbox table, published by [`service_kit::outbox::OutboxPublisher`] (one leader,
/// the idempotent producer, rows marked only after the broker acknowledged them).
pub struct KosOutbox {
    pool: PgPool,
    topics: Topics,
    signer: Signer,
}

/// The publisher of KOS's outbox.
pub type Publisher = OutboxPublisher<KosOutbox>;

/// The publisher; `kafka`: the service's client settings; `signer`: KOS's key, which
/// signs every message (its consumers refuse what it did not sign).
pub fn publisher(
    pool: PgPool,
    kafka: &ClientConfig,
    topics: Topics,
    signer: Signer,
    settings: PublisherSettings,
    committed: Arc<Notify>,
) -> Publisher {
    let outbox = KosOutbox {
        pool: pool.clone(),
        topics,
        signer,
    };
    OutboxPublisher::new(outbox, pool, kafka, settings, committed)
}

#[async_trait]
impl Outbox for KosOutbox {
    type Session = KosOutboxSession;

    fn name(&self) -> &'static str {
        "kos-outbox"
    }

    async fn open(
        &self,
        _producer: &service_kit::kafka::Producer,
    ) -> Result<KosOutboxSession, OutboxError> {
        Ok(KosOutboxSession {
            pool: self.pool.clone(),
            topics: self.topics.clone(),
            signer: self.signer.clone(),
        })
    }
}

/// Nothing to recover: the published flag says what is left.
pub struct KosOutboxSession {
    pool: PgPool,
    topics: Topics,
    signer: Signer,
}

#[async_trait]
impl OutboxSession for KosOutboxSession {
    /// The outbox row id.
    type Row = i64;

    /// The oldest unpublished rows.
    async fn next_batch(&mut self) -> Result<Vec<Outgoing<i64>>, OutboxError> {
        type Row = (
            i64,
            String,
            String,
            sqlx::types::Json<Envelope>,
            Option<String>,
        );
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT id, topic, key, envelope, traceparent FROM outbox WHERE NOT published
              ORDER BY id LIMIT $1",
        )
        .bind(BATCH)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(id, topic, key, envelope, trace)| {
                let topic = match topic.as_str() {
                    "results" => self.topics.kos_results(),
                    _ => self.topics.kos_billing(),
                };
                Outgoing {
                    row: id,
                    record: Some(
                        Record::envelope(topic, key, &envelope.0)
                            .traced(trace)
                            .signed(&self.signer),
                    ),
                }
            })
            .collect())
    }

    /// Marks what the broker acknowledged, also from a batch that partly failed.
    async fn delivered(&mut self, ids: Vec<i64>, _complete: bool) -> Result<(), OutboxError> {
        if !ids.is_empty() {
            sqlx::query("UPDATE outbox SET published = true WHERE id = ANY($1)")
                .bind(&ids)
                .execute(&self.pool)
                .await?;
        }
        Ok(())
    }
}

/// Unpublished rows (readiness detail and tests).
pub async fn backlog(pool: &PgPool) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT count(*) FROM outbox WHERE NOT published")
        .fetch_one(pool)
        .await
}
