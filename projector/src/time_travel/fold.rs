//! The pure part of time travel: a line's events in, its state as of a moment out, by
//! the live projector's own rules. No I/O: the projections run over [`Memory`], a
//! [`Store`] held in memory whose futures are always ready.
//!
//! The line has two streams, each with its own sequence: its product-change events
//! (aggregate `Line`) and KOS's facts about it (aggregate `KosLine`: registration,
//! suspension, product, bills). Each is taken in partition order up to its first event
//! that occurred after the moment (the stream as it stood then; with clocks that only
//! move forward, the same as keeping every event at or before it), and the two are
//! merged by `occurred_at`. Then, as live: an event at or below its stream's checkpoint
//! is a duplicate, an event that cannot be applied parks its stream (later events of
//! that stream wait behind it, here for good).

use std::collections::{HashMap, HashSet, VecDeque};

use chrono::{DateTime, Utc};
use events::bill_inquiry::BillInquired;
use events::kos::{KosFact, LINE_AGGREGATE as KOS_LINE};
use futures::FutureExt;
use read_model::views::{BillView, ChangeRequestView, LineView, PendingChange, ProductRef};
use serde::Serialize;
use uuid::Uuid;

use crate::processor::{self, Decoded};
use crate::projections::{ApplyError, Store};

/// A line as it stood at `as_of`.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LineState {
    pub line_number: String,
    pub as_of: DateTime<Utc>,
    /// False while only product-change events are known (KOS had not registered it).
    pub registered: bool,
    pub customer_id: String,
    pub operator: String,
    /// `ACTIVE`, `SUSPENDED`, or `UNKNOWN` before KOS registered the line.
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub suspension_reason: Option<String>,
    pub current_product: ProductRef,
    /// The change in flight then (VALIDATED or PROCESSING), or null.
    pub pending_change: Option<PendingChange>,
    /// The line's product-change sequence applied (the query side's `position`).
    pub position: u64,
    /// KOS's sequence of facts about the line applied.
    pub kos_sequence: u64,
    /// The last event applied, whichever stream.
    pub last_event_id: Uuid,
    pub last_event_type: String,
    pub last_event_at: DateTime<Utc>,
    pub events_applied: u64,
    /// Events that could not be applied (the live projector would have parked them).
    pub events_parked: u64,
}

/// Which of the line's two streams an event belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Stream {
    Line,
    Kos,
}

/// The stream of `line` an event belongs to; `None` for another aggregate's event that
/// shares the partition (another line, a catalog fact, an inquiry).
fn stream_of(line: &str, decoded: &Decoded) -> Option<Stream> {
    match decoded {
        Decoded::ProductChange(env, _) if env.aggregate_id == line => Some(Stream::Line),
        Decoded::Kos(env, fact) if env.aggregate_id == line && is_line_fact(fact) => {
            Some(Stream::Kos)
        }
        _ => None,
    }
}

fn is_line_fact(fact: &KosFact) -> bool {
    fact.aggregate_type() == KOS_LINE
}

/// True when `decoded` is an event of `line` that occurred after `at`: its stream's
/// events from there on are not part of the line as of `at` (a reader may stop there).
pub fn is_past(line: &str, at: DateTime<Utc>, decoded: &Decoded) -> bool {
    stream_of(line, decoded).is_some() && decoded.envelope().occurred_at > at
}

/// The line's state as of `at` from the events of its partitions (each topic's in
/// partition order; events of other aggregates are passed over). `None` when nothing
/// about the line had happened by then.
pub fn line_as_of(
    line: &str,
    at: DateTime<Utc>,
    events: impl IntoIterator<Item = Decoded>,
) -> Option<LineState> {
    let mut line_events = VecDeque::new();
    let mut kos_events = VecDeque::new();
    let mut closed = HashSet::new();
    for decoded in events {
        let Some(stream) = stream_of(line, &decoded) else {
            continue;
        };
        if closed.contains(&stream) {
            continue;
        }
        if decoded.envelope().occurred_at > at {
            closed.insert(stream);
            continue;
        }
        match stream {
            Stream::Line => line_events.push_back(decoded),
            Stream::Kos => kos_events.push_back(decoded),
        }
    }
    let mut fold = Fold::default();
    // Merge by time, each stream keeping its own order; on a tie KOS's fact goes first
    // (a line is registered before anything is asked of it).
    loop {
        let take_kos = match (kos_events.front(), line_events.front()) {
            (Some(k), Some(l)) => k.envelope().occurred_at <= l.envelope().occurred_at,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (None, None) => break,
        };
        let (stream, decoded) = if take_kos {
            (Stream::Kos, kos_events.pop_front())
        } else {
            (Stream::Line, line_events.pop_front())
        };
        fold.apply(stream, decoded.expect("the front was just seen"));
    }
    fold.state(line, at)
}

