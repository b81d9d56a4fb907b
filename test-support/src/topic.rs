//! The broker side of a test: a producer standing in for the services and KOS, and a
//! plain reader that reads a topic back to its end.

use std::collections::HashMap;
use std::time::Duration;

use rdkafka::message::{Header, Headers, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Message};
use serde_json::Value;
use service_kit::bounded_reader::{self, BoundedReader, Bounds, Flow};
use service_kit::signed::{self, Signer};

use crate::env::brokers;

/// Partitions of every topic the tests create.
pub const PARTITIONS: i32 = 3;

/// A long-lived producer on [`brokers`], set up like the system's producers (idempotent,
/// keys placed by murmur2 as the services place them).
pub fn producer() -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("enable.idempotence", "true")
        .set("partitioner", "murmur2_random")
        .set("linger.ms", "5")
        .create()
        .unwrap()
}

/// Publishes `bytes` under `key` with a `source: test` header, signed with KOS's
/// development key as kos-mock signs (consumers of KOS's topics check it; others ignore
/// it); fails the test if the broker does not take it.
pub async fn publish(producer: &FutureProducer, topic: &str, key: &str, bytes: &[u8]) {
    publish_signed(producer, topic, key, bytes, Some(&Signer::local_dev())).await;
}

/// Publishes as [`publish`] does, signed by `signer`, or not signed at all (a forgery).
pub async fn publish_signed(
    producer: &FutureProducer,
    topic: &str,
    key: &str,
    bytes: &[u8],
    signer: Option<&Signer>,
) {
    send(
        producer,
        FutureRecord::to(topic)
            .key(key)
            .payload(bytes)
            .headers(headers(key, bytes, signer)),
    )
    .await;
}

/// Headers signing a message of `key` and `bytes` with KOS's development key, as
/// kos-mock signs (for a test's own producer).
pub fn kos_signed(key: &str, bytes: &[u8]) -> OwnedHeaders {
    headers(key, bytes, Some(&Signer::local_dev()))
}

fn headers(key: &str, bytes: &[u8], signer: Option<&Signer>) -> OwnedHeaders {
    let headers = OwnedHeaders::new().insert(Header {
        key: "source",
        value: Some("test"),
    });
    let Some(signer) = signer else {
        return headers;
    };
    let signature = signer.sign(key.as_bytes(), bytes);
    headers
        .insert(Header {
            key: signed::SIGNER,
            value: Some(signer.kid()),
        })
        .insert(Header {
            key: signed::SIGNATURE,
            value: Some(&signature),
        })
}

/// Publishes (signed, as [`publish`]) with the broker timestamp set: window tests stamp
/// records in the past instead of waiting for time to pass.
pub async fn publish_at(
    producer: &FutureProducer,
    topic: &str,
    key: &str,
    bytes: &[u8],
    at: chrono::DateTime<chrono::Utc>,
) {
    send(
        producer,
        FutureRecord::to(topic)
            .key(key)
            .payload(bytes)
            .headers(kos_signed(key, bytes))
            .timestamp(at.timestamp_millis()),
    )
    .await;
}

async fn send(producer: &FutureProducer, record: FutureRecord<'_, str, [u8]>) {
    producer
        .send(record, Duration::from_secs(10))
        .await
        .map_err(|(e, _)| e)
        .expect("the broker takes the message");
}

/// One message as read back from the broker.
#[derive(Debug, Clone)]
pub struct Received {
    pub partition: i32,
    pub offset: i64,
    /// The key as text (empty if the message has none).
    pub key: String,
    pub headers: HashMap<String, String>,
    /// The value parsed as JSON (`Null` if it is not JSON).
    pub json: Value,
    /// The value's bytes as they are on the broker.
    pub payload: Vec<u8>,
}

/// Reads everything on `topic` up to its current end, every partition, from the earliest
/// offset (no consumer group). A topic that does not exist reads as empty.
pub async fn read_topic(brokers: &str, topic: &str) -> Vec<Received> {
    let brokers = brokers.to_owned();
    let topic = topic.to_owned();
    tokio::task::spawn_blocking(move || read_topic_blocking(&brokers, &topic))
        .await
        .unwrap()
}

/// [`read_topic`] on the calling thread (for synchronous callers).
pub fn read_topic_blocking(brokers: &str, topic: &str) -> Vec<Received> {
    let mut client = ClientConfig::new();
    client.set("bootstrap.servers", brokers);
    let reader = BoundedReader::new(&client).unwrap();
    let plan = match reader.plan(topic, Bounds::default()) {
        Ok(plan) => plan,
        Err(bounded_reader::Error::NoTopic(_)) => return Vec::new(),
        Err(e) => panic!("planning a read of {topic}: {e}"),
    };
    let mut received = Vec::new();
    reader
        .read(&plan, |message| {
            let headers = message
                .headers()
                .map(|h| {
                    h.iter()
                        .map(|h| {
                            (
                                h.key.to_owned(),
                                String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned(),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            let payload = message.payload().unwrap_or_default().to_vec();
            received.push(Received {
                partition: message.partition(),
                offset: message.offset(),
                key: String::from_utf8_lossy(message.key().unwrap_or_default()).into_owned(),
                headers,
                json: serde_json::from_slice(&payload).unwrap_or(Value::Null),
                payload,
            });
            Ok::<_, bounded_reader::Error>(Flow::Continue)
        })
        .unwrap();
    received
}
