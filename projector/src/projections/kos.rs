//! `kos.billing`: the catalog (products on sale per operator), KOS's view of each line
//! (customer, status, product, contract) and the bills.

use events::kos::KosFact;
use read_model::keys::View;
use read_model::views::{BillView, ContractView, LineView, ProductView};
use sqlx::PgConnection;

use events::Envelope;

use super::{from_doc, load_line, product_ref, save_line, set_product, to_doc, ApplyError};

/// The views a fact can touch, whatever the stored state (rewritten for duplicates too).
pub fn views_of(fact: &KosFact) -> Vec<View> {
    match fact {
        KosFact::ProductPublished(f) => vec![View::Products {
            operator: f.operator.clone(),
        }],
        KosFact::ProductWithdrawn(f) => vec![View::Products {
            operator: f.operator.clone(),
        }],
        KosFact::ProductRepriced(f) => vec![View::Products {
            operator: f.operator.clone(),
        }],
        KosFact::LineRegistered(_)
        | KosFact::LineSuspended(_)
        | KosFact::LineResumed(_)
        | KosFact::LineProductChanged(_) => vec![View::Line {
            line: fact.aggregate_id().to_owned(),
        }],
        KosFact::BillIssued(f) => vec![
            View::Bill {
                line: f.line_number.clone(),
                month: f.month.clone(),
            },
            View::Months {
                line: f.line_number.clone(),
            },
        ],
        KosFact::PaymentRecorded(f) => vec![View::Bill {
            line: f.line_number.clone(),
            month: f.month.clone(),
        }],
    }
}

