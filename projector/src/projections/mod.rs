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
use events::bill_inquiry::BillInquired;
use read_model::views::{BillView, ChangeRequestView, LineView, ProductRef, ProductView};
use serde::de::DeserializeOwned;
use serde::Serialize;
use sqlx::PgConnection;
use uuid::Uuid;

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("cannot be applied: {0}")]
    Unapplicable(String),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

pub fn to_doc<T: Serialize>(value: &T) -> serde_json::Value {
    serde_json::to_value(value).expect("views serialize")
}

pub fn from_doc<T: DeserializeOwned>(doc: serde_json::Value) -> Result<T, ApplyError> {
    serde_json::from_value(doc)
        .map_err(|e| ApplyError::Unapplicable(format!("stored view does not read back: {e}")))
}

/// Where a projection reads and writes its rows. The live projector uses PostgreSQL inside
/// the caller's transaction ([`PgConnection`]: reads lock the row, so two consumers never
/// apply side by side); a replay uses its in-memory write-behind store
/// (`crate::replay::store::MemStore`), being the only writer of its namespace. One
/// `apply` per input family runs over either, so a replay computes exactly what the live
/// projector computes.
#[allow(async_fn_in_trait)] // used with concrete types only, never as `dyn`
pub trait Store {
    async fn line(&mut self, line: &str) -> Result<Option<LineView>, ApplyError>;
    async fn put_line(&mut self, view: &LineView) -> Result<(), ApplyError>;
    /// When the line's current product was last set (see `lines.product_at`).
    async fn product_at(&mut self, line: &str) -> Result<Option<DateTime<Utc>>, ApplyError>;
    /// Sets `product_at` of a stored line (nothing when the line is not stored).
    async fn set_product_at(&mut self, line: &str, at: DateTime<Utc>) -> Result<(), ApplyError>;
    async fn request(&mut self, id: Uuid) -> Result<Option<ChangeRequestView>, ApplyError>;
    async fn put_request(&mut self, view: &ChangeRequestView) -> Result<(), ApplyError>;
    async fn product(&mut self, code: &str) -> Result<Option<ProductView>, ApplyError>;
    async fn put_product(&mut self, view: &ProductView) -> Result<(), ApplyError>;
    async fn bill(&mut self, line: &str, month: &str) -> Result<Option<BillView>, ApplyError>;
    async fn put_bill(&mut self, view: &BillView) -> Result<(), ApplyError>;
    /// Records an inquiry; false when it was already recorded.
    async fn add_inquiry(&mut self, e: &BillInquired) -> Result<bool, ApplyError>;
}

