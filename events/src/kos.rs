//! What KOS, the carrier's back office, publishes.
//!
//! - [`KosFact`] on `kos.billing`: catalog, line and bill facts. Product facts have the
//!   product code as aggregate id; line, bill and payment facts the line number, with one
//!   sequence per line, so a consumer applies a line's facts in order and drops repeats.
//!   The command side builds its pre-check reference data from them; the projector
//!   builds the bill views.
//! - [`KosResult`] on `kos.product-change-results`: KOS's answer to a
//!   `ProductChangeSentToKos`, one per request (aggregate id = KOS order id, sequence 1,
//!   key = line number). KOS answers a redelivered request with the same result.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum KosFact {
    ProductPublished(ProductPublished),
    ProductWithdrawn(ProductWithdrawn),
    ProductRepriced(ProductRepriced),
    LineRegistered(LineRegistered),
    LineSuspended(LineSuspended),
    LineResumed(LineResumed),
    LineProductChanged(LineProductChanged),
    BillIssued(BillIssued),
    PaymentRecorded(PaymentRecorded),
}

crate::event_family!(KosFact {
    ProductPublished(ProductPublished) = ("ProductPublished", 1),
    ProductWithdrawn(ProductWithdrawn) = ("ProductWithdrawn", 1),
    ProductRepriced(ProductRepriced) = ("ProductRepriced", 1),
    LineRegistered(LineRegistered) = ("LineRegistered", 1),
    LineSuspended(LineSuspended) = ("LineSuspended", 1),
    LineResumed(LineResumed) = ("LineResumed", 1),
    LineProductChanged(LineProductChanged) = ("LineProductChanged", 1),
    BillIssued(BillIssued) = ("BillIssued", 1),
    PaymentRecorded(PaymentRecorded) = ("PaymentRecorded", 1),
});

/// Aggregate type names KOS facts are stamped with (for [`crate::event_id_for`]).
pub const PRODUCT_AGGREGATE: &str = "KosProduct";
pub const LINE_AGGREGATE: &str = "KosLine";
pub const ORDER_AGGREGATE: &str = "KosOrder";

impl KosFact {
    /// The aggregate the fact belongs to: the product code or the line number. It is also
    /// the message key.
    pub fn aggregate_id(&self) -> &str {
        match self {
            KosFact::ProductPublished(f) => &f.product_code,
            KosFact::ProductWithdrawn(f) => &f.product_code,
            KosFact::ProductRepriced(f) => &f.product_code,
            KosFact::LineRegistered(f) => &f.line_number,
            KosFact::LineSuspended(f) => &f.line_number,
            KosFact::LineResumed(f) => &f.line_number,
            KosFact::LineProductChanged(f) => &f.line_number,
            KosFact::BillIssued(f) => &f.line_number,
            KosFact::PaymentRecorded(f) => &f.line_number,
        }
    }

    pub fn aggregate_type(&self) -> &'static str {
        match self {
            KosFact::ProductPublished(_)
            | KosFact::ProductWithdrawn(_)
            | KosFact::ProductRepriced(_) => PRODUCT_AGGREGATE,
            _ => LINE_AGGREGATE,
        }
    }
}

/// A product in the catalog (new, or its full current state).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProductPublished {
    pub product_code: String,
    pub name: String,
    pub operator: String,
    /// Monthly fee in won.
    pub monthly_fee: i64,
    /// Data allowance in MB; `None` means unlimited.
    pub data_mb: Option<i64>,
    /// Voice allowance in minutes; `None` means unlimited.
    pub voice_minutes: Option<i64>,
    /// SMS allowance; `None` means unlimited.
    pub sms_count: Option<i64>,
    pub on_sale: bool,
}

/// A subscriber line (new, or its full current state).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LineRegistered {
    pub line_number: String,
    pub customer_id: String,
    pub customer_name: String,
    pub operator: String,
    pub status: LineStatus,
    pub product_code: String,
    pub contract: Contract,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum LineStatus {
    Active,
    Suspended,
}

impl LineStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            LineStatus::Active => "ACTIVE",
            LineStatus::Suspended => "SUSPENDED",
        }
    }
}

/// The commitment (약정) a line is under.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Contract {
    pub commitment_months: u32,
    pub started_on: NaiveDate,
    pub ends_on: NaiveDate,
}

