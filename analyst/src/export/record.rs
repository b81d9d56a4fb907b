//! One exported row: the envelope's fields, where the message sat on the broker, and the
//! payload. JSONL keeps the payload nested; the tabular formats flatten it into dotted
//! column names (`payload.contract.ends_on`), so [`Columns`] collects their union over
//! every row and the type each column can carry.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use events::Envelope;
use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

/// Where a message was read: the columns after the envelope's.
pub struct Position<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
    /// The broker's timestamp (absent when the broker gave none).
    pub timestamp: Option<DateTime<Utc>>,
}

/// The JSONL shape; field order is column order.
#[derive(Serialize)]
pub struct Record<'a> {
    pub event_id: Uuid,
    pub event_type: &'a str,
    pub event_version: u32,
    pub aggregate_id: &'a str,
    pub sequence: u64,
    pub occurred_at: DateTime<Utc>,
    pub correlation_id: Uuid,
    pub causation_id: Uuid,
    pub kafka_topic: &'a str,
    pub kafka_partition: i32,
    pub kafka_offset: i64,
    pub kafka_timestamp: Option<DateTime<Utc>>,
    pub payload: &'a Value,
}

impl<'a> Record<'a> {
    pub fn new(envelope: &'a Envelope, at: &Position<'a>) -> Self {
        Self {
            event_id: envelope.event_id,
            event_type: &envelope.event_type,
            event_version: envelope.event_version,
            aggregate_id: &envelope.aggregate_id,
            sequence: envelope.sequence,
            occurred_at: envelope.occurred_at,
            correlation_id: envelope.correlation_id,
            causation_id: envelope.causation_id,
            kafka_topic: at.topic,
            kafka_partition: at.partition,
            kafka_offset: at.offset,
            kafka_timestamp: at.timestamp,
            payload: &envelope.payload,
        }
    }
}

/// What a column holds, as far as every row agrees; anything mixed is text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Text,
    Integer,
    Float,
    Boolean,
    /// RFC 3339 text in JSONL and CSV; a UTC timestamp (microseconds) in Parquet.
    Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub name: String,
    pub kind: Kind,
}

/// The envelope's and the broker's columns, the same in every export.
const FIXED: [(&str, Kind); 12] = [
    ("event_id", Kind::Text),
    ("event_type", Kind::Text),
    ("event_version", Kind::Integer),
    ("aggregate_id", Kind::Text),
    ("sequence", Kind::Integer),
    ("occurred_at", Kind::Timestamp),
    ("correlation_id", Kind::Text),
    ("causation_id", Kind::Text),
    ("kafka_topic", Kind::Text),
    ("kafka_partition", Kind::Integer),
    ("kafka_offset", Kind::Integer),
    ("kafka_timestamp", Kind::Timestamp),
];

/// The payload columns seen so far and what their values allow. `None`: only nulls yet.
#[derive(Debug, Default)]
pub struct Columns {
    payload: BTreeMap<String, Option<Kind>>,
}

impl Columns {
    /// Takes note of one row's payload.
    pub fn observe(&mut self, payload: &Value) {
        let mut leaves = vec![];
        flatten_into("payload".to_owned(), payload, &mut leaves);
        for (name, value) in leaves {
            let seen = self.payload.entry(name).or_default();
            *seen = widen(*seen, value);
        }
    }

    /// Every column in file order: the fixed ones, then the payload's by name.
    pub fn list(&self) -> Vec<Column> {
        let fixed = FIXED.iter().map(|(name, kind)| Column {
            name: (*name).to_owned(),
            kind: *kind,
        });
        let payload = self.payload.iter().map(|(name, kind)| Column {
            name: name.clone(),
            kind: kind.unwrap_or(Kind::Text),
        });
        fixed.chain(payload).collect()
    }
}

