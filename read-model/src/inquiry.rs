//! `BillInquired` on `phonebill.bill-inquiries` (UFR-BILL-040): one per bill query.
//! Envelope: aggregate type `BillInquiry`, aggregate id = the inquiry id (a fresh UUID),
//! sequence 1, key = line number. Defined here until it moves into `events/`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub const AGGREGATE: &str = "BillInquiry";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum BillInquiryEvent {
    BillInquired(BillInquired),
}

events::event_family!(BillInquiryEvent {
    BillInquired(BillInquired) = ("BillInquired", 1),
});

/// Someone asked for a line's bill of a month.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BillInquired {
    pub inquiry_id: Uuid,
    pub line_number: String,
    /// `YYYY-MM`.
    pub month: String,
    /// Who asked (customer id once auth exists; `null` until then).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_id: Option<String>,
    /// `FOUND` or `NOT_FOUND`.
    pub result: InquiryResult,
    pub inquired_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum InquiryResult {
    Found,
    NotFound,
}

impl InquiryResult {
    pub fn as_str(self) -> &'static str {
        match self {
            InquiryResult::Found => "FOUND",
            InquiryResult::NotFound => "NOT_FOUND",
        }
    }
}

/// The envelope of one inquiry.
pub fn envelope(event: &BillInquired, correlation_id: Uuid) -> events::Envelope {
    use events::EventPayload;
    let wrapped = BillInquiryEvent::BillInquired(event.clone());
    let id = events::event_id_for(AGGREGATE, &event.inquiry_id.to_string(), 1);
    events::Envelope {
        event_id: id,
        event_type: wrapped.event_type().to_owned(),
        event_version: wrapped.event_version(),
        aggregate_id: event.inquiry_id.to_string(),
        sequence: 1,
        occurred_at: event.inquired_at,
        correlation_id,
        causation_id: correlation_id,
        payload: wrapped.to_payload(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_inquiry_round_trips_through_its_envelope() {
        let event = BillInquired {
            inquiry_id: Uuid::new_v4(),
            line_number: "010-1234-5678".into(),
            month: "2024-03".into(),
            customer_id: None,
            result: InquiryResult::Found,
            inquired_at: Utc::now(),
        };
        let bytes = events::codec::encode(&envelope(&event, Uuid::new_v4()));
        let (env, decoded) = events::codec::decode::<BillInquiryEvent>(&bytes).unwrap();
        assert_eq!(decoded, BillInquiryEvent::BillInquired(event));
        assert_eq!(env.sequence, 1);
    }

    #[test]
    fn an_inquiry_envelope_matches_its_json_schema_and_a_bad_month_does_not() {
        let envelope: serde_json::Value = serde_json::from_str(events::schema::FILES[0].1).unwrap();
        let schema: serde_json::Value = serde_json::from_str(include_str!(
            "../schemas/phonebill.bill-inquiries/BillInquired.v1.schema.json"
        ))
        .unwrap();
        let validator = jsonschema::options()
            .should_validate_formats(true)
            .with_resource(
                "https://schemas.phonebill.dev/envelope.v1.schema.json",
                jsonschema::Resource::from_contents(envelope).unwrap(),
            )
            .build(&schema)
            .unwrap();
        let event = BillInquired {
            inquiry_id: Uuid::new_v4(),
            line_number: "010-1234-5678".into(),
            month: "2024-03".into(),
            customer_id: None,
            result: InquiryResult::NotFound,
            inquired_at: Utc::now(),
        };
        let mut json = serde_json::to_value(envelope_of(&event)).unwrap();
        assert!(validator.is_valid(&json), "{json}");
        json["payload"]["month"] = serde_json::json!("2024-13");
        assert!(!validator.is_valid(&json));
    }

    fn envelope_of(event: &BillInquired) -> events::Envelope {
        envelope(event, Uuid::new_v4())
    }
}
