//! Bill-inquiry records (UFR-BILL-040) go to `phonebill.bill-inquiries` without holding
//! up the query: the handler puts the record in a bounded in-memory queue
//! (`PHONEBILL_INQUIRY_BUFFER` inquiries); when that is full the record is dropped and
//! counted (`phonebill_bill_inquiries_dropped_total`), never the query.
//!
//! A publisher task takes what queued every few milliseconds and sends it as one
//! message (a compact batch, a row per inquiry: `events::bill_inquiry::encode_batch`), so
//! a query costs a push on a queue, not a message of its own: one message per query cost more than the rest of the
//! query (the producer's and broker's per-message work, and Event Hubs meters by
//! message). Nothing wakes per query; the publisher runs on its own timer.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use events::bill_inquiry::{self as inquiry, BillInquired};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientConfig, ClientContext};
use uuid::Uuid;

/// How often the publisher sends what queued (the longest an inquiry waits for it).
const PUBLISH_EVERY: Duration = Duration::from_millis(10);
/// Inquiries per message at most (a row of ~150 bytes each before compression, ~10 KiB a
/// message). Past a few dozen the per-message costs are gone; larger messages only fill
/// the projector's partition queues (counted in messages) with more bytes.
const PER_MESSAGE: usize = 64;

/// An inquiry and the correlation id of the request that made it.
type Record = (BillInquired, Uuid);

#[derive(Clone)]
pub struct Inquiries {
    inner: Arc<Inner>,
}

struct Inner {
    queue: SyncSender<Record>,
    /// Only the publisher (and a flush) take from the queue.
    queued: Mutex<Receiver<Record>>,
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
    /// Starts the publisher on the current runtime; it stops when the last clone is
    /// dropped.
    pub fn new(
        kafka: &ClientConfig,
        topic: String,
        capacity: usize,
    ) -> Result<Self, rdkafka::error::KafkaError> {
        let producer = kafka
            .clone()
            .set("enable.idempotence", "true")
            .set("linger.ms", "5")
            // No compression: LZ4 was a third of the publisher's CPU once the rows were
            // compact, and a broker (Event Hubs' Kafka endpoint on some tiers) may not
            // take every codec.
            .set("compression.type", "none")
            // Messages are batches now; the bound that matters is the bytes.
            .set("queue.buffering.max.messages", "1000")
            .set("queue.buffering.max.kbytes", "4096")
            // Only for `IdWatch` (a few KiB of JSON from librdkafka four times a second).
            .set("statistics.interval.ms", "250")
            .create_with_context(IdWatch::default())?;
        let (queue, queued) = std::sync::mpsc::sync_channel(capacity.max(1));
        let inner = Arc::new(Inner {
            queue,
            queued: Mutex::new(queued),
            producer,
            topic,
        });
        tokio::spawn(publish(Arc::downgrade(&inner)));
        Ok(Self { inner })
    }

    /// Records one inquiry if there is room (true), else drops and counts it; never waits.
    pub fn record(&self, event: BillInquired, correlation_id: Uuid) -> bool {
        match self.inner.queue.try_send((event, correlation_id)) {
            Ok(()) => true,
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                counters().1.increment(1);
                false
            }
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

    /// Sends what is queued and hands it to the broker (at shutdown), waiting at most
    /// `timeout`.
    pub async fn flush(&self, timeout: Duration) {
        let inner = self.inner.clone();
        let _ = tokio::task::spawn_blocking(move || {
            inner.send_queued();
            inner.producer.flush(timeout)
        })
        .await;
    }
}

/// Every [`PUBLISH_EVERY`], sends what queued, until the service drops its `Inquiries`.
async fn publish(inner: Weak<Inner>) {
    let mut tick = tokio::time::interval(PUBLISH_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(inner) = inner.upgrade() else { return };
        inner.send_queued();
    }
}

impl Inner {
    /// Sends the queued inquiries, [`PER_MESSAGE`] to a message. A message the producer
    /// cannot take (its own buffer full: the broker is away) is dropped and counted.
    fn send_queued(&self) {
        let queued = self.queued.lock().expect("the publisher does not panic");
        loop {
            let batch: Vec<Record> = queued.try_iter().take(PER_MESSAGE).collect();
            if batch.is_empty() {
                return;
            }
            let (recorded, dropped) = counters();
            let bytes = inquiry::encode_batch(&batch);
            // No key: the inquiries are of many lines, and each is its own aggregate.
            let message = BaseRecord::<(), _>::to(&self.topic).payload(&bytes);
            match self.producer.send(message) {
                Ok(()) => recorded.increment(batch.len() as u64),
                Err(_) => dropped.increment(batch.len() as u64),
            }
        }
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
    const ENABLE_REFRESH_OAUTH_TOKEN: bool = true;

    fn generate_oauth_token(
        &self,
        config: Option<&str>,
    ) -> Result<rdkafka::client::OAuthToken, Box<dyn std::error::Error>> {
        service_kit::kafka::identity::token(config)
    }

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

    fn inquiry() -> BillInquired {
        BillInquired {
            inquiry_id: Uuid::new_v4(),
            line_number: "010-1234-5678".into(),
            month: "2026-03".into(),
            customer_id: None,
            result: events::bill_inquiry::InquiryResult::Found,
            inquired_at: chrono::Utc::now(),
        }
    }

    // One thread: the publisher cannot run between the records, only at the flush.
    #[tokio::test(flavor = "current_thread")]
    async fn given_a_full_queue_when_a_query_records_its_inquiry_then_it_is_dropped_and_room_returns_once_the_queue_is_sent(
    ) {
        let mut kafka = ClientConfig::new();
        kafka.set("bootstrap.servers", "127.0.0.1:9");
        let inquiries = Inquiries::new(&kafka, "inquiries".into(), 2).unwrap();
        assert!(inquiries.record(inquiry(), Uuid::new_v4()));
        assert!(inquiries.record(inquiry(), Uuid::new_v4()));
        assert!(
            !inquiries.record(inquiry(), Uuid::new_v4()),
            "the third finds no room"
        );
        // The two queued go into one message in the producer's own buffer (no broker is
        // needed to take them), which frees the queue.
        inquiries.flush(Duration::from_millis(10)).await;
        assert!(inquiries.record(inquiry(), Uuid::new_v4()));
    }

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
