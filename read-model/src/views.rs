//! The view documents: exactly the JSON bodies the query API returns (camelCase). Each
//! derives `ToSchema`: query-service's OpenAPI document names them as its response bodies.
//! A field left out when empty (`skip_serializing_if`) is optional there, never `null`.

use chrono::{DateTime, NaiveDate, Utc};
use events::kos::{BillIssued, Contract};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

/// A line's bill for one month (UFR-BILL-020/030).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BillView {
    pub line_number: String,
    pub customer_id: String,
    pub month: String,
    pub product_code: String,
    pub product_name: String,
    pub contract: ContractView,
    pub monthly_fee: i64,
    pub usage_charges: i64,
    pub discounts: Vec<DiscountView>,
    pub total_amount: i64,
    pub usage: UsageView,
    pub early_termination_fee: i64,
    pub device_installment_balance: i64,
    pub billing: BillingView,
    pub issued_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ContractView {
    pub commitment_months: u32,
    pub started_on: NaiveDate,
    pub ends_on: NaiveDate,
}

impl From<&Contract> for ContractView {
    fn from(c: &Contract) -> Self {
        Self {
            commitment_months: c.commitment_months,
            started_on: c.started_on,
            ends_on: c.ends_on,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DiscountView {
    pub name: String,
    pub amount: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UsageView {
    pub voice_minutes: i64,
    pub sms_count: i64,
    pub data_mb: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BillingView {
    pub billing_date: NaiveDate,
    pub due_date: NaiveDate,
    /// `UNPAID`, `PAID` or `OVERDUE`.
    pub payment_status: String,
    pub payment_method: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub paid_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub paid_amount: Option<i64>,
}

impl From<&BillIssued> for BillView {
    fn from(b: &BillIssued) -> Self {
        Self {
            line_number: b.line_number.clone(),
            customer_id: b.customer_id.clone(),
            month: b.month.clone(),
            product_code: b.product_code.clone(),
            product_name: b.product_name.clone(),
            contract: (&b.contract).into(),
            monthly_fee: b.monthly_fee,
            usage_charges: b.usage_charges,
            discounts: b
                .discounts
                .iter()
                .map(|d| DiscountView {
                    name: d.name.clone(),
                    amount: d.amount,
                })
                .collect(),
            total_amount: b.total_amount,
            usage: UsageView {
                voice_minutes: b.usage.voice_minutes,
                sms_count: b.usage.sms_count,
                data_mb: b.usage.data_mb,
            },
            early_termination_fee: b.early_termination_fee,
            device_installment_balance: b.device_installment_balance,
            billing: BillingView {
                billing_date: b.billing.billing_date,
                due_date: b.billing.due_date,
                payment_status: serde_json::to_value(b.billing.payment_status)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default(),
                payment_method: b.billing.payment_method.clone(),
                paid_at: None,
                paid_amount: None,
            },
            issued_at: b.issued_at,
        }
    }
}

/// The months that have a bill, newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MonthsView {
    pub line_number: String,
    pub months: Vec<String>,
}

/// A line's summary: who owns it, its operator and status, its product and any change
/// in flight.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LineView {
    pub line_number: String,
    pub customer_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub customer_name: Option<String>,
    pub operator: String,
    /// `ACTIVE` or `SUSPENDED`; `UNKNOWN` until KOS registered the line.
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub suspension_reason: Option<String>,
    pub current_product: ProductRef,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub contract: Option<ContractView>,
    /// The change request in flight (VALIDATED or PROCESSING), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub pending_change: Option<PendingChange>,
    /// True once KOS published the line (facts about it can be applied).
    pub registered: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProductRef {
    pub product_code: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub product_name: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PendingChange {
    pub request_id: Uuid,
    pub target_product_code: String,
    pub status: String,
    pub requested_at: DateTime<Utc>,
}

/// A product in the catalog.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProductView {
    pub product_code: String,
    pub name: String,
    pub operator: String,
    pub monthly_fee: i64,
    #[schema(required = true)]
    pub data_mb: Option<i64>,
    #[schema(required = true)]
    pub voice_minutes: Option<i64>,
    #[schema(required = true)]
    pub sms_count: Option<i64>,
    pub on_sale: bool,
}

/// The products an operator has on sale.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProductsView {
    pub operator: String,
    pub products: Vec<ProductView>,
}

/// One product-change request and where it stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChangeRequestView {
    pub request_id: Uuid,
    pub line_number: String,
    /// REQUESTED, VALIDATED, PROCESSING, COMPLETED or FAILED.
    pub status: String,
    pub current_product_code: String,
    pub target_product_code: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub new_product_code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub message: Option<String>,
    /// Why it failed: `PRECHECK_FAILED`, `KOS_REJECTED` or `TIMEOUT`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub failure_reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub kos_reason_code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub kos_order_id: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failed_checks: Vec<String>,
    pub requested_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub sent_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub completed_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub failed_at: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
    /// A KOS answer that came after the request had timed out (audit only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub late_answer: Option<LateAnswerView>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LateAnswerView {
    pub executed: bool,
    pub kos_order_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub new_product_code: Option<String>,
    pub message: String,
    pub answered_at: DateTime<Utc>,
}

/// A line's change requests, newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct HistoryView {
    pub line_number: String,
    pub items: Vec<ChangeRequestView>,
}

/// One recorded bill inquiry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct InquiryView {
    pub inquiry_id: Uuid,
    pub line_number: String,
    pub month: String,
    pub result: String,
    pub inquired_at: DateTime<Utc>,
}
