//! The wire contract: every event serializes to JSON that its schema in `schemas/`
//! accepts, and bad input decodes to a clear error, never a panic.

use chrono::{NaiveDate, TimeZone, Utc};
use events::bill_inquiry::{self, BillInquired, BillInquiryEvent, InquiryResult};
use events::codec::{decode, decode_value, encode};
use events::kos::*;
use events::product_change::*;
use events::schema::SchemaSet;
use events::{event_id_for, DecodeError, Envelope, EventPayload};
use uuid::Uuid;

fn envelope_of<E: EventPayload>(aggregate_id: &str, sequence: u64, event: &E) -> Envelope {
    Envelope {
        event_id: event_id_for("Line", aggregate_id, sequence),
        event_type: event.event_type().to_owned(),
        event_version: event.event_version(),
        aggregate_id: aggregate_id.to_owned(),
        sequence,
        occurred_at: Utc.with_ymd_and_hms(2026, 3, 1, 9, 30, 0).unwrap(),
        correlation_id: Uuid::new_v4(),
        causation_id: Uuid::new_v4(),
        payload: event.to_payload(),
    }
}

fn product_change_samples() -> Vec<ProductChangeEvent> {
    let request_id = Uuid::new_v4();
    let line = "010-1234-5678".to_owned();
    let at = Utc.with_ymd_and_hms(2026, 3, 1, 9, 30, 0).unwrap();
    vec![
        ProductChangeEvent::ProductChangeRequested(ProductChangeRequested {
            request_id,
            line_number: line.clone(),
            customer_id: "CUST001".into(),
            operator: "KT".into(),
            current_product_code: "5G-BASIC-001".into(),
            target_product_code: "5G-PREMIUM-001".into(),
            requested_at: at,
        }),
        ProductChangeEvent::ProductChangeRejected(ProductChangeRejected {
            request_id,
            line_number: line.clone(),
            current_product_code: "5G-BASIC-001".into(),
            target_product_code: "5G-PREMIUM-001".into(),
            failed_checks: Precheck::ALL
                .iter()
                .map(|&check| FailedCheck {
                    check,
                    message: format!("{} failed", check.code()),
                })
                .collect(),
            requested_at: at,
        }),
        ProductChangeEvent::ProductChangeSentToKos(ProductChangeSentToKos {
            request_id,
            line_number: line.clone(),
            customer_id: "CUST001".into(),
            current_product_code: "5G-BASIC-001".into(),
            target_product_code: "5G-PREMIUM-001".into(),
            sent_at: at,
            answer_by: at + chrono::Duration::minutes(5),
        }),
        ProductChangeEvent::ProductChangeCompleted(ProductChangeCompleted {
            request_id,
            line_number: line.clone(),
            kos_order_id: "KOS-000001".into(),
            previous_product_code: "5G-BASIC-001".into(),
            new_product_code: "5G-PREMIUM-001".into(),
            message: "changed".into(),
            completed_at: at,
        }),
        ProductChangeEvent::ProductChangeFailed(ProductChangeFailed {
            request_id,
            line_number: line.clone(),
            kos_order_id: Some("KOS-000002".into()),
            reason_code: FailureReason::KosRejected,
            kos_reason_code: Some("SYSTEM_ERROR".into()),
            reason: "system busy".into(),
            failed_at: at,
        }),
        ProductChangeEvent::ProductChangeFailed(ProductChangeFailed {
            request_id,
            line_number: line,
            kos_order_id: None,
            reason_code: FailureReason::Timeout,
            kos_reason_code: None,
            reason: "no answer from KOS in 300 s".into(),
            failed_at: at,
        }),
        ProductChangeEvent::ProductChangeLateAnswerRecorded(ProductChangeLateAnswerRecorded {
            request_id,
            line_number: "010-1234-5678".into(),
            kos_order_id: "KOS-000003".into(),
            executed: true,
            new_product_code: Some("5G-PREMIUM-001".into()),
            kos_reason_code: None,
            message: "changed".into(),
            answered_at: at,
        }),
        ProductChangeEvent::ProductChangeLateAnswerRecorded(ProductChangeLateAnswerRecorded {
            request_id,
            line_number: "010-1234-5678".into(),
            kos_order_id: "KOS-000004".into(),
            executed: false,
            new_product_code: None,
            kos_reason_code: Some("REQUEST_EXPIRED".into()),
            message: "too late".into(),
            answered_at: at,
        }),
    ]
}

