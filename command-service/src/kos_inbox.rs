//! What KOS tells the command side, read from the broker (consumer group
//! `command-service`):
//!
//! - `kos.product-change-results`: KOS's answer to a change, recorded on the line
//!   aggregate (COMPLETED / FAILED, or kept for audit after a timeout).
//! - `kos.billing`: catalog and line facts, applied to the pre-checks' reference tables.
//!
//! Messages are handled one at a time in partition order, and an offset is stored only
//! after its effect is committed, so a crash redelivers and never skips; both effects are
//! idempotent (the aggregate remembers answers, the reference tables remember the last
//! fact sequence). A message that cannot be decoded, or an answer to a request the line
//! never sent, is copied to the dead-letter topic and skipped. Database trouble is waited
//! out with backoff, never dead-lettered.

use std::sync::Arc;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use events::codec::{decode, DecodeError};
use events::dead_letter;
use events::kos::{KosFact, KosResult};
use events::topics::Topics;
use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::message::{BorrowedMessage, Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Message};
use service_kit::consumer::{GroupConsumer, GroupContext};
use tokio_util::sync::CancellationToken;

use crate::error::AppError;
use crate::product_change::{ProductChanges, Trace};
use crate::reference::ReferenceData;

pub const CONSUMER_GROUP: &str = "command-service";

pub struct KosInbox {
    consumer: Arc<GroupConsumer>,
    dead_letters: FutureProducer,
    topics: Topics,
    changes: ProductChanges,
    reference: ReferenceData,
}

/// What became of one message.
enum Handled {
    Applied,
    /// Not for us or already applied.
    Skipped,
    /// Could not be used: goes to the dead-letter topic with this reason.
    Dead(String),
}

impl KosInbox {
    /// `member`: the group member's settings (`service_kit::kafka::group_member`);
    /// `kafka`: the client settings the dead-letter producer starts from.
    pub fn new(
        kafka: ClientConfig,
        member: ClientConfig,
        topics: Topics,
        changes: ProductChanges,
        reference: ReferenceData,
    ) -> Result<Self, rdkafka::error::KafkaError> {
        let group = member.get("group.id").unwrap_or_default().to_owned();
        let consumer: GroupConsumer = member
            .clone()
            .set("enable.auto.commit", "true")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("statistics.interval.ms", "5000")
            .create_with_context(GroupContext::new(group.clone()))?;
        consumer.subscribe(&[&topics.kos_results(), &topics.kos_billing()])?;
        let dead_letters: FutureProducer = kafka
            .clone()
            .set("enable.idempotence", "true")
            .set("message.timeout.ms", "30000")
            .create()?;
        Ok(Self {
            consumer: Arc::new(consumer),
            dead_letters,
            topics,
            changes,
            reference,
        })
    }

