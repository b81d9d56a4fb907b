//! One idempotent `apply` per input family. Each runs inside the caller's transaction
//! (which also advances the aggregate's checkpoint) and returns the views it touched, so
//! the caller can rewrite exactly those in Redis after the commit.
//!
//! An event that decodes but cannot be applied (it refers to a request, line, product or
//! bill the projection never saw) is an [`ApplyError::Unapplicable`]: the caller parks it.

pub mod inquiries;
pub mod kos;
pub mod product_change;

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

pub(crate) async fn product_ref(
    tx: &mut PgConnection,
    product_code: &str,
) -> Result<ProductRef, ApplyError> {
    let name: Option<String> =
        sqlx::query_scalar("SELECT doc->>'name' FROM products WHERE product_code = $1")
            .bind(product_code)
            .fetch_optional(&mut *tx)
            .await?;
    Ok(ProductRef {
        product_code: product_code.to_owned(),
        product_name: name,
    })
}
