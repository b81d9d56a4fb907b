//! One consumer group member, shared by every service that consumes a topic: the
//! services bring a [`Handler`] with their domain logic only, and the worker owns the
//! rest.
//!
//! - **Settings.** Offsets are committed automatically, but only offsets the worker
//!   stored (`enable.auto.offset.store=false`); a new group starts from the earliest
//!   offset; librdkafka's statistics feed the lag gauge ([`GroupContext`]). Membership
//!   (session, heartbeats, static membership, fetch wait) comes from the member settings
//!   the caller passes (`kafka::group_member`), with any fetch settings of its own.
//! - **Ordering.** [`Ordering::Partition`]: one task per assigned partition hands its
//!   messages to the handler in offset order, in runs of whatever is queued (up to a
//!   [`Run`] limit, per topic if need be), partitions side by side.
//!   [`Ordering::Key`]: messages of one key (one line) are handled one at a time in the
//!   order they arrived, different keys side by side, at most `max_in_flight` messages
//!   taken from the broker and not yet done.
//! - **Offsets after effects.** An offset is stored only once its message's effect is
//!   durable (the handler returned, its dead letter is acknowledged). Where messages of a
//!   partition finish out of order (per key), only up to the lowest unfinished one
//!   ([`OffsetTracker`]). A crash therefore redelivers what was not done and never skips
//!   it; handlers make repeated effects harmless.
//! - **Transient failures.** A handler's `Err` is retried with backoff until it passes or
//!   the worker stops, holding up only that partition's run or that key.
//! - **Dead letters.** A message the handler gives up on ([`Verdict::Dead`]) is
//!   published to the dead-letter topic with the standard headers and the consumer's name
//!   ([`crate::dead_letter`]) before its offset is stored.
//! - **Shutdown.** Nothing new starts; what is in hand finishes its current attempt; each
//!   partition is positioned back at its first message not done (so a worker run again on
//!   the same consumer reads it again); the stored offsets are committed synchronously.
//! - **Metrics**, labelled by consumer name: `phonebill_consumer_messages_total`
//!   (`topic`, `verdict`), `phonebill_dead_letters_total` (`topic`, `reason`),
//!   `phonebill_consumer_retries_total` (`topic`), `phonebill_consumer_lag` and
//!   `phonebill_consumer_lag_seconds` ([`GroupContext`]).

