//! `phonebill.bill-inquiries`: the bill-inquiry history (UFR-BILL-040). Each inquiry is
//! its own one-event aggregate, so the inquiry id alone makes it idempotent.

use events::bill_inquiry::BillInquired;
use sqlx::PgConnection;

use super::ApplyError;

/// Records the inquiry; false when it was already recorded.
pub async fn apply(tx: &mut PgConnection, e: &BillInquired) -> Result<bool, ApplyError> {
    let done = sqlx::query(
        "INSERT INTO bill_inquiries (inquiry_id, line_number, month, result, inquired_at)
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (inquiry_id) DO NOTHING",
    )
    .bind(e.inquiry_id)
    .bind(&e.line_number)
    .bind(&e.month)
    .bind(e.result.as_str())
    .bind(e.inquired_at)
    .execute(&mut *tx)
    .await?;
    Ok(done.rows_affected() == 1)
}
