//! Bill-inquiry records (UFR-BILL-040) go to `phonebill.bill-inquiries` without holding
//! up the query: a bounded channel into a producer task; when it is full the record is
//! dropped and counted (`phonebill_bill_inquiries_dropped_total`), never the query.

use events::bill_inquiry::{self as inquiry, BillInquired};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::ClientConfig;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

#[derive(Clone)]
pub struct Inquiries {
    tx: mpsc::Sender<(BillInquired, Uuid)>,
}

impl Inquiries {
    /// Records one inquiry if there is room; never waits.
    pub fn record(&self, event: BillInquired, correlation_id: Uuid) {
        if self.tx.try_send((event, correlation_id)).is_err() {
            metrics::counter!("phonebill_bill_inquiries_dropped_total").increment(1);
        }
    }
}

pub struct InquiryPublisher {
    rx: mpsc::Receiver<(BillInquired, Uuid)>,
    producer: ThreadedProducer<DefaultProducerContext>,
    topic: String,
}

pub fn channel(
    kafka: &ClientConfig,
    topic: String,
    capacity: usize,
) -> Result<(Inquiries, InquiryPublisher), rdkafka::error::KafkaError> {
    let producer = kafka
        .clone()
        .set("enable.idempotence", "true")
        .set("linger.ms", "20")
        .set("compression.type", "lz4")
        // Bounded memory: past this the records are dropped and counted, never queued.
        .set("queue.buffering.max.messages", "5000")
        .set("queue.buffering.max.kbytes", "4096")
        .create()?;
    let (tx, rx) = mpsc::channel(capacity);
    Ok((
        Inquiries { tx },
        InquiryPublisher {
            rx,
            producer,
            topic,
        },
    ))
}

impl InquiryPublisher {
    pub async fn run(mut self, shutdown: CancellationToken) {
        loop {
            let next = tokio::select! {
                _ = shutdown.cancelled() => None,
                m = self.rx.recv() => m,
            };
            let Some((event, correlation_id)) = next else {
                break;
            };
            let bytes = events::codec::encode(&inquiry::envelope(&event, correlation_id));
            let record = BaseRecord::to(&self.topic)
                .key(event.line_number.as_str())
                .payload(&bytes);
            match self.producer.send(record) {
                Ok(()) => metrics::counter!("phonebill_bill_inquiries_recorded_total").increment(1),
                Err(_) => metrics::counter!("phonebill_bill_inquiries_dropped_total").increment(1),
            }
        }
        let _ =
            tokio::task::block_in_place(|| self.producer.flush(std::time::Duration::from_secs(5)));
    }
}
