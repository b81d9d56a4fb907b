//! Publishes a synthetic history for the replay benchmark: products and lines on
//! `kos.billing`, bills for every line, and product changes (requested, sent to KOS,
//! completed) on `phonebill.product-change`, enveloped exactly as the relay and KOS
//! publish them (keys = aggregate ids, murmur2 partitioner). Prints `produced=<n>`.
//! With `--event-store-schema`, the product changes are also written to that schema's
//! `events` table as the command side stores them (the reconciliation benchmark).

use std::time::Duration;

use chrono::{NaiveDate, TimeZone, Utc};
use clap::Parser;
use events::kos::{self, KosFact};
use events::product_change::{self, ProductChangeEvent};
use events::topics::Topics;
use events::{codec, event_id_for, Envelope, EventPayload};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use uuid::Uuid;

#[derive(Parser)]
struct Args {
    #[arg(long, default_value = "127.0.0.1:9092")]
    brokers: String,
    #[arg(long, default_value = "")]
    topic_prefix: String,
    /// Lines; each gets 1 registration, `bills` bills and `changes` changes of 3 events.
    #[arg(long, default_value_t = 10_000)]
    lines: u32,
    #[arg(long, default_value_t = 4)]
    bills: u32,
    #[arg(long, default_value_t = 2)]
    changes: u32,
    /// Also store the product changes in `<schema>.events` (made by `command-service
    /// migrate`) of `--database-url`.
    #[arg(long)]
    event_store_schema: Option<String>,
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/phonebill")]
    database_url: String,
}

/// aggregate_id, sequence, event_type, event_version, payload, metadata
type StoredRow = (
    String,
    i64,
    String,
    String,
    serde_json::Value,
    serde_json::Value,
);

/// Product-change rows on their way to the event store, written in bulk.
struct EventStore {
    pool: sqlx::PgPool,
    schema: String,
    rows: Vec<StoredRow>,
}

impl EventStore {
    fn push(&mut self, envelope: &Envelope, event: &ProductChangeEvent) {
        let metadata = serde_json::json!({
            "correlation_id": envelope.correlation_id.to_string(),
            "causation_id": envelope.causation_id.to_string(),
            "occurred_at": envelope.occurred_at.to_rfc3339(),
        });
        self.rows.push((
            envelope.aggregate_id.clone(),
            envelope.sequence as i64,
            event.event_type().to_owned(),
            event.event_version().to_string(),
            serde_json::to_value(event).expect("events serialize"),
            metadata,
        ));
    }

    async fn flush(&mut self) -> anyhow::Result<()> {
        let rows = std::mem::take(&mut self.rows);
        // The table's triggers name the schema's other tables unqualified.
        let mut tx = self.pool.begin().await?;
        sqlx::query(&format!("SET LOCAL search_path TO \"{}\"", self.schema))
            .execute(&mut *tx)
            .await?;
        sqlx::query(&format!(
            "INSERT INTO \"{}\".events
                 (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
             SELECT 'Line', * FROM UNNEST($1::text[], $2::bigint[], $3::text[], $4::text[], $5::json[], $6::json[])",
            self.schema
        ))
        .bind(rows.iter().map(|r| r.0.clone()).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.1).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.2.clone()).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.3.clone()).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.4.clone()).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.5.clone()).collect::<Vec<_>>())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }
}

const PRODUCTS: [&str; 2] = ["5G-STANDARD-001", "5G-PREMIUM-001"];

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let topics = Topics::new(&args.topic_prefix);
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &args.brokers)
        .set("enable.idempotence", "true")
        .set("partitioner", "murmur2_random")
        .set("linger.ms", "20")
        .set("batch.num.messages", "2000")
        .create()?;
    let mut store = match &args.event_store_schema {
        Some(schema) => Some(EventStore {
            pool: sqlx::PgPool::connect(&args.database_url).await?,
            schema: schema.clone(),
            rows: vec![],
        }),
        None => None,
    };
    let mut pending = futures::stream::FuturesUnordered::new();
    let mut produced = 0u64;
    // Signed with KOS's development key, as kos-mock signs: the projector refuses KOS
    // facts without it (the other topics' consumers ignore the headers).
    let kos = service_kit::signed::Signer::local_dev();
    let mut send = |topic: String, key: String, bytes: Vec<u8>| {
        let producer = producer.clone();
        produced += 1;
        let signature = kos.sign(key.as_bytes(), &bytes);
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: service_kit::signed::SIGNER,
                value: Some(kos.kid()),
            })
            .insert(Header {
                key: service_kit::signed::SIGNATURE,
                value: Some(&signature),
            });
        async move {
            producer
                .send(
                    FutureRecord::to(&topic)
                        .key(&key)
                        .payload(&bytes)
                        .headers(headers),
                    Duration::from_secs(60),
                )
                .await
                .map_err(|(e, _)| e)
        }
    };
    use futures::StreamExt;
    for (i, code) in PRODUCTS.iter().enumerate() {
        let fact = KosFact::ProductPublished(kos::ProductPublished {
            product_code: (*code).into(),
            name: format!("product {code}"),
            operator: "KT".into(),
            monthly_fee: 50_000 + 10_000 * i as i64,
            data_mb: None,
            voice_minutes: None,
            sms_count: None,
            on_sale: true,
        });
        pending.push(send(
            topics.kos_billing(),
            (*code).into(),
            kos_event(1, &fact),
        ));
    }
    for n in 1..=args.lines {
        let line = format!("010-{:04}-{:04}", n / 10000, n % 10000);
        let mut kos_seq = 1;
        let fact = KosFact::LineRegistered(kos::LineRegistered {
            line_number: line.clone(),
            customer_id: format!("CUST{n:06}"),
            customer_name: format!("Customer {n}"),
            operator: "KT".into(),
            status: kos::LineStatus::Active,
            product_code: PRODUCTS[0].into(),
            contract: contract(),
        });
        pending.push(send(
            topics.kos_billing(),
            line.clone(),
            kos_event(kos_seq, &fact),
        ));
        for b in 0..args.bills {
            kos_seq += 1;
            let fact = bill(&line, &format!("2026-{:02}", b % 12 + 1));
            pending.push(send(
                topics.kos_billing(),
                line.clone(),
                kos_event(kos_seq, &fact),
            ));
        }
        let mut seq = 0;
        for c in 0..args.changes {
            let request_id = Uuid::new_v4();
            let (from, to) = (PRODUCTS[(c % 2) as usize], PRODUCTS[((c + 1) % 2) as usize]);
            let minute = c * 10;
            for event in changes(&line, request_id, from, to, minute) {
                seq += 1;
                let envelope = envelope("Line", &line, seq, &event);
                if let Some(store) = store.as_mut() {
                    store.push(&envelope, &event);
                }
                pending.push(send(
                    topics.product_change(),
                    line.clone(),
                    codec::encode(&envelope),
                ));
            }
        }
        while pending.len() > 5_000 {
            pending.next().await.expect("pending")?;
        }
        if let Some(store) = store.as_mut().filter(|s| s.rows.len() >= 5_000) {
            store.flush().await?;
        }
    }
    if let Some(store) = store.as_mut() {
        store.flush().await?;
    }
    while let Some(r) = pending.next().await {
        r?;
    }
    println!("produced={produced}");
    Ok(())
}