/// The narrowest kind holding both what was seen and `value`.
fn widen(seen: Option<Kind>, value: &Value) -> Option<Kind> {
    let kind = match value {
        Value::Null => return seen,
        Value::Bool(_) => Kind::Boolean,
        Value::Number(n) if n.is_i64() => Kind::Integer,
        // Past i64 (a u64) a double would round it: keep the digits as text.
        Value::Number(n) if n.is_f64() => Kind::Float,
        _ => Kind::Text,
    };
    Some(match (seen, kind) {
        (None, kind) => kind,
        (Some(a), b) if a == b => a,
        (Some(Kind::Integer), Kind::Float) | (Some(Kind::Float), Kind::Integer) => Kind::Float,
        _ => Kind::Text,
    })
}

/// A JSONL record as column name → value: objects are walked into dotted names, arrays
/// and empty objects stay whole (written as JSON text).
pub fn flatten(record: &Value) -> HashMap<String, &Value> {
    let mut leaves = vec![];
    if let Value::Object(fields) = record {
        for (name, value) in fields {
            if name == "payload" {
                flatten_into(name.clone(), value, &mut leaves);
            } else {
                leaves.push((name.clone(), value));
            }
        }
    }
    leaves.into_iter().collect()
}

fn flatten_into<'v>(name: String, value: &'v Value, out: &mut Vec<(String, &'v Value)>) {
    match value {
        Value::Object(fields) if !fields.is_empty() => {
            for (key, inner) in fields {
                flatten_into(format!("{name}.{key}"), inner, out);
            }
        }
        leaf => out.push((name, leaf)),
    }
}

/// A value as a text cell; `None` for null.
pub fn text(value: &Value) -> Option<Cow<'_, str>> {
    match value {
        Value::Null => None,
        Value::String(s) => Some(Cow::Borrowed(s)),
        other => Some(Cow::Owned(other.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn nested_payload_objects_become_dotted_columns_and_arrays_stay_json() {
        let record = json!({
            "event_id": "e1",
            "payload": {
                "contract": {"ends_on": "2026-12-31", "commitment_months": 24},
                "discounts": [{"name": "family", "amount": 5000}],
                "extra": {}
            }
        });

        let flat = flatten(&record);

        assert_eq!(flat["event_id"], &json!("e1"));
        assert_eq!(flat["payload.contract.ends_on"], &json!("2026-12-31"));
        assert_eq!(flat["payload.contract.commitment_months"], &json!(24));
        assert_eq!(
            text(flat["payload.discounts"]).unwrap(),
            r#"[{"amount":5000,"name":"family"}]"#
        );
        assert_eq!(text(flat["payload.extra"]).unwrap(), "{}");
        assert!(!flat.contains_key("payload.contract"));
    }

    #[test]
    fn columns_are_the_union_over_rows_after_the_fixed_envelope_columns() {
        let mut columns = Columns::default();

        columns.observe(&json!({"request_id": "r1", "line_number": "010-0000-0001"}));
        columns.observe(&json!({"line_number": "010-0000-0002", "contract": {"ends_on": "x"}}));

        let names: Vec<String> = columns.list().into_iter().map(|c| c.name).collect();
        assert_eq!(names[..3], ["event_id", "event_type", "event_version"]);
        assert_eq!(names[11], "kafka_timestamp");
        assert_eq!(
            names[12..],
            [
                "payload.contract.ends_on",
                "payload.line_number",
                "payload.request_id"
            ]
        );
    }

    #[test]
    fn a_column_is_typed_only_when_every_row_agrees() {
        let mut columns = Columns::default();

        for payload in [
            json!({"fee": 69000, "rate": 1, "paid": true, "note": null, "code": 7, "big": 1}),
            json!({"fee": 71000, "rate": 0.5, "paid": false, "note": null, "code": "7A", "big": u64::MAX}),
        ] {
            columns.observe(&payload);
        }

        let kind = |name: &str| {
            columns
                .list()
                .into_iter()
                .find(|c| c.name == format!("payload.{name}"))
                .unwrap()
                .kind
        };
        assert_eq!(kind("fee"), Kind::Integer);
        assert_eq!(kind("rate"), Kind::Float);
        assert_eq!(kind("paid"), Kind::Boolean);
        assert_eq!(kind("note"), Kind::Text, "only nulls: text");
        assert_eq!(kind("code"), Kind::Text, "a number and a string: text");
        assert_eq!(kind("big"), Kind::Text, "past i64: text");
    }
}
