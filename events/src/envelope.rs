//! The envelope around every message on the broker.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Namespace of the deterministic event ids (UUIDv5 of `type/aggregate/sequence`).
const EVENT_ID_NAMESPACE: Uuid = Uuid::from_u128(0x6a0e_54f1_8b1f_4c83_9d7c_2f4e_1b7a_b001);

/// One message as it travels on the broker. `payload` is the event body; its shape is
/// fixed by `event_type` and `event_version` (see `schemas/`). Read as a JSON value; a
/// publisher on a hot path may serialize one with the event itself as `P` (no detour
/// through a value).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Envelope<P = serde_json::Value> {
    pub event_id: Uuid,
    pub event_type: String,
    pub event_version: u32,
    pub aggregate_id: String,
    /// Position of this event in its aggregate's stream, starting at 1.
    pub sequence: u64,
    pub occurred_at: DateTime<Utc>,
    pub correlation_id: Uuid,
    pub causation_id: Uuid,
    pub payload: P,
}

/// The id of the `sequence`-th event of an aggregate. Derived, not random, so a
/// republished event keeps its id and consumers can drop the duplicate.
pub fn event_id_for(aggregate_type: &str, aggregate_id: &str, sequence: u64) -> Uuid {
    let name = format!("{aggregate_type}/{aggregate_id}/{sequence}");
    Uuid::new_v5(&EVENT_ID_NAMESPACE, name.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_ids_are_stable_and_distinct_per_sequence() {
        let a = event_id_for("Line", "010-1234-5678", 1);
        assert_eq!(a, event_id_for("Line", "010-1234-5678", 1));
        assert_ne!(a, event_id_for("Line", "010-1234-5678", 2));
        assert_ne!(a, event_id_for("Line", "010-1234-5679", 1));
    }
}