use std::collections::{BTreeSet, HashMap};
use std::fmt::Display;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use backon::{BackoffBuilder, ExponentialBuilder};
use rdkafka::consumer::{CommitMode, Consumer, ConsumerContext, StreamConsumer};
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::statistics::Statistics;
use rdkafka::{ClientConfig, ClientContext, Offset, TopicPartitionList};
use tokio::sync::{mpsc, oneshot, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::dead_letter::DeadLetters;

/// Publishes, from librdkafka's statistics (`statistics.interval.ms`), per
/// `{group,topic,partition}`:
/// - `phonebill_consumer_lag`: messages on the broker this group has not committed;
/// - `phonebill_consumer_lag_seconds`: how long the partition's oldest message not yet
///   done has waited, bounded from above by the age (broker timestamp) of the last message
///   this member finished there; 0 when none waits. It keeps growing while a consumer is
///   stuck, where the message count may not move. Not published for a partition until
///   this member has finished one of its messages; 0 once the partition is gone.
pub struct GroupContext {
    group: String,
    /// (topic, partition) → broker timestamp (ms) of the last message finished there.
    finished: Mutex<HashMap<(String, i32), i64>>,
}

impl GroupContext {
    pub fn new(group: impl Into<String>) -> Self {
        Self {
            group: group.into(),
            finished: Mutex::new(HashMap::new()),
        }
    }

    /// Notes that `message` (the last of a run) is done.
    fn finished(&self, message: &OwnedMessage) {
        let Some(at) = message.timestamp().to_millis() else {
            return;
        };
        let mut finished = self.finished.lock().expect("not poisoned");
        let last = finished
            .entry((message.topic().to_owned(), message.partition()))
            .or_insert(at);
        *last = (*last).max(at);
    }

    fn lag_seconds(&self, topic: &str, partition: i32, waiting: i64, now_ms: i64) -> Option<f64> {
        let mut finished = self.finished.lock().expect("not poisoned");
        let key = (topic.to_owned(), partition);
        if waiting < 0 {
            return finished.remove(&key).map(|_| 0.0);
        }
        let last = *finished.get(&key)?;
        Some(lag_seconds(waiting, last, now_ms))
    }
}

/// Seconds the oldest waiting message has waited, at most: none waiting, 0; else since
/// `last_finished_ms`, the broker timestamp of the last message done before it.
fn lag_seconds(waiting: i64, last_finished_ms: i64, now_ms: i64) -> f64 {
    if waiting <= 0 {
        return 0.0;
    }
    (now_ms - last_finished_ms).max(0) as f64 / 1000.0
}

impl ClientContext for GroupContext {
    const ENABLE_REFRESH_OAUTH_TOKEN: bool = true;

    fn generate_oauth_token(
        &self,
        config: Option<&str>,
    ) -> Result<rdkafka::client::OAuthToken, Box<dyn std::error::Error>> {
        crate::kafka::identity::token(config)
    }

    fn stats(&self, statistics: Statistics) {
        let now_ms = chrono::Utc::now().timestamp_millis();
        for (topic, t) in &statistics.topics {
            for (partition, p) in &t.partitions {
                if *partition < 0 {
                    continue;
                }
                let labels = [
                    ("group", self.group.clone()),
                    ("topic", topic.clone()),
                    ("partition", partition.to_string()),
                ];
                // Against the offsets stored as done, not the last commit (500 ms later).
                let waiting = if p.consumer_lag < 0 {
                    -1
                } else {
                    p.consumer_lag_stored
                };
                if let Some(seconds) = self.lag_seconds(topic, *partition, waiting, now_ms) {
                    metrics::gauge!("phonebill_consumer_lag_seconds", &labels).set(seconds);
                }
                if p.consumer_lag >= 0 {
                    metrics::gauge!("phonebill_consumer_lag", &labels).set(p.consumer_lag as f64);
                }
            }
        }
    }
}

impl ConsumerContext for GroupContext {}

pub type GroupConsumer = StreamConsumer<GroupContext>;

/// What became of one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Its effect is durable (or it needed none): its offset may be stored.
    Done,
    /// It cannot be used: it goes to the dead-letter topic with `reason`, then its offset
    /// is stored. `kind` is a short, fixed label for the metric.
    Dead { kind: &'static str, reason: String },
}

impl Verdict {
    pub fn dead(kind: &'static str, reason: impl Into<String>) -> Self {
        Verdict::Dead {
            kind,
            reason: reason.into(),
        }
    }
}

/// A service's domain logic for the messages of its topics.
#[async_trait]
pub trait Handler: Send + Sync + 'static {
    /// Handles messages of one partition, in offset order (one message with
    /// [`Ordering::Key`], a run with [`Ordering::Partition`]), and returns one verdict per
    /// message, in the same order. `Err` is transient: the same messages come again after
    /// a backoff, so every effect must be safe to repeat.
    async fn handle(&self, messages: &[OwnedMessage]) -> anyhow::Result<Vec<Verdict>>;
}

/// How many queued messages of a partition are handed to the handler together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Run {
    pub max_messages: usize,
    /// Payload bytes; the run ends once it reaches this.
    pub max_bytes: usize,
}

impl Run {
    /// One message at a time.
    pub const ONE: Run = Run {
        max_messages: 1,
        max_bytes: usize::MAX,
    };

    pub fn up_to(max_messages: usize) -> Self {
        Run {
            max_messages: max_messages.max(1),
            max_bytes: usize::MAX,
        }
    }

    pub fn bytes(self, max_bytes: usize) -> Self {
        Run { max_bytes, ..self }
    }
}

/// Which messages must be handled one after the other.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ordering {
    /// Each partition in offset order, in runs of up to `run` (or the run given for the
    /// message's topic in `topic_runs`); partitions side by side.
    Partition {
        run: Run,
        topic_runs: Vec<(String, Run)>,
    },
    /// Each key in arrival order, one message at a time; different keys side by side,
    /// at most `max_in_flight` messages taken and not yet done.
    Key { max_in_flight: usize },
}

