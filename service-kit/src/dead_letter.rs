//! The dead-letter publisher every consumer group member shares: a message its handler
//! cannot use is copied to the dead-letter topic byte for byte, with its key and its
//! original headers, plus the `dlq-*` headers of `events::dead_letter` saying why, where
//! from and which consumer gave up on it. Keeping the value untouched lets an operator fix
//! the consumer and re-publish the original as it was.
//!
//! The producer is idempotent and a send waits for the broker's acknowledgement, so the
//! caller can store the source offset right after: a dead letter is never lost, at worst
//! (a crash between the two) written twice.

use std::time::Duration;

use events::dead_letter as dlq;
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::FutureRecord;

use crate::kafka::{BrokerContext, Producer};
use rdkafka::ClientConfig;

/// Publishes dead letters for one consumer.
#[derive(Clone)]
pub struct DeadLetters {
    producer: Producer,
    topic: String,
    consumer: String,
}

impl DeadLetters {
    /// `kafka`: the client settings (`kafka::client_config`) the producer starts from;
    /// `consumer`: the name written to `dlq-consumer`.
    pub fn new(
        kafka: &ClientConfig,
        topic: impl Into<String>,
        consumer: impl Into<String>,
    ) -> Result<Self, rdkafka::error::KafkaError> {
        let producer = kafka
            .clone()
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("message.timeout.ms", "10000")
            .create_with_context(BrokerContext)?;
        Ok(Self {
            producer,
            topic: topic.into(),
            consumer: consumer.into(),
        })
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }

    pub fn consumer(&self) -> &str {
        &self.consumer
    }

    /// Publishes `message` with `reason` and waits for the broker's acknowledgement.
    pub async fn send<M: Message>(
        &self,
        message: &M,
        reason: &str,
    ) -> Result<(), rdkafka::error::KafkaError> {
        let partition = message.partition().to_string();
        let offset = message.offset().to_string();
        let mut headers = OwnedHeaders::new();
        if let Some(original) = message.headers() {
            for h in original.iter() {
                headers = headers.insert(Header {
                    key: h.key,
                    value: h.value,
                });
            }
        }
        for (key, value) in [
            (dlq::REASON, reason),
            (dlq::SOURCE_TOPIC, message.topic()),
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
            .payload(message.payload().unwrap_or_default())
            .headers(headers);
        if let Some(key) = message.key() {
            record = record.key(key);
        }
        self.producer
            .send(record, Duration::from_secs(10))
            .await
            .map(|_| ())
            .map_err(|(e, _)| e)
    }
}
