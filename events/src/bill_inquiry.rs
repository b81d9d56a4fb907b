//! `BillInquired` on `phonebill.bill-inquiries` (UFR-BILL-040): one per bill query,
//! published by query-service, projected into the inquiry history.
//! Envelope: aggregate type `BillInquiry`, aggregate id = the inquiry id (a fresh UUID),
//! sequence 1.
//!
//! A message carries one inquiry (its envelope, key = line number) or several, no key:
//! query-service batches them because one message per query cost more than the query
//! (per-message work in the producer, the broker and the consumer; Event Hubs also meters
//! by message). A batch is compact ([`encode_batch`]: a header and one row per inquiry,
//! expanded by consumers into the envelopes the inquiries would have had alone); before
//! it, a batch was a JSON array of those envelopes. Every consumer reads all three
//! through [`decode_message`] (or `codec::decode_envelopes`).

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

/// The envelope of one inquiry. Its event id is derived from the inquiry id, so a
/// consumer expanding a compact batch gives each inquiry the same envelope.
pub fn envelope(event: &BillInquired, correlation_id: Uuid) -> crate::Envelope {
    use crate::EventPayload;
    let wrapped = BillInquiryEvent::BillInquired(event.clone());
    let aggregate_id = event.inquiry_id.to_string();
    crate::Envelope {
        event_id: crate::event_id_for(AGGREGATE, &aggregate_id, 1),
        event_type: wrapped.event_type().to_owned(),
        event_version: wrapped.event_version(),
        aggregate_id,
        sequence: 1,
        occurred_at: event.inquired_at,
        correlation_id,
        causation_id: correlation_id,
        payload: wrapped.to_payload(),
    }
}

/// The wire bytes of one inquiry alone: its envelope (key: the line number).
pub fn encode(event: &BillInquired, correlation_id: Uuid) -> Vec<u8> {
    crate::codec::encode(&envelope(event, correlation_id))
}

/// What a compact batch holds, and its columns in order ([`encode_batch`]).
const ROWS_OF: &str = "BillInquired";
const ROWS_VERSION: u32 = 1;
const COLUMNS: [&str; 7] = [
    "inquiry_id",
    "line_number",
    "month",
    "customer_id",
    "result",
    "inquired_at",
    "correlation_id",
];

/// The wire bytes of several inquiries in one message, a compact batch: one header and a
/// row per inquiry, e.g.
/// `{"rows_of":"BillInquired","event_version":1,"columns":[..],"rows":[["<inquiry id>",
/// "010-1234-5678","2026-03","CUST001","FOUND","<inquired at>","<correlation id>"]]}`.
/// A consumer expands each row into the envelope that inquiry would have had alone
/// ([`envelope`]; its event id derived from the inquiry id), so the events are the same
/// as one message each. A row is ~150 bytes where an envelope is ~570: query-service
/// writes one per bill query, and the bytes (writing them, LZ4, the broker) and the
/// event id's SHA-1 were most of its publisher's CPU.
pub fn encode_batch<'a>(inquiries: impl IntoIterator<Item = &'a (BillInquired, Uuid)>) -> Vec<u8> {
    let inquiries = inquiries.into_iter();
    let mut out = Vec::with_capacity(160 + inquiries.size_hint().0 * ROW_BYTES);
    out.extend_from_slice(b"{\"rows_of\":\"");
    out.extend_from_slice(ROWS_OF.as_bytes());
    out.extend_from_slice(b"\",\"event_version\":");
    out.extend_from_slice(ROWS_VERSION.to_string().as_bytes());
    out.extend_from_slice(b",\"columns\":[");
    for (i, column) in COLUMNS.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.push(b'"');
        out.extend_from_slice(column.as_bytes());
        out.push(b'"');
    }
    out.extend_from_slice(b"],\"rows\":[");
    for (i, (event, correlation_id)) in inquiries.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_row(&mut out, event, *correlation_id);
    }
    out.extend_from_slice(b"]}");
    out
}

/// About the size of one row.
const ROW_BYTES: usize = 160;

/// Appends one inquiry's row, in [`COLUMNS`] order.
fn write_row(out: &mut Vec<u8>, event: &BillInquired, correlation_id: Uuid) {
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
    out.push(b'[');
    uuid(out, event.inquiry_id);
    out.push(b',');
    string(out, &event.line_number);
    out.push(b',');
    string(out, &event.month);
    out.push(b',');
    match &event.customer_id {
        Some(customer_id) => string(out, customer_id),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"");
    out.extend_from_slice(event.result.as_str().as_bytes());
    out.extend_from_slice(b"\",\"");
    out.extend_from_slice(
        event
            .inquired_at
            .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
            .as_bytes(),
    );
    out.extend_from_slice(b"\",");
    uuid(out, correlation_id);
    out.push(b']');
}

