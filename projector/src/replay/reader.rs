//! One broker reader per topic (partition EOF does not name its topic), on its own
//! thread: assigns the partitions at the replay's start offsets (manual assignment in
//! the replay's own group: the live group is never joined, its offsets never touched),
//! decodes on the reader thread (spreading the JSON and schema work over cores) and
//! hands batches to the applier. Stops each partition at its end offset or at EOF.
//!
//! Tansu 0.6 answers a fetch inside a multi-record batch with the next batch, so a start
//! offset other than the log's beginning is confirmed: a first message past it rewinds
//! the partition (further each time) until a message at or before it arrives.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use events::DecodeError;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use tokio::sync::mpsc;

use crate::processor::{Decoded, Incoming, Processor};

/// Where a partition's replay starts and ends.
#[derive(Debug, Clone)]
pub struct PartitionPlan {
    pub partition: i32,
    /// First offset to apply (0: the log's beginning).
    pub start: i64,
    /// First offset not to apply, once a message there is stamped at or after `until`
    /// (the broker's offset for `until` is a hint: Tansu 0.6 answers offsets-for-times
    /// with 0 whatever the time); `None`: read to the end (partition EOF).
    pub end: Option<i64>,
}

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

#[derive(Clone, Copy)]
pub struct Window {
    pub since_ms: Option<i64>,
    pub until_ms: Option<i64>,
    /// A partition ends at its first message stamped at or after this (the replay's
    /// start), so topics written all the time still end; later messages are the live
    /// projector's (it starts at these end offsets after a switch).
    pub cut_ms: i64,
}

struct Part {
    start: i64,
    end: Option<i64>,
    /// Next offset expected (last seen + 1).
    next: i64,
    confirmed: bool,
    rewind: i64,
    done: bool,
}

#[allow(clippy::too_many_arguments)]
pub fn spawn(
    client: ClientConfig,
    topic: String,
    plans: Vec<PartitionPlan>,
    window: Window,
    processor: Processor,
    tx: mpsc::Sender<Batch>,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        if let Err(e) = read(client, &topic, plans, window, &processor, &tx, &stop) {
            let _ = tx.blocking_send(Batch::Failed(format!("{topic}: {e}")));
        }
    })
}

fn read(
    client: ClientConfig,
    topic: &str,
    plans: Vec<PartitionPlan>,
    window: Window,
    processor: &Processor,
    tx: &mpsc::Sender<Batch>,
    stop: &AtomicBool,
) -> anyhow::Result<()> {
    let consumer: BaseConsumer = client.create()?;
    let mut parts: HashMap<i32, Part> = HashMap::new();
    let mut assignment = TopicPartitionList::new();
    for plan in plans {
        parts.insert(
            plan.partition,
            Part {
                start: plan.start,
                end: plan.end,
                next: plan.start,
                confirmed: plan.start == 0,
                rewind: 0,
                done: false,
            },
        );
        let offset = if plan.start == 0 {
            Offset::Beginning
        } else {
            Offset::Offset(plan.start)
        };
        assignment.add_partition_offset(topic, plan.partition, offset)?;
    }
    consumer.assign(&assignment)?;
    let mut batch = Vec::with_capacity(1000);
    let send = |batch: &mut Vec<Item>| -> anyhow::Result<()> {
        if !batch.is_empty() {
            let items = std::mem::replace(batch, Vec::with_capacity(1000));
            tx.blocking_send(Batch::Items(items))
                .map_err(|_| anyhow::anyhow!("applier gone"))?;
        }
        Ok(())
    };
    while parts.values().any(|p| !p.done) {
        if stop.load(Ordering::Relaxed) {
            return Ok(());
        }
        match consumer.poll(Duration::from_millis(100)) {
            None => send(&mut batch)?,
            Some(Err(KafkaError::PartitionEOF(p))) => {
                let Some(part) = parts.get_mut(&p) else {
                    continue;
                };
                if part.done {
                    continue;
                }
                if !part.confirmed && part.start > 0 && part.rewind < part.start {
                    rewind(&consumer, topic, p, part)?;
                    continue;
                }
                part.done = true;
                part.end = Some(part.next);
                send(&mut batch)?;
            }
            Some(Err(e)) => return Err(e.into()),
            Some(Ok(m)) => {
                let p = m.partition();
                let offset = m.offset();
                let Some(part) = parts.get_mut(&p) else {
                    continue;
                };
                if part.done {
                    continue;
                }
                if !part.confirmed {
                    if offset > part.start && part.rewind < part.start {
                        rewind(&consumer, topic, p, part)?;
                        continue;
                    }
                    part.confirmed = true;
                }
                if offset < part.start {
                    continue;
                }
                let ts = m.timestamp().to_millis();
                let past_until = match (ts, window.until_ms) {
                    (Some(ts), Some(until)) => ts >= until,
                    _ => true,
                };
                if past_until && part.end.is_some_and(|end| offset >= end) {
                    part.done = true;
                    let mut tpl = TopicPartitionList::new();
                    tpl.add_partition(topic, p);
                    let _ = consumer.pause(&tpl);
                    continue;
                }
                if ts.is_some_and(|ts| ts >= window.cut_ms) {
                    part.done = true;
                    part.end = Some(offset);
                    let mut tpl = TopicPartitionList::new();
                    tpl.add_partition(topic, p);
                    let _ = consumer.pause(&tpl);
                    continue;
                }
                part.next = offset + 1;
                let in_window = match ts {
                    Some(ts) => {
                        window.since_ms.is_none_or(|s| ts >= s)
                            && window.until_ms.is_none_or(|u| ts < u)
                    }
                    None => window.since_ms.is_none() && window.until_ms.is_none(),
                };
                let msg = Incoming::from_message(&m);
                let decoded = in_window.then(|| processor.decode(&msg));
                batch.push(Item { msg, decoded });
                if batch.len() >= 1000 {
                    send(&mut batch)?;
                }
            }
        }
    }
    send(&mut batch)?;
    let ends = parts
        .iter()
        .map(|(p, part)| (*p, part.end.unwrap_or(part.next)))
        .collect();
    tx.blocking_send(Batch::Done(topic.to_owned(), ends))
        .map_err(|_| anyhow::anyhow!("applier gone"))?;
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
    consumer.seek(topic, p, Offset::Offset(to), Duration::from_secs(5))?;
    Ok(())
}
