//! What every consumer group member here needs besides rdkafka itself: lag metrics.

use rdkafka::consumer::{ConsumerContext, StreamConsumer};
use rdkafka::statistics::Statistics;
use rdkafka::ClientContext;

/// Publishes `phonebill_consumer_lag{group,topic,partition}` from librdkafka's statistics
/// (set `statistics.interval.ms`).
pub struct GroupContext {
    group: String,
}

impl GroupContext {
    pub fn new(group: impl Into<String>) -> Self {
        Self {
            group: group.into(),
        }
    }
}

impl ClientContext for GroupContext {
    fn stats(&self, statistics: Statistics) {
        for (topic, t) in &statistics.topics {
            for (partition, p) in &t.partitions {
                if *partition < 0 || p.consumer_lag < 0 {
                    continue;
                }
                metrics::gauge!("phonebill_consumer_lag", "group" => self.group.clone(), "topic" => topic.clone(), "partition" => partition.to_string())
                    .set(p.consumer_lag as f64);
            }
        }
    }
}

impl ConsumerContext for GroupContext {}

pub type GroupConsumer = StreamConsumer<GroupContext>;