/// The live projector's checkpoint and parking rules over [`Memory`].
#[derive(Default)]
struct Fold {
    store: Memory,
    applied: HashMap<Stream, u64>,
    parked: HashSet<Stream>,
    events_applied: u64,
    events_parked: u64,
    last: Option<(Uuid, String, DateTime<Utc>)>,
}

impl Fold {
    fn apply(&mut self, stream: Stream, decoded: Decoded) {
        let env = decoded.envelope();
        let applied = self.applied.get(&stream).copied().unwrap_or(0);
        if env.sequence <= applied {
            return; // a duplicate (a republished event), as live
        }
        if self.parked.contains(&stream) {
            self.events_parked += 1;
            return;
        }
        let result = processor::apply(&mut self.store, &decoded)
            .now_or_never()
            .expect("the in-memory store never waits");
        match result {
            Ok(_) => {
                self.applied.insert(stream, env.sequence);
                self.events_applied += 1;
                self.last = Some((env.event_id, env.event_type.clone(), env.occurred_at));
            }
            Err(e) => {
                tracing::debug!(error = %e, sequence = env.sequence, "time travel: event parks its stream");
                self.parked.insert(stream);
                self.events_parked += 1;
            }
        }
    }

    fn state(self, line: &str, at: DateTime<Utc>) -> Option<LineState> {
        let view = self.store.lines.get(line)?.view.clone()?;
        let (last_event_id, last_event_type, last_event_at) = self.last?;
        Some(LineState {
            line_number: view.line_number,
            as_of: at,
            registered: view.registered,
            customer_id: view.customer_id,
            operator: view.operator,
            status: view.status,
            suspension_reason: view.suspension_reason,
            current_product: view.current_product,
            pending_change: view.pending_change,
            position: self.applied.get(&Stream::Line).copied().unwrap_or(0),
            kos_sequence: self.applied.get(&Stream::Kos).copied().unwrap_or(0),
            last_event_id,
            last_event_type,
            last_event_at,
            events_applied: self.events_applied,
            events_parked: self.events_parked,
        })
    }
}

#[derive(Default)]
struct LineRow {
    view: Option<LineView>,
    product_at: Option<DateTime<Utc>>,
}

/// A [`Store`] in memory, empty at the start: what the projections read is only what
/// the fold wrote. Every method is ready at once.
#[derive(Default)]
pub(crate) struct Memory {
    lines: HashMap<String, LineRow>,
    requests: HashMap<Uuid, ChangeRequestView>,
    products: HashMap<String, read_model::views::ProductView>,
    bills: HashMap<(String, String), BillView>,
    inquiries: HashSet<Uuid>,
}

impl Memory {
    /// The change requests written, by id.
    pub(crate) fn into_requests(self) -> HashMap<Uuid, ChangeRequestView> {
        self.requests
    }
}

impl Store for Memory {
    async fn line(&mut self, line: &str) -> Result<Option<LineView>, ApplyError> {
        Ok(self.lines.get(line).and_then(|r| r.view.clone()))
    }

    async fn put_line(&mut self, view: &LineView) -> Result<(), ApplyError> {
        self.lines.entry(view.line_number.clone()).or_default().view = Some(view.clone());
        Ok(())
    }

    async fn product_at(&mut self, line: &str) -> Result<Option<DateTime<Utc>>, ApplyError> {
        Ok(self.lines.get(line).and_then(|r| r.product_at))
    }