fn kos_fact_samples() -> Vec<KosFact> {
    vec![
        KosFact::ProductPublished(ProductPublished {
            product_code: "5G-PREMIUM-001".into(),
            name: "5G 프리미엄".into(),
            operator: "KT".into(),
            monthly_fee: 89_000,
            data_mb: None,
            voice_minutes: Some(300),
            sms_count: None,
            on_sale: true,
        }),
        KosFact::LineRegistered(LineRegistered {
            line_number: "010-1234-5678".into(),
            customer_id: "CUST001".into(),
            customer_name: "홍길동".into(),
            operator: "KT".into(),
            status: LineStatus::Suspended,
            product_code: "5G-BASIC-001".into(),
            contract: Contract {
                commitment_months: 24,
                started_on: NaiveDate::from_ymd_opt(2025, 1, 1).unwrap(),
                ends_on: NaiveDate::from_ymd_opt(2026, 12, 31).unwrap(),
            },
        }),
        KosFact::ProductWithdrawn(ProductWithdrawn {
            product_code: "5G-PREMIUM-001".into(),
            operator: "KT".into(),
        }),
        KosFact::ProductRepriced(ProductRepriced {
            product_code: "5G-PREMIUM-001".into(),
            operator: "KT".into(),
            previous_monthly_fee: 89_000,
            monthly_fee: 79_000,
        }),
        KosFact::LineSuspended(LineSuspended {
            line_number: "010-1234-5678".into(),
            reason: "unpaid".into(),
        }),
        KosFact::LineResumed(LineResumed {
            line_number: "010-1234-5678".into(),
        }),
        KosFact::LineProductChanged(LineProductChanged {
            line_number: "010-1234-5678".into(),
            previous_product_code: "5G-BASIC-001".into(),
            new_product_code: "5G-PREMIUM-001".into(),
            kos_order_id: "KOS-000001".into(),
            request_id: Some(Uuid::new_v4()),
        }),
        KosFact::BillIssued(sample_bill()),
        KosFact::PaymentRecorded(PaymentRecorded {
            line_number: "010-1234-5678".into(),
            month: "2026-02".into(),
            amount: 61_500,
            payment_method: "AUTO_TRANSFER".into(),
            paid_at: Utc.with_ymd_and_hms(2026, 3, 25, 0, 0, 0).unwrap(),
        }),
    ]
}

fn sample_bill() -> BillIssued {
    BillIssued {
        line_number: "010-1234-5678".into(),
        customer_id: "CUST001".into(),
        month: "2026-02".into(),
        product_code: "5G-BASIC-001".into(),
        product_name: "5G 베이직".into(),
        contract: Contract {
            commitment_months: 24,
            started_on: NaiveDate::from_ymd_opt(2025, 1, 1).unwrap(),
            ends_on: NaiveDate::from_ymd_opt(2026, 12, 31).unwrap(),
        },
        monthly_fee: 55_000,
        usage_charges: 3_300,
        discounts: vec![Discount {
            name: "선택약정 25%".into(),
            amount: 13_750,
        }],
        total_amount: 61_500,
        usage: Usage {
            voice_minutes: 212,
            sms_count: 40,
            data_mb: 10_240,
        },
        early_termination_fee: 120_000,
        device_installment_balance: 340_000,
        billing: BillingInfo {
            billing_date: NaiveDate::from_ymd_opt(2026, 3, 1).unwrap(),
            due_date: NaiveDate::from_ymd_opt(2026, 3, 25).unwrap(),
            payment_status: PaymentStatus::Unpaid,
            payment_method: "AUTO_TRANSFER".into(),
        },
        issued_at: Utc.with_ymd_and_hms(2026, 3, 1, 0, 0, 0).unwrap(),
    }
}

fn kos_result_samples() -> Vec<KosResult> {
    let at = Utc.with_ymd_and_hms(2026, 3, 1, 9, 30, 1).unwrap();
    vec![
        KosResult::ProductChangeExecuted(ProductChangeExecuted {
            request_id: Uuid::new_v4(),
            line_number: "010-1234-5678".into(),
            kos_order_id: "KOS-000001".into(),
            previous_product_code: "5G-BASIC-001".into(),
            new_product_code: "5G-PREMIUM-001".into(),
            message: "changed".into(),
            executed_at: at,
        }),
        KosResult::ProductChangeRefused(ProductChangeRefused {
            request_id: Uuid::new_v4(),
            line_number: "010-1234-5678".into(),
            kos_order_id: "KOS-000002".into(),
            reason_code: "SYSTEM_ERROR".into(),
            message: "KOS could not complete the order".into(),
            refused_at: at,
        }),
    ]
}

