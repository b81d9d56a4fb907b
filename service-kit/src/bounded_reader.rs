//! A bounded read of a Kafka topic: every message between a start and an end fixed before
//! the read begins, then done. For the tools that read history from the broker beside
//! the live consumers (a replay, an export, a line's state at a past moment).
//!
//! - [`BoundedReader::plan`]: the topic's partitions (from metadata; a topic that is not
//!   on the broker is [`Error::NoTopic`]) and, for each, where the read starts and ends:
//!   the start is the broker's offset for `since` (offsets-for-times) or else the log's
//!   beginning; the end is the high watermark taken now, or the offset for `until` when
//!   that comes first. [`BoundedReader::plan_partition`] plans a single partition.
//! - [`BoundedReader::read`]: manual assignment in a throwaway group (no group joined, no
//!   offset committed, so no live group is moved), every message handed to the caller in
//!   offset order per partition. A partition ends at its planned end, at its first
//!   message the broker stamped at or after `cut` (later messages belong to whatever
//!   runs after the read, and a topic written all the time still ends), or when the
//!   caller says [`Flow::Stop`]. Partition EOF also ends a partition, only as a safety
//!   net for offsets that carry no message (transaction markers).
//! - Errors the client recovers from (a lost connection, a partition's leader moving) are
//!   waited out; a broker that delivers nothing (no message, no EOF) for [`SILENCE`] is
//!   [`Error::Silent`]. A stop flag set by the caller is [`Error::Stopped`].
//!
//! Blocking: run it on a thread of its own or a blocking task.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::BorrowedMessage;
use rdkafka::{ClientConfig, ClientContext, Message, Offset, TopicPartitionList};
use uuid::Uuid;

use crate::kafka::KafkaConfig;

/// How long the broker may answer nothing before the read fails.
pub const SILENCE: Duration = Duration::from_secs(30);
/// Metadata, watermark and offsets-for-times requests.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// One poll's wait: how often the stop flag and the silence are looked at.
const POLL: Duration = Duration::from_millis(100);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the broker: {0}")]
    Broker(#[from] KafkaError),
    #[error("topic {0} is not on the broker (is the topic prefix right?)")]
    NoTopic(String),
    #[error("topic {topic} has no partition {partition}")]
    NoPartition { topic: String, partition: i32 },
    #[error("the broker did not answer for {0:?}")]
    Silent(Duration),
    #[error("stopped")]
    Stopped,
}

/// The times a plan is made from.
#[derive(Debug, Clone, Copy, Default)]
pub struct Bounds {
    /// Start at the first offset the broker stamped at or after this; `None`: at the
    /// log's beginning.
    pub since: Option<DateTime<Utc>>,
    /// End before the first offset the broker stamped at or after this; `None`: at the
    /// high watermark.
    pub until: Option<DateTime<Utc>>,
    /// End each partition at its first message stamped at or after this.
    pub cut: Option<DateTime<Utc>>,
}

/// Where one partition's read starts and ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionPlan {
    pub partition: i32,
    /// The log's first offset the broker holds (above 0 once retention removed some).
    pub low: i64,
    /// The high watermark when the plan was made (the offset the next message gets).
    pub high: i64,
    /// First offset to read. A caller may move it on (e.g. to resume).
    pub start: i64,
    /// First offset not to read.
    pub end: i64,
}

impl PartitionPlan {
    /// Nothing to read: the read is done with this partition at once.
    pub fn is_empty(&self) -> bool {
        self.start >= self.end
    }

    /// How many offsets the read covers.
    pub fn len(&self) -> u64 {
        (self.end - self.start).max(0) as u64
    }
}

/// What a read covers: a topic's partitions, and the cut.
#[derive(Debug, Clone)]
pub struct Plan {
    pub topic: String,
    pub partitions: Vec<PartitionPlan>,
    /// Milliseconds since the epoch.
    pub cut_ms: Option<i64>,
}