    async fn set_product_at(&mut self, line: &str, at: DateTime<Utc>) -> Result<(), ApplyError> {
        if let Some(row) = self.lines.get_mut(line).filter(|r| r.view.is_some()) {
            row.product_at = Some(at);
        }
        Ok(())
    }

    async fn request(&mut self, id: Uuid) -> Result<Option<ChangeRequestView>, ApplyError> {
        Ok(self.requests.get(&id).cloned())
    }

    async fn put_request(&mut self, view: &ChangeRequestView) -> Result<(), ApplyError> {
        self.requests.insert(view.request_id, view.clone());
        Ok(())
    }

    async fn product(
        &mut self,
        code: &str,
    ) -> Result<Option<read_model::views::ProductView>, ApplyError> {
        Ok(self.products.get(code).cloned())
    }

    async fn put_product(
        &mut self,
        view: &read_model::views::ProductView,
    ) -> Result<(), ApplyError> {
        self.products
            .insert(view.product_code.clone(), view.clone());
        Ok(())
    }

    async fn bill(&mut self, line: &str, month: &str) -> Result<Option<BillView>, ApplyError> {
        Ok(self
            .bills
            .get(&(line.to_owned(), month.to_owned()))
            .cloned())
    }

    async fn put_bill(&mut self, view: &BillView) -> Result<(), ApplyError> {
        self.bills
            .insert((view.line_number.clone(), view.month.clone()), view.clone());
        Ok(())
    }

    async fn add_inquiry(&mut self, e: &BillInquired) -> Result<bool, ApplyError> {
        Ok(self.inquiries.insert(e.inquiry_id))
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use events::kos::{self, LineStatus};
    use events::product_change::{self as pc, ProductChangeEvent};
    use events::{event_id_for, Envelope, EventPayload};

    use super::*;

    const LINE: &str = "010-1234-5678";

    fn at(minute: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 1, 9, 0, 0).unwrap() + chrono::Duration::minutes(minute)
    }

    fn envelope<E: EventPayload>(kind: &str, id: &str, seq: u64, minute: i64, e: &E) -> Envelope {
        Envelope {
            event_id: event_id_for(kind, id, seq),
            event_type: e.event_type().to_owned(),
            event_version: e.event_version(),
            aggregate_id: id.to_owned(),
            sequence: seq,
            occurred_at: at(minute),
            correlation_id: Uuid::nil(),
            causation_id: Uuid::nil(),
            payload: e.to_payload(),
        }
    }

    /// The `seq`-th product-change event of `line`, occurring at `minute`.
    fn change(line: &str, seq: u64, minute: i64, e: ProductChangeEvent) -> Decoded {
        Decoded::ProductChange(envelope("Line", line, seq, minute, &e), e)
    }

    /// The `seq`-th KOS fact about the fact's aggregate, occurring at `minute`.
    fn fact(seq: u64, minute: i64, f: KosFact) -> Decoded {
        let id = f.aggregate_id().to_owned();
        Decoded::Kos(envelope(f.aggregate_type(), &id, seq, minute, &f), f)
    }

    fn registered(line: &str, product: &str) -> KosFact {
        KosFact::LineRegistered(kos::LineRegistered {
            line_number: line.into(),
            customer_id: "CUST001".into(),
            customer_name: "Kim".into(),
            operator: "KT".into(),
            status: LineStatus::Active,
            product_code: product.into(),
            contract: kos::Contract {
                commitment_months: 24,
                started_on: chrono::NaiveDate::from_ymd_opt(2025, 1, 1).unwrap(),
                ends_on: chrono::NaiveDate::from_ymd_opt(2026, 12, 31).unwrap(),
            },
        })
    }

    fn requested(id: Uuid, from: &str, to: &str, minute: i64) -> ProductChangeEvent {
        requested_on(LINE, id, from, to, minute)
    }

