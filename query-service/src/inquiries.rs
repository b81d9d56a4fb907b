//! Bill-inquiry records (UFR-BILL-040) go to `phonebill.bill-inquiries` without holding
//! up the query: the record is handed to the producer's bounded in-memory queue
//! (`PHONEBILL_INQUIRY_BUFFER` messages); when that is full the record is dropped and
//! counted (`phonebill_bill_inquiries_dropped_total`), never the query.
//!
//! The handler enqueues directly: librdkafka's queue is already the bounded buffer, and
//! a channel plus a publishing task in front of it cost a task wake-up per query.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use events::bill_inquiry::{self as inquiry, BillInquired};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientConfig, ClientContext};
use uuid::Uuid;

#[derive(Clone)]
pub struct Inquiries {
    inner: Arc<Inner>,
}

struct Inner {
    producer: ThreadedProducer<IdWatch>,
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
            // Only for `IdWatch` (a few KiB of JSON from librdkafka four times a second).
            .set("statistics.interval.ms", "250")
            .create_with_context(IdWatch::default())?;
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

    /// Waits (at most `timeout`) until the producer can deliver: its broker connection
    /// is up and, being idempotent, it has its producer id. Until then records only wait
    /// in the buffer, which a service started under full load filled in its first
    /// second. Returns whether it got there.
    pub async fn wait_until_ready(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        if self.connect(timeout).await.is_err() {
            return false;
        }
        while !self.inner.producer.context().has_producer_id() {
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        true
    }

    /// Connects to the topic's brokers now rather than at the first record: the
    /// idempotent producer asks for its producer id only once a broker connection is up
    /// (librdkafka retries every 500 ms), and records sent before it has one wait in the
    /// buffer, which a service started under full load filled in its first second.
    async fn connect(&self, timeout: Duration) -> Result<(), rdkafka::error::KafkaError> {
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

/// Notes when the idempotent producer has its producer id, from librdkafka's statistics
/// (its only report of that state): `"idemp_state": "Assigned"`, as librdkafka writes
/// it (`rd_kafka_stats_emit_all`).
#[derive(Default)]
pub struct IdWatch {
    assigned: AtomicBool,
}

impl IdWatch {
    fn has_producer_id(&self) -> bool {
        self.assigned.load(Ordering::Relaxed)
    }
}

impl ClientContext for IdWatch {
    fn stats_raw(&self, statistics: &[u8]) {
        // A search, not a parse: the statistics are a few KiB of JSON, every 250 ms.
        const ASSIGNED: &[u8] = br#""idemp_state": "Assigned""#;
        let assigned = statistics.windows(ASSIGNED.len()).any(|w| w == ASSIGNED);
        self.assigned.store(assigned, Ordering::Relaxed);
    }
}

impl ProducerContext for IdWatch {
    type DeliveryOpaque = ();

    fn delivery(&self, _: &DeliveryResult<'_>, _: ()) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_producer_id_counts_as_there_only_while_librdkafka_reports_it_assigned() {
        let watch = IdWatch::default();
        let stats = |state: &str| {
            format!(
                r#"{{"name": "q#producer-1", "eos": {{ "idemp_state": "{state}", "idemp_stateage": 3, "txn_state": "Init"}}}}"#
            )
        };
        watch.stats_raw(stats("WaitPID").as_bytes());
        assert!(!watch.has_producer_id());
        watch.stats_raw(stats("Assigned").as_bytes());
        assert!(watch.has_producer_id());
        watch.stats_raw(stats("DrainReset").as_bytes());
        assert!(!watch.has_producer_id());
    }
}
