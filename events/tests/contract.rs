//! The wire contract: every event serializes to JSON that its schema in `schemas/`
//! accepts, and bad input decodes to a clear error, never a panic.

use chrono::{NaiveDate, TimeZone, Utc};
use events::codec::{decode, encode};
use events::kos::{Contract, KosFact, LineRegistered, LineStatus, ProductPublished};
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
            reason: "system busy".into(),
            failed_at: at,
        }),
        ProductChangeEvent::ProductChangeFailed(ProductChangeFailed {
            request_id,
            line_number: line,
            kos_order_id: None,
            reason_code: FailureReason::Timeout,
            reason: "no answer from KOS in 300 s".into(),
            failed_at: at,
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
    }
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
fn every_event_type_and_version_has_exactly_one_schema_file() {
    let schemas = SchemaSet::load();
    let mut declared: Vec<(String, u32)> = ProductChangeEvent::VERSIONS
        .iter()
        .chain(KosFact::VERSIONS)
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
