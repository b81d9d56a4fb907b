//! Time travel's second source for `phonebill.product-change`: the command side's event
//! store, read when the broker no longer holds the beginning of the line's partition
//! (retention). The rows become the very messages the outbox relay publishes
//! (`events::stored`: the same envelope, key and partition) and are decoded and checked
//! as broker messages are, so the fold cannot tell the sources apart. KOS's facts have
//! no such second home: their topic's retention must stay unlimited.

use chrono::{DateTime, Utc};
use events::codec;
use events::stored::{StoredEvent, LINE_AGGREGATE_TYPE};
use sqlx::PgPool;

use super::fold::is_past;
use super::reader::TopicRead;
use crate::processor::{Decoder, Incoming};

/// Where the event store is: a pool that may read `<schema>.events`.
#[derive(Clone)]
pub struct EventStore {
    pub pool: PgPool,
    /// The command side's schema (its `events` table).
    pub schema: String,
}

impl EventStore {
    /// `line`'s product-change events in sequence order, up to its first event past
    /// `at`, as read from `topic`'s `partition`.
    pub async fn read_line(
        &self,
        decoder: &Decoder,
        topic: &str,
        partition: i32,
        line: &str,
        at: DateTime<Utc>,
    ) -> Result<TopicRead, sqlx::Error> {
        let rows: Vec<StoredEvent> = sqlx::query_as(&format!(
            "SELECT aggregate_id, sequence, event_type, event_version, payload, metadata, recorded_at
               FROM \"{}\".events
              WHERE aggregate_type = $1 AND aggregate_id = $2
              ORDER BY sequence",
            self.schema
        ))
        .bind(LINE_AGGREGATE_TYPE)
        .bind(line)
        .fetch_all(&self.pool)
        .await?;
        let mut read = TopicRead {
            partition,
            events: vec![],
            messages: 0,
            rejected: 0,
        };
        for row in rows {
            read.messages += 1;
            let position = format!("{}/{}", row.aggregate_id, row.sequence);
            let msg = match row.into_envelope() {
                Ok(envelope) => Incoming {
                    topic: topic.to_owned(),
                    partition,
                    offset: -1,
                    key: Some(line.as_bytes().to_vec()),
                    payload: codec::encode(&envelope),
                    headers: vec![],
                },
                Err(reason) => {
                    tracing::debug!(%position, %reason, "time travel: unreadable event store row");
                    read.rejected += 1;
                    continue;
                }
            };
            match decoder.decode(&msg) {
                Err(e) => {
                    tracing::debug!(%position, error = %e, "time travel: undecodable");
                    read.rejected += 1;
                }
                Ok(decoded) if is_past(line, at, &decoded) => break,
                Ok(decoded) => read.events.push(decoded),
            }
        }
        Ok(read)
    }
}