/// A compact batch as read: the header is checked, each row typed by serde.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Rows {
    rows_of: String,
    event_version: u32,
    columns: Vec<String>,
    /// Typed one by one, so that an error names its row.
    rows: Vec<serde_json::Value>,
}

/// One row, in [`COLUMNS`] order.
type Row = (
    Uuid,
    String,
    String,
    Option<String>,
    InquiryResult,
    DateTime<Utc>,
    Uuid,
);

/// Only whether a JSON object has `rows_of`; the rest is skipped, not read.
#[derive(Deserialize)]
struct Probe {
    rows_of: Option<serde::de::IgnoredAny>,
}

/// The inquiries of a compact batch ([`encode_batch`]), each with the envelope it would
/// have had alone; `None` when the bytes are not a compact batch (an envelope, an array
/// of them, or not JSON). A batch reads whole or not at all, and an error names the row.
pub fn decode_rows(
    bytes: &[u8],
) -> Result<Option<Vec<(crate::Envelope, BillInquired)>>, DecodeError> {
    let is_object = bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
    if !is_object || !serde_json::from_slice::<Probe>(bytes).is_ok_and(|p| p.rows_of.is_some()) {
        return Ok(None);
    }
    let batch: Rows =
        serde_json::from_slice(bytes).map_err(|e| DecodeError::Envelope(e.to_string()))?;
    if batch.rows_of != ROWS_OF {
        return Err(DecodeError::UnknownType(batch.rows_of));
    }
    if batch.event_version != ROWS_VERSION {
        return Err(DecodeError::UnknownVersion {
            event_type: batch.rows_of,
            version: batch.event_version,
        });
    }
    if batch.columns != COLUMNS {
        return Err(DecodeError::Envelope(format!(
            "the columns of a {ROWS_OF} batch are {COLUMNS:?}, not {:?}",
            batch.columns
        )));
    }
    if batch.rows.is_empty() {
        return Err(DecodeError::Envelope("an empty batch".into()));
    }
    let expanded = batch
        .rows
        .into_iter()
        .enumerate()
        .map(|(i, row)| {
            let (inquiry_id, line_number, month, customer_id, result, inquired_at, correlation_id) =
                serde_json::from_value::<Row>(row)
                    .map_err(|e| DecodeError::Envelope(format!("row {i}: {e}")))?;
            let event = BillInquired {
                inquiry_id,
                line_number,
                month,
                customer_id,
                result,
                inquired_at,
            };
            Ok((envelope(&event, correlation_id), event))
        })
        .collect::<Result<_, DecodeError>>()?;
    Ok(Some(expanded))
}

