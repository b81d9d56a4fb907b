//! The rdkafka loop: one worker per assigned partition, each handling its messages one at
//! a time in offset order (so each line's order holds, and partitions go on side by
//! side), each offset stored only after its effect is stored (auto-commit then commits
//! stored offsets only), transient failures retried with backoff until they pass (holding
//! up that partition only).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::{Offset, TopicPartitionList};
use service_kit::consumer::GroupConsumer;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::dead_letter::DeadLetters;
use crate::processor::{Incoming, Outcome, Processor};

/// Messages received for a partition and not yet handled (the receiving loop waits when
/// a partition's queue is full).
const PARTITION_QUEUE: usize = 256;

/// Bill-inquiry messages queued for a partition recorded in one statement, at most...
const INQUIRY_BATCH: usize = 500;
/// ...and their bytes: a message is one inquiry or a batch of up to 32 (query-service).
const INQUIRY_BATCH_BYTES: usize = 256 << 10;

/// Events queued for a partition applied one by one, then their views refreshed once,
/// at most this many (a catching-up projector refreshes a line once per run, not per event).
const EVENT_RUN: usize = 64;

/// Lag metrics come from `service_kit::consumer`.
pub type ProjectorConsumer = GroupConsumer;

pub struct ConsumerLoop {
    pub consumer: Arc<ProjectorConsumer>,
    pub processor: Processor,
    pub dead_letters: Arc<DeadLetters>,
}

impl ConsumerLoop {
    pub async fn run(&self, shutdown: CancellationToken) {
        let mut partitions: HashMap<(String, i32), mpsc::Sender<OwnedMessage>> = HashMap::new();
        let mut workers = JoinSet::new();
        loop {
            let message = tokio::select! {
                _ = shutdown.cancelled() => break,
                m = self.consumer.recv() => m,
            };
            let message = match message {
                Ok(m) => m.detach(),
                Err(e) => {
                    tracing::warn!(error = %e, "consumer error");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            };
            let key = (message.topic().to_owned(), message.partition());
            let worker = partitions.entry(key).or_insert_with(|| {
                let (tx, rx) = mpsc::channel(PARTITION_QUEUE);
                workers.spawn(self.partition_worker(rx, shutdown.clone()));
                tx
            });
            let sent = tokio::select! {
                _ = shutdown.cancelled() => break,
                sent = worker.send(message) => sent,
            };
            if sent.is_err() {
                break; // the worker gave up (shutting down)
            }
        }
        // Workers finish the message in hand; queued ones are not stored, so they come
        // again to whoever reads the partition next.
        drop(partitions);
        while workers.join_next().await.is_some() {}
        if let Err(e) = self.consumer.commit_consumer_state(CommitMode::Sync) {
            tracing::debug!(error = %e, "final commit");
        }
        tracing::info!("projector consumer stopped");
    }

    /// One partition's messages, one at a time in offset order (each line's order holds;
    /// lines of other partitions go on meanwhile). A run of queued messages is applied,
    /// then their views refreshed, then the run's last offset stored.
    fn partition_worker(
        &self,
        mut queue: mpsc::Receiver<OwnedMessage>,
        shutdown: CancellationToken,
    ) -> impl std::future::Future<Output = ()> + Send + 'static {
        let consumer = self.consumer.clone();
        let processor = self.processor.clone();
        let dead_letters = self.dead_letters.clone();
        async move {
            let backoff = ExponentialBuilder::default()
                .with_min_delay(Duration::from_millis(50))
                .with_max_delay(Duration::from_secs(2))
                .without_max_times()
                .with_jitter();
            loop {
                let message = tokio::select! {
                    _ = shutdown.cancelled() => return,
                    m = queue.recv() => match m {
                        Some(m) => m,
                        None => return,
                    },
                };
                let mut batch = vec![message];
                let inquiries = processor.is_inquiry_topic(batch[0].topic());
                // What is queued goes together: inquiries in one statement, events with
                // one refresh of their views after the last (`handle_events`).
                let (limit, byte_limit) = if inquiries {
                    (INQUIRY_BATCH, INQUIRY_BATCH_BYTES)
                } else {
                    (EVENT_RUN, usize::MAX)
                };
                let mut bytes = batch[0].payload().map_or(0, <[u8]>::len);
                while batch.len() < limit && bytes < byte_limit {
                    match queue.try_recv() {
                        Ok(m) => {
                            bytes += m.payload().map_or(0, <[u8]>::len);
                            batch.push(m);
                        }
                        Err(_) => break,
                    }
                }
                let incoming: Vec<Incoming> = batch.iter().map(Incoming::from_message).collect();
                let handled = (|| async {
                    let outcomes = if inquiries {
                        processor.handle_inquiries(&incoming).await?
                    } else {
                        processor.handle_events(&incoming).await?
                    };
                    for (msg, outcome) in incoming.iter().zip(&outcomes) {
                        if let Outcome::Rejected { kind, reason } = outcome {
                            dead_letters.send(msg, kind, reason).await?;
                        }
                    }
                    anyhow::Ok(())
                })
                .retry(backoff)
                .when(|_| !shutdown.is_cancelled())
                .notify(|e, wait| {
                    metrics::counter!("phonebill_projector_transient_failures_total").increment(1);
                    tracing::warn!(error = %e, retry_in = ?wait, "transient failure; retrying");
                });
                let outcome = tokio::select! {
                    // Stopping mid-retry: the offset is not stored, the message comes back.
                    _ = shutdown.cancelled() => return,
                    r = handled => r,
                };
                if outcome.is_err() {
                    return;
                }
                let message = batch.last().expect("one message at least");
                let mut next = TopicPartitionList::new();
                let stored = next
                    .add_partition_offset(
                        message.topic(),
                        message.partition(),
                        Offset::Offset(message.offset() + 1),
                    )
                    .and_then(|()| consumer.store_offsets(&next));
                if let Err(e) = stored {
                    // The partition was revoked meanwhile: its new owner will see the
                    // message again and find it already applied.
                    tracing::debug!(error = %e, "offset not stored");
                }
            }
        }
    }
}
