use chrono::{DateTime, Utc};
use events::kos::KosResult;
use uuid::Uuid;

use crate::domain::product_change::ChangeRequest;
use crate::domain::reference::{LineFacts, ProductFacts};

/// Commands the line aggregate accepts.
#[derive(Debug, Clone, PartialEq)]
pub enum LineCommand {
    RequestProductChange(RequestProductChange),
    /// KOS answered a request (from `kos.product-change-results`).
    RecordKosResult {
        result: KosResult,
        received_at: DateTime<Utc>,
    },
    /// The timeout sweeper found the request's `answer_by` passed.
    TimeOut {
        request_id: Uuid,
        line_number: String,
        now: DateTime<Utc>,
    },
}

/// A customer asks to move the line to another product. The handler loaded the reference
/// facts the pre-checks need, so the aggregate decides without I/O.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestProductChange {
    pub request_id: Uuid,
    pub request: ChangeRequest,
    pub requested_at: DateTime<Utc>,
    /// When the line gives up waiting for KOS (see `ProductChangeSentToKos::answer_by`).
    pub answer_by: DateTime<Utc>,
    pub line: LineFacts,
    pub target: Option<ProductFacts>,
}
