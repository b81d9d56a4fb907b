//! The rdkafka loop: one message at a time per consumer (so each line's order holds),
//! its offset stored only after its effect is stored (auto-commit then commits stored
//! offsets only), transient failures retried with backoff until they pass.

use std::sync::Arc;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::message::{Headers, Message};
use rdkafka::statistics::Statistics;
use rdkafka::ClientContext;
use rdkafka::{Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

use crate::dead_letter::DeadLetters;
use crate::processor::{Incoming, Outcome, Processor};

/// Publishes `phonebill_consumer_lag{group,topic,partition}` from librdkafka's statistics
/// and notes newly assigned partitions, whose first message is checked (see
/// [`ResumeCheck`]).
pub struct LagContext {
    pub group: String,
    pub assigned: Arc<Mutex<HashSet<(String, i32)>>>,
}

impl ClientContext for LagContext {
    fn stats(&self, statistics: Statistics) {
        for (topic, t) in &statistics.topics {
            for (partition, p) in &t.partitions {
                if *partition < 0 || p.consumer_lag < 0 {
                    continue;
                }
                metrics::gauge!("phonebill_consumer_lag", "group" => self.group.clone(), "topic" => topic.clone(), "partition" => partition.to_string())
                    .set(p.consumer_lag as f64);
            }
        }
    }
}

impl ConsumerContext for LagContext {
    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let mut assigned = self.assigned.lock().expect("not poisoned");
        match rebalance {
            Rebalance::Assign(tpl) => {
                for e in tpl.elements() {
                    assigned.insert((e.topic().to_owned(), e.partition()));
                }
            }
            Rebalance::Revoke(tpl) => {
                for e in tpl.elements() {
                    assigned.remove(&(e.topic().to_owned(), e.partition()));
                }
            }
            Rebalance::Error(_) => {}
        }
    }
}

/// Guards the resume point of each newly assigned partition.
///
/// Tansu 0.6 answers a fetch at an offset inside a multi-record batch with the *next*
/// batch, so resuming at a committed offset in mid-batch would silently skip the rest of
/// that batch. The first message of a partition is therefore compared with the committed
/// offset: if it lies beyond it, the partition is rewound (further back each time) until
/// a fetch returns the committed offset itself; messages before it were already handled
/// and are passed over.
#[derive(Default)]
pub struct ResumeCheck {
    /// Per partition: the committed offset (None: not looked up yet) and the last rewind.
    pending: HashMap<(String, i32), (Option<i64>, i64)>,
}

/// What to do with a message.
#[derive(Debug, PartialEq, Eq)]
pub enum Resume {
    Handle,
    /// Already handled before the committed offset.
    PassOver,
    /// Records were skipped: seek here and look again.
    SeekTo(i64),
}

impl ResumeCheck {
    pub fn watch(&mut self, partitions: impl IntoIterator<Item = (String, i32)>) {
        for p in partitions {
            // A fresh assignment: whatever was known about the partition is stale.
            self.pending.insert(p, (None, 0));
        }
    }

    pub fn needs_committed(&self, topic: &str, partition: i32) -> bool {
        matches!(
            self.pending.get(&(topic.to_owned(), partition)),
            Some((None, _))
        )
    }

    pub fn set_committed(&mut self, topic: &str, partition: i32, committed: Option<i64>) {
        let key = (topic.to_owned(), partition);
        match committed {
            Some(c) => {
                if let Some(entry) = self.pending.get_mut(&key) {
                    entry.0 = Some(c);
                }
            }
            // Nothing committed: the group starts at the log's beginning, a batch edge.
            None => {
                self.pending.remove(&key);
            }
        }
    }

    pub fn check(&mut self, topic: &str, partition: i32, offset: i64) -> Resume {
        let key = (topic.to_owned(), partition);
        let Some(&(Some(committed), rewind)) = self.pending.get(&key) else {
            return Resume::Handle;
        };
        if offset < committed {
            return Resume::PassOver;
        }
        if offset == committed || rewind >= committed {
            if offset > committed {
                tracing::error!(
                    topic,
                    partition,
                    committed,
                    offset,
                    "records before this offset cannot be fetched"
                );
            }
            self.pending.remove(&key);
            return Resume::Handle;
        }
        let rewind = (rewind * 2).max(1).min(committed);
        self.pending.insert(key, (Some(committed), rewind));
        metrics::counter!("phonebill_projector_resume_rewinds_total").increment(1);
        Resume::SeekTo(committed - rewind)
    }
}