/// Whether the read goes on with the partition of the message just handed over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Continue,
    /// The partition ends at this message: it is not counted as read, and the
    /// partition's end is its offset.
    Stop,
}

/// Why a partition's read ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndedBy {
    /// Its start was at or past its end: nothing read.
    Empty,
    /// Its planned end.
    End,
    /// A message stamped at or after the cut.
    Cut,
    /// The caller returned [`Flow::Stop`].
    Caller,
    /// Partition EOF before the planned end (offsets without messages at the log's end).
    Eof,
}

/// Where a partition's read ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ended {
    pub partition: i32,
    /// The first offset not read (the partition's start when nothing was).
    pub next: i64,
    pub by: EndedBy,
}

/// librdkafka also reports each partition EOF as a global error, which the default
/// context logs at ERROR; here an EOF is handled by the read loop.
struct QuietEof;

impl ClientContext for QuietEof {
    const ENABLE_REFRESH_OAUTH_TOKEN: bool = true;

    fn generate_oauth_token(
        &self,
        config: Option<&str>,
    ) -> Result<rdkafka::client::OAuthToken, Box<dyn std::error::Error>> {
        crate::kafka::identity::token(config)
    }

    fn error(&self, error: KafkaError, reason: &str) {
        if !matches!(error, KafkaError::Global(RDKafkaErrorCode::PartitionEOF)) {
            tracing::error!("librdkafka: {error}: {reason}");
        }
    }
}

impl ConsumerContext for QuietEof {}

/// One consumer that plans and reads bounded ranges of topics.
pub struct BoundedReader {
    consumer: BaseConsumer<QuietEof>,
    stop: Option<Arc<AtomicBool>>,
    silence: Duration,
}