fn as_json(envelope: &Envelope) -> serde_json::Value {
    serde_json::from_slice(&encode(envelope)).unwrap()
}

#[test]
fn every_product_change_event_validates_against_its_schema_and_round_trips() {
    let schemas = SchemaSet::load();
    for event in product_change_samples() {
        let envelope = envelope_of("010-1234-5678", 3, &event);
        let json = as_json(&envelope);
        schemas
            .validate(&json)
            .unwrap_or_else(|e| panic!("{} rejected by its schema: {e}", event.event_type()));
        let (decoded_envelope, decoded) = decode::<ProductChangeEvent>(&encode(&envelope)).unwrap();
        assert_eq!(decoded_envelope, envelope);
        assert_eq!(decoded, event);
        // The same from the JSON parsed for the schema check.
        let (from_value, typed) = decode_value::<ProductChangeEvent>(json).unwrap();
        assert_eq!((from_value, typed), (envelope, event));
    }
}

#[test]
fn decoding_parsed_json_refuses_what_decoding_the_text_refuses() {
    let mut json = as_json(&envelope_of(
        "010-1234-5678",
        1,
        &product_change_samples()[0],
    ));
    json["surplus"] = serde_json::json!(1);
    assert!(matches!(
        decode_value::<ProductChangeEvent>(json),
        Err(DecodeError::Envelope(_))
    ));
    let mut envelope = envelope_of("010-1234-5678", 1, &product_change_samples()[0]);
    envelope.event_type = "ProductChangeTeleported".into();
    assert_eq!(
        decode_value::<ProductChangeEvent>(as_json(&envelope)).unwrap_err(),
        DecodeError::UnknownType("ProductChangeTeleported".into())
    );
}

#[test]
fn every_kos_fact_validates_against_its_schema_and_round_trips() {
    let schemas = SchemaSet::load();
    for fact in kos_fact_samples() {
        let envelope = envelope_of("010-1234-5678", 1, &fact);
        schemas
            .validate(&as_json(&envelope))
            .unwrap_or_else(|e| panic!("{} rejected by its schema: {e}", fact.event_type()));
        assert_eq!(decode::<KosFact>(&encode(&envelope)).unwrap().1, fact);
    }
}

#[test]
fn every_kos_result_validates_against_its_schema_and_round_trips() {
    let schemas = SchemaSet::load();
    for result in kos_result_samples() {
        let envelope = envelope_of(result.kos_order_id(), 1, &result);
        schemas
            .validate(&as_json(&envelope))
            .unwrap_or_else(|e| panic!("{} rejected by its schema: {e}", result.event_type()));
        assert_eq!(decode::<KosResult>(&encode(&envelope)).unwrap().1, result);
    }
}

#[test]
fn every_bill_inquiry_validates_against_its_schema_and_a_bad_month_does_not() {
    let schemas = SchemaSet::load();
    for (customer_id, result) in [
        (Some("CUST0001".to_owned()), InquiryResult::Found),
        (None, InquiryResult::NotFound),
    ] {
        let inquiry = BillInquired {
            inquiry_id: Uuid::new_v4(),
            line_number: "010-1234-5678".into(),
            month: "2026-03".into(),
            customer_id,
            result,
            inquired_at: Utc::now(),
        };
        let envelope = bill_inquiry::envelope(&inquiry, Uuid::new_v4());
        let mut json = as_json(&envelope);
        schemas.validate(&json).unwrap();
        let decoded = decode::<BillInquiryEvent>(&encode(&envelope)).unwrap().1;
        assert_eq!(decoded, BillInquiryEvent::BillInquired(inquiry));
        json["payload"]["month"] = serde_json::json!("2026-13");
        assert!(schemas.validate(&json).is_err());
    }
}

#[test]
fn a_bill_with_a_malformed_month_breaks_its_schema() {
    let schemas = SchemaSet::load();
    let mut bill = sample_bill();
    bill.month = "2026-13".into();
    let json = as_json(&envelope_of("010-1234-5678", 1, &KosFact::BillIssued(bill)));
    let err = schemas.validate(&json).unwrap_err();
    assert!(err.to_string().contains("month"), "{err}");
}