impl Ordering {
    pub fn partition(run: Run) -> Self {
        Ordering::Partition {
            run,
            topic_runs: vec![],
        }
    }

    /// With [`Ordering::Partition`], `topic`'s messages go in runs of `run`.
    pub fn with_topic_run(mut self, topic: impl Into<String>, topic_run: Run) -> Self {
        if let Ordering::Partition { topic_runs, .. } = &mut self {
            topic_runs.push((topic.into(), topic_run));
        }
        self
    }

    pub fn key(max_in_flight: usize) -> Self {
        Ordering::Key {
            max_in_flight: max_in_flight.max(1),
        }
    }

    fn run_of(&self, topic: &str) -> Run {
        match self {
            Ordering::Partition { run, topic_runs } => topic_runs
                .iter()
                .find(|(t, _)| t == topic)
                .map_or(*run, |(_, r)| *r),
            Ordering::Key { .. } => Run::ONE,
        }
    }
}

/// What a worker consumes and how.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Names the consumer in metrics, logs and the `dlq-consumer` header.
    pub name: String,
    pub topics: Vec<String>,
    pub dead_letter_topic: String,
    pub ordering: Ordering,
    /// The first and the longest wait between attempts of a failing message.
    pub min_backoff: Duration,
    pub max_backoff: Duration,
}

impl Settings {
    pub fn new(
        name: impl Into<String>,
        topics: Vec<String>,
        dead_letter_topic: impl Into<String>,
        ordering: Ordering,
    ) -> Self {
        Self {
            name: name.into(),
            topics,
            dead_letter_topic: dead_letter_topic.into(),
            ordering,
            min_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(5),
        }
    }

    pub fn max_backoff(self, max_backoff: Duration) -> Self {
        Self {
            max_backoff,
            ..self
        }
    }
}

/// A consumer group member with its dead-letter publisher; [`GroupWorker::run`] hands
/// its messages to a [`Handler`] until stopped, and may be called again with another
/// handler (the membership is kept in between).
pub struct GroupWorker {
    consumer: Arc<GroupConsumer>,
    dead_letters: DeadLetters,
    settings: Arc<Settings>,
}

impl GroupWorker {
    /// Creates the consumer from `member` (`kafka::group_member`, plus any fetch
    /// settings) and subscribes; `kafka` (`kafka::client_config`) is what the
    /// dead-letter producer starts from. Fails fast on wrong settings.
    pub fn new(
        member: &ClientConfig,
        kafka: &ClientConfig,
        settings: Settings,
    ) -> Result<Self, rdkafka::error::KafkaError> {
        let group = member.get("group.id").unwrap_or_default().to_owned();
        let consumer: GroupConsumer =
            consumer_config(member).create_with_context(GroupContext::new(group.clone()))?;
        let topics: Vec<&str> = settings.topics.iter().map(String::as_str).collect();
        consumer.subscribe(&topics)?;
        let dead_letters = DeadLetters::new(kafka, &settings.dead_letter_topic, &settings.name)?;
        tracing::info!(consumer = %settings.name, %group, topics = ?settings.topics, "consuming");
        Ok(Self {
            consumer: Arc::new(consumer),
            dead_letters,
            settings: Arc::new(settings),
        })
    }

    /// The group member (to seek, or read its assignment).
    pub fn consumer(&self) -> &Arc<GroupConsumer> {
        &self.consumer
    }

    pub fn name(&self) -> &str {
        &self.settings.name
    }

