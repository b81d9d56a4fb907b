//! The subscriber line aggregate (id = line number). It owns the rule that a line has at
//! most one product change in flight, and remembers every request id it has seen so a
//! replayed command (same Idempotency-Key) gets the same answer and adds nothing. It also
//! settles each request sent to KOS exactly once: by KOS's answer, or by the timeout,
//! whichever comes first; a KOS answer after that is kept for audit only.

mod commands;

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use events::kos::KosResult;
use events::product_change::{
    FailedCheck, FailureReason, ProductChangeCompleted, ProductChangeEvent, ProductChangeFailed,
    ProductChangeLateAnswerRecorded, ProductChangeRejected, ProductChangeRequested,
    ProductChangeSentToKos,
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub use commands::{LineCommand, RequestProductChange};

use crate::domain::product_change::{failures, run_prechecks};

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Line {
    /// Sequence of the last event applied: the line's position in its stream.
    version: u64,
    /// The request KOS is carrying out, if any.
    in_flight: Option<Uuid>,
    /// Every request this line has seen, by id.
    requests: HashMap<Uuid, RequestRecord>,
}

/// What became of a request, as the line remembers it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestRecord {
    pub current_product_code: String,
    pub target_product_code: String,
    pub outcome: RequestOutcome,
    /// The line's position once the request was decided (read-your-writes token).
    pub position: u64,
    /// Until when KOS may answer (accepted requests only).
    #[serde(default)]
    pub answer_by: Option<DateTime<Utc>>,
    /// How the request ended once KOS answered or the timeout struck.
    #[serde(default)]
    pub settled: Option<Settlement>,
    /// True once any KOS answer was recorded (in time or late), so a redelivered answer
    /// adds nothing.
    #[serde(default)]
    pub kos_answered: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Settlement {
    Completed,
    Failed(FailureReason),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum RequestOutcome {
    /// Validated and handed to KOS; status PROCESSING until KOS answers.
    Processing,
    /// Refused by the pre-checks; never sent to KOS.
    Rejected(Vec<FailedCheck>),
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum LineError {
    #[error("request {0} was already made with other products")]
    RequestIdReused(Uuid),
    #[error("KOS answered request {0}, which this line never sent to KOS")]
    NotSentToKos(Uuid),
}

impl Line {
    pub fn version(&self) -> u64 {
        self.version
    }

    pub fn in_flight(&self) -> Option<Uuid> {
        self.in_flight
    }

    pub fn request(&self, id: Uuid) -> Option<&RequestRecord> {
        self.requests.get(&id)
    }
}

impl Aggregate for Line {
    const TYPE: &'static str = events::stored::LINE_AGGREGATE_TYPE;
    type Command = LineCommand;
    type Event = ProductChangeEvent;
    type Error = LineError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        match command {
            LineCommand::RequestProductChange(cmd) => self.request_product_change(cmd, sink).await,
            LineCommand::RecordKosResult {
                result,
                received_at,
            } => self.record_kos_result(result, received_at, sink).await,
            LineCommand::TimeOut {
                request_id,
                line_number,
                now,
            } => {
                self.time_out(request_id, line_number, now, sink).await;
                Ok(())
            }
        }
    }

    fn apply(&mut self, event: Self::Event) {
        self.version += 1;
        match event {
            ProductChangeEvent::ProductChangeRequested(e) => {
                self.in_flight = Some(e.request_id);
                self.requests.insert(
                    e.request_id,
                    RequestRecord {
                        current_product_code: e.current_product_code,
                        target_product_code: e.target_product_code,
                        outcome: RequestOutcome::Processing,
                        position: self.version,
                        answer_by: None,
                        settled: None,
                        kos_answered: false,
                    },
                );
            }
            ProductChangeEvent::ProductChangeSentToKos(e) => {
                if let Some(record) = self.requests.get_mut(&e.request_id) {
                    record.position = self.version;
                    record.answer_by = Some(e.answer_by);
                }
            }
            ProductChangeEvent::ProductChangeRejected(e) => {
                self.requests.insert(
                    e.request_id,
                    RequestRecord {
                        current_product_code: e.current_product_code,
                        target_product_code: e.target_product_code,
                        outcome: RequestOutcome::Rejected(e.failed_checks),
                        position: self.version,
                        answer_by: None,
                        settled: None,
                        kos_answered: false,
                    },
                );
            }
            ProductChangeEvent::ProductChangeCompleted(e) => {
                self.settle(e.request_id, Settlement::Completed, true)
            }
            ProductChangeEvent::ProductChangeFailed(e) => self.settle(
                e.request_id,
                Settlement::Failed(e.reason_code),
                e.reason_code == FailureReason::KosRejected,
            ),
            ProductChangeEvent::ProductChangeLateAnswerRecorded(e) => {
                if let Some(record) = self.requests.get_mut(&e.request_id) {
                    record.kos_answered = true;
                }
            }
        }
    }
}

impl Line {
    async fn request_product_change(
        &mut self,
        cmd: RequestProductChange,
        sink: &EventSink<Self>,
    ) -> Result<(), LineError> {
        if let Some(seen) = self.requests.get(&cmd.request_id) {
            // A replay of a request already decided: same answer, no new event.
            return if seen.current_product_code == cmd.request.current_product_code
                && seen.target_product_code == cmd.request.target_product_code
            {
                Ok(())
            } else {
                Err(LineError::RequestIdReused(cmd.request_id))
            };
        }
        let results = run_prechecks(&cmd.line, cmd.target.as_ref(), &cmd.request, self.in_flight);
        let failed = failures(&results);
        let line_number = cmd.line.line_number.clone();
        if !failed.is_empty() {
            let rejected = ProductChangeRejected {
                request_id: cmd.request_id,
                line_number,
                current_product_code: cmd.request.current_product_code,
                target_product_code: cmd.request.target_product_code,
                failed_checks: failed,
                requested_at: cmd.requested_at,
            };
            sink.write(ProductChangeEvent::ProductChangeRejected(rejected), self)
                .await;
            return Ok(());
        }
        let requested = ProductChangeRequested {
            request_id: cmd.request_id,
            line_number: line_number.clone(),
            customer_id: cmd.line.customer_id.clone(),
            operator: cmd.line.operator.clone(),
            current_product_code: cmd.request.current_product_code.clone(),
            target_product_code: cmd.request.target_product_code.clone(),
            requested_at: cmd.requested_at,
        };
        // Handing over to KOS is publishing this event, which the outbox relay guarantees,
        // so it is recorded in the same commit. A paced dispatcher (KOS takes 50 changes a
        // minute) would emit it later instead.
        let sent = ProductChangeSentToKos {
            request_id: cmd.request_id,
            line_number,
            customer_id: cmd.line.customer_id,
            current_product_code: cmd.request.current_product_code,
            target_product_code: cmd.request.target_product_code,
            sent_at: cmd.requested_at,
            answer_by: cmd.answer_by,
        };
        sink.write(ProductChangeEvent::ProductChangeRequested(requested), self)
            .await;
        sink.write(ProductChangeEvent::ProductChangeSentToKos(sent), self)
            .await;
        Ok(())
    }

    async fn record_kos_result(
        &mut self,
        result: KosResult,
        received_at: DateTime<Utc>,
        sink: &EventSink<Self>,
    ) -> Result<(), LineError> {
        let request_id = result.request_id();
        let Some(record) = self.requests.get(&request_id) else {
            return Err(LineError::NotSentToKos(request_id));
        };
        if record.outcome != RequestOutcome::Processing {
            return Err(LineError::NotSentToKos(request_id));
        }
        if record.kos_answered {
            // A redelivered answer: already recorded.
            return Ok(());
        }
        let line_number = result.line_number().to_owned();
        let event = match (record.settled, result) {
            (None, KosResult::ProductChangeExecuted(r)) => {
                ProductChangeEvent::ProductChangeCompleted(ProductChangeCompleted {
                    request_id,
                    line_number,
                    kos_order_id: r.kos_order_id,
                    previous_product_code: r.previous_product_code,
                    new_product_code: r.new_product_code,
                    message: r.message,
                    completed_at: r.executed_at,
                })
            }
            (None, KosResult::ProductChangeRefused(r)) => {
                ProductChangeEvent::ProductChangeFailed(ProductChangeFailed {
                    request_id,
                    line_number,
                    kos_order_id: Some(r.kos_order_id),
                    reason_code: FailureReason::KosRejected,
                    reason: format!("KOS refused the change ({}): {}", r.reason_code, r.message),
                    kos_reason_code: Some(r.reason_code),
                    failed_at: r.refused_at,
                })
            }
            // Settled already (timed out): keep KOS's word for audit, change nothing.
            (Some(_), result) => {
                let (executed, new_product_code, kos_reason_code, message) = match &result {
                    KosResult::ProductChangeExecuted(r) => (
                        true,
                        Some(r.new_product_code.clone()),
                        None,
                        r.message.clone(),
                    ),
                    KosResult::ProductChangeRefused(r) => {
                        (false, None, Some(r.reason_code.clone()), r.message.clone())
                    }
                };
                ProductChangeEvent::ProductChangeLateAnswerRecorded(
                    ProductChangeLateAnswerRecorded {
                        request_id,
                        line_number,
                        kos_order_id: result.kos_order_id().to_owned(),
                        executed,
                        new_product_code,
                        kos_reason_code,
                        message,
                        answered_at: received_at,
                    },
                )
            }
        };
        sink.write(event, self).await;
        Ok(())
    }

    async fn time_out(
        &mut self,
        request_id: Uuid,
        line_number: String,
        now: DateTime<Utc>,
        sink: &EventSink<Self>,
    ) {
        let Some(record) = self.requests.get(&request_id) else {
            return;
        };
        let due = record.answer_by.is_some_and(|deadline| deadline <= now);
        if record.settled.is_some() || record.outcome != RequestOutcome::Processing || !due {
            return;
        }
        let waited = record
            .answer_by
            .map(|d| format!(" by {}", d.to_rfc3339()))
            .unwrap_or_default();
        let failed = ProductChangeFailed {
            request_id,
            line_number,
            kos_order_id: None,
            reason_code: FailureReason::Timeout,
            kos_reason_code: None,
            reason: format!("KOS did not answer{waited}"),
            failed_at: now,
        };
        sink.write(ProductChangeEvent::ProductChangeFailed(failed), self)
            .await;
    }

    fn settle(&mut self, request_id: Uuid, settlement: Settlement, answered_by_kos: bool) {
        if self.in_flight == Some(request_id) {
            self.in_flight = None;
        }
        if let Some(record) = self.requests.get_mut(&request_id) {
            record.settled = Some(settlement);
            record.kos_answered |= answered_by_kos;
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};
    use cqrs_es::test::TestFramework;
    use events::kos::LineStatus;
    use events::product_change::{FailureReason, Precheck, ProductChangeFailed};

    use super::*;
    use crate::domain::product_change::tests::{active_line, basic_to_premium, premium};

    type LineTest = TestFramework<Line>;

    fn request(id: Uuid) -> RequestProductChange {
        RequestProductChange {
            request_id: id,
            request: basic_to_premium(),
            requested_at: Utc.with_ymd_and_hms(2026, 3, 1, 9, 0, 0).unwrap(),
            answer_by: Utc.with_ymd_and_hms(2026, 3, 1, 9, 5, 0).unwrap(),
            line: active_line(),
            target: Some(premium()),
        }
    }

    fn accepted(id: Uuid) -> Vec<ProductChangeEvent> {
        let cmd = request(id);
        vec![
            ProductChangeEvent::ProductChangeRequested(ProductChangeRequested {
                request_id: id,
                line_number: "010-1234-5678".into(),
                customer_id: "CUST001".into(),
                operator: "KT".into(),
                current_product_code: "5G-BASIC-001".into(),
                target_product_code: "5G-PREMIUM-001".into(),
                requested_at: cmd.requested_at,
            }),
            ProductChangeEvent::ProductChangeSentToKos(ProductChangeSentToKos {
                request_id: id,
                line_number: "010-1234-5678".into(),
                customer_id: "CUST001".into(),
                current_product_code: "5G-BASIC-001".into(),
                target_product_code: "5G-PREMIUM-001".into(),
                sent_at: cmd.requested_at,
                answer_by: cmd.answer_by,
            }),
        ]
    }

    fn failed(id: Uuid) -> ProductChangeEvent {
        ProductChangeEvent::ProductChangeFailed(ProductChangeFailed {
            request_id: id,
            line_number: "010-1234-5678".into(),
            kos_order_id: None,
            reason_code: FailureReason::Timeout,
            kos_reason_code: None,
            reason: "no answer".into(),
            failed_at: Utc.with_ymd_and_hms(2026, 3, 1, 9, 5, 0).unwrap(),
        })
    }

    #[test]
    fn given_a_fresh_line_when_a_valid_change_is_requested_then_it_is_requested_and_sent_to_kos() {
        let id = Uuid::new_v4();
        LineTest::with(())
            .given_no_previous_events()
            .when(LineCommand::RequestProductChange(request(id)))
            .then_expect_events(accepted(id));
    }

    #[test]
    fn given_a_suspended_line_when_a_change_is_requested_then_it_is_rejected_with_the_failed_check()
    {
        let id = Uuid::new_v4();
        let mut cmd = request(id);
        cmd.line.status = LineStatus::Suspended;
        let events = LineTest::with(())
            .given_no_previous_events()
            .when(LineCommand::RequestProductChange(cmd))
            .inspect_result()
            .unwrap();
        match events.as_slice() {
            [ProductChangeEvent::ProductChangeRejected(r)] => {
                assert_eq!(r.request_id, id);
                assert_eq!(r.failed_checks.len(), 1);
                assert_eq!(r.failed_checks[0].check, Precheck::LineActive);
            }
            other => panic!("expected one rejection, got {other:?}"),
        }
    }

    #[test]
    fn given_a_change_in_flight_when_another_is_requested_then_it_is_rejected() {
        let first = Uuid::new_v4();
        let events = LineTest::with(())
            .given(accepted(first))
            .when(LineCommand::RequestProductChange(request(Uuid::new_v4())))
            .inspect_result()
            .unwrap();
        match events.as_slice() {
            [ProductChangeEvent::ProductChangeRejected(r)] => {
                assert_eq!(r.failed_checks[0].check, Precheck::NoChangeInFlight);
            }
            other => panic!("expected one rejection, got {other:?}"),
        }
    }

    #[test]
    fn given_the_earlier_change_failed_when_another_is_requested_then_it_is_accepted() {
        let first = Uuid::new_v4();
        let second = Uuid::new_v4();
        let mut given = accepted(first);
        given.push(failed(first));
        LineTest::with(())
            .given(given)
            .when(LineCommand::RequestProductChange(request(second)))
            .then_expect_events(accepted(second));
    }

    #[test]
    fn given_a_request_already_accepted_when_it_is_replayed_then_nothing_new_is_recorded() {
        let id = Uuid::new_v4();
        LineTest::with(())
            .given(accepted(id))
            .when(LineCommand::RequestProductChange(request(id)))
            .then_expect_events(vec![]);
    }

    #[test]
    fn given_a_request_id_when_it_is_reused_for_other_products_then_it_is_refused() {
        let id = Uuid::new_v4();
        let mut cmd = request(id);
        cmd.request.target_product_code = "5G-ULTRA-001".into();
        LineTest::with(())
            .given(accepted(id))
            .when(LineCommand::RequestProductChange(cmd))
            .then_expect_error(LineError::RequestIdReused(id));
    }

    #[test]
    fn applying_events_tracks_position_and_outcome() {
        let id = Uuid::new_v4();
        let mut line = Line::default();
        for e in accepted(id) {
            line.apply(e);
        }
        assert_eq!(line.version(), 2);
        assert_eq!(line.in_flight(), Some(id));
        let record = line.request(id).unwrap();
        assert_eq!(record.outcome, RequestOutcome::Processing);
        assert_eq!(record.position, 2);
        line.apply(failed(id));
        assert_eq!(line.in_flight(), None);
    }

    fn executed(id: Uuid) -> KosResult {
        KosResult::ProductChangeExecuted(events::kos::ProductChangeExecuted {
            request_id: id,
            line_number: "010-1234-5678".into(),
            kos_order_id: "KOS-1".into(),
            previous_product_code: "5G-BASIC-001".into(),
            new_product_code: "5G-PREMIUM-001".into(),
            message: "changed".into(),
            executed_at: Utc.with_ymd_and_hms(2026, 3, 1, 9, 0, 1).unwrap(),
        })
    }

    fn refused(id: Uuid, code: &str) -> KosResult {
        KosResult::ProductChangeRefused(events::kos::ProductChangeRefused {
            request_id: id,
            line_number: "010-1234-5678".into(),
            kos_order_id: "KOS-2".into(),
            reason_code: code.into(),
            message: "refused".into(),
            refused_at: Utc.with_ymd_and_hms(2026, 3, 1, 9, 0, 1).unwrap(),
        })
    }

    fn answer(result: KosResult) -> LineCommand {
        LineCommand::RecordKosResult {
            result,
            received_at: Utc.with_ymd_and_hms(2026, 3, 1, 9, 0, 2).unwrap(),
        }
    }

    fn time_out(id: Uuid, minute: u32) -> LineCommand {
        LineCommand::TimeOut {
            request_id: id,
            line_number: "010-1234-5678".into(),
            now: Utc.with_ymd_and_hms(2026, 3, 1, 9, minute, 0).unwrap(),
        }
    }

    fn timed_out(id: Uuid) -> ProductChangeEvent {
        ProductChangeEvent::ProductChangeFailed(ProductChangeFailed {
            request_id: id,
            line_number: "010-1234-5678".into(),
            kos_order_id: None,
            reason_code: FailureReason::Timeout,
            kos_reason_code: None,
            reason: "KOS did not answer by 2026-03-01T09:05:00+00:00".into(),
            failed_at: Utc.with_ymd_and_hms(2026, 3, 1, 9, 6, 0).unwrap(),
        })
    }

    #[test]
    fn given_a_change_sent_to_kos_when_kos_executes_it_then_it_is_completed() {
        let id = Uuid::new_v4();
        LineTest::with(())
            .given(accepted(id))
            .when(answer(executed(id)))
            .then_expect_events(vec![ProductChangeEvent::ProductChangeCompleted(
                ProductChangeCompleted {
                    request_id: id,
                    line_number: "010-1234-5678".into(),
                    kos_order_id: "KOS-1".into(),
                    previous_product_code: "5G-BASIC-001".into(),
                    new_product_code: "5G-PREMIUM-001".into(),
                    message: "changed".into(),
                    completed_at: Utc.with_ymd_and_hms(2026, 3, 1, 9, 0, 1).unwrap(),
                },
            )]);
    }

    #[test]
    fn given_a_change_sent_to_kos_when_kos_refuses_it_then_it_fails_with_kos_reason() {
        let id = Uuid::new_v4();
        let events = LineTest::with(())
            .given(accepted(id))
            .when(answer(refused(id, "LINE_SUSPENDED")))
            .inspect_result()
            .unwrap();
        match events.as_slice() {
            [ProductChangeEvent::ProductChangeFailed(f)] => {
                assert_eq!(f.reason_code, FailureReason::KosRejected);
                assert_eq!(f.kos_reason_code.as_deref(), Some("LINE_SUSPENDED"));
                assert_eq!(f.kos_order_id.as_deref(), Some("KOS-2"));
                assert!(f.reason.contains("LINE_SUSPENDED"), "{}", f.reason);
            }
            other => panic!("expected one failure, got {other:?}"),
        }
    }

    #[test]
    fn given_a_completed_change_when_the_answer_is_redelivered_then_nothing_is_recorded() {
        let id = Uuid::new_v4();
        let mut given = accepted(id);
        given.extend(
            LineTest::with(())
                .given(accepted(id))
                .when(answer(executed(id)))
                .inspect_result()
                .unwrap(),
        );
        LineTest::with(())
            .given(given)
            .when(answer(executed(id)))
            .then_expect_events(vec![]);
    }

    #[test]
    fn given_a_change_sent_to_kos_when_the_sweeper_runs_before_answer_by_then_nothing_happens() {
        let id = Uuid::new_v4();
        LineTest::with(())
            .given(accepted(id))
            .when(time_out(id, 4))
            .then_expect_events(vec![]);
    }

    #[test]
    fn given_a_change_sent_to_kos_when_answer_by_passes_then_it_fails_with_timeout() {
        let id = Uuid::new_v4();
        LineTest::with(())
            .given(accepted(id))
            .when(time_out(id, 6))
            .then_expect_events(vec![timed_out(id)]);
    }

    #[test]
    fn given_a_timed_out_change_when_kos_answers_late_then_the_answer_is_kept_and_the_outcome_stays(
    ) {
        let id = Uuid::new_v4();
        let mut given = accepted(id);
        given.push(timed_out(id));
        let events = LineTest::with(())
            .given(given.clone())
            .when(answer(executed(id)))
            .inspect_result()
            .unwrap();
        match events.as_slice() {
            [ProductChangeEvent::ProductChangeLateAnswerRecorded(late)] => {
                assert!(late.executed);
                assert_eq!(late.new_product_code.as_deref(), Some("5G-PREMIUM-001"));
            }
            other => panic!("expected a late answer, got {other:?}"),
        }
        let mut line = Line::default();
        for e in given.into_iter().chain(events) {
            line.apply(e);
        }
        let record = line.request(id).unwrap();
        assert_eq!(
            record.settled,
            Some(Settlement::Failed(FailureReason::Timeout))
        );
        assert!(record.kos_answered);
    }

    #[test]
    fn given_a_late_answer_recorded_when_it_is_redelivered_or_the_sweeper_runs_again_then_nothing_is_recorded(
    ) {
        let id = Uuid::new_v4();
        let mut given = accepted(id);
        given.push(timed_out(id));
        given.push(ProductChangeEvent::ProductChangeLateAnswerRecorded(
            ProductChangeLateAnswerRecorded {
                request_id: id,
                line_number: "010-1234-5678".into(),
                kos_order_id: "KOS-1".into(),
                executed: true,
                new_product_code: Some("5G-PREMIUM-001".into()),
                kos_reason_code: None,
                message: "changed".into(),
                answered_at: Utc.with_ymd_and_hms(2026, 3, 1, 9, 7, 0).unwrap(),
            },
        ));
        LineTest::with(())
            .given(given.clone())
            .when(answer(executed(id)))
            .then_expect_events(vec![]);
        LineTest::with(())
            .given(given)
            .when(time_out(id, 9))
            .then_expect_events(vec![]);
    }

    #[test]
    fn given_no_such_request_when_kos_answers_then_it_is_refused() {
        let id = Uuid::new_v4();
        LineTest::with(())
            .given_no_previous_events()
            .when(answer(executed(id)))
            .then_expect_error(LineError::NotSentToKos(id));
    }

    #[test]
    fn given_a_completed_change_when_another_is_requested_then_it_is_accepted() {
        let first = Uuid::new_v4();
        let second = Uuid::new_v4();
        let mut given = accepted(first);
        given.extend(
            LineTest::with(())
                .given(accepted(first))
                .when(answer(executed(first)))
                .inspect_result()
                .unwrap(),
        );
        LineTest::with(())
            .given(given)
            .when(LineCommand::RequestProductChange(request(second)))
            .then_expect_events(accepted(second));
    }
}
