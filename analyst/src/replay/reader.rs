//! One broker reader per topic, on its own thread, with [`service_kit::bounded_reader`]:
//! the partitions are read from the replay's start offsets to the ends planned when the
//! replay began (manual assignment in a throwaway group: the live group is never joined,
//! its offsets never touched). Messages are decoded on the reader thread (spreading the
//! JSON and schema work over cores) and handed to the applier in batches; where each
//! partition ended is reported last.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use events::DecodeError;
use rdkafka::message::Message;
use service_kit::bounded_reader::{self, BoundedReader, Flow, Plan};
use tokio::sync::mpsc;

use projector::processor::{Decoded, Incoming, Processor};

/// Items per batch handed to the applier.
const BATCH: usize = 500;
/// A partial batch is handed over once its oldest item is this old (looked at as
/// messages arrive), so the applier and the progress bar keep up when the broker
/// delivers slowly.
const BATCH_AGE: Duration = Duration::from_millis(100);

pub struct Item {
    pub msg: Incoming,
    /// `None`: outside the time window (passed over, progress still advances).
    pub decoded: Option<Result<Decoded, DecodeError>>,
}

pub enum Batch {
    Items(Vec<Item>),
    /// The topic is read to its end offsets: (partition, end).
    Done(String, Vec<(i32, i64)>),
    Failed(String),
}

/// The replay's window on the broker's timestamps (milliseconds since the epoch),
/// `since` inclusive, `until` exclusive: messages outside are read but not applied.
#[derive(Clone, Copy)]
pub struct Window {
    pub since_ms: Option<i64>,
    pub until_ms: Option<i64>,
}

impl Window {
    /// Whether a message stamped `ts` is applied (one without a stamp only when the
    /// replay has no window).
    pub fn holds(&self, ts: Option<i64>) -> bool {
        match ts {
            Some(ts) => {
                self.since_ms.is_none_or(|s| ts >= s) && self.until_ms.is_none_or(|u| ts < u)
            }
            None => self.since_ms.is_none() && self.until_ms.is_none(),
        }
    }
}

/// Reads `plan` on a thread of its own until its ends, `stop`, or a closed channel.
pub fn spawn(
    reader: BoundedReader,
    plan: Plan,
    window: Window,
    processor: Processor,
    tx: mpsc::Sender<Batch>,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let reader = reader.stop_on(stop);
        if let Err(e) = read(&reader, &plan, window, &processor, &tx) {
            let stopped = matches!(
                e.downcast_ref::<bounded_reader::Error>(),
                Some(bounded_reader::Error::Stopped)
            );
            if !stopped {
                let _ = tx.blocking_send(Batch::Failed(format!("{}: {e}", plan.topic)));
            }
        }
    })
}

fn read(
    reader: &BoundedReader,
    plan: &Plan,
    window: Window,
    processor: &Processor,
    tx: &mpsc::Sender<Batch>,
) -> anyhow::Result<()> {
    let send = |batch: &mut Vec<Item>| -> anyhow::Result<()> {
        if !batch.is_empty() {
            let items = std::mem::replace(batch, Vec::with_capacity(BATCH));
            tx.blocking_send(Batch::Items(items))
                .map_err(|_| anyhow::anyhow!("applier gone"))?;
        }
        Ok(())
    };
    let mut batch = Vec::with_capacity(BATCH);
    let mut oldest = Instant::now();
    let ended = reader.read(plan, |m| {
        let msg = Incoming::from_message(m);
        let decoded = window
            .holds(m.timestamp().to_millis())
            .then(|| processor.decode(&msg));
        if batch.is_empty() {
            oldest = Instant::now();
        }
        batch.push(Item { msg, decoded });
        if batch.len() >= BATCH || oldest.elapsed() >= BATCH_AGE {
            send(&mut batch)?;
        }
        Ok::<_, anyhow::Error>(Flow::Continue)
    })?;
    send(&mut batch)?;
    let ends = ended.iter().map(|e| (e.partition, e.next)).collect();
    tx.blocking_send(Batch::Done(plan.topic.clone(), ends))
        .map_err(|_| anyhow::anyhow!("applier gone"))?;
    Ok(())
}