    fn requested_on(line: &str, id: Uuid, from: &str, to: &str, minute: i64) -> ProductChangeEvent {
        ProductChangeEvent::ProductChangeRequested(pc::ProductChangeRequested {
            request_id: id,
            line_number: line.into(),
            customer_id: "CUST001".into(),
            operator: "KT".into(),
            current_product_code: from.into(),
            target_product_code: to.into(),
            requested_at: at(minute),
        })
    }

    fn sent(id: Uuid, minute: i64) -> ProductChangeEvent {
        ProductChangeEvent::ProductChangeSentToKos(pc::ProductChangeSentToKos {
            request_id: id,
            line_number: LINE.into(),
            customer_id: "CUST001".into(),
            current_product_code: "5G-STANDARD-001".into(),
            target_product_code: "5G-PREMIUM-001".into(),
            sent_at: at(minute),
            answer_by: at(minute + 5),
        })
    }

    fn completed(id: Uuid, to: &str, minute: i64) -> ProductChangeEvent {
        ProductChangeEvent::ProductChangeCompleted(pc::ProductChangeCompleted {
            request_id: id,
            line_number: LINE.into(),
            kos_order_id: "KOS-1".into(),
            previous_product_code: "5G-STANDARD-001".into(),
            new_product_code: to.into(),
            message: "changed".into(),
            completed_at: at(minute),
        })
    }

    fn failed(id: Uuid, minute: i64) -> ProductChangeEvent {
        ProductChangeEvent::ProductChangeFailed(pc::ProductChangeFailed {
            request_id: id,
            line_number: LINE.into(),
            kos_order_id: None,
            reason_code: pc::FailureReason::Timeout,
            kos_reason_code: None,
            reason: "no answer".into(),
            failed_at: at(minute),
        })
    }

    fn product_changed(to: &str) -> KosFact {
        KosFact::LineProductChanged(kos::LineProductChanged {
            line_number: LINE.into(),
            previous_product_code: "5G-STANDARD-001".into(),
            new_product_code: to.into(),
            kos_order_id: "KOS-1".into(),
            request_id: None,
        })
    }

    fn suspended() -> KosFact {
        KosFact::LineSuspended(kos::LineSuspended {
            line_number: LINE.into(),
            reason: "unpaid".into(),
        })
    }

    fn resumed() -> KosFact {
        KosFact::LineResumed(kos::LineResumed {
            line_number: LINE.into(),
        })
    }

    /// Registered at 0 on 5G-STANDARD-001; a change to 5G-PREMIUM-001 requested at 10,
    /// sent at 11, completed at 12 (KOS's fact at 12 too); another to 5G-BASIC-001
    /// requested at 20.
    fn history(first: Uuid, second: Uuid) -> (Vec<Decoded>, Vec<Decoded>) {
        let kos = vec![
            fact(1, 0, registered(LINE, "5G-STANDARD-001")),
            fact(2, 12, product_changed("5G-PREMIUM-001")),
        ];
        let changes = vec![
            change(
                LINE,
                1,
                10,
                requested(first, "5G-STANDARD-001", "5G-PREMIUM-001", 10),
            ),
            change(LINE, 2, 11, sent(first, 11)),
            change(LINE, 3, 12, completed(first, "5G-PREMIUM-001", 12)),
            change(
                LINE,
                4,
                20,
                requested(second, "5G-PREMIUM-001", "5G-BASIC-001", 20),
            ),
        ];
        (kos, changes)
    }

    fn as_of(minute: i64, topics: (Vec<Decoded>, Vec<Decoded>)) -> Option<LineState> {
        let (kos, changes) = topics;
        line_as_of(LINE, at(minute), kos.into_iter().chain(changes))
    }

    #[test]
    fn before_the_line_existed_there_is_no_state() {
        let (first, second) = (Uuid::new_v4(), Uuid::new_v4());

        let state = line_as_of(LINE, at(0) - chrono::Duration::seconds(1), {
            let (kos, changes) = history(first, second);
            kos.into_iter().chain(changes)
        });

        assert_eq!(state, None);
    }

