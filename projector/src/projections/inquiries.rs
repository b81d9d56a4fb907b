//! `phonebill.bill-inquiries`: the bill-inquiry history (UFR-BILL-040). Each inquiry is
//! its own one-event aggregate, so the inquiry id alone makes it idempotent.

use std::collections::HashSet;

use events::bill_inquiry::BillInquired;
use sqlx::PgConnection;
use uuid::Uuid;

use super::{ApplyError, Store};

/// Records the inquiry; false when it was already recorded.
pub async fn apply<S: Store>(store: &mut S, e: &BillInquired) -> Result<bool, ApplyError> {
    store.add_inquiry(e).await
}

/// Inserts inquiries in one statement (the live projector records a partition's queued
/// inquiries together; a replay flushes thousands); returns the ids not recorded before.
pub async fn record_all(
    conn: &mut PgConnection,
    inquiries: &[&BillInquired],
) -> Result<HashSet<Uuid>, sqlx::Error> {
    let column =
        |f: &dyn Fn(&BillInquired) -> String| inquiries.iter().map(|e| f(e)).collect::<Vec<_>>();
    let ids: Vec<Uuid> = sqlx::query_scalar(
        "INSERT INTO bill_inquiries (inquiry_id, line_number, month, result, inquired_at)
         SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::text[], $5::timestamptz[])
         ON CONFLICT (inquiry_id) DO NOTHING
         RETURNING inquiry_id",
    )
    .bind(inquiries.iter().map(|e| e.inquiry_id).collect::<Vec<_>>())
    .bind(column(&|e| e.line_number.clone()))
    .bind(column(&|e| e.month.clone()))
    .bind(column(&|e| e.result.as_str().to_owned()))
    .bind(inquiries.iter().map(|e| e.inquired_at).collect::<Vec<_>>())
    .fetch_all(conn)
    .await?;
    Ok(ids.into_iter().collect())
}
