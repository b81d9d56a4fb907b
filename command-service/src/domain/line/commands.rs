use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::domain::product_change::ChangeRequest;
use crate::domain::reference::{LineFacts, ProductFacts};

/// Commands the line aggregate accepts.
#[derive(Debug, Clone, PartialEq)]
pub enum LineCommand {
    RequestProductChange(RequestProductChange),
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
