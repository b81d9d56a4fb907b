//! Messages that cannot be decoded (or fail their schema) go to `phonebill.dead-letter`
//! byte for byte, with their key, their original headers and the `dlq-*` headers saying
//! why and where from.

use std::time::Duration;

use events::dead_letter as dlq;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;

use crate::processor::Incoming;

#[derive(Clone)]
pub struct DeadLetters {
    producer: FutureProducer,
    topic: String,
    consumer: String,
}

impl DeadLetters {
    pub fn new(
        kafka: &ClientConfig,
        topic: String,
        consumer: String,
    ) -> Result<Self, rdkafka::error::KafkaError> {
        let producer = kafka
            .clone()
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("message.timeout.ms", "10000")
            .create()?;
        Ok(Self {
            producer,
            topic,
            consumer,
        })
    }

    /// Publishes and waits for the broker's acknowledgement (the caller stores the offset
    /// only after it).
    pub async fn send(&self, msg: &Incoming, kind: &str, reason: &str) -> anyhow::Result<()> {
        let partition = msg.partition.to_string();
        let offset = msg.offset.to_string();
        let mut headers = OwnedHeaders::new();
        for (k, v) in &msg.headers {
            headers = headers.insert(Header {
                key: k,
                value: Some(v),
            });
        }
        for (key, value) in [
            (dlq::REASON, reason),
            (dlq::SOURCE_TOPIC, msg.topic.as_str()),
            (dlq::SOURCE_PARTITION, partition.as_str()),
            (dlq::SOURCE_OFFSET, offset.as_str()),
            (dlq::CONSUMER, self.consumer.as_str()),
        ] {
            headers = headers.insert(Header {
                key,
                value: Some(value),
            });
        }
        let mut record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(&self.topic)
            .payload(msg.payload.as_slice())
            .headers(headers);
        if let Some(key) = &msg.key {
            record = record.key(key.as_slice());
        }
        self.producer
            .send(record, Duration::from_secs(10))
            .await
            .map_err(|(e, _)| anyhow::anyhow!("dead-letter publish: {e}"))?;
        metrics::counter!("phonebill_dead_letters_total", "topic" => msg.topic.clone(), "reason" => kind.to_owned())
            .increment(1);
        tracing::warn!(topic = %msg.topic, partition = msg.partition, offset = msg.offset, %reason, "dead-lettered");
        Ok(())
    }
}
