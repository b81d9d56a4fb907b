//! Events and facts as the command side and KOS publish them, enveloped exactly as on
//! the wire: the product-change events of a line, KOS's facts (products, lines, bills,
//! payments), at fixed times of a fixed day.

use chrono::{TimeZone, Utc};
use events::kos::{self, KosFact};
use events::product_change::{self, ProductChangeEvent};
use events::{codec, event_id_for, Envelope, EventPayload};
use uuid::Uuid;

/// Demo line `n`: `010-0000-0001` for 1.
pub fn line(n: u32) -> String {
    format!("010-{:04}-{:04}", n / 10000, n % 10000)
}

/// `minute` minutes after 2026-03-01 09:00 UTC.
pub fn at(minute: u32) -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 1, 9, 0, 0).unwrap() + chrono::Duration::minutes(minute as i64)
}

/// The envelope of the `sequence`-th event of aggregate `kind`/`id` (its event id the
/// system's, for that aggregate and sequence), occurring now.
pub fn envelope<E: EventPayload>(kind: &str, id: &str, sequence: u64, event: &E) -> Envelope {
    envelope_at(kind, id, sequence, Utc::now(), event)
}

/// [`envelope`], occurring `at`.
pub fn envelope_at<E: EventPayload>(
    kind: &str,
    id: &str,
    sequence: u64,
    at: chrono::DateTime<Utc>,
    event: &E,
) -> Envelope {
    let event_id = event_id_for(kind, id, sequence);
    Envelope {
        event_id,
        event_type: event.event_type().to_owned(),
        event_version: event.event_version(),
        aggregate_id: id.to_owned(),
        sequence,
        occurred_at: at,
        correlation_id: event_id,
        causation_id: event_id,
        payload: event.to_payload(),
    }
}

/// The encoded `sequence`-th event of a line, as the relay publishes it.
pub fn line_event(line: &str, sequence: u64, event: &ProductChangeEvent) -> Vec<u8> {
    codec::encode(&envelope("Line", line, sequence, event))
}

/// The encoded `sequence`-th fact of its aggregate, as KOS publishes it.
pub fn kos_event(sequence: u64, fact: &KosFact) -> Vec<u8> {
    codec::encode(&envelope(
        fact.aggregate_type(),
        fact.aggregate_id(),
        sequence,
        fact,
    ))
}

pub fn requested(line: &str, request_id: Uuid, minute: u32) -> ProductChangeEvent {
    ProductChangeEvent::ProductChangeRequested(product_change::ProductChangeRequested {
        request_id,
        line_number: line.into(),
        customer_id: "CUST001".into(),
        operator: "KT".into(),
        current_product_code: "5G-STANDARD-001".into(),
        target_product_code: "5G-PREMIUM-001".into(),
        requested_at: at(minute),
    })
}

pub fn sent(line: &str, request_id: Uuid, minute: u32) -> ProductChangeEvent {
    ProductChangeEvent::ProductChangeSentToKos(product_change::ProductChangeSentToKos {
        request_id,
        line_number: line.into(),
        customer_id: "CUST001".into(),
        current_product_code: "5G-STANDARD-001".into(),
        target_product_code: "5G-PREMIUM-001".into(),
        sent_at: at(minute),
        answer_by: at(minute + 5),
    })
}

pub fn completed(line: &str, request_id: Uuid, minute: u32) -> ProductChangeEvent {
    ProductChangeEvent::ProductChangeCompleted(product_change::ProductChangeCompleted {
        request_id,
        line_number: line.into(),
        kos_order_id: format!("KOS-{request_id}"),
        previous_product_code: "5G-STANDARD-001".into(),
        new_product_code: "5G-PREMIUM-001".into(),
        message: "changed".into(),
        completed_at: at(minute),
    })
}

pub fn failed(line: &str, request_id: Uuid, minute: u32) -> ProductChangeEvent {
    ProductChangeEvent::ProductChangeFailed(product_change::ProductChangeFailed {
        request_id,
        line_number: line.into(),
        kos_order_id: Some(format!("KOS-{request_id}")),
        reason_code: product_change::FailureReason::KosRejected,
        kos_reason_code: Some("SYSTEM_ERROR".into()),
        reason: "KOS refused".into(),
        failed_at: at(minute),
    })
}

pub fn product(code: &str, fee: i64) -> KosFact {
    KosFact::ProductPublished(kos::ProductPublished {
        product_code: code.into(),
        name: format!("name of {code}"),
        operator: "KT".into(),
        monthly_fee: fee,
        data_mb: None,
        voice_minutes: None,
        sms_count: None,
        on_sale: true,
    })
}

pub fn registered(line: &str) -> KosFact {
    KosFact::LineRegistered(kos::LineRegistered {
        line_number: line.into(),
        customer_id: "CUST001".into(),
        customer_name: "Kim".into(),
        operator: "KT".into(),
        status: kos::LineStatus::Active,
        product_code: "5G-STANDARD-001".into(),
        contract: contract(),
    })
}

fn contract() -> kos::Contract {
    kos::Contract {
        commitment_months: 24,
        started_on: chrono::NaiveDate::from_ymd_opt(2025, 1, 1).unwrap(),
        ends_on: chrono::NaiveDate::from_ymd_opt(2026, 12, 31).unwrap(),
    }
}

pub fn bill(line: &str, month: &str, total: i64) -> KosFact {
    KosFact::BillIssued(kos::BillIssued {
        line_number: line.into(),
        customer_id: "CUST001".into(),
        month: month.into(),
        product_code: "5G-STANDARD-001".into(),
        product_name: "5G Standard".into(),
        contract: contract(),
        monthly_fee: 69000,
        usage_charges: 1000,
        discounts: vec![kos::Discount {
            name: "family".into(),
            amount: 5000,
        }],
        total_amount: total,
        usage: kos::Usage {
            voice_minutes: 100,
            sms_count: 10,
            data_mb: 2048,
        },
        early_termination_fee: 120000,
        device_installment_balance: 300000,
        billing: kos::BillingInfo {
            billing_date: chrono::NaiveDate::from_ymd_opt(2026, 4, 1).unwrap(),
            due_date: chrono::NaiveDate::from_ymd_opt(2026, 4, 25).unwrap(),
            payment_status: kos::PaymentStatus::Unpaid,
            payment_method: "CARD".into(),
        },
        issued_at: at(0),
    })
}

pub fn payment(line: &str, month: &str) -> KosFact {
    KosFact::PaymentRecorded(kos::PaymentRecorded {
        line_number: line.into(),
        month: month.into(),
        amount: 65000,
        payment_method: "CARD".into(),
        paid_at: at(30),
    })
}