pub type ProjectorConsumer = StreamConsumer<LagContext>;

pub struct ConsumerLoop {
    pub consumer: Arc<ProjectorConsumer>,
    pub processor: Processor,
    pub dead_letters: DeadLetters,
}

impl ConsumerLoop {
    /// The group's committed offset of a partition (None when nothing is committed).
    async fn committed(&self, topic: &str, partition: i32) -> Option<i64> {
        let consumer = self.consumer.clone();
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(topic, partition);
        let answer = tokio::task::spawn_blocking(move || {
            consumer.committed_offsets(tpl, Duration::from_secs(10))
        })
        .await
        .ok()?
        .ok()?;
        answer.elements().first().and_then(|e| match e.offset() {
            Offset::Offset(o) if o > 0 => Some(o),
            _ => None,
        })
    }

    pub async fn run(self, shutdown: CancellationToken) {
        let backoff = ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(50))
            .with_max_delay(Duration::from_secs(2))
            .without_max_times()
            .with_jitter();
        let mut resume = ResumeCheck::default();
        loop {
            let message = tokio::select! {
                _ = shutdown.cancelled() => break,
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
            resume.watch(std::mem::take(
                &mut *self
                    .consumer
                    .context()
                    .assigned
                    .lock()
                    .expect("not poisoned"),
            ));
            if resume.needs_committed(&topic, partition) {
                let committed = self.committed(&topic, partition).await;
                resume.set_committed(&topic, partition, committed);
            }
            match resume.check(&topic, partition, offset) {
                Resume::Handle => {}
                Resume::PassOver => continue,
                Resume::SeekTo(to) => {
                    tracing::warn!(%topic, partition, offset, to, "resumed past the committed offset; rewinding");
                    let consumer = self.consumer.clone();
                    let seek = tokio::task::spawn_blocking(move || {
                        consumer.seek(
                            &topic,
                            partition,
                            Offset::Offset(to),
                            Duration::from_secs(5),
                        )
                    })
                    .await;
                    if !matches!(seek, Ok(Ok(()))) {
                        tracing::warn!(?seek, "seek failed");
                    }
                    continue;
                }
            }
            let incoming = Incoming {
                topic: message.topic().to_owned(),
                partition: message.partition(),
                offset: message.offset(),
                key: message.key().map(<[u8]>::to_vec),
                payload: message.payload().unwrap_or_default().to_vec(),
                headers: message
                    .headers()
                    .map(|h| {
                        h.iter()
                            .map(|h| (h.key.to_owned(), h.value.unwrap_or_default().to_vec()))
                            .collect()
                    })
                    .unwrap_or_default(),
            };
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partition_resumed_past_its_committed_offset_is_rewound_until_the_offset_itself_comes() {
        let mut check = ResumeCheck::default();
        check.watch([("t".to_owned(), 0)]);
        assert!(check.needs_committed("t", 0));
        check.set_committed("t", 0, Some(10));
        assert_eq!(check.check("t", 0, 14), Resume::SeekTo(9));
        assert_eq!(check.check("t", 0, 14), Resume::SeekTo(8));
        assert_eq!(check.check("t", 0, 6), Resume::PassOver);
        assert_eq!(check.check("t", 0, 10), Resume::Handle);
        assert_eq!(check.check("t", 0, 11), Resume::Handle);
    }

    #[test]
    fn a_partition_without_a_committed_offset_or_resumed_exactly_is_handled_at_once() {
        let mut check = ResumeCheck::default();
        check.watch([("t".to_owned(), 0), ("t".to_owned(), 1)]);
        check.set_committed("t", 0, None);
        assert_eq!(check.check("t", 0, 0), Resume::Handle);
        check.set_committed("t", 1, Some(5));
        assert_eq!(check.check("t", 1, 5), Resume::Handle);
        assert_eq!(check.check("t", 2, 99), Resume::Handle);
    }
}
