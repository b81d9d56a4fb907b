//! The outbox publisher: sends rows a service committed beside its state changes (no dual
//! write) to the broker, one instance at a time.
//!
//! What every outbox here shares lives in [`OutboxPublisher`]; what differs (which rows
//! are due, what "published" means, how to recover after a crash) is an [`Outbox`]:
//!
//! - **One leader.** A session holds a PostgreSQL session-level advisory lock on a
//!   connection of its own; the lock ends when that connection closes, so a crashed
//!   leader's lock goes with it and a standby takes over within [`STANDBY_POLL`].
//! - **One producer setting.** Idempotent, `acks=all`, Kafka's murmur2 partitioner (the
//!   Java clients' and Event Hubs', so every client places a key alike), a short linger
//!   so concurrent commits share a request. Rows are enqueued in order without awaiting
//!   each; the idempotent producer keeps per-partition order across in-flight requests.
//! - **Acknowledged, then recorded.** [`OutboxSession::delivered`] hears of rows only
//!   after the broker acknowledged them, so a crash between the two re-sends (consumers
//!   drop repeats by event id, or the outbox skips what it finds on the broker), never
//!   loses.
//! - **Outages** of the broker or the database end the session; it starts over after a
//!   backoff, from what the outbox recorded.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use backon::{ExponentialBuilder, Retryable};
use events::{codec, Envelope};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::FutureRecord;

use crate::kafka::{BrokerContext, Producer};
use rdkafka::ClientConfig;
use sqlx::{PgConnection, PgPool};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::kafka::STANDBY_POLL;

/// How long a publisher waits after a commit's wake-up so that concurrent commits share
/// a batch.
const LINGER: Duration = Duration::from_millis(2);

#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    #[error("another instance publishes this outbox")]
    NotLeader,
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("broker: {0}")]
    Broker(#[from] rdkafka::error::KafkaError),
    #[error("delivery: {0}")]
    Delivery(String),
    /// A row the outbox cannot turn into a message (it stays unpublished).
    #[error("outbox row {0}")]
    BadRow(String),
}

/// One message to send.
#[derive(Debug, Clone)]
pub struct Record {
    pub topic: String,
    /// `None`: the producer's partitioner places it by key.
    pub partition: Option<i32>,
    pub key: String,
    pub payload: Vec<u8>,
    pub headers: OwnedHeaders,
    /// The W3C `traceparent` the row was stored under: the publish span continues that
    /// trace, and the message carries the publish span's context (or this one, when
    /// traces are off here) in its `traceparent` header.
    pub trace: Option<String>,
}

impl Record {
    /// An envelope as every phonebill topic carries it: the JSON envelope keyed by its
    /// aggregate (or the given key), with its ids, type and version in headers too, so
    /// consumers can route and deduplicate without parsing the body.
    pub fn envelope(topic: impl Into<String>, key: impl Into<String>, envelope: &Envelope) -> Self {
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: "event_id",
                value: Some(&envelope.event_id.to_string()),
            })
            .insert(Header {
                key: "event_type",
                value: Some(&envelope.event_type),
            })
            .insert(Header {
                key: "event_version",
                value: Some(&envelope.event_version.to_string()),
            })
            .insert(Header {
                key: "correlation_id",
                value: Some(&envelope.correlation_id.to_string()),
            })
            .insert(Header {
                key: "content-type",
                value: Some("application/json"),
            });
        Self {
            topic: topic.into(),
            partition: None,
            key: key.into(),
            payload: codec::encode(envelope),
            headers,
            trace: None,
        }
    }

    /// The trace context the row was stored under ([`Record::trace`]).
    pub fn traced(mut self, traceparent: Option<String>) -> Self {
        self.trace = traceparent;
        self
    }

    pub fn partition(mut self, partition: i32) -> Self {
        self.partition = Some(partition);
        self
    }

    /// Signed by `signer` ([`crate::signed`]): its key id and signature in headers.
    pub fn signed(self, signer: &crate::signed::Signer) -> Self {
        let signature = signer.sign(self.key.as_bytes(), &self.payload);
        let kid = signer.kid().to_owned();
        self.header(crate::signed::SIGNER, &kid)
            .header(crate::signed::SIGNATURE, &signature)
    }

    pub fn header(mut self, key: &str, value: &str) -> Self {
        self.headers = self.headers.insert(Header {
            key,
            value: Some(value),
        });
        self
    }
}

/// A row due for publishing and its message; `record: None` when the outbox knows the
/// broker already holds it (it counts as delivered without being sent again).
pub struct Outgoing<R> {
    pub row: R,
    pub record: Option<Record>,
}

