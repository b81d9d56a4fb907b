//! Reads one topic between two broker times, partition by partition, with manual
//! assignment in the export's own consumer group: no group is joined, no offset
//! committed, so the live projector's group is never moved.
//!
//! - Start: the offset the broker gives for `since` (offsets-for-times), else the log's
//!   beginning. Tansu 0.6 answers 0 whatever the time, so there the whole log is read
//!   and each message's timestamp decides.
//! - End: the export's start time (a partition ends at its first message stamped at or
//!   after it, so a topic written all the time still ends), partition EOF, or the
//!   offset for `until`. Not the high watermark: Tansu 0.6 reports it as the base offset
//!   of the last batch plus one, short of the end. The `until` offset only ends a
//!   partition at a message stamped at or after `until`, in case the broker answered
//!   with the start of the batch holding it.
//! - Tansu 0.6 answers a fetch at an offset inside a multi-record batch with the next
//!   batch, so a start other than the beginning is confirmed as in the replay's reader:
//!   a first message past it rewinds the partition (further each time) until a message
//!   at or before it arrives.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::BorrowedMessage;
use rdkafka::{Message, Offset, TopicPartitionList};

const TIMEOUT: Duration = Duration::from_secs(10);

/// Where a partition's export starts and may end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Range {
    pub partition: i32,
    /// First offset to read (0: the beginning).
    pub start: i64,
    /// The broker's offset for `until`.
    pub until_offset: Option<i64>,
    /// Nothing stamped at or after `since`: not read at all.
    pub empty: bool,
}

/// The partitions of `topic` and their ranges for the window.
pub fn plan(
    consumer: &BaseConsumer,
    topic: &str,
    since: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
) -> anyhow::Result<Vec<Range>> {
    let metadata = consumer.fetch_metadata(Some(topic), TIMEOUT)?;
    let partitions: Vec<i32> = match metadata.topics().first() {
        Some(t) if t.error().is_none() => t.partitions().iter().map(|p| p.id()).collect(),
        _ => vec![],
    };
    anyhow::ensure!(
        !partitions.is_empty(),
        "topic {topic} is not on the broker (is the topic prefix right?)"
    );
    let offsets_at = |t: Option<DateTime<Utc>>| -> anyhow::Result<HashMap<i32, Option<i64>>> {
        let Some(t) = t else {
            return Ok(HashMap::new());
        };
        let mut tpl = TopicPartitionList::new();
        for p in &partitions {
            tpl.add_partition_offset(topic, *p, Offset::Offset(t.timestamp_millis()))?;
        }
        Ok(consumer
            .offsets_for_times(tpl, TIMEOUT)?
            .elements()
            .iter()
            .map(|e| match e.offset() {
                Offset::Offset(o) => (e.partition(), Some(o)),
                _ => (e.partition(), None), // nothing stamped at or after t
            })
            .collect())
    };
    let starts = offsets_at(since)?;
    let ends = offsets_at(until)?;
    Ok(partitions
        .into_iter()
        .map(|p| {
            let start = starts.get(&p).copied().flatten();
            Range {
                partition: p,
                start: start.unwrap_or(0),
                until_offset: ends.get(&p).copied().flatten(),
                empty: since.is_some() && start.is_none(),
            }
        })
        .collect())
}

/// The window a partition is read in (milliseconds since the epoch).
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    pub until_ms: Option<i64>,
    /// The export's start: later messages are left for the next export.
    pub cut_ms: i64,
}

struct Part {
    start: i64,
    until_offset: Option<i64>,
    confirmed: bool,
    rewind: i64,
    done: bool,
}

/// Hands every message of the ranges to `each`, in offset order per partition.
pub fn read(
    consumer: &BaseConsumer,
    topic: &str,
    ranges: &[Range],
    bounds: Bounds,
    mut each: impl FnMut(&BorrowedMessage<'_>) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let mut parts: HashMap<i32, Part> = HashMap::new();
    let mut assignment = TopicPartitionList::new();
    for range in ranges.iter().filter(|r| !r.empty) {
        parts.insert(
            range.partition,
            Part {
                start: range.start,
                until_offset: range.until_offset,
                confirmed: range.start == 0,
                rewind: 0,
                done: false,
            },
        );
        let offset = match range.start {
            0 => Offset::Beginning,
            start => Offset::Offset(start),
        };
        assignment.add_partition_offset(topic, range.partition, offset)?;
    }
    if parts.is_empty() {
        return Ok(());
    }
    consumer.assign(&assignment)?;
    let finish = |p: i32, part: &mut Part| {
        part.done = true;
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(topic, p);
        let _ = consumer.pause(&tpl);
    };
    while parts.values().any(|p| !p.done) {
        match consumer.poll(Duration::from_millis(100)) {
            None => {}
            Some(Err(KafkaError::PartitionEOF(p))) => {
                let Some(part) = parts.get_mut(&p).filter(|part| !part.done) else {
                    continue;
                };
                if !part.confirmed && part.rewind < part.start {
                    rewind(consumer, topic, p, part)?;
                } else {
                    finish(p, part);
                }
            }
            Some(Err(e)) => return Err(e.into()),
            Some(Ok(m)) => {
                let (p, offset) = (m.partition(), m.offset());
                let Some(part) = parts.get_mut(&p).filter(|part| !part.done) else {
                    continue;
                };
                if !part.confirmed {
                    if offset > part.start && part.rewind < part.start {
                        rewind(consumer, topic, p, part)?;
                        continue;
                    }
                    part.confirmed = true;
                }
                if offset < part.start {
                    continue;
                }
                let ts = m.timestamp().to_millis();
                let past_until = part.until_offset.is_some_and(|end| offset >= end)
                    && match (ts, bounds.until_ms) {
                        (Some(ts), Some(until)) => ts >= until,
                        _ => true,
                    };
                if past_until || ts.is_some_and(|ts| ts >= bounds.cut_ms) {
                    finish(p, part);
                    continue;
                }
                each(&m)?;
            }
        }
    }
    Ok(())
}

fn rewind(consumer: &BaseConsumer, topic: &str, p: i32, part: &mut Part) -> anyhow::Result<()> {
    part.rewind = (part.rewind * 2).max(1).min(part.start);
    let to = part.start - part.rewind;
    tracing::debug!(
        topic,
        partition = p,
        to,
        "start offset skipped by the broker; rewinding"
    );
    consumer.seek(topic, p, Offset::Offset(to), TIMEOUT)?;
    Ok(())
}
