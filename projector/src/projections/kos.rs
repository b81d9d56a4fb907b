//! `kos.billing`: the catalog (products on sale per operator), KOS's view of each line
//! (customer, status, product, contract) and the bills.

use events::kos::{self, KosFact};
use read_model::keys::View;
use read_model::views::{BillView, ContractView, LineView, ProductView};

use events::Envelope;

use super::{product_ref, set_product, ApplyError, Store};

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
pub async fn apply<S: Store>(
    tx: &mut S,
    envelope: &Envelope,
    fact: &KosFact,
) -> Result<Vec<View>, ApplyError> {
    match fact {
        KosFact::ProductPublished(f) => product_published(tx, f).await,
        KosFact::ProductWithdrawn(f) => {
            let mut product = known_product(tx, &f.product_code).await?;
            product.on_sale = false;
            tx.put_product(&product).await?;
            Ok(vec![])
        }
        KosFact::ProductRepriced(f) => {
            let mut product = known_product(tx, &f.product_code).await?;
            product.monthly_fee = f.monthly_fee;
            tx.put_product(&product).await?;
            Ok(vec![])
        }
        KosFact::LineRegistered(f) => {
            line_registered(tx, envelope, f).await?;
            Ok(vec![])
        }
        KosFact::LineSuspended(f) => {
            let mut line = registered_line(tx, &f.line_number).await?;
            line.status = "SUSPENDED".into();
            line.suspension_reason = Some(f.reason.clone());
            tx.put_line(&line).await?;
            Ok(vec![])
        }
        KosFact::LineResumed(f) => {
            let mut line = registered_line(tx, &f.line_number).await?;
            line.status = "ACTIVE".into();
            line.suspension_reason = None;
            tx.put_line(&line).await?;
            Ok(vec![])
        }
        KosFact::LineProductChanged(f) => {
            let mut line = registered_line(tx, &f.line_number).await?;
            set_product(tx, &mut line, &f.new_product_code, envelope.occurred_at).await?;
            Ok(vec![])
        }
        KosFact::BillIssued(f) => {
            tx.put_bill(&BillView::from(f)).await?;
            Ok(vec![])
        }
        KosFact::PaymentRecorded(f) => {
            payment_recorded(tx, f).await?;
            Ok(vec![])
        }
    }
}

/// A product on sale (or its new details); returns the old operator's list when the
/// product moved to another operator.
async fn product_published<S: Store>(
    tx: &mut S,
    f: &kos::ProductPublished,
) -> Result<Vec<View>, ApplyError> {
    let previous = tx.product(&f.product_code).await?.map(|p| p.operator);
    tx.put_product(&ProductView {
        product_code: f.product_code.clone(),
        name: f.name.clone(),
        operator: f.operator.clone(),
        monthly_fee: f.monthly_fee,
        data_mb: f.data_mb,
        voice_minutes: f.voice_minutes,
        sms_count: f.sms_count,
        on_sale: f.on_sale,
    })
    .await?;
    Ok(previous
        .filter(|op| op != &f.operator)
        .map(|operator| vec![View::Products { operator }])
        .unwrap_or_default())
}

/// KOS's view of a line: customer, status, contract and product (a pending change the
/// line already had is kept).
async fn line_registered<S: Store>(
    tx: &mut S,
    envelope: &Envelope,
    f: &kos::LineRegistered,
) -> Result<(), ApplyError> {
    let existing = tx.line(&f.line_number).await?;
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
    Ok(())
}

/// A bill paid: the bill's payment status, method, time and amount.
async fn payment_recorded<S: Store>(
    tx: &mut S,
    f: &kos::PaymentRecorded,
) -> Result<(), ApplyError> {
    let Some(mut bill) = tx.bill(&f.line_number, &f.month).await? else {
        return Err(ApplyError::Unapplicable(format!(
            "no bill of {} for {}",
            f.month, f.line_number
        )));
    };
    bill.billing.payment_status = "PAID".into();
    bill.billing.payment_method = f.payment_method.clone();
    bill.billing.paid_at = Some(f.paid_at);
    bill.billing.paid_amount = Some(f.amount);
    tx.put_bill(&bill).await?;
    Ok(())
}

async fn known_product<S: Store>(tx: &mut S, code: &str) -> Result<ProductView, ApplyError> {
    match tx.product(code).await? {
        Some(view) => Ok(view),
        None => Err(ApplyError::Unapplicable(format!(
            "product {code} was never published"
        ))),
    }
}

async fn registered_line<S: Store>(tx: &mut S, line: &str) -> Result<LineView, ApplyError> {
    match tx.line(line).await? {
        Some(view) if view.registered => Ok(view),
        _ => Err(ApplyError::Unapplicable(format!(
            "line {line} was never registered by KOS"
        ))),
    }
}
