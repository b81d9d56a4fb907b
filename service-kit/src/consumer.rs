//! What every consumer group member here needs besides rdkafka itself: lag metrics, and a
//! guard against resuming past the committed offset.
//!
//! Tansu 0.6 answers a fetch at an offset inside a multi-record batch with the *next*
//! batch, so a member that resumes at a committed offset in mid-batch (after a restart or
//! a rebalance) would silently skip the rest of that batch. [`ResumeGuard`] compares the
//! first message of each newly assigned partition with the group's committed offset: if
//! it lies beyond, the partition is rewound (further back each time) until a fetch
//! returns the committed offset itself; messages before it were already handled and are
//! passed over. Against a broker without the quirk the first message is the committed
//! offset and nothing happens.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::statistics::Statistics;
use rdkafka::{ClientContext, Offset, TopicPartitionList};

/// Publishes `phonebill_consumer_lag{group,topic,partition}` from librdkafka's statistics
/// (set `statistics.interval.ms`) and notes newly assigned partitions for [`ResumeGuard`].
pub struct GroupContext {
    group: String,
    assigned: Arc<Mutex<HashSet<(String, i32)>>>,
}

impl GroupContext {
    pub fn new(group: impl Into<String>) -> Self {
        Self {
            group: group.into(),
            assigned: Default::default(),
        }
    }

    /// Partitions assigned since the last call.
    fn take_assigned(&self) -> HashSet<(String, i32)> {
        std::mem::take(&mut *self.assigned.lock().expect("not poisoned"))
    }
}

impl ClientContext for GroupContext {
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

impl ConsumerContext for GroupContext {
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

pub type GroupConsumer = StreamConsumer<GroupContext>;

/// Whether a received message is to be handled (see the module documentation).
#[derive(Default)]
pub struct ResumeGuard {
    check: ResumeCheck,
}

impl ResumeGuard {
    /// After a seek to `offset`: the partition's next message must be at or before it
    /// (rewinding as after a resume otherwise).
    pub fn expect(&mut self, topic: &str, partition: i32, offset: i64) {
        self.check.watch([(topic.to_owned(), partition)]);
        self.check.set_committed(topic, partition, Some(offset));
    }

    /// True: handle the message. False: skip it (already handled before the committed
    /// offset, or the partition was just rewound and the message will come again).
    pub async fn admit(
        &mut self,
        consumer: &Arc<GroupConsumer>,
        topic: &str,
        partition: i32,
        offset: i64,
    ) -> bool {
        self.check.watch(consumer.context().take_assigned());
        if self.check.needs_committed(topic, partition) {
            let committed = committed(consumer, topic, partition).await;
            self.check.set_committed(topic, partition, committed);
        }
        match self.check.check(topic, partition, offset) {
            Resume::Handle => true,
            Resume::PassOver => false,
            Resume::SeekTo(to) => {
                tracing::warn!(
                    topic,
                    partition,
                    offset,
                    to,
                    "resumed past the committed offset; rewinding"
                );
                metrics::counter!("phonebill_consumer_resume_rewinds_total").increment(1);
                let consumer = Arc::clone(consumer);
                let topic = topic.to_owned();
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
                false
            }
        }
    }
}

/// Re-joins a group member that has held no partition for too long.
///
/// Tansu 0.6 sometimes completes the join of a member restarted after a crash with an
/// empty assignment (its dead predecessor still listed) and never starts another
/// rebalance, so the member sits idle for good (the projector's SIGKILL test caught it).
/// Unsubscribing and subscribing again makes a fresh join, after the dead member's session
/// has expired. Only for groups with at least as many partitions per topic as members:
/// there, an empty assignment is never the steady state.
pub struct AssignmentWatch {
    grace: Duration,
    empty_since: Option<std::time::Instant>,
}

impl AssignmentWatch {
    /// `grace`: how long a member may hold nothing (a few session timeouts).
    pub fn new(grace: Duration) -> Self {
        Self {
            grace,
            empty_since: None,
        }
    }

    /// True when the member has held no partition for the whole grace period (the clock
    /// then starts again).
    pub fn due(&mut self, assigned: usize, now: std::time::Instant) -> bool {
        if assigned > 0 {
            self.empty_since = None;
            return false;
        }
        let since = *self.empty_since.get_or_insert(now);
        if now.duration_since(since) >= self.grace {
            self.empty_since = Some(now);
            return true;
        }
        false
    }

    /// Looks at the consumer's assignment; re-subscribes when [`Self::due`].
    pub fn check<C: ConsumerContext>(&mut self, consumer: &StreamConsumer<C>) {
        let assigned = consumer.assignment().map(|a| a.count()).unwrap_or(0);
        if !self.due(assigned, std::time::Instant::now()) {
            return;
        }
        let Ok(subscription) = consumer.subscription() else {
            return;
        };
        let mut topics: Vec<String> = subscription
            .elements()
            .iter()
            .map(|e| e.topic().to_owned())
            .collect();
        topics.dedup();
        if topics.is_empty() {
            return;
        }
        tracing::warn!(?topics, grace = ?self.grace, "no partition assigned; joining the group again");
        metrics::counter!("phonebill_consumer_rejoins_total").increment(1);
        consumer.unsubscribe();
        let names: Vec<&str> = topics.iter().map(String::as_str).collect();
        if let Err(e) = consumer.subscribe(&names) {
            tracing::warn!(error = %e, "subscribing again failed");
        }
    }
}

/// The group's committed offset of a partition (None when nothing is committed).
async fn committed(consumer: &Arc<GroupConsumer>, topic: &str, partition: i32) -> Option<i64> {
    let consumer = Arc::clone(consumer);
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

/// The decision behind [`ResumeGuard`], without I/O.
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
        Resume::SeekTo(committed - rewind)
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
    fn a_member_without_partitions_for_the_whole_grace_period_joins_again_and_waits_anew() {
        let start = std::time::Instant::now();
        let at = |secs| start + Duration::from_secs(secs);
        let mut watch = AssignmentWatch::new(Duration::from_secs(30));
        assert!(!watch.due(0, at(0)));
        assert!(!watch.due(0, at(29)));
        assert!(watch.due(0, at(30)));
        assert!(
            !watch.due(0, at(31)),
            "the clock starts again after a re-join"
        );
        assert!(!watch.due(3, at(40)));
        assert!(
            !watch.due(0, at(60)),
            "an assignment in between resets the clock"
        );
        assert!(watch.due(0, at(90)));
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