/// Applies a fact; returns views touched beyond [`views_of`] (a product that moved to
/// another operator leaves the old operator's list).
pub async fn apply(
    tx: &mut PgConnection,
    envelope: &Envelope,
    fact: &KosFact,
) -> Result<Vec<View>, ApplyError> {
    match fact {
        KosFact::ProductPublished(f) => {
            let previous: Option<String> = sqlx::query_scalar(
                "SELECT operator FROM products WHERE product_code = $1 FOR UPDATE",
            )
            .bind(&f.product_code)
            .fetch_optional(&mut *tx)
            .await?;
            save_product(
                tx,
                &ProductView {
                    product_code: f.product_code.clone(),
                    name: f.name.clone(),
                    operator: f.operator.clone(),
                    monthly_fee: f.monthly_fee,
                    data_mb: f.data_mb,
                    voice_minutes: f.voice_minutes,
                    sms_count: f.sms_count,
                    on_sale: f.on_sale,
                },
            )
            .await?;
            Ok(previous
                .filter(|op| op != &f.operator)
                .map(|operator| vec![View::Products { operator }])
                .unwrap_or_default())
        }
        KosFact::ProductWithdrawn(f) => {
            let mut product = known_product(tx, &f.product_code).await?;
            product.on_sale = false;
            save_product(tx, &product).await?;
            Ok(vec![])
        }
        KosFact::ProductRepriced(f) => {
            let mut product = known_product(tx, &f.product_code).await?;
            product.monthly_fee = f.monthly_fee;
            save_product(tx, &product).await?;
            Ok(vec![])
        }
        KosFact::LineRegistered(f) => {
            let existing = load_line(tx, &f.line_number).await?;
            let pending = existing.as_ref().and_then(|l| l.pending_change.clone());
            let current = existing
                .map(|l| l.current_product)
                .unwrap_or_else(|| product_ref(&f.product_code));
            let mut view = LineView {
                line_number: f.line_number.clone(),
                customer_id: f.customer_id.clone(),
                customer_name: Some(f.customer_name.clone()),
                operator: f.operator.clone(),
                status: f.status.as_str().to_owned(),
                suspension_reason: None,
                current_product: current,
                contract: Some(ContractView::from(&f.contract)),
                pending_change: pending,
                registered: true,
            };
            set_product(tx, &mut view, &f.product_code, envelope.occurred_at).await?;
            Ok(vec![])
        }
        KosFact::LineSuspended(f) => {
            let mut line = registered_line(tx, &f.line_number).await?;
            line.status = "SUSPENDED".into();
            line.suspension_reason = Some(f.reason.clone());
            save_line(tx, &line).await?;
            Ok(vec![])
        }
        KosFact::LineResumed(f) => {
            let mut line = registered_line(tx, &f.line_number).await?;
            line.status = "ACTIVE".into();
            line.suspension_reason = None;
            save_line(tx, &line).await?;
            Ok(vec![])
        }
        KosFact::LineProductChanged(f) => {
            let mut line = registered_line(tx, &f.line_number).await?;
            set_product(tx, &mut line, &f.new_product_code, envelope.occurred_at).await?;
            Ok(vec![])
        }
        KosFact::BillIssued(f) => {
            let view = BillView::from(f);
            sqlx::query(
                "INSERT INTO bills (line_number, month, doc) VALUES ($1, $2, $3)
                 ON CONFLICT (line_number, month) DO UPDATE SET doc = EXCLUDED.doc",
            )
            .bind(&f.line_number)
            .bind(&f.month)
            .bind(to_doc(&view))
            .execute(&mut *tx)
            .await?;
            Ok(vec![])
        }
        KosFact::PaymentRecorded(f) => {
            let doc: Option<serde_json::Value> = sqlx::query_scalar(
                "SELECT doc FROM bills WHERE line_number = $1 AND month = $2 FOR UPDATE",
            )
            .bind(&f.line_number)
            .bind(&f.month)
            .fetch_optional(&mut *tx)
            .await?;
            let Some(doc) = doc else {
                return Err(ApplyError::Unapplicable(format!(
                    "no bill of {} for {}",
                    f.month, f.line_number
                )));
            };
            let mut bill: BillView = from_doc(doc)?;
            bill.billing.payment_status = "PAID".into();
            bill.billing.payment_method = f.payment_method.clone();
            bill.billing.paid_at = Some(f.paid_at);
            bill.billing.paid_amount = Some(f.amount);
            sqlx::query("UPDATE bills SET doc = $3 WHERE line_number = $1 AND month = $2")
                .bind(&f.line_number)
                .bind(&f.month)
                .bind(to_doc(&bill))
                .execute(&mut *tx)
                .await?;
            Ok(vec![])
        }
    }
}

async fn known_product(tx: &mut PgConnection, code: &str) -> Result<ProductView, ApplyError> {
    let doc: Option<serde_json::Value> =
        sqlx::query_scalar("SELECT doc FROM products WHERE product_code = $1 FOR UPDATE")
            .bind(code)
            .fetch_optional(&mut *tx)
            .await?;
    match doc {
        Some(doc) => from_doc(doc),
        None => Err(ApplyError::Unapplicable(format!(
            "product {code} was never published"
        ))),
    }
}

async fn save_product(tx: &mut PgConnection, view: &ProductView) -> Result<(), ApplyError> {
    sqlx::query(
        "INSERT INTO products (product_code, operator, on_sale, doc) VALUES ($1, $2, $3, $4)
         ON CONFLICT (product_code) DO UPDATE
            SET operator = EXCLUDED.operator, on_sale = EXCLUDED.on_sale, doc = EXCLUDED.doc",
    )
    .bind(&view.product_code)
    .bind(&view.operator)
    .bind(view.on_sale)
    .bind(to_doc(view))
    .execute(&mut *tx)
    .await?;
    Ok(())
}

async fn registered_line(tx: &mut PgConnection, line: &str) -> Result<LineView, ApplyError> {
    match load_line(tx, line).await? {
        Some(view) if view.registered => Ok(view),
        _ => Err(ApplyError::Unapplicable(format!(
            "line {line} was never registered by KOS"
        ))),
    }
}
