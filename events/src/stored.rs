//! The event store's rows (postgres-es's `events` table) as envelopes: the one mapping
//! used by the outbox relay when it publishes and by a replay that reads the event
//! store because the broker no longer holds a topic's beginning. Both must give the
//! same envelope for the same row, or consumers would see two versions of one event.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::product_change::ProductChangeEvent;
use crate::{event_id_for, Envelope, EventPayload};

/// The aggregate type the line's events are stored under (cqrs-es `Aggregate::TYPE`).
pub const LINE_AGGREGATE_TYPE: &str = "Line";

/// One stored event of the line aggregate, as postgres-es wrote it (the columns of its
/// `events` table of the same names).
#[derive(Debug, Clone)]
#[cfg_attr(feature = "sqlx", derive(sqlx::FromRow))]
pub struct StoredEvent {
    pub aggregate_id: String,
    pub sequence: i64,
    pub event_type: String,
    pub event_version: String,
    /// The event, externally tagged (`{"ProductChangeRequested": {...}}`).
    pub payload: serde_json::Value,
    /// Ids and the occurrence time written by the command side's metadata.
    pub metadata: serde_json::Value,
    pub recorded_at: DateTime<Utc>,
}

impl StoredEvent {
    /// The envelope this row is published as. The event id is derived from the
    /// aggregate and sequence, so a republished row keeps its id.
    pub fn into_envelope(self) -> Result<Envelope, String> {
        let event: ProductChangeEvent =
            serde_json::from_value(self.payload).map_err(|e| e.to_string())?;
        let version: u32 = self
            .event_version
            .parse()
            .map_err(|_| format!("version `{}`", self.event_version))?;
        if event.event_type() != self.event_type || event.event_version() != version {
            return Err(format!("stored as {} v{version}", self.event_type));
        }
        let meta = |key: &str| self.metadata.get(key).and_then(|v| v.as_str());
        let id_from_meta = |key: &str| meta(key).and_then(|v| Uuid::parse_str(v).ok());
        let sequence =
            u64::try_from(self.sequence).map_err(|_| format!("sequence {}", self.sequence))?;
        let event_id = event_id_for(LINE_AGGREGATE_TYPE, &self.aggregate_id, sequence);
        Ok(Envelope {
            event_id,
            event_type: self.event_type.clone(),
            event_version: version,
            sequence,
            occurred_at: meta("occurred_at")
                .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                .map(|t| t.with_timezone(&Utc))
                .unwrap_or(self.recorded_at),
            correlation_id: id_from_meta("correlation_id").unwrap_or(event_id),
            causation_id: id_from_meta("causation_id").unwrap_or(event_id),
            payload: event.to_payload(),
            aggregate_id: self.aggregate_id,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::product_change::ProductChangeFailed;

    fn row(event: &ProductChangeEvent, metadata: serde_json::Value) -> StoredEvent {
        StoredEvent {
            aggregate_id: "010-1234-5678".into(),
            sequence: 3,
            event_type: event.event_type().into(),
            event_version: event.event_version().to_string(),
            payload: serde_json::to_value(event).unwrap(),
            metadata,
            recorded_at: "2026-11-25T10:00:00Z".parse().unwrap(),
        }
    }

    fn failed() -> ProductChangeEvent {
        ProductChangeEvent::ProductChangeFailed(ProductChangeFailed {
            request_id: Uuid::from_u128(7),
            line_number: "010-1234-5678".into(),
            kos_order_id: None,
            reason_code: crate::product_change::FailureReason::Timeout,
            kos_reason_code: None,
            reason: "no answer".into(),
            failed_at: "2026-11-25T10:00:00Z".parse().unwrap(),
        })
    }

    #[test]
    fn a_row_becomes_the_envelope_with_ids_from_its_metadata() {
        let correlation = Uuid::from_u128(42);
        let envelope = row(
            &failed(),
            serde_json::json!({
                "correlation_id": correlation.to_string(),
                "occurred_at": "2026-11-25T09:59:59Z"
            }),
        )
        .into_envelope()
        .unwrap();
        assert_eq!(envelope.event_id, event_id_for("Line", "010-1234-5678", 3));
        assert_eq!(envelope.correlation_id, correlation);
        assert_eq!(envelope.causation_id, envelope.event_id);
        assert_eq!(
            envelope.occurred_at.to_rfc3339(),
            "2026-11-25T09:59:59+00:00"
        );
        assert_eq!(envelope.payload, failed().to_payload());
    }

    #[test]
    fn a_row_whose_type_column_disagrees_with_its_payload_is_refused() {
        let mut r = row(&failed(), serde_json::json!({}));
        r.event_type = "ProductChangeCompleted".into();
        assert!(r.into_envelope().unwrap_err().contains("stored as"));
    }
}
