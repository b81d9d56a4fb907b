//! The pure part of reconciliation: one line's committed events against what the
//! projector holds of them, judged without I/O.
//!
//! The projector's ledger of a line is its apply log (every event id applied, with how
//! many times, written in the checkpoint's statement) up to its checkpoint. The views
//! are checked by running the live projection code over the committed events the
//! checkpoint covers, in memory, and comparing the change requests it writes with the
//! read table's rows.

use std::collections::{BTreeMap, HashMap};

use super::ledger::{Committed, Ledger, Standing};
use chrono::{DateTime, Utc};
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

/// What the other stages hold of a line, when they are checked.
#[derive(Debug, Clone, Default)]
pub struct Stages {
    /// The line's product-change messages on the broker, in offset order: (sequence,
    /// event id). `None`: the broker was not read (or retention removed the beginning
    /// of the line's partition).
    pub published: Option<Vec<(u64, Uuid)>>,
    /// KOS's orders for the line: request id -> outcome (`EXECUTED`, `REFUSED`).
    /// `None`: KOS's records were not read.
    pub kos: Option<HashMap<Uuid, String>>,
}

/// One stage's verdict on a line.
#[derive(Debug, Clone, PartialEq)]
enum Verdict {
    Equal,
    Behind { by: u64, lag_seconds: Option<f64> },
    Divergent { first: Option<u64>, reason: String },
}

