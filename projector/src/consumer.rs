//! The projector's consumer: the group member is `service_kit::group_worker`, ordered by
//! partition (each line's order holds, partitions go on side by side), each offset stored
//! only after its effect is stored (PostgreSQL and the Redis views), transient failures
//! retried with backoff until they pass (holding up that partition only), messages that
//! cannot be decoded or fail their schema copied to the dead-letter topic. This module
//! holds the projector's side only: [`Projection`] hands the worker's runs to the
//! [`Processor`], and [`settings`] says how the runs are cut.

use std::time::Duration;

use async_trait::async_trait;
use events::topics::Topics;
use rdkafka::message::{Message, OwnedMessage};
use service_kit::group_worker::{Handler, Ordering, Run, Settings, Verdict};

use crate::processor::{Incoming, Outcome, Processor};

/// Bill-inquiry messages queued for a partition recorded in one statement, at most...
const INQUIRY_BATCH: usize = 500;
/// ...and their bytes: a message is one inquiry or a batch of up to 32 (query-service).
const INQUIRY_BATCH_BYTES: usize = 256 << 10;

/// Events queued for a partition applied one by one, then their views refreshed once,
/// at most this many (a catching-up projector refreshes a line once per run, not per event).
const EVENT_RUN: usize = 64;

/// The longest wait between attempts of a failing run (Redis or PostgreSQL away): short,
/// so the views catch up soon after they return.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// The worker's settings for a namespace's consumer `group` (also the consumer's name in
/// dead letters and metrics).
pub fn settings(topics: &Topics, group: &str) -> Settings {
    let ordering = Ordering::partition(Run::up_to(EVENT_RUN)).with_topic_run(
        topics.bill_inquiries(),
        Run::up_to(INQUIRY_BATCH).bytes(INQUIRY_BATCH_BYTES),
    );
    Settings::new(
        group,
        vec![
            topics.product_change(),
            topics.kos_billing(),
            topics.bill_inquiries(),
        ],
        topics.dead_letter(),
        ordering,
    )
    .max_backoff(MAX_BACKOFF)
}

/// Hands a partition's run to the processor: inquiries recorded in one statement, events
/// applied in order with one refresh of their views after the last
/// ([`Processor::handle_events`]).
pub struct Projection {
    processor: Processor,
}

impl Projection {
    pub fn new(processor: Processor) -> Self {
        Self { processor }
    }
}

#[async_trait]
impl Handler for Projection {
    async fn handle(&self, messages: &[OwnedMessage]) -> anyhow::Result<Vec<Verdict>> {
        let incoming: Vec<Incoming> = messages.iter().map(Incoming::from_message).collect();
        // A run is one partition's, so of one topic.
        let inquiries = messages
            .first()
            .is_some_and(|m| self.processor.is_inquiry_topic(m.topic()));
        let outcomes = if inquiries {
            self.processor.handle_inquiries(&incoming).await?
        } else {
            self.processor.handle_events(&incoming).await?
        };
        Ok(outcomes
            .into_iter()
            .map(|outcome| match outcome {
                Outcome::Rejected { kind, reason } => Verdict::Dead { kind, reason },
                Outcome::Applied | Outcome::Duplicate | Outcome::Parked => Verdict::Done,
            })
            .collect())
    }
}
