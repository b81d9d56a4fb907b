//! `phonebill.bill-inquiries`: the bill-inquiry history (UFR-BILL-040). Each inquiry is
//! its own one-event aggregate, so the inquiry id alone makes it idempotent.

use events::bill_inquiry::BillInquired;

use super::{ApplyError, Store};

/// Records the inquiry; false when it was already recorded.
pub async fn apply<S: Store>(store: &mut S, e: &BillInquired) -> Result<bool, ApplyError> {
    store.add_inquiry(e).await
}