    /// Hands messages to `handler` until `shutdown`; returns once what was in hand is
    /// finished, each partition is positioned at its first message not done, and the
    /// stored offsets are committed.
    pub async fn run<H: Handler>(&self, handler: Arc<H>, shutdown: CancellationToken) {
        let core = Arc::new(Core {
            consumer: self.consumer.clone(),
            dead_letters: self.dead_letters.clone(),
            settings: self.settings.clone(),
            handler,
            shutdown,
        });
        let unfinished = match self.settings.ordering {
            Ordering::Partition { .. } => by_partition(core.clone()).await,
            Ordering::Key { max_in_flight } => by_key(core.clone(), max_in_flight).await,
        };
        core.rewind(unfinished).await;
        if let Err(e) = self.consumer.commit_consumer_state(CommitMode::Sync) {
            // Nothing stored since the last commit, or no assignment.
            tracing::debug!(consumer = %self.settings.name, error = %e, "final commit");
        }
        tracing::info!(consumer = %self.settings.name, "consumer stopped");
    }
}

/// The member settings plus what the worker relies on.
fn consumer_config(member: &ClientConfig) -> ClientConfig {
    let mut config = member.clone();
    config
        .set("enable.auto.commit", "true")
        .set("auto.commit.interval.ms", "500")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("statistics.interval.ms", "5000");
    config
}

/// A partition's position: (topic, partition) → offset.
type Positions = Vec<((String, i32), i64)>;

struct Core<H> {
    consumer: Arc<GroupConsumer>,
    dead_letters: DeadLetters,
    settings: Arc<Settings>,
    handler: Arc<H>,
    shutdown: CancellationToken,
}

impl<H: Handler> Core<H> {
    fn name(&self) -> &str {
        &self.settings.name
    }

    /// The next message from the broker; `None` at shutdown.
    async fn receive(&self) -> Option<OwnedMessage> {
        loop {
            let received = tokio::select! {
                _ = self.shutdown.cancelled() => return None,
                m = self.consumer.recv() => m,
            };
            match received {
                Ok(m) => return Some(m.detach()),
                Err(e) => {
                    tracing::warn!(consumer = self.name(), error = %e, "consumer error");
                    tokio::select! {
                        _ = self.shutdown.cancelled() => return None,
                        _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                    }
                }
            }
        }
    }

    /// Handles `messages` (one partition's, in order) and publishes their dead letters;
    /// false if shutdown came first (nothing of them may be stored).
    async fn process(&self, messages: &[OwnedMessage]) -> bool {
        let topic = messages[0].topic();
        let span = crate::traces::consume_span(self.name(), messages);
        let Some(verdicts) = self
            .until_done("handling", topic, || {
                self.handler.handle(messages).instrument(span.clone())
            })
            .await
        else {
            return false;
        };
        if verdicts.len() != messages.len() {
            tracing::error!(
                consumer = self.name(),
                verdicts = verdicts.len(),
                messages = messages.len(),
                "the handler returned a verdict count unlike the message count; missing ones count as done"
            );
        }
        for (message, verdict) in messages.iter().zip(&verdicts) {
            let Verdict::Dead { kind, reason } = verdict else {
                continue;
            };
            tracing::warn!(consumer = self.name(), topic, partition = message.partition(), offset = message.offset(), %reason, "dead-lettering");
            let sent = self
                .until_done("dead-letter publish", topic, || {
                    self.dead_letters.send(message, reason)
                })
                .await;
            if sent.is_none() {
                return false;
            }
            metrics::counter!("phonebill_dead_letters_total", "consumer" => self.name().to_owned(), "topic" => topic.to_owned(), "reason" => *kind)
                .increment(1);
        }
        if let Some(last) = messages.last() {
            self.consumer.context().finished(last);
        }
        let dead = verdicts
            .iter()
            .filter(|v| matches!(v, Verdict::Dead { .. }))
            .count() as u64;
        let done = messages.len() as u64 - dead.min(messages.len() as u64);
        metrics::counter!("phonebill_consumer_messages_total", "consumer" => self.name().to_owned(), "topic" => topic.to_owned(), "verdict" => "done")
            .increment(done);
        if dead > 0 {
            metrics::counter!("phonebill_consumer_messages_total", "consumer" => self.name().to_owned(), "topic" => topic.to_owned(), "verdict" => "dead")
                .increment(dead);
        }
        true
    }

