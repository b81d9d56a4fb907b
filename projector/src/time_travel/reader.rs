//! Reads one line's partition of a topic from the broker, from the log's beginning, with
//! [`service_kit::bounded_reader`] (manual assignment in a throwaway group: the live
//! `projector` group is never touched).
//!
//! - Only the line's partition: every producer keys a line's events and facts by its
//!   number with Kafka's partitioner (`events::topics::partition_for`).
//! - From the log's beginning: a partition whose beginning retention removed cannot give
//!   the line's whole history, which is an error ([`ReadError::Truncated`]).
//! - It ends at the first of: the high watermark when the read starts; a message the
//!   broker stamped at or after `cut` (the request's start: later messages are not part
//!   of the answer); the line's first event that occurred after the moment asked for
//!   (its stream goes on in order, so nothing later is part of the answer).
//! - Only messages keyed with the line number are decoded (the same decoding and schema
//!   checks as live); the rest of the partition is passed over unread.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use events::topics::partition_for;
use rdkafka::message::Message;
use rdkafka::ClientConfig;
use service_kit::bounded_reader::{self, BoundedReader, Bounds, Flow};

use super::fold::is_past;
use crate::processor::{Decoded, Decoder, Incoming};

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
    #[error(transparent)]
    Reader(#[from] bounded_reader::Error),
    #[error(
        "the broker no longer holds the beginning of {topic} partition {partition} (first \
         offset {low}): the line's history is incomplete"
    )]
    Truncated {
        topic: String,
        partition: i32,
        low: i64,
    },
}

/// Reads `topic` for `line` (blocking: run it on a blocking thread). `stop` ends it early
/// (the caller went away).
pub fn read_topic(
    client: &ClientConfig,
    decoder: &Decoder,
    topic: &str,
    line: &str,
    at: DateTime<Utc>,
    cut: DateTime<Utc>,
    stop: Arc<AtomicBool>,
) -> Result<TopicRead, ReadError> {
    let reader = BoundedReader::new(client)?.stop_on(stop);
    let partitions = reader.partitions(topic)?.len() as i32;
    let partition = partition_for(line, partitions);
    let bounds = Bounds {
        cut: Some(cut),
        ..Default::default()
    };
    let plan = reader.plan_partition(topic, partition, bounds)?;
    if let Some(low) = plan.partitions.iter().map(|p| p.low).find(|low| *low > 0) {
        return Err(ReadError::Truncated {
            topic: topic.to_owned(),
            partition,
            low,
        });
    }
    let mut read = TopicRead {
        partition,
        events: vec![],
        messages: 0,
        rejected: 0,
    };
    reader.read(&plan, |m| {
        read.messages += 1;
        if m.key() != Some(line.as_bytes()) {
            return Ok::<_, ReadError>(Flow::Continue);
        }
        let msg = Incoming::from_message(m);
        match decoder.decode(&msg) {
            Err(e) => {
                tracing::debug!(topic, offset = msg.offset, error = %e, "time travel: undecodable");
                read.rejected += 1;
            }
            Ok(decoded) if is_past(line, at, &decoded) => return Ok(Flow::Stop),
            Ok(decoded) => read.events.push(decoded),
        }
        Ok(Flow::Continue)
    })?;
    Ok(read)
}