impl Store for PgConnection {
    async fn line(&mut self, line: &str) -> Result<Option<LineView>, ApplyError> {
        // A line is fed by two topics (its facts on `kos.billing`, its changes on
        // `phonebill.product-change`), handled side by side. `FOR UPDATE` cannot lock a
        // row that does not exist yet, so two first events of a line would each create
        // it and the second would overwrite the first: a lock on the line number itself
        // (held to the end of the transaction) orders them. Every write of a line comes
        // after this read in the same transaction.
        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended('phonebill.line/' || $1, 0))")
            .bind(line)
            .execute(&mut *self)
            .await?;
        let doc: Option<serde_json::Value> =
            sqlx::query_scalar("SELECT doc FROM lines WHERE line_number = $1 FOR UPDATE")
                .bind(line)
                .fetch_optional(&mut *self)
                .await?;
        doc.map(from_doc).transpose()
    }

    async fn put_line(&mut self, view: &LineView) -> Result<(), ApplyError> {
        sqlx::query(
            "INSERT INTO lines (line_number, doc) VALUES ($1, $2)
             ON CONFLICT (line_number) DO UPDATE SET doc = EXCLUDED.doc",
        )
        .bind(&view.line_number)
        .bind(to_doc(view))
        .execute(&mut *self)
        .await?;
        Ok(())
    }

    async fn product_at(&mut self, line: &str) -> Result<Option<DateTime<Utc>>, ApplyError> {
        Ok(
            sqlx::query_scalar("SELECT product_at FROM lines WHERE line_number = $1")
                .bind(line)
                .fetch_optional(&mut *self)
                .await?
                .flatten(),
        )
    }

    async fn set_product_at(&mut self, line: &str, at: DateTime<Utc>) -> Result<(), ApplyError> {
        sqlx::query("UPDATE lines SET product_at = $2 WHERE line_number = $1")
            .bind(line)
            .bind(at)
            .execute(&mut *self)
            .await?;
        Ok(())
    }

    async fn request(&mut self, id: Uuid) -> Result<Option<ChangeRequestView>, ApplyError> {
        let doc: Option<serde_json::Value> =
            sqlx::query_scalar("SELECT doc FROM change_requests WHERE request_id = $1 FOR UPDATE")
                .bind(id)
                .fetch_optional(&mut *self)
                .await?;
        doc.map(from_doc).transpose()
    }

    async fn put_request(&mut self, view: &ChangeRequestView) -> Result<(), ApplyError> {
        sqlx::query(
            "INSERT INTO change_requests (request_id, line_number, status, requested_at, doc)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (request_id) DO UPDATE
                SET status = EXCLUDED.status, doc = EXCLUDED.doc",
        )
        .bind(view.request_id)
        .bind(&view.line_number)
        .bind(&view.status)
        .bind(view.requested_at)
        .bind(to_doc(view))
        .execute(&mut *self)
        .await?;
        Ok(())
    }

    async fn product(&mut self, code: &str) -> Result<Option<ProductView>, ApplyError> {
        let doc: Option<serde_json::Value> =
            sqlx::query_scalar("SELECT doc FROM products WHERE product_code = $1 FOR UPDATE")
                .bind(code)
                .fetch_optional(&mut *self)
                .await?;
        doc.map(from_doc).transpose()
    }

    async fn put_product(&mut self, view: &ProductView) -> Result<(), ApplyError> {
        sqlx::query(
            "INSERT INTO products (product_code, operator, on_sale, doc) VALUES ($1, $2, $3, $4)
             ON CONFLICT (product_code) DO UPDATE
                SET operator = EXCLUDED.operator, on_sale = EXCLUDED.on_sale, doc = EXCLUDED.doc",
        )
        .bind(&view.product_code)
        .bind(&view.operator)
        .bind(view.on_sale)
        .bind(to_doc(view))
        .execute(&mut *self)
        .await?;
        Ok(())
    }

    async fn bill(&mut self, line: &str, month: &str) -> Result<Option<BillView>, ApplyError> {
        let doc: Option<serde_json::Value> = sqlx::query_scalar(
            "SELECT doc FROM bills WHERE line_number = $1 AND month = $2 FOR UPDATE",
        )
        .bind(line)
        .bind(month)
        .fetch_optional(&mut *self)
        .await?;
        doc.map(from_doc).transpose()
    }

    async fn put_bill(&mut self, view: &BillView) -> Result<(), ApplyError> {
        sqlx::query(
            "INSERT INTO bills (line_number, month, doc) VALUES ($1, $2, $3)
             ON CONFLICT (line_number, month) DO UPDATE SET doc = EXCLUDED.doc",
        )
        .bind(&view.line_number)
        .bind(&view.month)
        .bind(to_doc(view))
        .execute(&mut *self)
        .await?;
        Ok(())
    }

    async fn add_inquiry(&mut self, e: &BillInquired) -> Result<bool, ApplyError> {
        Ok(!inquiries::record_all(self, &[e]).await?.is_empty())
    }
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
pub(crate) async fn set_product<S: Store>(
    store: &mut S,
    line: &mut LineView,
    product_code: &str,
    at: DateTime<Utc>,
) -> Result<(), ApplyError> {
    let last = store.product_at(&line.line_number).await?;
    if last.is_none_or(|last| last <= at) {
        line.current_product = product_ref(product_code);
        store.put_line(line).await?;
        store.set_product_at(&line.line_number, at).await?;
    } else {
        store.put_line(line).await?;
    }
    Ok(())
}