    #[test]
    fn a_registered_line_shows_kos_registration_and_no_pending_change() {
        let state = as_of(5, history(Uuid::new_v4(), Uuid::new_v4())).unwrap();

        assert!(state.registered);
        assert_eq!(state.customer_id, "CUST001");
        assert_eq!(state.operator, "KT");
        assert_eq!(state.status, "ACTIVE");
        assert_eq!(state.current_product.product_code, "5G-STANDARD-001");
        assert_eq!(state.pending_change, None);
        assert_eq!((state.position, state.kos_sequence), (0, 1));
        assert_eq!(state.events_applied, 1);
        assert_eq!(state.last_event_type, "LineRegistered");
        assert_eq!(state.as_of, at(5));
    }

    #[test]
    fn a_requested_change_is_pending_as_validated_then_processing_once_sent() {
        let first = Uuid::new_v4();

        let requested = as_of(10, history(first, Uuid::new_v4())).unwrap();
        let sent = as_of(11, history(first, Uuid::new_v4())).unwrap();

        let pending = requested.pending_change.unwrap();
        assert_eq!(pending.request_id, first);
        assert_eq!(pending.target_product_code, "5G-PREMIUM-001");
        assert_eq!(pending.status, "VALIDATED");
        assert_eq!(requested.current_product.product_code, "5G-STANDARD-001");
        assert_eq!(sent.pending_change.unwrap().status, "PROCESSING");
        assert_eq!(sent.position, 2);
    }

    #[test]
    fn a_completed_change_sets_the_product_and_ends_the_pending_change() {
        let state = as_of(15, history(Uuid::new_v4(), Uuid::new_v4())).unwrap();

        assert_eq!(state.current_product.product_code, "5G-PREMIUM-001");
        assert_eq!(state.pending_change, None);
        assert_eq!((state.position, state.kos_sequence), (3, 2));
        assert_eq!(state.events_applied, 5);
    }

    #[test]
    fn the_next_request_is_pending_on_the_new_product() {
        let second = Uuid::new_v4();

        let state = as_of(25, history(Uuid::new_v4(), second)).unwrap();

        assert_eq!(state.current_product.product_code, "5G-PREMIUM-001");
        let pending = state.pending_change.unwrap();
        assert_eq!(pending.request_id, second);
        assert_eq!(pending.target_product_code, "5G-BASIC-001");
        assert_eq!(state.position, 4);
        assert_eq!(state.last_event_at, at(20));
    }

    #[test]
    fn a_failed_change_ends_the_pending_change_and_keeps_the_product() {
        let id = Uuid::new_v4();
        let kos = vec![fact(1, 0, registered(LINE, "5G-STANDARD-001"))];
        let changes = vec![
            change(
                LINE,
                1,
                10,
                requested(id, "5G-STANDARD-001", "5G-PREMIUM-001", 10),
            ),
            change(LINE, 2, 11, sent(id, 11)),
            change(LINE, 3, 16, failed(id, 16)),
        ];

        let state = as_of(20, (kos, changes)).unwrap();

        assert_eq!(state.pending_change, None);
        assert_eq!(state.current_product.product_code, "5G-STANDARD-001");
    }

    #[test]
    fn a_suspension_shows_until_the_line_is_resumed() {
        let kos = || {
            vec![
                fact(1, 0, registered(LINE, "5G-STANDARD-001")),
                fact(2, 10, suspended()),
                fact(3, 20, resumed()),
            ]
        };

        let during = as_of(15, (kos(), vec![])).unwrap();
        let after = as_of(25, (kos(), vec![])).unwrap();

        assert_eq!(during.status, "SUSPENDED");
        assert_eq!(during.suspension_reason.as_deref(), Some("unpaid"));
        assert_eq!(after.status, "ACTIVE");
        assert_eq!(after.suspension_reason, None);
    }

    #[test]
    fn the_later_product_setting_wins_whichever_stream_says_it() {
        // KOS's fact (minute 12) is newer than the completion recorded at minute 11.
        let id = Uuid::new_v4();
        let kos = vec![
            fact(1, 0, registered(LINE, "5G-STANDARD-001")),
            fact(2, 12, product_changed("5G-PREMIUM-001")),
        ];
        let changes = vec![
            change(
                LINE,
                1,
                10,
                requested(id, "5G-STANDARD-001", "5G-BASIC-001", 10),
            ),
            change(LINE, 2, 11, completed(id, "5G-BASIC-001", 11)),
        ];

        let state = as_of(30, (kos, changes)).unwrap();

        assert_eq!(state.current_product.product_code, "5G-PREMIUM-001");
    }

