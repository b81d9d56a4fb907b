//! Events of the line aggregate about product changes (topic `phonebill.product-change`).
//!
//! Life of a request: `ProductChangeRequested` (pre-checks passed) and
//! `ProductChangeSentToKos` (handed to KOS) are committed together; KOS answers and the
//! line records `ProductChangeCompleted` or `ProductChangeFailed`. A request that fails
//! its pre-checks records only `ProductChangeRejected` and never reaches KOS. A request
//! KOS does not answer by `answer_by` fails with reason TIMEOUT; an answer that arrives
//! after that is kept as `ProductChangeLateAnswerRecorded` and changes no outcome.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Every event of the line aggregate. Stored externally tagged in the event store; on the
/// wire the tag becomes the envelope's `event_type` and the body its `payload`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ProductChangeEvent {
    ProductChangeRequested(ProductChangeRequested),
    ProductChangeRejected(ProductChangeRejected),
    ProductChangeSentToKos(ProductChangeSentToKos),
    ProductChangeCompleted(ProductChangeCompleted),
    ProductChangeFailed(ProductChangeFailed),
    ProductChangeLateAnswerRecorded(ProductChangeLateAnswerRecorded),
}

crate::event_family!(ProductChangeEvent {
    ProductChangeRequested(ProductChangeRequested) = ("ProductChangeRequested", 1),
    ProductChangeRejected(ProductChangeRejected) = ("ProductChangeRejected", 1),
    ProductChangeSentToKos(ProductChangeSentToKos) = ("ProductChangeSentToKos", 1),
    ProductChangeCompleted(ProductChangeCompleted) = ("ProductChangeCompleted", 1),
    ProductChangeFailed(ProductChangeFailed) = ("ProductChangeFailed", 1),
    ProductChangeLateAnswerRecorded(ProductChangeLateAnswerRecorded) =
        ("ProductChangeLateAnswerRecorded", 1),
});

impl ProductChangeEvent {
    pub fn request_id(&self) -> Uuid {
        match self {
            Self::ProductChangeRequested(e) => e.request_id,
            Self::ProductChangeRejected(e) => e.request_id,
            Self::ProductChangeSentToKos(e) => e.request_id,
            Self::ProductChangeCompleted(e) => e.request_id,
            Self::ProductChangeFailed(e) => e.request_id,
            Self::ProductChangeLateAnswerRecorded(e) => e.request_id,
        }
    }
}

/// A customer's request passed every pre-check (status VALIDATED).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProductChangeRequested {
    pub request_id: Uuid,
    pub line_number: String,
    pub customer_id: String,
    pub operator: String,
    pub current_product_code: String,
    pub target_product_code: String,
    pub requested_at: DateTime<Utc>,
}

/// A request failed one or more pre-checks; kept for audit, never sent to KOS.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProductChangeRejected {
    pub request_id: Uuid,
    pub line_number: String,
    pub current_product_code: String,
    pub target_product_code: String,
    pub failed_checks: Vec<FailedCheck>,
    pub requested_at: DateTime<Utc>,
}

/// The change was handed to KOS (status PROCESSING). This is the message KOS acts on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProductChangeSentToKos {
    pub request_id: Uuid,
    pub line_number: String,
    pub customer_id: String,
    pub current_product_code: String,
    pub target_product_code: String,
    pub sent_at: DateTime<Utc>,
    /// KOS must not carry the change out after this instant: by then the line has
    /// recorded the request as failed with reason TIMEOUT.
    pub answer_by: DateTime<Utc>,
}

/// KOS carried the change out (status COMPLETED).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProductChangeCompleted {
    pub request_id: Uuid,
    pub line_number: String,
    pub kos_order_id: String,
    pub previous_product_code: String,
    pub new_product_code: String,
    pub message: String,
    pub completed_at: DateTime<Utc>,
}

/// The change did not happen (status FAILED): KOS refused it or never answered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProductChangeFailed {
    pub request_id: Uuid,
    pub line_number: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kos_order_id: Option<String>,
    pub reason_code: FailureReason,
    /// KOS's own reason code when KOS refused (e.g. `LINE_SUSPENDED`, `SYSTEM_ERROR`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kos_reason_code: Option<String>,
    pub reason: String,
    pub failed_at: DateTime<Utc>,
}

/// KOS answered a request after the line had already failed it with TIMEOUT. Kept for
/// audit (an operator may have to reconcile a change KOS did carry out); the request's
/// outcome stays FAILED.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProductChangeLateAnswerRecorded {
    pub request_id: Uuid,
    pub line_number: String,
    pub kos_order_id: String,
    /// True when KOS reports it carried the change out.
    pub executed: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_product_code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kos_reason_code: Option<String>,
    pub message: String,
    pub answered_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum FailureReason {
    /// KOS answered and refused the change.
    KosRejected,
    /// KOS did not answer within the configured time.
    Timeout,
}

/// One pre-check that a request did not pass.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FailedCheck {
    pub check: Precheck,
    pub message: String,
}

/// The pre-checks of UFR-PROD-030 and the consistency checks around them. The wire names
/// are stable codes that clients may match on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Precheck {
    /// The target product exists and is currently on sale.
    TargetOnSale,
    /// The target product is sold by the line's operator.
    SameOperator,
    /// The line is active (not suspended).
    LineActive,
    /// The target differs from the line's current product.
    TargetDiffers,
    /// The current product named in the request is the line's.
    CurrentProductMatches,
    /// No other change is in flight for the line.
    NoChangeInFlight,
}

impl Precheck {
    pub const ALL: [Precheck; 6] = [
        Precheck::TargetOnSale,
        Precheck::SameOperator,
        Precheck::LineActive,
        Precheck::TargetDiffers,
        Precheck::CurrentProductMatches,
        Precheck::NoChangeInFlight,
    ];

    pub fn code(self) -> &'static str {
        match self {
            Precheck::TargetOnSale => "TARGET_ON_SALE",
            Precheck::SameOperator => "SAME_OPERATOR",
            Precheck::LineActive => "LINE_ACTIVE",
            Precheck::TargetDiffers => "TARGET_DIFFERS",
            Precheck::CurrentProductMatches => "CURRENT_PRODUCT_MATCHES",
            Precheck::NoChangeInFlight => "NO_CHANGE_IN_FLIGHT",
        }
    }
}

#[cfg(feature = "cqrs")]
impl cqrs_es::DomainEvent for ProductChangeEvent {
    fn event_type(&self) -> String {
        crate::EventPayload::event_type(self).to_owned()
    }

    fn event_version(&self) -> String {
        crate::EventPayload::event_version(self).to_string()
    }
}
