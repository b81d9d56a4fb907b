//! The broker's stage: what the relay published, as the product-change topic holds it.
//! The whole topic is read once per reconciliation (a bounded read to the high
//! watermarks, in a throwaway group) and each line's messages kept in offset order. A
//! partition whose beginning retention removed cannot be checked: its lines are left out
//! of this stage.

use std::collections::{HashMap, HashSet};

use rdkafka::message::Message;
use rdkafka::ClientConfig;
use service_kit::bounded_reader::{self, BoundedReader, Bounds, Flow};
use uuid::Uuid;

/// The product-change topic as read: each line's (sequence, event id) in offset order.
#[derive(Debug, Default)]
pub struct Published {
    by_line: HashMap<String, Vec<(u64, Uuid)>>,
    truncated: HashSet<i32>,
    partitions: i32,
    /// Messages read, and those that were not an event envelope.
    pub messages: u64,
    pub unreadable: u64,
}

/// The identifying fields of an envelope (the rest is not needed here).
#[derive(serde::Deserialize)]
struct Head {
    event_id: Uuid,
    aggregate_id: String,
    sequence: u64,
}

impl Published {
    /// Reads `topic` to its current end. Blocking: run it off the async runtime.
    pub fn read(client: &ClientConfig, topic: &str) -> Result<Published, bounded_reader::Error> {
        let reader = BoundedReader::new(client)?;
        let plan = reader.plan(topic, Bounds::default())?;
        let mut out = Published {
            partitions: plan.partitions.len() as i32,
            truncated: plan
                .partitions
                .iter()
                .filter(|p| p.low > 0)
                .map(|p| p.partition)
                .collect(),
            ..Default::default()
        };
        reader.read(&plan, |m| {
            out.messages += 1;
            match m
                .payload()
                .and_then(|p| serde_json::from_slice::<Head>(p).ok())
            {
                Some(head) => out
                    .by_line
                    .entry(head.aggregate_id)
                    .or_default()
                    .push((head.sequence, head.event_id)),
                None => out.unreadable += 1,
            }
            Ok::<_, bounded_reader::Error>(Flow::Continue)
        })?;
        Ok(out)
    }

    /// The line's messages in offset order; `None` when its partition was truncated.
    pub fn of(&self, line: &str) -> Option<Vec<(u64, Uuid)>> {
        let partition = events::topics::partition_for(line, self.partitions.max(1));
        if self.truncated.contains(&partition) {
            return None;
        }
        Some(self.by_line.get(line).cloned().unwrap_or_default())
    }

    /// Partitions whose beginning retention removed (their lines are not checked here).
    pub fn truncated(&self) -> Vec<i32> {
        let mut t: Vec<i32> = self.truncated.iter().copied().collect();
        t.sort();
        t
    }
}
