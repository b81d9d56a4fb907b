//! One idempotent `apply` per input family. Each runs inside the caller's transaction
//! (which also advances the aggregate's checkpoint) and returns the views it touched, so
//! the caller can rewrite exactly those in Redis after the commit.
//!
//! An event that decodes but cannot be applied (it refers to a request, line, product or
//! bill the projection never saw) is an [`ApplyError::Unapplicable`]: the caller parks it.

pub mod inquiries;
pub mod kos;
pub mod product_change;

use chrono::{DateTime, Utc};
use read_model::views::{LineView, ProductRef};
use serde::de::DeserializeOwned;
use serde::Serialize;
use sqlx::PgConnection;

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("cannot be applied: {0}")]
    Unapplicable(String),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

pub(crate) fn to_doc<T: Serialize>(value: &T) -> serde_json::Value {
    serde_json::to_value(value).expect("views serialize")
}

pub(crate) fn from_doc<T: DeserializeOwned>(doc: serde_json::Value) -> Result<T, ApplyError> {
    serde_json::from_value(doc)
        .map_err(|e| ApplyError::Unapplicable(format!("stored view does not read back: {e}")))
}

pub(crate) async fn load_line(
    tx: &mut PgConnection,
    line: &str,
) -> Result<Option<LineView>, ApplyError> {
    let doc: Option<serde_json::Value> =
        sqlx::query_scalar("SELECT doc FROM lines WHERE line_number = $1 FOR UPDATE")
            .bind(line)
            .fetch_optional(&mut *tx)
            .await?;
    doc.map(from_doc).transpose()
}

pub(crate) async fn save_line(tx: &mut PgConnection, view: &LineView) -> Result<(), ApplyError> {
    sqlx::query(
        "INSERT INTO lines (line_number, doc) VALUES ($1, $2)
         ON CONFLICT (line_number) DO UPDATE SET doc = EXCLUDED.doc",
    )
    .bind(&view.line_number)
    .bind(to_doc(view))
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// A product reference; its name is joined in when the view is loaded (so the stored
/// row does not depend on whether the catalog fact came first).
pub(crate) fn product_ref(product_code: &str) -> ProductRef {
    ProductRef {
        product_code: product_code.to_owned(),
        product_name: None,
    }
}

/// Sets the line's current product if `at` is not older than the last setting.
pub(crate) async fn set_product(
    tx: &mut PgConnection,
    line: &mut LineView,
    product_code: &str,
    at: DateTime<Utc>,
) -> Result<(), ApplyError> {
    let last: Option<DateTime<Utc>> =
        sqlx::query_scalar("SELECT product_at FROM lines WHERE line_number = $1")
            .bind(&line.line_number)
            .fetch_optional(&mut *tx)
            .await?
            .flatten();
    if last.is_none_or(|last| last <= at) {
        line.current_product = product_ref(product_code);
        save_line(tx, line).await?;
        sqlx::query("UPDATE lines SET product_at = $2 WHERE line_number = $1")
            .bind(&line.line_number)
            .bind(at)
            .execute(&mut *tx)
            .await?;
    } else {
        save_line(tx, line).await?;
    }
    Ok(())
}
