//! `BillInquired` on `phonebill.bill-inquiries` (UFR-BILL-040): one per bill query,
//! published by query-service, projected into the inquiry history.
//! Envelope: aggregate type `BillInquiry`, aggregate id = the inquiry id (a fresh UUID),
//! sequence 1.
//!
//! A message carries one inquiry (its envelope, key = line number) or several (a JSON
//! array of their envelopes, each exactly as for one, no key): query-service batches them
//! because one message per query cost more than the query (per-message work in the
//! producer, the broker and the consumer; Event Hubs also meters by message). Every
//! consumer reads both through [`decode_message`].

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::DecodeError;

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
/// straight from the event ([`write_envelope`]).
pub fn encode(event: &BillInquired, correlation_id: Uuid) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(ENVELOPE_BYTES);
    write_envelope(&mut bytes, event, correlation_id);
    bytes
}

/// The wire bytes of several inquiries in one message: a JSON array of what [`encode`]
/// writes for each.
pub fn encode_batch<'a>(inquiries: impl IntoIterator<Item = &'a (BillInquired, Uuid)>) -> Vec<u8> {
    let inquiries = inquiries.into_iter();
    let mut bytes = Vec::with_capacity(2 + inquiries.size_hint().0 * (ENVELOPE_BYTES + 1));
    bytes.push(b'[');
    for (i, (event, correlation_id)) in inquiries.enumerate() {
        if i > 0 {
            bytes.push(b',');
        }
        write_envelope(&mut bytes, event, *correlation_id);
    }
    bytes.push(b']');
    bytes
}

/// About the size of one inquiry's envelope.
const ENVELOPE_BYTES: usize = 576;

/// Appends one inquiry's envelope, the bytes serde writes for it (a test compares), field
/// by field. query-service writes one per bill query, and serde's general path (the
/// formatting machinery for ids and times, a copy call per token) was most of its
/// publisher's CPU.
fn write_envelope(out: &mut Vec<u8>, event: &BillInquired, correlation_id: Uuid) {
    let mut buffer = Uuid::encode_buffer();
    let inquiry_id: &str = event.inquiry_id.hyphenated().encode_lower(&mut buffer);
    let event_id = crate::event_id_for(AGGREGATE, inquiry_id, 1);
    let at = event
        .inquired_at
        .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true);
    let uuid = |out: &mut Vec<u8>, id: Uuid| {
        out.push(b'"');
        out.extend_from_slice(
            id.hyphenated()
                .encode_lower(&mut Uuid::encode_buffer())
                .as_bytes(),
        );
        out.push(b'"');
    };
    let string = |out: &mut Vec<u8>, value: &str| {
        serde_json::to_writer(&mut *out, value).expect("a string always serializes")
    };
    out.extend_from_slice(b"{\"event_id\":");
    uuid(out, event_id);
    out.extend_from_slice(
        b",\"event_type\":\"BillInquired\",\"event_version\":1,\"aggregate_id\":\"",
    );
    out.extend_from_slice(inquiry_id.as_bytes());
    out.extend_from_slice(b"\",\"sequence\":1,\"occurred_at\":\"");
    out.extend_from_slice(at.as_bytes());
    out.extend_from_slice(b"\",\"correlation_id\":");
    uuid(out, correlation_id);
    out.extend_from_slice(b",\"causation_id\":");
    uuid(out, correlation_id);
    out.extend_from_slice(b",\"payload\":{\"inquiry_id\":\"");
    out.extend_from_slice(inquiry_id.as_bytes());
    out.extend_from_slice(b"\",\"line_number\":");
    string(out, &event.line_number);
    out.extend_from_slice(b",\"month\":");
    string(out, &event.month);
    if let Some(customer_id) = &event.customer_id {
        out.extend_from_slice(b",\"customer_id\":");
        string(out, customer_id);
    }
    out.extend_from_slice(b",\"result\":\"");
    out.extend_from_slice(event.result.as_str().as_bytes());
    out.extend_from_slice(b"\",\"inquired_at\":\"");
    out.extend_from_slice(at.as_bytes());
    out.extend_from_slice(b"\"}}");
}

