//! `BillInquired` on `phonebill.bill-inquiries` (UFR-BILL-040): one per bill query,
//! published by query-service, projected into the inquiry history.
//! Envelope: aggregate type `BillInquiry`, aggregate id = the inquiry id (a fresh UUID),
//! sequence 1, key = line number.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub const AGGREGATE: &str = "BillInquiry";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum BillInquiryEvent {
    BillInquired(BillInquired),
}

crate::event_family!(BillInquiryEvent {
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
    /// Who asked (the token's subject: a customer, analyst or admin id).
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
pub fn envelope(event: &BillInquired, correlation_id: Uuid) -> crate::Envelope {
    use crate::EventPayload;
    let wrapped = BillInquiryEvent::BillInquired(event.clone());
    crate::Envelope {
        event_type: wrapped.event_type().to_owned(),
        event_version: wrapped.event_version(),
        ..envelope_with(event, correlation_id, wrapped.to_payload())
    }
}

/// The wire bytes of one inquiry: the JSON of `codec::encode(&envelope(..))`, written
/// straight from the event. query-service writes one per bill query, and going through
/// `envelope`'s `serde_json::Value` payload was most of that cost.
pub fn encode(event: &BillInquired, correlation_id: Uuid) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(512);
    serde_json::to_writer(&mut bytes, &envelope_with(event, correlation_id, event))
        .expect("an inquiry always serializes");
    bytes
}

/// Type and version written out for the direct encoding; `envelope` takes them from
/// `event_family!`, and a test compares the two.
fn envelope_with<P>(event: &BillInquired, correlation_id: Uuid, payload: P) -> crate::Envelope<P> {
    crate::Envelope {
        event_id: crate::event_id_for(AGGREGATE, &event.inquiry_id.to_string(), 1),
        event_type: "BillInquired".to_owned(),
        event_version: 1,
        aggregate_id: event.inquiry_id.to_string(),
        sequence: 1,
        occurred_at: event.inquired_at,
        correlation_id,
        causation_id: correlation_id,
        payload,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_direct_encoding_is_the_envelope_s_json() {
        use crate::EventPayload;
        for customer_id in [None, Some("CUST001".to_owned())] {
            let event = BillInquired {
                inquiry_id: Uuid::new_v4(),
                line_number: "010-1234-5678".into(),
                month: "2024-03".into(),
                customer_id,
                result: InquiryResult::NotFound,
                inquired_at: Utc::now(),
            };
            let correlation_id = Uuid::new_v4();
            let direct: serde_json::Value =
                serde_json::from_slice(&encode(&event, correlation_id)).unwrap();
            let via_envelope: serde_json::Value =
                serde_json::from_slice(&crate::codec::encode(&envelope(&event, correlation_id)))
                    .unwrap();
            assert_eq!(direct, via_envelope);
            assert_eq!(
                direct["event_type"],
                BillInquiryEvent::BillInquired(event.clone()).event_type()
            );
        }
    }

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
        let bytes = crate::codec::encode(&envelope(&event, Uuid::new_v4()));
        let (env, decoded) = crate::codec::decode::<BillInquiryEvent>(&bytes).unwrap();
        assert_eq!(decoded, BillInquiryEvent::BillInquired(event));
        assert_eq!(env.sequence, 1);
    }
}
