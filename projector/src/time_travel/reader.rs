//! Reads one line's partition of a topic from the broker, from the log's beginning.
//!
//! - Only the line's partition: every producer keys a line's events and facts by its
//!   number with Kafka's partitioner (`events::topics::partition_for`).
//! - Manual assignment in a throwaway group id: no group is joined, no offset committed,
//!   the live `projector` group is never touched.
//! - From offset 0 (`Offset::Beginning`), so the Tansu 0.6 quirk of answering a fetch
//!   inside a multi-record batch with the next batch (see `replay::reader`) cannot skip
//!   anything. The high watermark is not used as the end either: Tansu 0.6 reports it
//!   low (the last batch's base offset plus one).
//! - It ends at the first of: partition EOF; a message the broker stamped at or after
//!   `cut` (the request's start: later messages are not part of the answer, and a busy
//!   partition still ends); the line's first event that occurred after the moment asked
//!   for (its stream goes on in order, so nothing later is part of the answer).
//! - Only messages keyed with the line number are decoded (the same decoding and schema
//!   checks as live); the rest of the partition is passed over unread.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use events::topics::partition_for;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::{ClientConfig, ClientContext, Offset, TopicPartitionList};

use super::fold::is_past;
use crate::processor::{Decoded, Decoder, Incoming};

/// A broker that answers nothing for this long (no message, no EOF) is taken as down.
const SILENCE: Duration = Duration::from_secs(30);
const METADATA_TIMEOUT: Duration = Duration::from_secs(10);

/// What reading one topic found.
pub struct TopicRead {
    pub partition: i32,
    /// The line's events, in partition order.
    pub events: Vec<Decoded>,
    /// Messages read from the partition (every key).
    pub messages: u64,
    /// The line's messages that did not decode (the live projector dead-letters them).
    pub rejected: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("the broker: {0}")]
    Broker(#[from] KafkaError),
    #[error("topic {0} does not exist")]
    NoTopic(String),
    #[error(
        "the broker no longer holds the beginning of {topic} partition {partition} (first \
         offset {low}): the line's history is incomplete"
    )]
    Truncated {
        topic: String,
        partition: i32,
        low: i64,
    },
    #[error("the broker did not answer for {0:?}")]
    Silent(Duration),
    #[error("stopped")]
    Stopped,
}

/// librdkafka also reports each partition EOF as a global error, which the default
/// context logs at ERROR; here an EOF is the expected end, handled by the poll loop.
struct QuietEof;

impl ClientContext for QuietEof {
    fn error(&self, error: KafkaError, reason: &str) {
        if !matches!(error, KafkaError::Global(RDKafkaErrorCode::PartitionEOF)) {
            tracing::error!("librdkafka: {error}: {reason}");
        }
    }
}

impl ConsumerContext for QuietEof {}

/// Reads `topic` for `line` (blocking: run it on a blocking thread). `stop` ends it early
/// (the caller went away).
pub fn read_topic(
    client: &ClientConfig,
    decoder: &Decoder,
    topic: &str,
    line: &str,
    at: DateTime<Utc>,
    cut: DateTime<Utc>,
    stop: &AtomicBool,
) -> Result<TopicRead, ReadError> {
    let consumer: BaseConsumer<QuietEof> = client.create_with_context(QuietEof)?;
    let metadata = consumer.fetch_metadata(Some(topic), METADATA_TIMEOUT)?;
    let partitions = metadata
        .topics()
        .first()
        .map(|t| t.partitions().len() as i32)
        .unwrap_or(0);
    if partitions == 0 {
        return Err(ReadError::NoTopic(topic.to_owned()));
    }
    let partition = partition_for(line, partitions);
    let (low, _) = consumer.fetch_watermarks(topic, partition, METADATA_TIMEOUT)?;
    if low > 0 {
        return Err(ReadError::Truncated {
            topic: topic.to_owned(),
            partition,
            low,
        });
    }
    let mut assignment = TopicPartitionList::new();
    assignment.add_partition_offset(topic, partition, Offset::Beginning)?;
    consumer.assign(&assignment)?;
    let mut read = TopicRead {
        partition,
        events: vec![],
        messages: 0,
        rejected: 0,
    };
    let cut_ms = cut.timestamp_millis();
    let mut last_heard = Instant::now();
    loop {
        if stop.load(Ordering::Relaxed) {
            return Err(ReadError::Stopped);
        }
        let m = match consumer.poll(Duration::from_millis(100)) {
            None if last_heard.elapsed() > SILENCE => return Err(ReadError::Silent(SILENCE)),
            None => continue,
            Some(Err(KafkaError::PartitionEOF(_))) => return Ok(read),
            Some(Err(e)) => return Err(e.into()),
            Some(Ok(m)) => m,
        };
        last_heard = Instant::now();
        if m.timestamp().to_millis().is_some_and(|ts| ts >= cut_ms) {
            return Ok(read);
        }
        read.messages += 1;
        if m.key() != Some(line.as_bytes()) {
            continue;
        }
        let msg = Incoming::from_message(&m);
        match decoder.decode(&msg) {
            Err(e) => {
                tracing::debug!(topic, offset = msg.offset, error = %e, "time travel: undecodable");
                read.rejected += 1;
            }
            Ok(decoded) if is_past(line, at, &decoded) => return Ok(read),
            Ok(decoded) => read.events.push(decoded),
        }
    }
}