#[test]
fn every_schema_file_in_the_folder_is_compiled_into_the_crate() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../schemas");
    let mut on_disk = Vec::new();
    for dir in std::fs::read_dir(&root).unwrap() {
        let dir = dir.unwrap().path();
        if dir.is_dir() {
            for file in std::fs::read_dir(&dir).unwrap() {
                let file = file.unwrap().path();
                on_disk.push(
                    file.strip_prefix(&root)
                        .unwrap()
                        .to_string_lossy()
                        .into_owned(),
                );
            }
        } else {
            on_disk.push(
                dir.strip_prefix(&root)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned(),
            );
        }
    }
    let mut compiled: Vec<String> = events::schema::FILES
        .iter()
        .map(|(path, _)| path.to_string())
        .collect();
    on_disk.sort();
    compiled.sort();
    assert_eq!(on_disk, compiled);
}

#[test]
fn every_event_type_and_version_has_exactly_one_schema_file() {
    let schemas = SchemaSet::load();
    let mut declared: Vec<(String, u32)> = ProductChangeEvent::VERSIONS
        .iter()
        .chain(KosFact::VERSIONS)
        .chain(KosResult::VERSIONS)
        .chain(BillInquiryEvent::VERSIONS)
        .map(|(t, v)| (t.to_string(), *v))
        .collect();
    let mut with_schema: Vec<(String, u32)> = schemas.known().cloned().collect();
    declared.sort();
    with_schema.sort();
    assert_eq!(declared, with_schema);
}

#[test]
fn schema_rejects_an_envelope_whose_payload_breaks_the_contract() {
    let schemas = SchemaSet::load();
    let event = &product_change_samples()[0];
    let mut json = as_json(&envelope_of("010-1234-5678", 1, event));
    json["payload"]["line_number"] = "01012345678".into();
    let err = schemas.validate(&json).unwrap_err();
    assert!(err.to_string().contains("line_number"), "{err}");

    let mut json = as_json(&envelope_of("010-1234-5678", 1, event));
    json["payload"]["surprise"] = 1.into();
    assert!(schemas.validate(&json).is_err());

    let mut json = as_json(&envelope_of("010-1234-5678", 1, event));
    json.as_object_mut().unwrap().remove("correlation_id");
    assert!(schemas.validate(&json).is_err());
}

#[test]
fn decoding_garbage_gives_an_envelope_error() {
    for bytes in [
        &b""[..],
        b"{",
        b"null",
        b"[1,2]",
        b"\xff\xfe",
        b"{\"event_id\":42}",
    ] {
        match decode::<ProductChangeEvent>(bytes) {
            Err(DecodeError::Envelope(reason)) => assert!(!reason.is_empty()),
            other => panic!("expected an envelope error for {bytes:?}, got {other:?}"),
        }
    }
}

#[test]
fn decoding_an_unknown_version_names_the_type_and_version() {
    let mut envelope = envelope_of("010-1234-5678", 1, &product_change_samples()[0]);
    envelope.event_version = 9;
    let err = decode::<ProductChangeEvent>(&encode(&envelope)).unwrap_err();
    assert_eq!(
        err,
        DecodeError::UnknownVersion {
            event_type: "ProductChangeRequested".into(),
            version: 9
        }
    );
    assert_eq!(
        err.to_string(),
        "unsupported version 9 of event type `ProductChangeRequested`"
    );
    let schemas = SchemaSet::load();
    assert!(matches!(
        schemas.validate(&as_json(&envelope)),
        Err(DecodeError::UnknownVersion { .. })
    ));
}

#[test]
fn decoding_an_unknown_type_or_a_wrong_payload_is_an_error() {
    let mut envelope = envelope_of("010-1234-5678", 1, &product_change_samples()[0]);
    envelope.event_type = "ProductChangeTeleported".into();
    assert_eq!(
        decode::<ProductChangeEvent>(&encode(&envelope)).unwrap_err(),
        DecodeError::UnknownType("ProductChangeTeleported".into())
    );

    let mut envelope = envelope_of("010-1234-5678", 1, &product_change_samples()[0]);
    envelope.payload = serde_json::json!({"request_id": "not-a-uuid"});
    assert!(matches!(
        decode::<ProductChangeEvent>(&encode(&envelope)),
        Err(DecodeError::Payload { .. })
    ));
}