/// The inquiries of one message, one or a batch, in order. A batch decodes whole or not
/// at all: one bad element rejects the message (it goes to the dead-letter topic as it
/// came), so no consumer records part of it.
pub fn decode_message(bytes: &[u8]) -> Result<Vec<(crate::Envelope, BillInquired)>, DecodeError> {
    let decoded = crate::codec::decode_all::<BillInquiryEvent>(bytes)?;
    Ok(decoded
        .into_iter()
        .map(|(envelope, BillInquiryEvent::BillInquired(e))| (envelope, e))
        .collect())
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
        use chrono::Timelike;
        let now = Utc::now();
        // Times with every fractional width serde writes (none, milli, micro, nano), and
        // subjects needing no escape, escapes and non-ASCII
        let times = [0, 123_000_000, 123_456_000, 123_456_789]
            .map(|nanos| now.with_nanosecond(nanos).unwrap());
        let subjects = [None, Some("CUST001"), Some("we\"ird\\ ü\n\u{1}")];
        for (inquired_at, customer_id) in times
            .into_iter()
            .flat_map(|t| subjects.map(|c| (t, c.map(str::to_owned))))
        {
            let event = BillInquired {
                inquiry_id: Uuid::new_v4(),
                line_number: "010-1234-5678".into(),
                month: "2024-03".into(),
                result: match customer_id {
                    Some(_) => InquiryResult::Found,
                    None => InquiryResult::NotFound,
                },
                customer_id,
                inquired_at,
            };
            let correlation_id = Uuid::new_v4();
            // Byte for byte what serde writes for the same envelope
            assert_eq!(
                String::from_utf8(encode(&event, correlation_id)).unwrap(),
                serde_json::to_string(&envelope_with(&event, correlation_id, &event)).unwrap()
            );
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

    fn inquiry(line: &str) -> BillInquired {
        BillInquired {
            inquiry_id: Uuid::new_v4(),
            line_number: line.into(),
            month: "2024-03".into(),
            customer_id: Some("CUST001".into()),
            result: InquiryResult::Found,
            inquired_at: Utc::now(),
        }
    }

    #[test]
    fn a_batch_decodes_to_its_inquiries_in_order_each_with_the_envelope_of_one() {
        let items: Vec<(BillInquired, Uuid)> = ["010-1234-5678", "010-1111-2222", "010-1234-5678"]
            .iter()
            .map(|line| (inquiry(line), Uuid::new_v4()))
            .collect();
        let bytes = encode_batch(&items);
        assert!(crate::codec::is_batch(&bytes));
        let decoded = decode_message(&bytes).unwrap();
        assert_eq!(decoded.len(), 3);
        for ((env, event), (sent, correlation_id)) in decoded.iter().zip(&items) {
            assert_eq!(event, sent);
            assert_eq!(env, &envelope(sent, *correlation_id));
        }
        // Read without their payload types (as the export does): the same envelopes.
        let envelopes = crate::codec::decode_envelopes(&bytes).unwrap();
        let expected: Vec<_> = decoded.into_iter().map(|(env, _)| env).collect();
        assert_eq!(envelopes, expected);
    }

    #[test]
    fn one_inquiry_alone_still_decodes_as_a_message_of_one() {
        let sent = inquiry("010-1234-5678");
        let bytes = encode(&sent, Uuid::new_v4());
        assert!(!crate::codec::is_batch(&bytes));
        let decoded = decode_message(&bytes).unwrap();
        assert_eq!(decoded.len(), 1);
        assert_eq!(decoded[0].1, sent);
    }

    #[test]
    fn a_batch_with_one_bad_element_or_none_is_refused_whole() {
        let good = String::from_utf8(encode(&inquiry("010-1234-5678"), Uuid::new_v4())).unwrap();
        let bad_element = format!(r#"[{good},{{"event_type":"BillInquired"}}]"#);
        let refused = decode_message(bad_element.as_bytes()).unwrap_err();
        assert!(refused.to_string().contains("batch element 1"), "{refused}");
        assert!(decode_message(b" [] ").is_err());
        assert!(decode_message(b"[1, 2").is_err());
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
