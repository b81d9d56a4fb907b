//! `phonebill.product-change` (the line aggregate's stream): change requests, the line
//! summary's pending change and current product, and the change history.

use events::product_change::{
    FailureReason, ProductChangeCompleted, ProductChangeEvent, ProductChangeFailed,
    ProductChangeLateAnswerRecorded, ProductChangeRejected, ProductChangeRequested,
    ProductChangeSentToKos,
};
use read_model::keys::View;
use read_model::views::{ChangeRequestView, LateAnswerView, LineView, PendingChange};
use uuid::Uuid;

use events::Envelope;

use super::{product_ref, set_product, ApplyError, Store};

/// The views an event of `line` can touch (also rewritten for duplicates, which repairs
/// a Redis write lost between a commit and a crash). The position goes last.
pub fn views_of(line: &str, event: &ProductChangeEvent) -> Vec<View> {
    vec![
        View::Request {
            id: event.request_id(),
        },
        View::History {
            line: line.to_owned(),
        },
        View::Line {
            line: line.to_owned(),
        },
        View::Position {
            line: line.to_owned(),
        },
    ]
}

pub async fn apply<S: Store>(
    tx: &mut S,
    envelope: &Envelope,
    event: &ProductChangeEvent,
) -> Result<(), ApplyError> {
    match event {
        ProductChangeEvent::ProductChangeRequested(e) => requested(tx, e).await,
        ProductChangeEvent::ProductChangeRejected(e) => rejected(tx, e).await,
        ProductChangeEvent::ProductChangeSentToKos(e) => sent_to_kos(tx, e).await,
        ProductChangeEvent::ProductChangeCompleted(e) => completed(tx, envelope, e).await,
        ProductChangeEvent::ProductChangeFailed(e) => failed(tx, e).await,
        ProductChangeEvent::ProductChangeLateAnswerRecorded(e) => late_answer_recorded(tx, e).await,
    }
}

/// A validated request: the request's view, and the line's pending change (the line as
/// the request knew it, if the projector has not seen it yet).
async fn requested<S: Store>(tx: &mut S, e: &ProductChangeRequested) -> Result<(), ApplyError> {
    let line = match tx.line(&e.line_number).await? {
        Some(line) => line,
        None => LineView {
            line_number: e.line_number.clone(),
            customer_id: e.customer_id.clone(),
            customer_name: None,
            operator: e.operator.clone(),
            status: "UNKNOWN".into(),
            suspension_reason: None,
            current_product: product_ref(&e.current_product_code),
            contract: None,
            pending_change: None,
            registered: false,
        },
    };
    let line = LineView {
        pending_change: Some(PendingChange {
            request_id: e.request_id,
            target_product_code: e.target_product_code.clone(),
            status: "VALIDATED".into(),
            requested_at: e.requested_at,
        }),
        ..line
    };
    tx.put_line(&line).await?;
    tx.put_request(&ChangeRequestView {
        request_id: e.request_id,
        line_number: e.line_number.clone(),
        status: "VALIDATED".into(),
        current_product_code: e.current_product_code.clone(),
        target_product_code: e.target_product_code.clone(),
        new_product_code: None,
        message: None,
        failure_reason: None,
        kos_reason_code: None,
        kos_order_id: None,
        failed_checks: vec![],
        requested_at: e.requested_at,
        sent_at: None,
        completed_at: None,
        failed_at: None,
        updated_at: e.requested_at,
        late_answer: None,
    })
    .await
}

/// A request refused by the pre-checks: a failed request, the line untouched.
async fn rejected<S: Store>(tx: &mut S, e: &ProductChangeRejected) -> Result<(), ApplyError> {
    let message = e
        .failed_checks
        .iter()
        .map(|c| c.message.as_str())
        .collect::<Vec<_>>()
        .join("; ");
    tx.put_request(&ChangeRequestView {
        request_id: e.request_id,
        line_number: e.line_number.clone(),
        status: "FAILED".into(),
        current_product_code: e.current_product_code.clone(),
        target_product_code: e.target_product_code.clone(),
        new_product_code: None,
        message: Some(message),
        failure_reason: Some("PRECHECK_FAILED".into()),
        kos_reason_code: None,
        kos_order_id: None,
        failed_checks: e
            .failed_checks
            .iter()
            .map(|c| c.check.code().to_owned())
            .collect(),
        requested_at: e.requested_at,
        sent_at: None,
        completed_at: None,
        failed_at: Some(e.requested_at),
        updated_at: e.requested_at,
        late_answer: None,
    })
    .await
}