    /// Runs `attempt` until it succeeds (`Some`) or shutdown comes (`None`): an attempt
    /// under way is finished, the wait before the next is cut short.
    async fn until_done<T, E, F, Fut>(&self, what: &str, topic: &str, mut attempt: F) -> Option<T>
    where
        E: Display,
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let mut delays = ExponentialBuilder::default()
            .with_min_delay(self.settings.min_backoff)
            .with_max_delay(self.settings.max_backoff)
            .without_max_times()
            .with_jitter()
            .build();
        loop {
            let error = match attempt().await {
                Ok(value) => return Some(value),
                Err(e) => e,
            };
            if self.shutdown.is_cancelled() {
                tracing::warn!(consumer = self.name(), topic, error = %error, "{what} failed at shutdown; left to be read again");
                return None;
            }
            let wait = delays.next().unwrap_or(self.settings.max_backoff);
            metrics::counter!("phonebill_consumer_retries_total", "consumer" => self.name().to_owned(), "topic" => topic.to_owned())
                .increment(1);
            tracing::warn!(consumer = self.name(), topic, error = %error, retry_in = ?wait, "{what} failed; retrying");
            tokio::select! {
                _ = self.shutdown.cancelled() => return None,
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// Stores `next` (the next offset to read) for a partition. Fails only if the
    /// partition was revoked meanwhile: its new owner reads from the last commit and
    /// finds the effects already there.
    fn store(&self, topic: &str, partition: i32, next: i64) {
        let mut list = TopicPartitionList::new();
        let stored = list
            .add_partition_offset(topic, partition, Offset::Offset(next))
            .and_then(|()| self.consumer.store_offsets(&list));
        if let Err(e) = stored {
            tracing::debug!(consumer = self.name(), error = %e, topic, partition, next, "offset not stored");
        }
    }

    /// Positions each partition back at its first message not done, so that this
    /// consumer reads it again if it goes on (its next owner reads from the commit).
    async fn rewind(&self, unfinished: Positions) {
        if unfinished.is_empty() {
            return;
        }
        let consumer = self.consumer.clone();
        let name = self.name().to_owned();
        let _ = tokio::task::spawn_blocking(move || {
            for ((topic, partition), offset) in unfinished {
                if let Err(e) = consumer.seek(
                    &topic,
                    partition,
                    Offset::Offset(offset),
                    Duration::from_secs(5),
                ) {
                    // Revoked meanwhile: nothing to position.
                    tracing::debug!(consumer = %name, error = %e, topic, partition, "not rewound");
                }
            }
        })
        .await;
    }
}

/// Messages taken for a partition and not yet handled (the receiving loop waits when a
/// partition's queue is full).
const PARTITION_QUEUE: usize = 256;

/// [`Ordering::Partition`]: one task per partition. Returns where each partition left
/// messages not done.
async fn by_partition<H: Handler>(core: Arc<Core<H>>) -> Positions {
    let mut queues: HashMap<(String, i32), mpsc::Sender<OwnedMessage>> = HashMap::new();
    let mut workers = JoinSet::new();
    while let Some(message) = core.receive().await {
        let key = (message.topic().to_owned(), message.partition());
        let queue = queues.entry(key).or_insert_with(|| {
            let (tx, rx) = mpsc::channel(PARTITION_QUEUE);
            let run = core.settings.ordering.run_of(message.topic());
            workers.spawn(partition_worker(core.clone(), rx, run));
            tx
        });
        let sent = tokio::select! {
            _ = core.shutdown.cancelled() => break,
            sent = queue.send(message) => sent,
        };
        if sent.is_err() {
            break; // the partition's task stopped: shutting down
        }
    }
    drop(queues);
    let mut unfinished = vec![];
    while let Some(left) = workers.join_next().await {
        unfinished.extend(left.ok().flatten());
    }
    unfinished
}

/// One partition's messages in offset order, in runs of what is queued; each run's last
/// offset stored after the run is done. Returns the first message left undone, if any.
async fn partition_worker<H: Handler>(
    core: Arc<Core<H>>,
    mut queue: mpsc::Receiver<OwnedMessage>,
    run: Run,
) -> Option<((String, i32), i64)> {
    let position = |m: &OwnedMessage| ((m.topic().to_owned(), m.partition()), m.offset());
    loop {
        let first = tokio::select! {
            biased;
            _ = core.shutdown.cancelled() => None,
            m = queue.recv() => m,
        };
        let Some(first) = first else {
            return queue.try_recv().ok().map(|m| position(&m));
        };
        let mut bytes = first.payload().map_or(0, <[u8]>::len);
        let mut batch = vec![first];
        while batch.len() < run.max_messages && bytes < run.max_bytes {
            match queue.try_recv() {
                Ok(m) => {
                    bytes += m.payload().map_or(0, <[u8]>::len);
                    batch.push(m);
                }
                Err(_) => break,
            }
        }
        if !core.process(&batch).await {
            return Some(position(&batch[0]));
        }
        let last = batch.last().expect("a run has a message");
        core.store(last.topic(), last.partition(), last.offset() + 1);
    }
}

/// Per key: the task that must finish before the next message of the key may start
/// (its id, and a receiver resolved when it is done).
type Chains = HashMap<Vec<u8>, (u64, oneshot::Receiver<()>)>;

/// [`Ordering::Key`]: one task per message, chained behind the previous message of its
/// key. Returns where each partition left messages not done.
async fn by_key<H: Handler>(core: Arc<Core<H>>, max_in_flight: usize) -> Positions {
    let offsets = Arc::new(Mutex::new(OffsetTracker::default()));
    let chains: Arc<Mutex<Chains>> = Arc::default();
    let permits = Arc::new(Semaphore::new(max_in_flight));
    let mut tasks = JoinSet::new();
    let mut next_id: u64 = 0;
    loop {
        while tasks.try_join_next().is_some() {}
        let permit = tokio::select! {
            _ = core.shutdown.cancelled() => break,
            p = permits.clone().acquire_owned() => p.expect("the semaphore is never closed"),
        };
        let Some(message) = core.receive().await else {
            break;
        };
        let (topic, partition, offset) = (
            message.topic().to_owned(),
            message.partition(),
            message.offset(),
        );
        offsets
            .lock()
            .expect("offset lock")
            .begin(&topic, partition, offset);
        let key = message.key().unwrap_or_default().to_vec();
        next_id += 1;
        let id = next_id;
        let (done, waiter) = oneshot::channel();
        let previous = chains
            .lock()
            .expect("chain lock")
            .insert(key.clone(), (id, waiter))
            .map(|(_, rx)| rx);
        let (core, offsets, chains) = (core.clone(), offsets.clone(), chains.clone());
        tasks.spawn(async move {
            if let Some(previous) = previous {
                let _ = previous.await;
            }
            // At shutdown, a message still waiting for its key is left for later.
            let finished =
                !core.shutdown.is_cancelled() && core.process(std::slice::from_ref(&message)).await;
            {
                let mut chains = chains.lock().expect("chain lock");
                if chains.get(&key).is_some_and(|(owner, _)| *owner == id) {
                    chains.remove(&key);
                }
            }
            let _ = done.send(());
            if finished {
                let next = offsets
                    .lock()
                    .expect("offset lock")
                    .finish(&topic, partition, offset);
                if let Some(next) = next {
                    core.store(&topic, partition, next);
                }
            }
            drop(permit);
        });
    }
    while tasks.join_next().await.is_some() {}
    let unfinished = offsets.lock().expect("offset lock").unfinished();
    unfinished
}

/// Per partition: offsets taken and not yet done, the highest taken, the last stored.
/// With out-of-order completion, the offset to store is the lowest unfinished (or one past
/// the highest taken when none is unfinished).
#[derive(Default)]
pub struct OffsetTracker {
    partitions: HashMap<(String, i32), PartitionOffsets>,
}

struct PartitionOffsets {
    pending: BTreeSet<i64>,
    highest: i64,
    stored: i64,
}

impl OffsetTracker {
    /// `offset` was taken from the broker and is not done yet.
    pub fn begin(&mut self, topic: &str, partition: i32, offset: i64) {
        let p = self
            .partitions
            .entry((topic.to_owned(), partition))
            .or_insert_with(|| PartitionOffsets {
                pending: BTreeSet::new(),
                highest: offset,
                stored: offset,
            });
        p.pending.insert(offset);
        p.highest = p.highest.max(offset);
    }

    /// Marks `offset` done; returns the offset to store (the next to read) if it moved.
    pub fn finish(&mut self, topic: &str, partition: i32, offset: i64) -> Option<i64> {
        let p = self.partitions.get_mut(&(topic.to_owned(), partition))?;
        p.pending.remove(&offset);
        let next = p.pending.first().copied().unwrap_or(p.highest + 1);
        (next > p.stored).then(|| {
            p.stored = next;
            next
        })
    }

    /// Each partition's lowest offset not done.
    pub fn unfinished(&self) -> Positions {
        self.partitions
            .iter()
            .filter_map(|(tp, p)| p.pending.first().map(|o| (tp.clone(), *o)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message_at(partition: i32, offset: i64, at_ms: i64) -> OwnedMessage {
        OwnedMessage::new(
            None,
            None,
            "t".to_owned(),
            rdkafka::Timestamp::CreateTime(at_ms),
            partition,
            offset,
            None,
        )
    }

    #[test]
    fn lag_in_seconds_is_zero_when_nothing_waits_and_grows_from_the_last_finished_message() {
        let context = GroupContext::new("g");
        assert_eq!(
            context.lag_seconds("t", 0, 5, 10_000),
            None,
            "unknown before this member finishes a message there"
        );
        context.finished(&message_at(0, 7, 4_000));
        context.finished(&message_at(0, 6, 3_000));
        assert_eq!(context.lag_seconds("t", 0, 0, 10_000), Some(0.0));
        assert_eq!(context.lag_seconds("t", 0, 3, 10_000), Some(6.0));
        assert_eq!(
            context.lag_seconds("t", 0, 3, 70_000),
            Some(66.0),
            "while stuck"
        );
        assert_eq!(
            context.lag_seconds("t", 1, 3, 70_000),
            None,
            "another partition"
        );
        assert_eq!(
            context.lag_seconds("t", 0, -1, 70_000),
            Some(0.0),
            "a partition no longer assigned reports 0 once"
        );
        assert_eq!(context.lag_seconds("t", 0, 3, 70_000), None);
        assert_eq!(
            lag_seconds(2, 90_000, 80_000),
            0.0,
            "clocks apart: never negative"
        );
    }

    #[test]
    fn offsets_are_stored_only_up_to_the_lowest_unfinished() {
        let mut t = OffsetTracker::default();
        for o in 10..15 {
            t.begin("t", 0, o);
        }
        assert_eq!(t.finish("t", 0, 12), None);
        assert_eq!(t.finish("t", 0, 11), None);
        assert_eq!(t.finish("t", 0, 10), Some(13));
        assert_eq!(t.unfinished(), vec![(("t".to_owned(), 0), 13)]);
        assert_eq!(t.finish("t", 0, 14), None);
        assert_eq!(t.finish("t", 0, 13), Some(15));
        assert!(t.unfinished().is_empty());
    }

    #[test]
    fn partitions_and_topics_are_tracked_apart() {
        let mut t = OffsetTracker::default();
        t.begin("a", 0, 5);
        t.begin("a", 1, 7);
        t.begin("b", 0, 3);
        assert_eq!(t.finish("a", 1, 7), Some(8));
        assert_eq!(t.finish("b", 0, 3), Some(4));
        assert_eq!(t.unfinished(), vec![(("a".to_owned(), 0), 5)]);
        assert_eq!(t.finish("c", 0, 1), None, "an offset never taken");
    }

    #[test]
    fn a_run_takes_the_limit_of_its_topic() {
        let ordering = Ordering::partition(Run::up_to(64))
            .with_topic_run("inquiries", Run::up_to(500).bytes(256 << 10));
        assert_eq!(ordering.run_of("events"), Run::up_to(64));
        assert_eq!(ordering.run_of("inquiries").max_bytes, 256 << 10);
        assert_eq!(Ordering::key(8).run_of("x"), Run::ONE);
    }
}
