//! The subscriber line aggregate (id = line number). It owns the rule that a line has at
//! most one product change in flight, and remembers every request id it has seen so a
//! replayed command (same Idempotency-Key) gets the same answer and adds nothing.

mod commands;

use std::collections::HashMap;

use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use events::product_change::{
    FailedCheck, ProductChangeEvent, ProductChangeRejected, ProductChangeRequested,
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
    const TYPE: &'static str = "Line";
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
                    },
                );
            }
            ProductChangeEvent::ProductChangeSentToKos(e) => {
                if let Some(record) = self.requests.get_mut(&e.request_id) {
                    record.position = self.version;
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
                    },
                );
            }
            ProductChangeEvent::ProductChangeCompleted(e) => self.finish(e.request_id),
            ProductChangeEvent::ProductChangeFailed(e) => self.finish(e.request_id),
            ProductChangeEvent::ProductChangeLateAnswerRecorded(_) => {}
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

    fn finish(&mut self, request_id: Uuid) {
        if self.in_flight == Some(request_id) {
            self.in_flight = None;
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
}
