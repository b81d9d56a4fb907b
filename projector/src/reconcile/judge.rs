//! The pure part of reconciliation: one line's committed events against what the
//! projector holds of them, judged without I/O.
//!
//! The projector's ledger of a line is its apply log (every event id applied, with how
//! many times, written in the checkpoint's statement) up to its checkpoint. The views
//! are checked by running the live projection code over the committed events the
//! checkpoint covers, in memory, and comparing the change requests it writes with the
//! read table's rows.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use events::ledger::{Committed, Ledger, Standing};
use events::product_change::ProductChangeEvent;
use events::stored::LINE_AGGREGATE_TYPE;
use events::{event_id_for, Envelope};
use futures::FutureExt;
use serde::Serialize;
use uuid::Uuid;

use crate::processor::{self, Decoded};
use crate::projections::to_doc;
use crate::time_travel::fold::Memory;

/// One committed event of a line, as the event store holds it.
#[derive(Debug, Clone)]
pub struct CommittedEvent {
    pub sequence: u64,
    /// The event store's global position (the cut is one).
    pub position: i64,
    pub recorded_at: DateTime<Utc>,
    /// The event, when the views are checked.
    pub event: Option<(Envelope, ProductChangeEvent)>,
}

/// What the projector's namespace holds of a line, read in one snapshot.
#[derive(Debug, Clone, Default)]
pub struct Projected {
    /// The line stream's checkpoint (last applied sequence).
    pub checkpoint: u64,
    /// The apply log up to the checkpoint: sequence -> (event id, times applied).
    pub applied: BTreeMap<u64, (Uuid, i32)>,
    /// The lowest parked sequence, when the line's stream is parked.
    pub parked: Option<u64>,
    /// The change requests' documents in the read table, by request id.
    pub requests: HashMap<Uuid, serde_json::Value>,
}

/// How a line stands.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LineReport {
    pub line: String,
    /// `equal`, `behind` or `divergent`.
    #[schema(value_type = String)]
    pub standing: &'static str,
    /// Events committed up to the cut, and their ledger.
    #[schema(value_type = super::LedgerDoc)]
    pub committed: Ledger,
    /// What the projector applied (its apply log up to its checkpoint).
    #[schema(value_type = super::LedgerDoc)]
    pub projected: Ledger,
    /// Events the projector lacks up to the cut (behind only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub behind_by: Option<u64>,
    /// Seconds since the first committed event the projector lacks was recorded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lag_seconds: Option<f64>,
    /// The line's stream waits behind this parked sequence: the lag is explained.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parked_at: Option<u64>,
    /// The first sequence whose effect differs (divergent only, when one can be named).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_difference: Option<u64>,
    /// What differs, for people.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl LineReport {
    pub fn is_equal(&self) -> bool {
        self.standing == "equal"
    }
    pub fn is_divergent(&self) -> bool {
        self.standing == "divergent"
    }
    /// Behind for no reason the report can give (not parked).
    pub fn unexplained_lag(&self) -> Option<f64> {
        (self.standing == "behind" && self.parked_at.is_none())
            .then_some(self.lag_seconds)
            .flatten()
    }
}

/// Judges `line`: `committed` is every event the event store holds for it in sequence
/// order (read after `projected`), `cut` the position the report is as of.
pub fn judge(
    line: &str,
    committed: &[CommittedEvent],
    projected: &Projected,
    cut: i64,
    now: DateTime<Utc>,
) -> LineReport {
    let ids: Vec<Uuid> = committed
        .iter()
        .map(|e| event_id_for(LINE_AGGREGATE_TYPE, line, e.sequence))
        .collect();
    let ledgers = Committed::of(ids.iter().copied());
    let at_cut = committed.iter().filter(|e| e.position <= cut).count() as u64;
    let held = Ledger::of(
        projected
            .applied
            .values()
            .flat_map(|(id, times)| std::iter::repeat_n(*id, (*times).max(0) as usize)),
    );
    let mut report = LineReport {
        line: line.to_owned(),
        standing: "equal",
        committed: ledgers.prefix(at_cut).unwrap_or_default(),
        projected: held,
        behind_by: None,
        lag_seconds: None,
        parked_at: projected.parked,
        first_difference: None,
        reason: None,
    };
    let total = committed.len() as u64;
    if projected.checkpoint > total {
        return report.divergent(
            Some(total + 1),
            format!(
                "the projector applied up to sequence {}; the event store holds {total}",
                projected.checkpoint
            ),
        );
    }
    match ledgers.standing(at_cut, held) {
        Standing::Divergent => {
            let (sequence, reason) = first_ledger_difference(&ids, projected);
            return report.divergent(sequence, reason);
        }
        Standing::Behind { by } => {
            report.standing = "behind";
            report.behind_by = Some(by);
            report.lag_seconds = committed
                .get(held.count as usize)
                .map(|e| (now - e.recorded_at).num_milliseconds().max(0) as f64 / 1000.0);
        }
        Standing::Equal => {}
    }
    if committed.iter().all(|e| e.event.is_some()) {
        if let Some((sequence, reason)) = view_difference(line, committed, projected) {
            return report.divergent(sequence, reason);
        }
    }
    report
}