/// One outbox: its name and how a new leader's session starts.
#[async_trait]
pub trait Outbox: Send + Sync + 'static {
    type Session: OutboxSession;

    /// Unique within the service's schema: the advisory lock's key and the metrics label.
    fn name(&self) -> &'static str;

    /// Starts a session once the lead is taken and the producer exists (recovery reads
    /// what the broker already holds, if the outbox needs it).
    async fn open(&self, producer: &Producer) -> Result<Self::Session, OutboxError>;
}

/// What a leading publisher asks of its outbox, round after round.
#[async_trait]
pub trait OutboxSession: Send {
    type Row: Send + 'static;

    /// The next rows due, in the order they must reach the broker; empty when none.
    async fn next_batch(&mut self) -> Result<Vec<Outgoing<Self::Row>>, OutboxError>;

    /// The rows the broker acknowledged, in batch order; `complete` is false when some
    /// of the batch failed (the session then ends and starts over).
    async fn delivered(&mut self, rows: Vec<Self::Row>, complete: bool) -> Result<(), OutboxError>;

    /// After each round; `idle` when nothing was due or the publisher stops (a place to
    /// save progress kept in memory between rounds).
    async fn checkpoint(&mut self, _idle: bool) -> Result<(), OutboxError> {
        Ok(())
    }
}

/// How the publisher waits and how long a message may take.
#[derive(Debug, Clone, Copy)]
pub struct PublisherSettings {
    /// How often an idle leader looks for rows committed by other instances (its own
    /// commits wake it at once).
    pub poll: Duration,
    /// `message.timeout.ms`: the bound on one delivery, retries included.
    pub delivery_timeout_ms: u64,
}

/// Publishes one [`Outbox`] until stopped; see the module docs.
pub struct OutboxPublisher<O> {
    outbox: Arc<O>,
    pool: PgPool,
    producer: ClientConfig,
    settings: PublisherSettings,
    committed: Arc<Notify>,
}

impl<O> Clone for OutboxPublisher<O> {
    fn clone(&self) -> Self {
        Self {
            outbox: self.outbox.clone(),
            pool: self.pool.clone(),
            producer: self.producer.clone(),
            settings: self.settings,
            committed: self.committed.clone(),
        }
    }
}

/// A publisher holding the lead and a producer. Dropping it gives up the lead; progress
/// not yet checkpointed is then recovered by the next leader.
pub struct Leading<S> {
    /// The connection holding the advisory lock; the lock goes with it.
    _lock: PgConnection,
    producer: Producer,
    pub session: S,
    name: &'static str,
}

impl<O: Outbox> OutboxPublisher<O> {
    /// `kafka`: the service's client settings (`kafka::client_config`); `committed`: the
    /// notification the service's writers raise after committing outbox rows.
    pub fn new(
        outbox: O,
        pool: PgPool,
        kafka: &ClientConfig,
        settings: PublisherSettings,
        committed: Arc<Notify>,
    ) -> Self {
        let mut producer = kafka.clone();
        producer
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "2")
            .set("partitioner", "murmur2_random")
            .set(
                "message.timeout.ms",
                settings.delivery_timeout_ms.to_string(),
            );
        Self {
            outbox: Arc::new(outbox),
            pool,
            producer,
            settings,
            committed,
        }
    }

    /// Publishes until `shutdown`, starting over after any failure; a standby retries the
    /// lead every [`STANDBY_POLL`].
    pub async fn run(self, shutdown: CancellationToken) {
        let name = self.outbox.name();
        let backoff = ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(100))
            .with_max_delay(Duration::from_secs(5))
            .without_max_times()
            .with_jitter();
        let session = || async {
            let mut leading = self.lead().await?;
            tracing::info!(outbox = name, "outbox publisher leads");
            leading
                .run(&shutdown, &self.committed, self.settings.poll)
                .await
        };
        let _ = session
            .retry(backoff)
            .when(|_| !shutdown.is_cancelled())
            .adjust(|e, wait| match e {
                OutboxError::NotLeader => Some(STANDBY_POLL),
                _ => wait,
            })
            .notify(|e, wait| {
                if !matches!(e, OutboxError::NotLeader) {
                    metrics::counter!("phonebill_outbox_failures_total", "outbox" => name)
                        .increment(1);
                    tracing::warn!(outbox = name, error = %e, retry_in = ?wait, "outbox session ended");
                }
            })
            .await;
        tracing::info!(outbox = name, "outbox publisher stopped");
    }

    /// Takes the lead (or fails with [`OutboxError::NotLeader`]), creates the producer
    /// and opens a session.
    pub async fn lead(&self) -> Result<Leading<O::Session>, OutboxError> {
        // A connection of its own, never returned to the pool: the session-level lock
        // must end with the session, and closing the connection is what ends it.
        let mut lock = self.pool.acquire().await?.detach();
        let leader: bool = sqlx::query_scalar(
            "SELECT pg_try_advisory_lock(hashtext(current_schema() || '.' || $1))",
        )
        .bind(self.outbox.name())
        .fetch_one(&mut lock)
        .await?;
        if !leader {
            return Err(OutboxError::NotLeader);
        }
        let producer: Producer = self.producer.create_with_context(BrokerContext)?;
        let session = self.outbox.open(&producer).await?;
        Ok(Leading {
            _lock: lock,
            producer,
            session,
            name: self.outbox.name(),
        })
    }
}