/// A product is no longer on sale. Lines already on it keep it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProductWithdrawn {
    pub product_code: String,
    pub operator: String,
}

/// A product's monthly fee changed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProductRepriced {
    pub product_code: String,
    pub operator: String,
    pub previous_monthly_fee: i64,
    pub monthly_fee: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LineSuspended {
    pub line_number: String,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LineResumed {
    pub line_number: String,
}

/// KOS moved a line to another product (after a product-change request, or on its own).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LineProductChanged {
    pub line_number: String,
    pub previous_product_code: String,
    pub new_product_code: String,
    pub kos_order_id: String,
    /// The phonebill request that asked for it, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<Uuid>,
}

/// A line's bill for one month, every field the customer sees (UFR-BILL-020/030).
/// Amounts in won.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BillIssued {
    pub line_number: String,
    pub customer_id: String,
    /// Billing month, `YYYY-MM`.
    pub month: String,
    pub product_code: String,
    pub product_name: String,
    pub contract: Contract,
    pub monthly_fee: i64,
    /// Charges for usage beyond the product's allowances.
    pub usage_charges: i64,
    pub discounts: Vec<Discount>,
    /// monthly_fee + usage_charges + device installment of the month - discounts.
    pub total_amount: i64,
    pub usage: Usage,
    /// What ending the contract now would cost (위약금).
    pub early_termination_fee: i64,
    /// Device installment still owed after this bill.
    pub device_installment_balance: i64,
    pub billing: BillingInfo,
    pub issued_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Discount {
    pub name: String,
    pub amount: i64,
}

/// Usage in the billing month.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Usage {
    pub voice_minutes: i64,
    pub sms_count: i64,
    pub data_mb: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BillingInfo {
    pub billing_date: NaiveDate,
    pub due_date: NaiveDate,
    pub payment_status: PaymentStatus,
    /// e.g. `AUTO_TRANSFER`, `CARD`, `GIRO`.
    pub payment_method: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PaymentStatus {
    Unpaid,
    Paid,
    Overdue,
}

/// A bill was paid (its payment status becomes PAID).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PaymentRecorded {
    pub line_number: String,
    pub month: String,
    pub amount: i64,
    pub payment_method: String,
    pub paid_at: DateTime<Utc>,
}

/// KOS's answer to one product-change request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum KosResult {
    ProductChangeExecuted(ProductChangeExecuted),
    ProductChangeRefused(ProductChangeRefused),
}

crate::event_family!(KosResult {
    ProductChangeExecuted(ProductChangeExecuted) = ("ProductChangeExecuted", 1),
    ProductChangeRefused(ProductChangeRefused) = ("ProductChangeRefused", 1),
});

impl KosResult {
    pub fn request_id(&self) -> Uuid {
        match self {
            KosResult::ProductChangeExecuted(r) => r.request_id,
            KosResult::ProductChangeRefused(r) => r.request_id,
        }
    }

    pub fn line_number(&self) -> &str {
        match self {
            KosResult::ProductChangeExecuted(r) => &r.line_number,
            KosResult::ProductChangeRefused(r) => &r.line_number,
        }
    }

    pub fn kos_order_id(&self) -> &str {
        match self {
            KosResult::ProductChangeExecuted(r) => &r.kos_order_id,
            KosResult::ProductChangeRefused(r) => &r.kos_order_id,
        }
    }
}

/// KOS carried the change out: the line is now on `new_product_code`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProductChangeExecuted {
    pub request_id: Uuid,
    pub line_number: String,
    pub kos_order_id: String,
    pub previous_product_code: String,
    pub new_product_code: String,
    pub message: String,
    pub executed_at: DateTime<Utc>,
}

/// KOS did not carry the change out. `reason_code` is one of KOS's codes:
/// `SYSTEM_ERROR`, `LINE_NOT_FOUND`, `LINE_SUSPENDED`, `PRODUCT_NOT_ON_SALE`,
/// `OPERATOR_MISMATCH`, `CURRENT_PRODUCT_MISMATCH`, `REQUEST_EXPIRED` (arrived after
/// `answer_by`); consumers must accept codes they do not know.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProductChangeRefused {
    pub request_id: Uuid,
    pub line_number: String,
    pub kos_order_id: String,
    pub reason_code: String,
    pub message: String,
    pub refused_at: DateTime<Utc>,
}