impl LineReport {
    fn divergent(mut self, sequence: Option<u64>, reason: String) -> LineReport {
        self.standing = "divergent";
        self.behind_by = None;
        self.lag_seconds = None;
        self.first_difference = sequence;
        self.reason = Some(reason);
        self
    }
}

/// The first sequence up to the checkpoint that the apply log lacks, holds twice or
/// holds under another id.
fn first_ledger_difference(ids: &[Uuid], projected: &Projected) -> (Option<u64>, String) {
    for sequence in 1..=projected.checkpoint {
        let committed = ids.get(sequence as usize - 1);
        match (projected.applied.get(&sequence), committed) {
            (None, _) => {
                return (
                    Some(sequence),
                    format!("sequence {sequence} was never applied; later ones were"),
                )
            }
            (Some((_, times)), _) if *times != 1 => {
                return (
                    Some(sequence),
                    format!("sequence {sequence} was applied {times} times"),
                )
            }
            (Some((id, _)), Some(c)) if id != c => {
                return (
                    Some(sequence),
                    format!("sequence {sequence} was applied as another event"),
                )
            }
            _ => {}
        }
    }
    (None, "the apply log differs from the event store".into())
}

/// The change requests the live projection writes for the events the checkpoint covers,
/// against the read table's rows: the first request missing, extra or different.
fn view_difference(
    line: &str,
    committed: &[CommittedEvent],
    projected: &Projected,
) -> Option<(Option<u64>, String)> {
    let mut store = Memory::default();
    // Each request's first and last sequence applied, to name where a view went wrong.
    let mut first_of: HashMap<Uuid, u64> = HashMap::new();
    let mut last_of: HashMap<Uuid, u64> = HashMap::new();
    for e in committed.iter().take(projected.checkpoint as usize) {
        let (envelope, event) = e.event.clone().expect("checked by the caller");
        let request = event.request_id();
        let decoded = Decoded::ProductChange(envelope, event);
        let applied = processor::apply(&mut store, &decoded)
            .now_or_never()
            .expect("the in-memory store never waits");
        if applied.is_ok() {
            first_of.entry(request).or_insert(e.sequence);
            last_of.insert(request, e.sequence);
        }
    }
    let expected = store.into_requests();
    let mut missing: Vec<(u64, Uuid)> = expected
        .keys()
        .filter(|id| !projected.requests.contains_key(id))
        .map(|id| (first_of[id], *id))
        .collect();
    missing.sort();
    let mut differing: Vec<(u64, Uuid)> = expected
        .iter()
        .filter(|(id, view)| {
            projected
                .requests
                .get(id)
                .is_some_and(|doc| *doc != to_doc(view))
        })
        .map(|(id, _)| (last_of[id], *id))
        .collect();
    differing.sort();
    let extra = projected
        .requests
        .keys()
        .find(|id| !expected.contains_key(id));
    if let Some((sequence, id)) = missing.into_iter().chain(differing.clone()).min() {
        let what = if differing.iter().any(|(_, d)| *d == id) {
            "differs from what its events make"
        } else {
            "is missing from the read table"
        };
        return Some((
            Some(sequence),
            format!("change request {id} of {line} {what}"),
        ));
    }
    extra.map(|id| {
        (
            None,
            format!("change request {id} in the read table was never committed for {line}"),
        )
    })
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use events::product_change::{ProductChangeRequested, ProductChangeSentToKos};
    use events::EventPayload;

    use super::*;

    const LINE: &str = "010-0000-0001";

    fn at(minute: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 1, 9, 0, 0).unwrap() + chrono::Duration::minutes(minute)
    }

    fn event(sequence: u64, event: ProductChangeEvent) -> CommittedEvent {
        let id = event_id_for(LINE_AGGREGATE_TYPE, LINE, sequence);
        let envelope = Envelope {
            event_id: id,
            event_type: event.event_type().into(),
            event_version: event.event_version(),
            aggregate_id: LINE.into(),
            sequence,
            occurred_at: at(sequence as i64),
            correlation_id: id,
            causation_id: id,
            payload: event.to_payload(),
        };
        CommittedEvent {
            sequence,
            position: sequence as i64 * 10,
            recorded_at: at(sequence as i64),
            event: Some((envelope, event)),
        }
    }

    fn requested(request: Uuid) -> ProductChangeEvent {
        ProductChangeEvent::ProductChangeRequested(ProductChangeRequested {
            request_id: request,
            line_number: LINE.into(),
            customer_id: "CUST0001".into(),
            operator: "KT".into(),
            current_product_code: "5G-STANDARD-001".into(),
            target_product_code: "5G-PREMIUM-001".into(),
            requested_at: at(1),
        })
    }

    fn sent(request: Uuid) -> ProductChangeEvent {
        ProductChangeEvent::ProductChangeSentToKos(ProductChangeSentToKos {
            request_id: request,
            line_number: LINE.into(),
            customer_id: "CUST0001".into(),
            current_product_code: "5G-STANDARD-001".into(),
            target_product_code: "5G-PREMIUM-001".into(),
            sent_at: at(2),
            answer_by: at(12),
        })
    }

    /// Two requests, each requested then sent: sequences 1-4.
    fn history() -> (Vec<CommittedEvent>, [Uuid; 2]) {
        let (a, b) = (Uuid::from_u128(1), Uuid::from_u128(2));
        (
            vec![
                event(1, requested(a)),
                event(2, sent(a)),
                event(3, requested(b)),
                event(4, sent(b)),
            ],
            [a, b],
        )
    }

    /// What the live projector holds after applying `events` in order.
    fn projected_after(events: &[CommittedEvent]) -> Projected {
        let mut store = Memory::default();
        let mut projected = Projected::default();
        for e in events {
            let (envelope, event) = e.event.clone().unwrap();
            processor::apply(&mut store, &Decoded::ProductChange(envelope.clone(), event))
                .now_or_never()
                .unwrap()
                .unwrap();
            projected.checkpoint = projected.checkpoint.max(e.sequence);
            projected.applied.insert(e.sequence, (envelope.event_id, 1));
        }
        projected.requests = store
            .into_requests()
            .into_iter()
            .map(|(id, v)| (id, to_doc(&v)))
            .collect();
        projected
    }

    #[test]
    fn a_line_projected_in_full_is_equal() {
        let (events, _) = history();
        let report = judge(LINE, &events, &projected_after(&events), 40, at(10));
        assert_eq!(report.standing, "equal", "{report:?}");
        assert_eq!(report.committed, report.projected);
        assert_eq!(report.committed.count, 4);
    }

    #[test]
    fn a_line_projected_in_part_is_behind_by_what_it_lacks_and_for_how_long() {
        let (events, _) = history();
        let report = judge(LINE, &events, &projected_after(&events[..3]), 40, at(10));
        assert_eq!(report.standing, "behind");
        assert_eq!(report.behind_by, Some(1));
        assert_eq!(
            report.lag_seconds,
            Some(6.0 * 60.0),
            "sequence 4 was recorded at minute 4"
        );
        assert!(report.unexplained_lag().is_some());
    }

    #[test]
    fn events_committed_after_the_cut_do_not_make_a_line_behind() {
        let (events, _) = history();
        let report = judge(LINE, &events, &projected_after(&events[..3]), 30, at(10));
        assert_eq!(report.standing, "equal");
        assert_eq!(report.committed.count, 3);
    }

    #[test]
    fn a_parked_line_is_behind_with_its_lag_explained() {
        let (events, _) = history();
        let mut projected = projected_after(&events[..2]);
        projected.parked = Some(3);
        let report = judge(LINE, &events, &projected, 40, at(10));
        assert_eq!(report.standing, "behind");
        assert_eq!(report.unexplained_lag(), None);
    }

    #[test]
    fn an_event_skipped_before_a_later_one_was_applied_is_divergent_at_its_sequence() {
        let (events, _) = history();
        let mut projected = projected_after(&events);
        projected.applied.remove(&2);
        let report = judge(LINE, &events, &projected, 40, at(10));
        assert_eq!(report.standing, "divergent");
        assert_eq!(report.first_difference, Some(2));
    }

    #[test]
    fn an_event_applied_twice_is_divergent_at_its_sequence() {
        let (events, _) = history();
        let mut projected = projected_after(&events);
        projected.applied.get_mut(&3).unwrap().1 = 2;
        let report = judge(LINE, &events, &projected, 40, at(10));
        assert_eq!(report.standing, "divergent");
        assert_eq!(report.first_difference, Some(3));
    }

    #[test]
    fn a_checkpoint_past_the_event_store_is_divergent() {
        let (events, _) = history();
        let mut projected = projected_after(&events);
        projected.checkpoint = 5;
        let report = judge(LINE, &events, &projected, 40, at(10));
        assert_eq!(report.standing, "divergent");
        assert_eq!(report.first_difference, Some(5));
    }

    #[test]
    fn a_request_missing_from_the_read_table_is_divergent_at_its_first_event() {
        let (events, [_, b]) = history();
        let mut projected = projected_after(&events);
        projected.requests.remove(&b);
        let report = judge(LINE, &events, &projected, 40, at(10));
        assert_eq!(report.standing, "divergent");
        assert_eq!(report.first_difference, Some(3));
    }

    #[test]
    fn a_corrupted_request_is_divergent_at_its_last_event() {
        let (events, [a, _]) = history();
        let mut projected = projected_after(&events);
        projected.requests.get_mut(&a).unwrap()["status"] = "COMPLETED".into();
        let report = judge(LINE, &events, &projected, 40, at(10));
        assert_eq!(report.standing, "divergent");
        assert_eq!(report.first_difference, Some(2));
    }

    #[test]
    fn a_request_never_committed_is_divergent() {
        let (events, _) = history();
        let mut projected = projected_after(&events);
        projected.requests.insert(
            Uuid::from_u128(9),
            serde_json::json!({"status": "COMPLETED"}),
        );
        let report = judge(LINE, &events, &projected, 40, at(10));
        assert_eq!(report.standing, "divergent");
        assert_eq!(report.first_difference, None);
    }
}
