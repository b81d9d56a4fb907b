//! Bill-inquiry records (UFR-BILL-040) go to `phonebill.bill-inquiries` without holding
//! up the query: the record is handed to the producer's bounded in-memory queue
//! (`PHONEBILL_INQUIRY_BUFFER` messages); when that is full the record is dropped and
//! counted (`phonebill_bill_inquiries_dropped_total`), never the query.
//!
//! The handler enqueues directly: librdkafka's queue is already the bounded buffer, and
//! a channel plus a publishing task in front of it cost a task wake-up per query.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use events::bill_inquiry::{self as inquiry, BillInquired};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::ClientConfig;
use uuid::Uuid;

#[derive(Clone)]
pub struct Inquiries {
    inner: Arc<Inner>,
}

struct Inner {
    producer: ThreadedProducer<DefaultProducerContext>,
    topic: String,
}

fn counters() -> &'static (metrics::Counter, metrics::Counter) {
    static COUNTERS: OnceLock<(metrics::Counter, metrics::Counter)> = OnceLock::new();
    COUNTERS.get_or_init(|| {
        (
            metrics::counter!("phonebill_bill_inquiries_recorded_total"),
            metrics::counter!("phonebill_bill_inquiries_dropped_total"),
        )
    })
}

impl Inquiries {
    /// `capacity`: inquiries waiting for the broker at most; past it they are dropped.
    pub fn new(
        kafka: &ClientConfig,
        topic: String,
        capacity: usize,
    ) -> Result<Self, rdkafka::error::KafkaError> {
        let producer = kafka
            .clone()
            .set("enable.idempotence", "true")
            .set("linger.ms", "20")
            .set("compression.type", "lz4")
            .set("queue.buffering.max.messages", capacity.max(1).to_string())
            .set("queue.buffering.max.kbytes", "4096")
            .create()?;
        Ok(Self {
            inner: Arc::new(Inner { producer, topic }),
        })
    }

    /// Records one inquiry if there is room; never waits.
    pub fn record(&self, event: BillInquired, correlation_id: Uuid) {
        let bytes = inquiry::encode(&event, correlation_id);
        let record = BaseRecord::to(&self.inner.topic)
            .key(event.line_number.as_str())
            .payload(&bytes);
        let (recorded, dropped) = counters();
        match self.inner.producer.send(record) {
            Ok(()) => recorded.increment(1),
            Err(_) => dropped.increment(1),
        }
    }

    /// Connects to the topic's brokers now rather than at the first record: the
    /// idempotent producer asks for its producer id only once a broker connection is up
    /// (librdkafka retries every 500 ms), and records sent before it has one wait in the
    /// buffer, which a service started under full load filled in its first second.
    pub async fn connect(&self, timeout: Duration) -> Result<(), rdkafka::error::KafkaError> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            inner
                .producer
                .client()
                .fetch_metadata(Some(&inner.topic), timeout)
                .map(|_| ())
        })
        .await
        .expect("fetching metadata does not panic")
    }

    /// Hands what is queued to the broker (at shutdown), waiting at most `timeout`.
    pub async fn flush(&self, timeout: Duration) {
        let inner = self.inner.clone();
        let _ = tokio::task::spawn_blocking(move || inner.producer.flush(timeout)).await;
    }
}