/// How a line stands.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LineReport {
    pub line: String,
    /// `equal`, `behind` or `divergent`: the first stage (in pipeline order) that is
    /// divergent, else the first that is behind.
    #[schema(value_type = String)]
    pub standing: &'static str,
    /// The stage the standing comes from: `broker`, `kos`, `projector`, `views` or
    /// `redis` (absent when equal).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub stage: Option<&'static str>,
    /// Events committed up to the cut, and their ledger.
    #[schema(value_type = super::LedgerDoc)]
    pub committed: Ledger,
    /// What the projector applied (its apply log up to its checkpoint).
    #[schema(value_type = super::LedgerDoc)]
    pub projected: Ledger,
    /// The line's messages on the broker (what the relay published), when read.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<super::LedgerDoc>)]
    pub published: Option<Ledger>,
    /// The changes sent to KOS that KOS holds an order for (over the sent-to-KOS events'
    /// ids), when KOS's records were read.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<super::LedgerDoc>)]
    pub kos: Option<Ledger>,
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
/// order (read after every other stage), `cut` the position the report is as of.
pub fn judge(
    line: &str,
    committed: &[CommittedEvent],
    projected: &Projected,
    stages: &Stages,
    cut: i64,
    now: DateTime<Utc>,
) -> LineReport {
    let ids: Vec<Uuid> = committed
        .iter()
        .map(|e| event_id_for(LINE_AGGREGATE_TYPE, line, e.sequence))
        .collect();
    let ledgers = Committed::of(ids.iter().copied());
    let at_cut = committed.iter().filter(|e| e.position <= cut).count() as u64;
    let lag = |held: u64| {
        committed
            .get(held as usize)
            .map(|e| (now - e.recorded_at).num_milliseconds().max(0) as f64 / 1000.0)
    };
    let held = Ledger::of(
        projected
            .applied
            .values()
            .flat_map(|(id, times)| std::iter::repeat_n(*id, (*times).max(0) as usize)),
    );
    let mut verdicts: Vec<(&'static str, Verdict)> = vec![];
    let mut published = None;
    if let Some(messages) = &stages.published {
        let on_broker = Ledger::of(messages.iter().map(|(_, id)| *id));
        published = Some(on_broker);
        let verdict = match ledgers.standing(at_cut, on_broker) {
            Standing::Equal => Verdict::Equal,
            Standing::Behind { by } => Verdict::Behind {
                by,
                lag_seconds: lag(on_broker.count),
            },
            Standing::Divergent => first_broker_difference(&ids, messages),
        };
        verdicts.push(("broker", verdict));
    }
    let mut kos = None;
    if let (Some(orders), true) = (&stages.kos, committed.iter().all(|e| e.event.is_some())) {
        let (ledger, verdict) = kos_verdict(line, committed, orders, cut, now);
        kos = Some(ledger);
        verdicts.push(("kos", verdict));
    }
    let total = committed.len() as u64;
    let projector = if projected.checkpoint > total {
        Verdict::Divergent {
            first: Some(total + 1),
            reason: format!(
                "the projector applied up to sequence {}; the event store holds {total}",
                projected.checkpoint
            ),
        }
    } else {
        match ledgers.standing(at_cut, held) {
            Standing::Divergent => {
                let (first, reason) = first_ledger_difference(&ids, projected);
                Verdict::Divergent { first, reason }
            }
            Standing::Behind { by } => Verdict::Behind {
                by,
                lag_seconds: lag(held.count),
            },
            Standing::Equal => Verdict::Equal,
        }
    };
    let projector_diverged = matches!(projector, Verdict::Divergent { .. });
    verdicts.push(("projector", projector));
    if !projector_diverged && committed.iter().all(|e| e.event.is_some()) {
        if let Some((first, reason)) = view_difference(line, committed, projected) {
            verdicts.push(("views", Verdict::Divergent { first, reason }));
        }
    }
    let mut report = LineReport {
        line: line.to_owned(),
        standing: "equal",
        stage: None,
        committed: ledgers.prefix(at_cut).unwrap_or_default(),
        projected: held,
        published,
        kos,
        behind_by: None,
        lag_seconds: None,
        parked_at: projected.parked,
        first_difference: None,
        reason: None,
    };
    report.settle(verdicts);
    report
}

impl LineReport {
    /// The first divergent stage, else the first behind, in pipeline order.
    fn settle(&mut self, verdicts: Vec<(&'static str, Verdict)>) {
        let divergent = verdicts
            .iter()
            .find(|(_, v)| matches!(v, Verdict::Divergent { .. }));
        let behind = verdicts
            .iter()
            .find(|(_, v)| matches!(v, Verdict::Behind { .. }));
        match divergent.or(behind) {
            Some((stage, Verdict::Divergent { first, reason })) => {
                self.divergent(stage, *first, reason.clone())
            }
            Some((stage, Verdict::Behind { by, lag_seconds })) => {
                self.standing = "behind";
                self.stage = Some(stage);
                self.behind_by = Some(*by);
                self.lag_seconds = *lag_seconds;
            }
            _ => {}
        }
    }

    /// Marks the line divergent at `stage`.
    pub fn divergent(&mut self, stage: &'static str, first: Option<u64>, reason: String) {
        self.standing = "divergent";
        self.stage = Some(stage);
        self.behind_by = None;
        self.lag_seconds = None;
        self.first_difference = first;
        self.reason = Some(reason);
    }
}

/// Where the broker's copy of a line first differs from the event store: a sequence
/// missing, doubled, out of order or foreign.
fn first_broker_difference(ids: &[Uuid], messages: &[(u64, Uuid)]) -> Verdict {
    for (i, (sequence, id)) in messages.iter().enumerate() {
        let expected = i as u64 + 1;
        if *sequence != expected || ids.get(i) != Some(id) {
            let reason = if *sequence > expected {
                format!("sequence {expected} is missing on the broker; {sequence} follows")
            } else if *sequence < expected {
                format!(
                    "the broker holds sequence {sequence} again after {}",
                    expected - 1
                )
            } else {
                format!("the broker holds another event as sequence {sequence}")
            };
            return Verdict::Divergent {
                first: Some(expected.min(*sequence)),
                reason,
            };
        }
    }
    Verdict::Divergent {
        first: Some(messages.len() as u64 + 1),
        reason: "the broker holds more events than the event store".into(),
    }
}

/// KOS's stage: every change sent to KOS up to the cut has an order there (or is still
/// in flight), in order; KOS holds no order for a change never sent, and did not carry
/// out a change the line recorded as failed without a late answer.
fn kos_verdict(
    line: &str,
    committed: &[CommittedEvent],
    orders: &HashMap<Uuid, String>,
    cut: i64,
    now: DateTime<Utc>,
) -> (Ledger, Verdict) {
    use events::product_change::ProductChangeEvent as E;
    let events = || {
        committed
            .iter()
            .filter_map(|e| Some((e, &e.event.as_ref()?.1)))
    };
    let sent: Vec<(&CommittedEvent, Uuid)> = events()
        .filter_map(|(e, ev)| match ev {
            E::ProductChangeSentToKos(s) => Some((e, s.request_id)),
            _ => None,
        })
        .collect();
    let id = |e: &CommittedEvent| event_id_for(LINE_AGGREGATE_TYPE, line, e.sequence);
    let ledgers = Committed::of(sent.iter().map(|(e, _)| id(e)));
    let held = Ledger::of(
        sent.iter()
            .filter(|(_, r)| orders.contains_key(r))
            .map(|(e, _)| id(e)),
    );
    if let Some(extra) = orders.keys().find(|r| !sent.iter().any(|(_, s)| s == *r)) {
        return (
            held,
            Verdict::Divergent {
                first: None,
                reason: format!("KOS holds an order for request {extra}, never sent to it"),
            },
        );
    }
    for (e, ev) in events() {
        if let E::ProductChangeFailed(f) = ev {
            let late = events().any(|(_, l)| {
                matches!(l, E::ProductChangeLateAnswerRecorded(a) if a.request_id == f.request_id)
            });
            if orders.get(&f.request_id).map(String::as_str) == Some("EXECUTED") && !late {
                return (
                    held,
                    Verdict::Divergent {
                        first: Some(e.sequence),
                        reason: format!(
                            "KOS carried out request {}; the line recorded it as failed",
                            f.request_id
                        ),
                    },
                );
            }
        }
    }
    let at_cut = sent.iter().filter(|(e, _)| e.position <= cut).count() as u64;
    let verdict = match ledgers.standing(at_cut, held) {
        Standing::Equal => Verdict::Equal,
        Standing::Behind { by } => Verdict::Behind {
            by,
            lag_seconds: sent
                .get(held.count as usize)
                .map(|(e, _)| (now - e.recorded_at).num_milliseconds().max(0) as f64 / 1000.0),
        },
        Standing::Divergent => {
            let first = sent
                .iter()
                .find(|(_, r)| !orders.contains_key(r))
                .map(|(e, _)| e.sequence);
            Verdict::Divergent {
                first,
                reason: "KOS lacks a change sent to it before one it holds".into(),
            }
        }
    };
    (held, verdict)
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

    /// Judged at cut 40 (every event of `history`) and minute 10.
    fn judged(events: &[CommittedEvent], projected: &Projected, stages: &Stages) -> LineReport {
        judge(LINE, events, projected, stages, 40, at(10))
    }

    #[test]
    fn a_line_projected_in_full_is_equal() {
        let (events, _) = history();
        let report = judged(&events, &projected_after(&events), &Stages::default());
        assert_eq!(report.standing, "equal", "{report:?}");
        assert_eq!(report.committed, report.projected);
        assert_eq!(report.committed.count, 4);
    }

    #[test]
    fn a_line_projected_in_part_is_behind_by_what_it_lacks_and_for_how_long() {
        let (events, _) = history();
        let report = judged(&events, &projected_after(&events[..3]), &Stages::default());
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
        let report = judge(
            LINE,
            &events,
            &projected_after(&events[..3]),
            &Stages::default(),
            30,
            at(10),
        );
        assert_eq!(report.standing, "equal");
        assert_eq!(report.committed.count, 3);
    }

    #[test]
    fn a_parked_line_is_behind_with_its_lag_explained() {
        let (events, _) = history();
        let mut projected = projected_after(&events[..2]);
        projected.parked = Some(3);
        let report = judged(&events, &projected, &Stages::default());
        assert_eq!(report.standing, "behind");
        assert_eq!(report.unexplained_lag(), None);
    }

    #[test]
    fn an_event_skipped_before_a_later_one_was_applied_is_divergent_at_its_sequence() {
        let (events, _) = history();
        let mut projected = projected_after(&events);
        projected.applied.remove(&2);
        let report = judged(&events, &projected, &Stages::default());
        assert_eq!(report.standing, "divergent");
        assert_eq!(report.first_difference, Some(2));
    }

    #[test]
    fn an_event_applied_twice_is_divergent_at_its_sequence() {
        let (events, _) = history();
        let mut projected = projected_after(&events);
        projected.applied.get_mut(&3).unwrap().1 = 2;
        let report = judged(&events, &projected, &Stages::default());
        assert_eq!(report.standing, "divergent");
        assert_eq!(report.first_difference, Some(3));
    }

    #[test]
    fn a_checkpoint_past_the_event_store_is_divergent() {
        let (events, _) = history();
        let mut projected = projected_after(&events);
        projected.checkpoint = 5;
        let report = judged(&events, &projected, &Stages::default());
        assert_eq!(report.standing, "divergent");
        assert_eq!(report.first_difference, Some(5));
    }

    #[test]
    fn a_request_missing_from_the_read_table_is_divergent_at_its_first_event() {
        let (events, [_, b]) = history();
        let mut projected = projected_after(&events);
        projected.requests.remove(&b);
        let report = judged(&events, &projected, &Stages::default());
        assert_eq!(report.standing, "divergent");
        assert_eq!(report.first_difference, Some(3));
    }

    #[test]
    fn a_corrupted_request_is_divergent_at_its_last_event() {
        let (events, [a, _]) = history();
        let mut projected = projected_after(&events);
        projected.requests.get_mut(&a).unwrap()["status"] = "COMPLETED".into();
        let report = judged(&events, &projected, &Stages::default());
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
        let report = judged(&events, &projected, &Stages::default());
        assert_eq!(report.standing, "divergent");
        assert_eq!(report.first_difference, None);
    }

    fn on_broker(sequences: &[u64]) -> Stages {
        Stages {
            published: Some(
                sequences
                    .iter()
                    .map(|s| (*s, event_id_for(LINE_AGGREGATE_TYPE, LINE, *s)))
                    .collect(),
            ),
            kos: None,
        }
    }

    #[test]
    fn the_broker_holding_every_event_once_in_order_is_equal_and_a_prefix_is_behind() {
        let (events, _) = history();
        let projected = projected_after(&events);
        let equal = judge(
            LINE,
            &events,
            &projected,
            &on_broker(&[1, 2, 3, 4]),
            40,
            at(10),
        );
        let behind = judged(&events, &projected, &on_broker(&[1, 2]));
        assert_eq!(equal.standing, "equal", "{equal:?}");
        assert_eq!(equal.published, Some(equal.committed));
        assert_eq!(
            (behind.standing, behind.stage, behind.behind_by),
            ("behind", Some("broker"), Some(2))
        );
    }

    #[test]
    fn an_event_missing_or_repeated_on_the_broker_is_divergent_there_first() {
        let (events, _) = history();
        let mut projected = projected_after(&events);
        projected.applied.remove(&2);
        let missing = judge(
            LINE,
            &events,
            &projected,
            &on_broker(&[1, 3, 4]),
            40,
            at(10),
        );
        let repeated = judge(
            LINE,
            &events,
            &projected,
            &on_broker(&[1, 2, 3, 2, 4]),
            40,
            at(10),
        );
        assert_eq!(
            (missing.stage, missing.first_difference),
            (Some("broker"), Some(2)),
            "{missing:?}"
        );
        assert_eq!(
            (repeated.stage, repeated.first_difference),
            (Some("broker"), Some(2)),
            "{repeated:?}"
        );
    }

    fn at_kos(orders: &[(Uuid, &str)]) -> Stages {
        Stages {
            published: None,
            kos: Some(orders.iter().map(|(r, o)| (*r, (*o).to_owned())).collect()),
        }
    }

    #[test]
    fn a_change_sent_to_kos_without_an_order_there_is_behind_and_an_order_never_sent_is_divergent()
    {
        let (events, [a, b]) = history();
        let projected = projected_after(&events);
        let both = judge(
            LINE,
            &events,
            &projected,
            &at_kos(&[(a, "EXECUTED"), (b, "EXECUTED")]),
            40,
            at(10),
        );
        let one = judge(
            LINE,
            &events,
            &projected,
            &at_kos(&[(a, "EXECUTED")]),
            40,
            at(10),
        );
        let foreign = judge(
            LINE,
            &events,
            &projected,
            &at_kos(&[
                (a, "EXECUTED"),
                (b, "EXECUTED"),
                (Uuid::from_u128(7), "EXECUTED"),
            ]),
            40,
            at(10),
        );
        assert_eq!(both.standing, "equal", "{both:?}");
        assert_eq!(
            (one.standing, one.stage, one.behind_by),
            ("behind", Some("kos"), Some(1))
        );
        assert_eq!(
            (foreign.standing, foreign.stage),
            ("divergent", Some("kos"))
        );
    }

    #[test]
    fn a_change_kos_carried_out_but_the_line_recorded_as_failed_is_divergent() {
        let (mut events, [a, b]) = history();
        events.push(event(
            5,
            ProductChangeEvent::ProductChangeFailed(events::product_change::ProductChangeFailed {
                request_id: b,
                line_number: LINE.into(),
                reason_code: events::product_change::FailureReason::Timeout,
                reason: "KOS did not answer in time".into(),
                kos_reason_code: None,
                kos_order_id: None,
                failed_at: at(5),
            }),
        ));
        let projected = projected_after(&events);
        let report = judge(
            LINE,
            &events,
            &projected,
            &at_kos(&[(a, "EXECUTED"), (b, "EXECUTED")]),
            60,
            at(10),
        );
        assert_eq!(
            (report.standing, report.stage, report.first_difference),
            ("divergent", Some("kos"), Some(5))
        );
    }
}