/// Sent to KOS: the request and the line's pending change are processing.
async fn sent_to_kos<S: Store>(tx: &mut S, e: &ProductChangeSentToKos) -> Result<(), ApplyError> {
    let mut request = known_request(tx, e.request_id).await?;
    request.status = "PROCESSING".into();
    request.sent_at = Some(e.sent_at);
    request.updated_at = e.sent_at;
    tx.put_request(&request).await?;
    update_pending(tx, &e.line_number, e.request_id, |line| {
        if let Some(p) = line.pending_change.as_mut() {
            p.status = "PROCESSING".into();
        }
    })
    .await
}

/// KOS changed the product: the request completes, the line's pending change (if this
/// one) ends and its current product is the new one.
async fn completed<S: Store>(
    tx: &mut S,
    envelope: &Envelope,
    e: &ProductChangeCompleted,
) -> Result<(), ApplyError> {
    let mut request = known_request(tx, e.request_id).await?;
    request.status = "COMPLETED".into();
    request.new_product_code = Some(e.new_product_code.clone());
    request.message = Some(e.message.clone());
    request.kos_order_id = Some(e.kos_order_id.clone());
    request.completed_at = Some(e.completed_at);
    request.updated_at = e.completed_at;
    tx.put_request(&request).await?;
    if let Some(mut line) = tx.line(&e.line_number).await? {
        if line.pending_change.as_ref().map(|p| p.request_id) == Some(e.request_id) {
            line.pending_change = None;
        }
        set_product(tx, &mut line, &e.new_product_code, envelope.occurred_at).await?;
    }
    Ok(())
}

/// KOS refused or did not answer in time: the request fails, the line's pending change
/// ends.
async fn failed<S: Store>(tx: &mut S, e: &ProductChangeFailed) -> Result<(), ApplyError> {
    let mut request = known_request(tx, e.request_id).await?;
    request.status = "FAILED".into();
    request.failure_reason = Some(
        match e.reason_code {
            FailureReason::KosRejected => "KOS_REJECTED",
            FailureReason::Timeout => "TIMEOUT",
        }
        .into(),
    );
    request.kos_reason_code = e.kos_reason_code.clone();
    request.kos_order_id = e.kos_order_id.clone();
    request.message = Some(e.reason.clone());
    request.failed_at = Some(e.failed_at);
    request.updated_at = e.failed_at;
    tx.put_request(&request).await?;
    update_pending(tx, &e.line_number, e.request_id, |line| {
        line.pending_change = None
    })
    .await
}

/// KOS answered after the request had timed out: recorded on the request.
async fn late_answer_recorded<S: Store>(
    tx: &mut S,
    e: &ProductChangeLateAnswerRecorded,
) -> Result<(), ApplyError> {
    let mut request = known_request(tx, e.request_id).await?;
    request.late_answer = Some(LateAnswerView {
        executed: e.executed,
        kos_order_id: e.kos_order_id.clone(),
        new_product_code: e.new_product_code.clone(),
        message: e.message.clone(),
        answered_at: e.answered_at,
    });
    request.updated_at = e.answered_at;
    tx.put_request(&request).await
}

async fn known_request<S: Store>(
    tx: &mut S,
    request_id: Uuid,
) -> Result<ChangeRequestView, ApplyError> {
    match tx.request(request_id).await? {
        Some(view) => Ok(view),
        None => Err(ApplyError::Unapplicable(format!(
            "request {request_id} was never requested"
        ))),
    }
}

/// Changes the line's pending change if it is this request's.
async fn update_pending<S: Store>(
    tx: &mut S,
    line: &str,
    request_id: Uuid,
    change: impl FnOnce(&mut LineView),
) -> Result<(), ApplyError> {
    if let Some(mut view) = tx.line(line).await? {
        if view.pending_change.as_ref().map(|p| p.request_id) == Some(request_id) {
            change(&mut view);
            tx.put_line(&view).await?;
        }
    }
    Ok(())
}