/// The inquiries of one message, in order: a compact batch, one envelope, or a JSON
/// array of envelopes (how query-service batched them before the compact batch; still
/// read, as a topic may hold them). A batch decodes whole or not at all: one bad element
/// rejects the message (it goes to the dead-letter topic as it came), so no consumer
/// records part of it.
pub fn decode_message(bytes: &[u8]) -> Result<Vec<(crate::Envelope, BillInquired)>, DecodeError> {
    if let Some(rows) = decode_rows(bytes)? {
        return Ok(rows);
    }
    let decoded = crate::codec::decode_all::<BillInquiryEvent>(bytes)?;
    Ok(decoded
        .into_iter()
        .map(|(envelope, BillInquiryEvent::BillInquired(e))| (envelope, e))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Timelike;

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

    /// Inquiries at times of every fractional width chrono writes (none, milli, micro,
    /// nano), by subjects needing no escape, escapes and non-ASCII, and by nobody.
    fn varied_inquiries() -> Vec<(BillInquired, Uuid)> {
        let now = Utc::now();
        let times = [0, 123_000_000, 123_456_000, 123_456_789]
            .map(|nanos| now.with_nanosecond(nanos).unwrap());
        let subjects = [None, Some("CUST001"), Some("we\"ird\\ ü\n\u{1}")];
        times
            .into_iter()
            .flat_map(|t| subjects.map(|c| (t, c.map(str::to_owned))))
            .map(|(inquired_at, customer_id)| {
                let event = BillInquired {
                    result: match customer_id {
                        Some(_) => InquiryResult::Found,
                        None => InquiryResult::NotFound,
                    },
                    customer_id,
                    inquired_at,
                    ..inquiry("010-1234-5678")
                };
                (event, Uuid::new_v4())
            })
            .collect()
    }

    #[test]
    fn a_compact_batch_expands_to_the_envelopes_its_inquiries_would_have_alone() {
        let items = varied_inquiries();
        let bytes = encode_batch(&items);
        let decoded = decode_message(&bytes).unwrap();
        assert_eq!(decoded.len(), items.len());
        for ((env, event), (sent, correlation_id)) in decoded.iter().zip(&items) {
            assert_eq!(event, sent);
            assert_eq!(env, &envelope(sent, *correlation_id));
            // and what one message of it alone carries
            assert_eq!(
                crate::codec::encode(env),
                encode(sent, *correlation_id),
                "{sent:?}"
            );
        }
        // Read without their payload types (as the export does): the same envelopes.
        let envelopes = crate::codec::decode_envelopes(&bytes).unwrap();
        let expected: Vec<_> = decoded.into_iter().map(|(env, _)| env).collect();
        assert_eq!(envelopes, expected);
    }

    #[test]
    fn a_compact_batch_is_under_a_third_of_the_envelopes_it_stands_for() {
        let items: Vec<_> = (0..32)
            .map(|_| (inquiry("010-1234-5678"), Uuid::new_v4()))
            .collect();
        let envelopes: usize = items.iter().map(|(e, c)| encode(e, *c).len() + 1).sum();
        let rows = encode_batch(&items).len();
        assert!(rows * 3 < envelopes, "{rows} bytes against {envelopes}");
    }

    #[test]
    fn the_batch_header_names_the_event_family_s_type_and_version() {
        use crate::EventPayload;
        let event = BillInquiryEvent::BillInquired(inquiry("010-1234-5678"));
        assert_eq!(ROWS_OF, event.event_type());
        assert_eq!(ROWS_VERSION, event.event_version());
    }

    #[test]
    fn one_envelope_alone_or_an_array_of_envelopes_still_decodes() {
        let items = varied_inquiries();
        let single = encode(&items[0].0, items[0].1);
        assert_eq!(decode_message(&single).unwrap()[0].1, items[0].0);
        let array = format!(
            "[{}]",
            items
                .iter()
                .map(|(e, c)| String::from_utf8(encode(e, *c)).unwrap())
                .collect::<Vec<_>>()
                .join(",")
        );
        let decoded = decode_message(array.as_bytes()).unwrap();
        assert_eq!(decoded, decode_message(&encode_batch(&items)).unwrap());
    }

    #[test]
    fn a_batch_with_one_bad_row_or_header_or_no_rows_is_refused_whole() {
        let good = encode_batch(&[(inquiry("010-1234-5678"), Uuid::new_v4())]);
        let good = String::from_utf8(good).unwrap();
        let row_start = good.find("\"rows\":[").unwrap() + "\"rows\":[".len();
        let refused = |bytes: String| decode_message(bytes.as_bytes()).unwrap_err();

        let bad_row = format!(
            "{}[\"not-a-uuid\"],{}",
            &good[..row_start],
            &good[row_start..]
        );
        let e = refused(bad_row);
        assert!(e.to_string().contains("row 0"), "{e}");
        let second_bad = good.replacen("]]}", r#"],[1,2]]}"#, 1);
        let e = refused(second_bad);
        assert!(e.to_string().contains("row 1"), "{e}");
        assert_eq!(
            refused(good.replacen("\"BillInquired\"", "\"BillAsked\"", 1)),
            DecodeError::UnknownType("BillAsked".into())
        );
        assert!(matches!(
            refused(good.replacen("\"event_version\":1", "\"event_version\":2", 1)),
            DecodeError::UnknownVersion { version: 2, .. }
        ));
        let e = refused(good.replacen("\"month\",\"customer_id\"", "\"customer_id\",\"month\"", 1));
        assert!(e.to_string().contains("columns"), "{e}");
        let e = refused(format!("{}]}}", &good[..row_start]));
        assert!(e.to_string().contains("empty"), "{e}");
        assert!(decode_message(good.replacen("{", "{\"extra\":1,", 1).as_bytes()).is_err());
        // The older array form keeps its own rules.
        let element = String::from_utf8(encode(&inquiry("010-1234-5678"), Uuid::new_v4())).unwrap();
        let e = refused(format!(r#"[{element},{{"event_type":"BillInquired"}}]"#));
        assert!(e.to_string().contains("batch element 1"), "{e}");
        assert!(decode_message(b" [] ").is_err());
        assert!(decode_message(b"[1, 2").is_err());
    }

    #[test]
    fn an_inquiry_round_trips_through_its_envelope() {
        let event = BillInquired {
            customer_id: None,
            ..inquiry("010-1234-5678")
        };
        let bytes = crate::codec::encode(&envelope(&event, Uuid::new_v4()));
        let (env, decoded) = crate::codec::decode::<BillInquiryEvent>(&bytes).unwrap();
        assert_eq!(decoded, BillInquiryEvent::BillInquired(event));
        assert_eq!(env.sequence, 1);
    }
}
