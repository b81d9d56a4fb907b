//! The replay's second source for `phonebill.product-change`: the command side's event
//! store, the source of truth, read when the broker no longer holds the topic's
//! beginning (retention) or when asked (`--source event-store`).
//!
//! - Rows become the very messages the outbox relay publishes (`events::stored`: same
//!   envelope, same event id, same key and partition), then go through the same decoding
//!   and schema check as broker messages, so the projections cannot tell the sources
//!   apart.
//! - One read-only `REPEATABLE READ` transaction: one snapshot, taken after the broker's
//!   end offsets were read. Every event published below those ends was committed before
//!   the snapshot, so the snapshot holds all of them; events committed later reach the
//!   live projector from the broker after a switch, and the per-line checkpoints drop the
//!   ones the replay already applied.
//! - Pages of rows in primary-key order (line, then sequence): each line's events in
//!   order. The rows carry no broker offset (`offset` -1), so they add no progress; a
//!   resumed replay reads the store again and its checkpoints skip what was flushed.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use events::stored::{StoredEvent, LINE_AGGREGATE_TYPE};
use events::topics::partition_for;
use events::{codec, DecodeError};
use sqlx::PgPool;
use tokio::sync::mpsc;

use crate::replay::reader::{Batch, Item, Window};
use projector::processor::{Incoming, Processor};

/// Rows per page (and per batch handed to the applier).
const PAGE: i64 = 2_000;

/// Where the event store is and what its rows are published as.
pub struct Source {
    pub pool: PgPool,
    /// The command side's schema (its `events` table).
    pub schema: String,
    pub topic: String,
    pub partitions: i32,
    /// The broker's end offsets read before the snapshot: the hand-over point per
    /// partition, as a broker reader would report them.
    pub ends: Vec<(i32, i64)>,
}

pub fn spawn(
    source: Source,
    window: Window,
    processor: Processor,
    tx: mpsc::Sender<Batch>,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        if let Err(e) = read(&source, window, &processor, &tx, &stop).await {
            let _ = tx
                .send(Batch::Failed(format!("event store {}: {e}", source.schema)))
                .await;
        }
    })
}

async fn read(
    source: &Source,
    window: Window,
    processor: &Processor,
    tx: &mpsc::Sender<Batch>,
    stop: &AtomicBool,
) -> anyhow::Result<()> {
    let mut db = source.pool.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *db)
        .await?;
    let sql = format!(
        "SELECT aggregate_id, sequence, event_type, event_version, payload, metadata, recorded_at
           FROM \"{}\".events
          WHERE aggregate_type = $1 AND (aggregate_id, sequence) > ($2, $3)
          ORDER BY aggregate_id, sequence
          LIMIT $4",
        source.schema
    );
    let mut after = (String::new(), 0i64);
    loop {
        if stop.load(Ordering::Relaxed) {
            return Ok(());
        }
        let rows: Vec<StoredEvent> = sqlx::query_as(&sql)
            .bind(LINE_AGGREGATE_TYPE)
            .bind(&after.0)
            .bind(after.1)
            .bind(PAGE)
            .fetch_all(&mut *db)
            .await?;
        let Some(last) = rows.last() else { break };
        after = (last.aggregate_id.clone(), last.sequence);
        let items = rows
            .into_iter()
            .map(|row| item(source, window, processor, row));
        tx.send(Batch::Items(items.collect()))
            .await
            .map_err(|_| anyhow::anyhow!("applier gone"))?;
    }
    db.commit().await?;
    tx.send(Batch::Done(source.topic.clone(), source.ends.clone()))
        .await
        .map_err(|_| anyhow::anyhow!("applier gone"))?;
    Ok(())
}

fn item(source: &Source, window: Window, processor: &Processor, row: StoredEvent) -> Item {
    let at = row.recorded_at.timestamp_millis();
    let in_window =
        window.since_ms.is_none_or(|s| at >= s) && window.until_ms.is_none_or(|u| at < u);
    let key = row.aggregate_id.clone().into_bytes();
    let partition = partition_for(&row.aggregate_id, source.partitions);
    let position = format!("{}/{}", row.aggregate_id, row.sequence);
    let envelope = row.into_envelope();
    let (payload, bad_row) = match envelope {
        Ok(envelope) => (codec::encode(&envelope), None),
        Err(reason) => (
            vec![],
            Some(format!("event store row {position}: {reason}")),
        ),
    };
    let msg = Incoming {
        topic: source.topic.clone(),
        partition,
        offset: -1,
        key: Some(key),
        payload,
        headers: vec![],
    };
    let decoded = in_window.then(|| match bad_row {
        Some(reason) => Err(DecodeError::Envelope(reason)),
        None => processor.decode(&msg),
    });
    Item { msg, decoded }
}