    /// Handles messages until `shutdown`; the message in hand is finished first and the
    /// stored offsets are committed before returning.
    pub async fn run(self, shutdown: CancellationToken) {
        loop {
            let message = tokio::select! {
                _ = shutdown.cancelled() => break,
                m = self.consumer.recv() => m,
            };
            let message = match message {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!(error = %e, "KOS inbox: broker error");
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(Duration::from_millis(500)) => continue,
                    }
                }
            };
            if !self.handle(&message, &shutdown).await {
                break;
            }
            if let Err(e) = self.consumer.store_offset_from_message(&message) {
                tracing::warn!(error = %e, "KOS inbox: storing offset");
            }
        }
        if let Err(e) = self.consumer.commit_consumer_state(CommitMode::Sync) {
            tracing::debug!(error = %e, "KOS inbox: final commit");
        }
    }

    /// Returns false when shutdown interrupted the message (its offset is not stored).
    async fn handle(&self, message: &BorrowedMessage<'_>, shutdown: &CancellationToken) -> bool {
        let bytes = message.payload().unwrap_or_default();
        let attempt = || self.apply(message.topic(), bytes);
        let outcome = attempt
            .retry(forever())
            .when(|_| !shutdown.is_cancelled())
            .notify(|e, wait| tracing::warn!(error = %e, ?wait, "KOS inbox: retrying"))
            .await;
        let outcome = match outcome {
            Ok(outcome) => outcome,
            Err(_) => return false,
        };
        match outcome {
            Handled::Applied => {
                metrics::counter!("phonebill_kos_messages_total", "topic" => message.topic().to_owned(), "outcome" => "applied").increment(1);
            }
            Handled::Skipped => {
                metrics::counter!("phonebill_kos_messages_total", "topic" => message.topic().to_owned(), "outcome" => "skipped").increment(1);
            }
            Handled::Dead(reason) => {
                tracing::warn!(topic = message.topic(), partition = message.partition(), offset = message.offset(), %reason, "KOS inbox: dead-lettering");
                let send = || self.dead_letter(message, &reason);
                if send
                    .retry(forever())
                    .when(|_| !shutdown.is_cancelled())
                    .await
                    .is_err()
                {
                    return false;
                }
                metrics::counter!("phonebill_dead_letters_total", "consumer" => CONSUMER_GROUP, "topic" => message.topic().to_owned()).increment(1);
            }
        }
        true
    }

    async fn apply(&self, topic: &str, bytes: &[u8]) -> Result<Handled, AppError> {
        if topic == self.topics.kos_results() {
            let (envelope, result) = match decode::<KosResult>(bytes) {
                Ok(decoded) => decoded,
                Err(e) => return Ok(dead(e)),
            };
            let trace = Trace {
                correlation_id: envelope.correlation_id,
                causation_id: envelope.event_id,
            };
            match self.changes.record_kos_result(result, trace).await {
                Ok(()) => Ok(Handled::Applied),
                Err(AppError::UnknownRequest(id)) => Ok(Handled::Dead(format!(
                    "KOS answered request {id}, which was never sent to KOS"
                ))),
                Err(e) => Err(e),
            }
        } else if topic == self.topics.kos_billing() {
            let (envelope, fact) = match decode::<KosFact>(bytes) {
                Ok(decoded) => decoded,
                Err(e) => return Ok(dead(e)),
            };
            let applied = self.reference.apply(envelope.sequence, &fact).await?;
            Ok(if applied {
                Handled::Applied
            } else {
                Handled::Skipped
            })
        } else {
            Ok(Handled::Skipped)
        }
    }

    async fn dead_letter(
        &self,
        message: &BorrowedMessage<'_>,
        reason: &str,
    ) -> Result<(), rdkafka::error::KafkaError> {
        let partition = message.partition().to_string();
        let offset = message.offset().to_string();
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: dead_letter::REASON,
                value: Some(reason),
            })
            .insert(Header {
                key: dead_letter::SOURCE_TOPIC,
                value: Some(message.topic()),
            })
            .insert(Header {
                key: dead_letter::SOURCE_PARTITION,
                value: Some(&partition),
            })
            .insert(Header {
                key: dead_letter::SOURCE_OFFSET,
                value: Some(&offset),
            })
            .insert(Header {
                key: dead_letter::CONSUMER,
                value: Some(CONSUMER_GROUP),
            });
        let topic = self.topics.dead_letter();
        let mut record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(&topic)
            .payload(message.payload().unwrap_or_default())
            .headers(headers);
        if let Some(key) = message.key() {
            record = record.key(key);
        }
        self.dead_letters
            .send(record, Duration::from_secs(30))
            .await
            .map(|_| ())
            .map_err(|(e, _)| e)
    }
}

fn dead(e: DecodeError) -> Handled {
    Handled::Dead(e.to_string())
}

/// Transient failures are retried until they pass or the service stops.
fn forever() -> ExponentialBuilder {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(50))
        .with_max_delay(Duration::from_secs(5))
        .with_max_times(usize::MAX)
        .with_jitter()
}