    #[test]
    fn a_republished_event_is_applied_once() {
        let id = Uuid::new_v4();
        let kos = vec![fact(1, 0, registered(LINE, "5G-STANDARD-001"))];
        let changes = vec![
            change(
                LINE,
                1,
                10,
                requested(id, "5G-STANDARD-001", "5G-PREMIUM-001", 10),
            ),
            change(LINE, 2, 11, sent(id, 11)),
            change(
                LINE,
                1,
                10,
                requested(id, "5G-STANDARD-001", "5G-PREMIUM-001", 10),
            ),
        ];

        let state = as_of(30, (kos, changes)).unwrap();

        assert_eq!(state.events_applied, 3);
        assert_eq!(state.pending_change.unwrap().status, "PROCESSING");
    }

    #[test]
    fn events_of_other_aggregates_in_the_partition_are_passed_over() {
        let other = "010-9999-0000";
        let kos = vec![
            fact(1, 0, registered(other, "5G-PREMIUM-001")),
            fact(1, 1, registered(LINE, "5G-STANDARD-001")),
        ];
        let changes = vec![change(
            other,
            1,
            2,
            requested_on(other, Uuid::new_v4(), "5G-PREMIUM-001", "5G-BASIC-001", 2),
        )];

        let state = as_of(30, (kos, changes)).unwrap();

        assert_eq!(state.line_number, LINE);
        assert_eq!(state.current_product.product_code, "5G-STANDARD-001");
        assert_eq!(state.pending_change, None);
        assert_eq!(state.events_applied, 1);
    }

    #[test]
    fn an_event_that_cannot_be_applied_holds_back_its_stream_only() {
        // A completion of a request never made parks the line's stream, as live; KOS's
        // facts go on.
        let kos = vec![
            fact(1, 0, registered(LINE, "5G-STANDARD-001")),
            fact(2, 20, suspended()),
        ];
        let id = Uuid::new_v4();
        let changes = vec![
            change(LINE, 1, 10, completed(Uuid::new_v4(), "5G-PREMIUM-001", 10)),
            change(
                LINE,
                2,
                11,
                requested(id, "5G-STANDARD-001", "5G-BASIC-001", 11),
            ),
        ];

        let state = as_of(30, (kos, changes)).unwrap();

        assert_eq!(state.events_parked, 2);
        assert_eq!(state.pending_change, None);
        assert_eq!(state.position, 0);
        assert_eq!(state.status, "SUSPENDED");
    }

    #[test]
    fn a_stream_ends_at_its_first_event_after_the_moment() {
        // A clock that went back: sequence 3 claims an earlier time than sequence 2. The
        // line as of minute 15 is the stream up to sequence 1, never 1 and 3 without 2.
        let id = Uuid::new_v4();
        let kos = vec![fact(1, 0, registered(LINE, "5G-STANDARD-001"))];
        let changes = vec![
            change(
                LINE,
                1,
                10,
                requested(id, "5G-STANDARD-001", "5G-PREMIUM-001", 10),
            ),
            change(LINE, 2, 20, sent(id, 20)),
            change(LINE, 3, 14, completed(id, "5G-PREMIUM-001", 14)),
        ];

        let state = as_of(15, (kos, changes)).unwrap();

        assert_eq!(state.position, 1);
        assert_eq!(state.pending_change.unwrap().status, "VALIDATED");
        assert_eq!(state.current_product.product_code, "5G-STANDARD-001");
    }

    #[test]
    fn only_the_lines_own_events_after_the_moment_count_as_past_it() {
        let own = fact(2, 20, suspended());
        let other = fact(1, 20, registered("010-9999-0000", "5G-PREMIUM-001"));

        assert!(is_past(LINE, at(15), &own));
        assert!(!is_past(LINE, at(25), &own));
        assert!(!is_past(LINE, at(15), &other));
    }
}