impl BoundedReader {
    /// A reader with `client`'s settings (brokers, security, client id). The group id is
    /// replaced by a throwaway one: the group is never joined and nothing is committed.
    pub fn new(client: &ClientConfig) -> Result<Self, Error> {
        let mut client = client.clone();
        let name = client
            .get("client.id")
            .unwrap_or("bounded-reader")
            .to_owned();
        client
            .set(
                "group.id",
                format!("{name}.bounded.{}", Uuid::new_v4().simple()),
            )
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "true")
            // An assigned start that retention removed meanwhile reads from what is left.
            .set("auto.offset.reset", "earliest")
            // Bounds only fetches of partitions with nothing new (the tail of a read).
            .set("fetch.wait.max.ms", "100")
            // The prefetch queue and a fetch's size (64 and 50 MiB by default, per
            // reader): a reader of a long history keeps its memory small at no
            // measurable cost in speed (its consumers decode and apply far slower).
            .set("queued.max.messages.kbytes", "8192")
            .set("fetch.max.bytes", "8388608");
        let consumer: BaseConsumer<QuietEof> = client.create_with_context(QuietEof)?;
        // Plans ask for watermarks before any poll, which is what serves token requests.
        if let Err(e) = crate::kafka::identity::prime(consumer.client().native_client(), &client) {
            tracing::warn!("the bounded reader has no broker token yet: {e}");
        }
        Ok(Self {
            consumer,
            stop: None,
            silence: SILENCE,
        })
    }

    /// A reader with the service's Kafka settings.
    pub fn from_config(config: &KafkaConfig, client_id: &str) -> Result<Self, Error> {
        Self::new(&crate::kafka::client_config(config, client_id))
    }

    /// Once `stop` is set, a read ends with [`Error::Stopped`] (its caller went away).
    pub fn stop_on(mut self, stop: Arc<AtomicBool>) -> Self {
        self.stop = Some(stop);
        self
    }

    /// How long the broker may answer nothing before a read fails ([`SILENCE`] unless set).
    pub fn silence(mut self, silence: Duration) -> Self {
        self.silence = silence;
        self
    }

    /// The topic's partition ids, in order.
    pub fn partitions(&self, topic: &str) -> Result<Vec<i32>, Error> {
        let metadata = self.consumer.fetch_metadata(Some(topic), REQUEST_TIMEOUT)?;
        let mut partitions: Vec<i32> = match metadata.topics().first() {
            Some(t) if t.error().is_none() => t.partitions().iter().map(|p| p.id()).collect(),
            _ => vec![],
        };
        if partitions.is_empty() {
            return Err(Error::NoTopic(topic.to_owned()));
        }
        partitions.sort_unstable();
        Ok(partitions)
    }

    /// Every partition of `topic`, bounded as `bounds` says.
    pub fn plan(&self, topic: &str, bounds: Bounds) -> Result<Plan, Error> {
        let partitions = self.partitions(topic)?;
        self.plan_partitions(topic, &partitions, bounds)
    }

    /// One partition of `topic`, bounded as `bounds` says.
    pub fn plan_partition(
        &self,
        topic: &str,
        partition: i32,
        bounds: Bounds,
    ) -> Result<Plan, Error> {
        if !self.partitions(topic)?.contains(&partition) {
            return Err(Error::NoPartition {
                topic: topic.to_owned(),
                partition,
            });
        }
        self.plan_partitions(topic, &[partition], bounds)
    }

    fn plan_partitions(
        &self,
        topic: &str,
        partitions: &[i32],
        bounds: Bounds,
    ) -> Result<Plan, Error> {
        let starts = self.offsets_at(topic, partitions, bounds.since)?;
        let untils = self.offsets_at(topic, partitions, bounds.until)?;
        let mut plans = Vec::with_capacity(partitions.len());
        for &partition in partitions {
            let (low, high) = self
                .consumer
                .fetch_watermarks(topic, partition, REQUEST_TIMEOUT)?;
            let start = match bounds.since {
                None => low,
                // Nothing stamped at or after `since`: nothing to read.
                Some(_) => starts.get(&partition).copied().flatten().unwrap_or(high),
            };
            let end = match untils.get(&partition).copied().flatten() {
                Some(until) => until.min(high),
                None => high,
            };
            plans.push(PartitionPlan {
                partition,
                low,
                high,
                start: start.max(low),
                end,
            });
        }
        Ok(Plan {
            topic: topic.to_owned(),
            partitions: plans,
            cut_ms: bounds.cut.map(|t| t.timestamp_millis()),
        })
    }

    /// The first offset stamped at or after `at` in each partition (`None`: no such
    /// message); empty without `at`.
    fn offsets_at(
        &self,
        topic: &str,
        partitions: &[i32],
        at: Option<DateTime<Utc>>,
    ) -> Result<HashMap<i32, Option<i64>>, Error> {
        let Some(at) = at else {
            return Ok(HashMap::new());
        };
        let mut tpl = TopicPartitionList::new();
        for &p in partitions {
            tpl.add_partition_offset(topic, p, Offset::Offset(at.timestamp_millis()))?;
        }
        Ok(self
            .consumer
            .offsets_for_times(tpl, REQUEST_TIMEOUT)?
            .elements()
            .iter()
            .map(|e| match e.offset() {
                Offset::Offset(o) => (e.partition(), Some(o)),
                _ => (e.partition(), None),
            })
            .collect())
    }

    /// Assigns the plan's partitions that have something to read, at their start; the
    /// empty ones have ended already.
    fn assign(&self, plan: &Plan) -> Result<(OpenPartitions, Vec<Ended>), Error> {
        let mut ended = Vec::with_capacity(plan.partitions.len());
        let mut open = HashMap::new();
        let mut assignment = TopicPartitionList::new();
        for p in &plan.partitions {
            if p.is_empty() {
                ended.push(Ended {
                    partition: p.partition,
                    next: p.start,
                    by: EndedBy::Empty,
                });
                continue;
            }
            assignment.add_partition_offset(&plan.topic, p.partition, Offset::Offset(p.start))?;
            open.insert(p.partition, (p.start, p.end));
        }
        if !open.is_empty() {
            self.consumer.assign(&assignment)?;
        }
        Ok((open, ended))
    }

    /// Hands every message of `plan` to `each`, in offset order per partition, and says
    /// where each partition ended. `each`'s error ends the read with that error.
    pub fn read<E: From<Error>>(
        &self,
        plan: &Plan,
        mut each: impl FnMut(&BorrowedMessage<'_>) -> Result<Flow, E>,
    ) -> Result<Vec<Ended>, E> {
        let topic = plan.topic.as_str();
        let (mut open, mut ended) = self.assign(plan)?;
        if open.is_empty() {
            return Ok(ended);
        }
        let mut finish = |partition: i32, next: i64, by: EndedBy| {
            // Paused, so the rest of the read fetches only what it still needs.
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition(topic, partition);
            let _ = self.consumer.pause(&tpl);
            ended.push(Ended {
                partition,
                next,
                by,
            });
        };
        let mut heard = Instant::now();
        while !open.is_empty() {
            if self
                .stop
                .as_ref()
                .is_some_and(|s| s.load(Ordering::Relaxed))
            {
                return Err(Error::Stopped.into());
            }
            // Checked on every turn: a broker that is down may answer each poll with a
            // transport error (waited out below) and never with silence.
            if heard.elapsed() > self.silence {
                return Err(Error::Silent(self.silence).into());
            }
            let m = match self.consumer.poll(POLL) {
                None => continue,
                Some(Err(KafkaError::PartitionEOF(partition))) => {
                    heard = Instant::now();
                    if let Some((next, end)) = open.remove(&partition) {
                        tracing::debug!(
                            topic,
                            partition,
                            next,
                            end,
                            "partition EOF before the planned end"
                        );
                        finish(partition, next, EndedBy::Eof);
                    }
                    continue;
                }
                Some(Err(KafkaError::MessageConsumption(code))) if passing(code) => {
                    tracing::debug!(topic, error = %code, "broker error the client recovers from");
                    continue;
                }
                Some(Err(e)) => return Err(Error::from(e).into()),
                Some(Ok(m)) => m,
            };
            let (partition, offset) = (m.partition(), m.offset());
            let Some(&(_, end)) = open.get(&partition) else {
                continue; // fetched before its partition was paused
            };
            if offset >= end {
                open.remove(&partition);
                finish(partition, end, EndedBy::End);
            } else if plan
                .cut_ms
                .is_some_and(|cut| m.timestamp().to_millis().is_some_and(|ts| ts >= cut))
            {
                open.remove(&partition);
                finish(partition, offset, EndedBy::Cut);
            } else {
                match each(&m)? {
                    Flow::Stop => {
                        open.remove(&partition);
                        finish(partition, offset, EndedBy::Caller);
                    }
                    Flow::Continue if offset + 1 >= end => {
                        open.remove(&partition);
                        finish(partition, end, EndedBy::End);
                    }
                    Flow::Continue => {
                        open.insert(partition, (offset + 1, end));
                    }
                }
            }
            // The caller's time (a full channel downstream) is not the broker's silence.
            heard = Instant::now();
        }
        let _ = self.consumer.unassign();
        ended.sort_unstable_by_key(|e| e.partition);
        Ok(ended)
    }
}

/// Partition -> (next offset, planned end) of the partitions still being read.
type OpenPartitions = HashMap<i32, (i64, i64)>;

/// Errors librdkafka recovers from by itself (reconnecting, finding a partition's new
/// leader): the read waits on, and only the silence ends it.
fn passing(code: RDKafkaErrorCode) -> bool {
    use RDKafkaErrorCode::*;
    matches!(
        code,
        BrokerTransportFailure
            | AllBrokersDown
            | Resolve
            | OperationTimedOut
            | RequestTimedOut
            | NetworkException
            | LeaderNotAvailable
            | NotLeaderForPartition
            | FencedLeaderEpoch
    )
}
