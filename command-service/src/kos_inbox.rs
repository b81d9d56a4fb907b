//! What KOS tells the command side, read from the broker (consumer group
//! `command-service`):
//!
//! - `kos.product-change-results`: KOS's answer to a change, recorded on the line
//!   aggregate (COMPLETED / FAILED, or kept for audit after a timeout).
//! - `kos.billing`: catalog and line facts, applied to the pre-checks' reference tables.
//!
//! The group member is `service_kit::group_worker`: each partition's messages are handled
//! one at a time in offset order (partitions side by side), and an offset is stored only
//! after its effect is committed, so a crash redelivers and never skips; both effects are
//! idempotent (the aggregate remembers answers, the reference tables remember the last
//! fact sequence). A message KOS did not sign ([`service_kit::signed`]: unsigned, or
//! signed by a key not KOS's), one that cannot be decoded, or an answer to a request the
//! line never sent, is judged dead: the worker copies it to the dead-letter topic with
//! the reason and goes on; nothing of it is applied.
//! Database trouble comes back as an error, which the worker waits out with backoff; it is
//! never dead-lettered. This module holds the domain side only ([`KosMessages`]).

use std::sync::Arc;

use async_trait::async_trait;
use events::codec::{decode, DecodeError};
use events::kos::{KosFact, KosResult};
use events::topics::Topics;
use rdkafka::message::OwnedMessage;
use rdkafka::{ClientConfig, Message};
use service_kit::group_worker::{GroupWorker, Handler, Ordering, Run, Settings, Verdict};
use service_kit::signed::Verifier;
use tokio_util::sync::CancellationToken;

use crate::error::AppError;
use crate::product_change::{ProductChanges, Trace};
use crate::reference::ReferenceData;

/// The consumer's name in dead letters and metrics.
pub const CONSUMER_GROUP: &str = "command-service";

/// The group member ([`GroupWorker`]) and what it hands messages to ([`KosMessages`]).
pub struct KosInbox {
    worker: GroupWorker,
    messages: Arc<KosMessages>,
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
        kos: Verifier,
    ) -> Result<Self, rdkafka::error::KafkaError> {
        let settings = Settings::new(
            CONSUMER_GROUP,
            vec![topics.kos_results(), topics.kos_billing()],
            topics.dead_letter(),
            Ordering::partition(Run::ONE),
        );
        Ok(Self {
            worker: GroupWorker::new(&member, &kafka, settings)?,
            messages: Arc::new(KosMessages {
                topics,
                changes,
                reference,
                kos,
            }),
        })
    }

    /// Handles messages until `shutdown`; the message in hand is finished first and the
    /// stored offsets are committed before returning.
    pub async fn run(self, shutdown: CancellationToken) {
        self.worker.run(self.messages, shutdown).await;
    }
}

/// KOS's results and facts, one message at a time.
pub struct KosMessages {
    topics: Topics,
    changes: ProductChanges,
    reference: ReferenceData,
    kos: Verifier,
}

/// What became of one message.
enum Handled {
    Applied,
    /// Not for us or already applied.
    Skipped,
    /// Could not be used: goes to the dead-letter topic.
    Dead(Verdict),
}

#[async_trait]
impl Handler for KosMessages {
    async fn handle(&self, messages: &[OwnedMessage]) -> anyhow::Result<Vec<Verdict>> {
        let mut verdicts = Vec::with_capacity(messages.len());
        for message in messages {
            let topic = message.topic();
            if let Err(reason) = self.kos.check_message(message) {
                tracing::warn!(topic, %reason, "a message on KOS's topic that KOS did not sign");
                verdicts.push(Verdict::dead("unsigned", reason));
                continue;
            }
            let outcome = match self
                .apply(topic, message.payload().unwrap_or_default())
                .await?
            {
                Handled::Applied => "applied",
                Handled::Skipped => "skipped",
                Handled::Dead(verdict) => {
                    verdicts.push(verdict);
                    continue;
                }
            };
            metrics::counter!("phonebill_kos_messages_total", "topic" => topic.to_owned(), "outcome" => outcome).increment(1);
            verdicts.push(Verdict::Done);
        }
        Ok(verdicts)
    }
}

impl KosMessages {
    async fn apply(&self, topic: &str, bytes: &[u8]) -> Result<Handled, AppError> {
        if topic == self.topics.kos_results() {
            let (envelope, result) = match decode::<KosResult>(bytes) {
                Ok(decoded) => decoded,
                Err(e) => return Ok(dead(e)),
            };
            let trace = Trace::here(envelope.correlation_id, envelope.event_id);
            match self.changes.record_kos_result(result, trace).await {
                Ok(()) => Ok(Handled::Applied),
                Err(AppError::UnknownRequest(id)) => Ok(Handled::Dead(Verdict::dead(
                    "unknown_request",
                    format!("KOS answered request {id}, which was never sent to KOS"),
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
}

fn dead(e: DecodeError) -> Handled {
    Handled::Dead(Verdict::dead(e.kind(), e.to_string()))
}
