//! The bill-inquiry history as read from its read table (`bill_inquiries`, written by the
//! projector). Append-only and rarely read, so it is not cached as a view.

use read_model::views::InquiryView;
use sqlx::PgPool;

/// One page of a line's inquiries, newest first, and how many the line has in all.
pub async fn page(
    pool: &PgPool,
    line: &str,
    page: usize,
    size: usize,
) -> Result<(Vec<InquiryView>, usize), sqlx::Error> {
    let total: i64 =
        sqlx::query_scalar("SELECT count(*) FROM bill_inquiries WHERE line_number = $1")
            .bind(line)
            .fetch_one(pool)
            .await?;
    let items: Vec<InquiryView> = sqlx::query_as(
        "SELECT inquiry_id, line_number, month, result, inquired_at FROM bill_inquiries
          WHERE line_number = $1 ORDER BY inquired_at DESC, inquiry_id LIMIT $2 OFFSET $3",
    )
    .bind(line)
    .bind(size as i64)
    .bind((page * size) as i64)
    .fetch_all(pool)
    .await?;
    Ok((items, total as usize))
}