fn at(minute: u32) -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 1, 9, 0, 0).unwrap() + chrono::Duration::minutes(minute as i64)
}

fn changes(
    line: &str,
    request_id: Uuid,
    from: &str,
    to: &str,
    minute: u32,
) -> Vec<ProductChangeEvent> {
    vec![
        ProductChangeEvent::ProductChangeRequested(product_change::ProductChangeRequested {
            request_id,
            line_number: line.into(),
            customer_id: "CUST001".into(),
            operator: "KT".into(),
            current_product_code: from.into(),
            target_product_code: to.into(),
            requested_at: at(minute),
        }),
        ProductChangeEvent::ProductChangeSentToKos(product_change::ProductChangeSentToKos {
            request_id,
            line_number: line.into(),
            customer_id: "CUST001".into(),
            current_product_code: from.into(),
            target_product_code: to.into(),
            sent_at: at(minute),
            answer_by: at(minute + 5),
        }),
        ProductChangeEvent::ProductChangeCompleted(product_change::ProductChangeCompleted {
            request_id,
            line_number: line.into(),
            kos_order_id: format!("KOS-{request_id}"),
            previous_product_code: from.into(),
            new_product_code: to.into(),
            message: "changed".into(),
            completed_at: at(minute + 1),
        }),
    ]
}

fn contract() -> kos::Contract {
    kos::Contract {
        commitment_months: 24,
        started_on: NaiveDate::from_ymd_opt(2025, 1, 1).unwrap(),
        ends_on: NaiveDate::from_ymd_opt(2026, 12, 31).unwrap(),
    }
}

fn bill(line: &str, month: &str) -> KosFact {
    KosFact::BillIssued(kos::BillIssued {
        line_number: line.into(),
        customer_id: "CUST001".into(),
        month: month.into(),
        product_code: PRODUCTS[0].into(),
        product_name: "5G Standard".into(),
        contract: contract(),
        monthly_fee: 69000,
        usage_charges: 1000,
        discounts: vec![kos::Discount {
            name: "family".into(),
            amount: 5000,
        }],
        total_amount: 65000,
        usage: kos::Usage {
            voice_minutes: 100,
            sms_count: 10,
            data_mb: 2048,
        },
        early_termination_fee: 120000,
        device_installment_balance: 300000,
        billing: kos::BillingInfo {
            billing_date: NaiveDate::from_ymd_opt(2026, 4, 1).unwrap(),
            due_date: NaiveDate::from_ymd_opt(2026, 4, 25).unwrap(),
            payment_status: kos::PaymentStatus::Unpaid,
            payment_method: "CARD".into(),
        },
        issued_at: at(0),
    })
}

fn kos_event(sequence: u64, fact: &KosFact) -> Vec<u8> {
    codec::encode(&envelope(
        fact.aggregate_type(),
        fact.aggregate_id(),
        sequence,
        fact,
    ))
}

fn envelope<E: EventPayload>(kind: &str, id: &str, sequence: u64, event: &E) -> Envelope {
    let event_id = event_id_for(kind, id, sequence);
    Envelope {
        event_id,
        event_type: event.event_type().to_owned(),
        event_version: event.event_version(),
        aggregate_id: id.to_owned(),
        sequence,
        occurred_at: Utc::now(),
        correlation_id: event_id,
        causation_id: event_id,
        payload: event.to_payload(),
    }
}
