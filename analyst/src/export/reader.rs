//! Reads one topic between two broker times with [`service_kit::bounded_reader`]: manual
//! assignment in a throwaway group, so no group is joined, no offset committed, and the
//! live projector's group is never moved.
//!
//! - Start: each partition's first offset the broker stamped at or after `since`
//!   (offsets-for-times), else the log's beginning; a partition with nothing from
//!   `since` on is not read.
//! - End: each partition's first offset stamped at or after `until`, else its high
//!   watermark when the export starts; and its first message stamped at or after the
//!   export's start, so a topic written all the time still ends and later messages are
//!   left for the next export.

use chrono::{DateTime, Utc};
use rdkafka::message::BorrowedMessage;
use rdkafka::ClientConfig;
use service_kit::bounded_reader::{BoundedReader, Bounds, Flow};

/// Hands every message of `topic` between `since` and `until` to `each`, in offset order
/// per partition (blocking).
pub fn read(
    client: &ClientConfig,
    topic: &str,
    since: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
    mut each: impl FnMut(&BorrowedMessage<'_>) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let reader = BoundedReader::new(client)?;
    let bounds = Bounds {
        since,
        until,
        cut: Some(Utc::now()),
    };
    let plan = reader.plan(topic, bounds)?;
    reader.read(&plan, |m| {
        each(m)?;
        Ok::<_, anyhow::Error>(Flow::Continue)
    })?;
    Ok(())
}