impl<S: OutboxSession> Leading<S> {
    async fn run(
        &mut self,
        shutdown: &CancellationToken,
        committed: &Notify,
        poll: Duration,
    ) -> Result<(), OutboxError> {
        loop {
            let sent = self.publish_batch().await?;
            let idle = sent == 0 || shutdown.is_cancelled();
            self.session.checkpoint(idle).await?;
            if shutdown.is_cancelled() {
                return Ok(());
            }
            if sent > 0 {
                continue;
            }
            tokio::select! {
                _ = shutdown.cancelled() => {}
                _ = committed.notified() => tokio::time::sleep(LINGER).await,
                _ = tokio::time::sleep(poll) => {}
            }
        }
    }

    /// Sends the next batch, waits for every acknowledgement and tells the session what
    /// was delivered; returns the rows the batch held (0: nothing was due).
    pub async fn publish_batch(&mut self) -> Result<usize, OutboxError> {
        let batch = self.session.next_batch().await?;
        if batch.is_empty() {
            return Ok(0);
        }
        let rows = batch.len();
        let started = Instant::now();
        let mut pending = Vec::with_capacity(rows);
        for Outgoing { row, record } in batch {
            let delivery = match &record {
                None => None,
                Some(r) => {
                    let mut out = FutureRecord::to(&r.topic)
                        .key(&r.key)
                        .payload(&r.payload)
                        .headers(with_trace(r, self.name));
                    if let Some(p) = r.partition {
                        out = out.partition(p);
                    }
                    Some(
                        self.producer
                            .send_result(out)
                            .map_err(|(e, _)| OutboxError::Broker(e))?,
                    )
                }
            };
            pending.push((row, delivery));
        }
        let mut delivered = Vec::with_capacity(rows);
        let mut failure = None;
        for (row, delivery) in pending {
            let outcome = match delivery {
                None => Ok(()),
                Some(d) => match d.await {
                    Ok(Ok(_)) => Ok(()),
                    Ok(Err((e, _))) => Err(OutboxError::Delivery(e.to_string())),
                    Err(_) => Err(OutboxError::Delivery("producer dropped".into())),
                },
            };
            match outcome {
                Ok(()) => delivered.push(row),
                Err(e) => {
                    failure.get_or_insert(e);
                }
            }
        }
        let sent = delivered.len();
        self.session.delivered(delivered, failure.is_none()).await?;
        if let Some(e) = failure {
            return Err(e);
        }
        metrics::counter!("phonebill_outbox_published_total", "outbox" => self.name)
            .increment(sent as u64);
        metrics::histogram!("phonebill_outbox_batch_seconds", "outbox" => self.name)
            .record(started.elapsed().as_secs_f64());
        Ok(rows)
    }
}

/// `record`'s headers with its trace context: a producer span continuing the trace the
/// row was stored under (kept short: it marks the hand-over to the broker), whose context
/// the message carries on.
fn with_trace(record: &Record, outbox: &str) -> OwnedHeaders {
    let Some(stored) = record.trace.as_deref() else {
        return record.headers.clone();
    };
    let span = tracing::info_span!("publish", otel.name = %format_args!("{} publish", record.topic),
        otel.kind = "producer", messaging.system = "kafka",
        messaging.destination.name = %record.topic, outbox);
    crate::traces::continue_trace(&span, Some(stored), None);
    let (parent, state) = match crate::traces::traceparent(&span) {
        Some((parent, state)) => (parent, state),
        None => (stored.to_owned(), None),
    };
    let headers = record.headers.clone().insert(Header {
        key: crate::traces::TRACEPARENT,
        value: Some(&parent),
    });
    match state {
        Some(state) => headers.insert(Header {
            key: crate::traces::TRACESTATE,
            value: Some(&state),
        }),
        None => headers,
    }
}
