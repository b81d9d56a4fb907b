//! The rdkafka loop: one message at a time per consumer (so each line's order holds),
//! its offset stored only after its effect is stored (auto-commit then commits stored
//! offsets only), transient failures retried with backoff until they pass.

use std::sync::Arc;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::message::Message;
use service_kit::consumer::{AssignmentWatch, GroupConsumer, ResumeGuard};
use tokio_util::sync::CancellationToken;

use crate::dead_letter::DeadLetters;
use crate::processor::{Incoming, Outcome, Processor};

/// A member holding no partition this long joins the group again (three session
/// timeouts; see [`AssignmentWatch`]).
const REJOIN_AFTER: Duration = Duration::from_secs(30);

/// Lag metrics and the resume guard come from `service_kit::consumer`.
pub type ProjectorConsumer = GroupConsumer;

pub struct ConsumerLoop {
    pub consumer: Arc<ProjectorConsumer>,
    pub processor: Processor,
    pub dead_letters: Arc<DeadLetters>,
    /// Partitions just rewound (topic, partition, offset) after a namespace switch: their
    /// next message must be at or before that offset (Tansu's mid-batch fetch).
    pub rewound: Vec<(String, i32, i64)>,
}

impl ConsumerLoop {
    pub async fn run(&self, shutdown: CancellationToken) {
        let backoff = ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(50))
            .with_max_delay(Duration::from_secs(2))
            .without_max_times()
            .with_jitter();
        let mut resume = ResumeGuard::default();
        for (topic, partition, offset) in &self.rewound {
            resume.expect(topic, *partition, *offset);
        }
        let mut watch = AssignmentWatch::new(REJOIN_AFTER);
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            let message = tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tick.tick() => {
                    watch.check(&self.consumer);
                    continue;
                }
                m = self.consumer.recv() => m,
            };
            let message = match message {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!(error = %e, "consumer error");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            };
            let (topic, partition, offset) = (
                message.topic().to_owned(),
                message.partition(),
                message.offset(),
            );
            if !resume
                .admit(&self.consumer, &topic, partition, offset)
                .await
            {
                continue;
            }
            let incoming = Incoming::from_message(&message);
            let handled = (|| async {
                let outcome = self.processor.handle(&incoming).await?;
                if let Outcome::Rejected { kind, reason } = &outcome {
                    self.dead_letters.send(&incoming, kind, reason).await?;
                }
                anyhow::Ok(outcome)
            })
            .retry(backoff)
            .when(|_| !shutdown.is_cancelled())
            .notify(|e, wait| {
                metrics::counter!("phonebill_projector_transient_failures_total").increment(1);
                tracing::warn!(error = %e, retry_in = ?wait, "transient failure; retrying");
            });
            let outcome = tokio::select! {
                // Stopping mid-retry: the offset is not stored, the message comes back.
                _ = shutdown.cancelled() => break,
                r = handled => r,
            };
            if outcome.is_err() {
                break;
            }
            if let Err(e) = self.consumer.store_offset_from_message(&message) {
                // The partition was revoked meanwhile: its new owner will see the message
                // again and find it already applied.
                tracing::debug!(error = %e, "offset not stored");
            }
        }
        if let Err(e) = self.consumer.commit_consumer_state(CommitMode::Sync) {
            tracing::debug!(error = %e, "final commit");
        }
        tracing::info!("projector consumer stopped");
    }
}
