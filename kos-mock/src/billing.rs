//! Monthly bills. [`compute_bill`] derives every amount from (line, month, product)
//! without I/O, so a bill is the same whenever it is issued; [`Billing::run_cycle`]
//! issues the bills of one month, once per line, each with its `BillIssued` fact.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use events::kos::{
    BillIssued, BillingInfo, Discount, KosFact, PaymentRecorded, PaymentStatus, Usage,
};
use serde::Serialize;
use sqlx::{PgConnection, PgPool};
use tokio::sync::Notify;

use crate::catalog::{self, Product};
use crate::error::AppError;
use crate::lines::{self, Line};
use crate::outbox::{append_fact, Cause};
use crate::simulation::{hash_str, unit};
use service_kit::problem::ProblemCode;

/// Won per voice minute beyond the allowance.
pub const VOICE_RATE: i64 = 108;
/// Won per message beyond the allowance.
pub const SMS_RATE: i64 = 22;
/// Won per MB beyond the allowance.
pub const DATA_RATE: i64 = 10;
/// Share of the monthly fee discounted while a line is under contract (선택약정).
pub const CONTRACT_DISCOUNT_PERCENT: i64 = 25;
/// The bundle discount (결합 할인) some lines get.
pub const BUNDLE_DISCOUNT: i64 = 5_500;
/// Day of the month after the billing month by which a bill is due.
pub const DUE_DAY: u32 = 25;

/// A billing month, `YYYY-MM`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Month {
    pub year: i32,
    pub month: u32,
}

impl Month {
    pub fn of(date: NaiveDate) -> Self {
        Self {
            year: date.year(),
            month: date.month(),
        }
    }

    pub fn first_day(self) -> NaiveDate {
        NaiveDate::from_ymd_opt(self.year, self.month, 1).expect("months are valid")
    }

    /// `n` months later (negative: earlier).
    pub fn plus(self, n: i32) -> Self {
        let index = self.year * 12 + self.month as i32 - 1 + n;
        Self {
            year: index.div_euclid(12),
            month: index.rem_euclid(12) as u32 + 1,
        }
    }

    /// Months from `self` to `other` (negative if `other` is earlier).
    pub fn until(self, other: Month) -> i32 {
        (other.year - self.year) * 12 + other.month as i32 - self.month as i32
    }
}

impl fmt::Display for Month {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

impl FromStr for Month {
    type Err = AppError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || {
            AppError::refused(
                ProblemCode::InvalidMonth,
                format!("month `{s}` is not of the form YYYY-MM"),
            )
        };
        let (y, m) = s.split_once('-').ok_or_else(bad)?;
        if y.len() != 4 || m.len() != 2 || !s.bytes().all(|b| b.is_ascii_digit() || b == b'-') {
            return Err(bad());
        }
        let year: i32 = y.parse().map_err(|_| bad())?;
        let month: u32 = m.parse().map_err(|_| bad())?;
        if !(2000..=2100).contains(&year) || !(1..=12).contains(&month) {
            return Err(bad());
        }
        Ok(Month { year, month })
    }
}

/// The bill of `line` on `product` for `month`. Usage is drawn from a hash of (line,
/// month); charges follow the product's allowances; the contract discount applies while
/// the line is under contract; the device installment spreads `device_price` over the
/// commitment; the early-termination fee is the contract discount of the months left.
pub fn compute_bill(
    line: &Line,
    product: &Product,
    month: Month,
    payment_status: PaymentStatus,
    issued_at: DateTime<Utc>,
) -> BillIssued {
    let key = format!("{}/{month}", line.line_number);
    let draw = |what: &str| unit(hash_str(0x6b6f_735f_6269_6c6c, &format!("{key}/{what}")));
    // Usage: 20 % to 115 % of a limited allowance, a plausible amount when unlimited.
    let use_of = |allowance: Option<i64>, what: &str, unlimited: (i64, i64)| -> (i64, i64) {
        let u = draw(what);
        match allowance {
            Some(a) => {
                let used = (a as f64 * (0.2 + 0.95 * u)).round() as i64;
                (used, (used - a).max(0))
            }
            None => (
                unlimited.0 + (u * (unlimited.1 - unlimited.0) as f64) as i64,
                0,
            ),
        }
    };
    let (voice, voice_over) = use_of(product.voice_minutes, "voice", (60, 600));
    let (sms, sms_over) = use_of(product.sms_count, "sms", (0, 150));
    let (data, data_over) = use_of(product.data_mb, "data", (5_000, 80_000));
    let usage_charges = voice_over * VOICE_RATE + sms_over * SMS_RATE + data_over * DATA_RATE;

    // Month k of the contract (1 = the month it started).
    let commitment = line.commitment_months as i64;
    let k = Month::of(line.contract_started_on).until(month) as i64 + 1;
    let under_contract = commitment > 0 && (1..=commitment).contains(&k);
    let contract_discount = round_down_10(product.monthly_fee * CONTRACT_DISCOUNT_PERCENT / 100);
    let mut discounts = Vec::new();
    if under_contract && contract_discount > 0 {
        discounts.push(Discount {
            name: "선택약정 할인".into(),
            amount: contract_discount,
        });
    }
    if hash_str(1, &line.line_number).is_multiple_of(4) {
        discounts.push(Discount {
            name: "가족결합 할인".into(),
            amount: BUNDLE_DISCOUNT.min(product.monthly_fee),
        });
    }

    let (installment, balance) = installment(line.device_price, commitment, k);
    let months_left = if under_contract { commitment - k } else { 0 };
    let early_termination_fee = contract_discount * months_left;
    let total_discount: i64 = discounts.iter().map(|d| d.amount).sum();
    let next = month.plus(1).first_day();
    BillIssued {
        line_number: line.line_number.clone(),
        customer_id: line.customer_id.clone(),
        month: month.to_string(),
        product_code: product.product_code.clone(),
        product_name: product.name.clone(),
        contract: line.contract(),
        monthly_fee: product.monthly_fee,
        usage_charges,
        discounts,
        total_amount: product.monthly_fee + usage_charges + installment - total_discount,
        usage: Usage {
            voice_minutes: voice,
            sms_count: sms,
            data_mb: data,
        },
        early_termination_fee,
        device_installment_balance: balance,
        billing: BillingInfo {
            billing_date: next,
            due_date: next.with_day(DUE_DAY).expect("the 25th exists"),
            payment_status,
            payment_method: line.payment_method.clone(),
        },
        issued_at,
    }
}

/// (installment of contract month `k`, balance owed after it): `price` spread evenly over
/// `months`, the remainder in the last month.
pub fn installment(price: i64, months: i64, k: i64) -> (i64, i64) {
    if price == 0 || months == 0 {
        return (0, 0);
    }
    let base = price / months;
    match k {
        k if k < 1 => (0, price),
        k if k < months => (base, price - base * k),
        k if k == months => (price - base * (months - 1), 0),
        _ => (0, 0),
    }
}

fn round_down_10(won: i64) -> i64 {
    won / 10 * 10
}

/// What a bill cycle did.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CycleReport {
    pub month: String,
    /// Bills issued by this run.
    pub issued: u64,
    /// Active lines that already had a bill for the month.
    pub already_issued: u64,
}

#[derive(Clone)]
pub struct Billing {
    pool: PgPool,
    committed: Arc<Notify>,
}

impl Billing {
    pub fn new(pool: PgPool, committed: Arc<Notify>) -> Self {
        Self { pool, committed }
    }

    /// Issues `month`'s bill to every active line that has none for it yet.
    pub async fn run_cycle(&self, month: Month, cause: Cause) -> Result<CycleReport, AppError> {
        let candidates: Vec<String> = sqlx::query_scalar(
            "SELECT line_number FROM lines l WHERE status = 'ACTIVE' AND NOT EXISTS
                 (SELECT 1 FROM bills b WHERE b.line_number = l.line_number AND b.month = $1)
             ORDER BY line_number",
        )
        .bind(month.to_string())
        .fetch_all(&self.pool)
        .await?;
        let mut issued = 0;
        for number in candidates {
            let mut tx = self.pool.begin().await?;
            let Some(line) = lines::lock(&mut tx, &number).await? else {
                continue;
            };
            if !line.is_active() {
                continue;
            }
            if issue(
                &mut tx,
                &line,
                month,
                PaymentStatus::Unpaid,
                Utc::now(),
                &cause,
            )
            .await?
            {
                tx.commit().await?;
                issued += 1;
            }
        }
        if issued > 0 {
            self.committed.notify_one();
        }
        let already: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM bills b JOIN lines l USING (line_number)
              WHERE l.status = 'ACTIVE' AND b.month = $1",
        )
        .bind(month.to_string())
        .fetch_one(&self.pool)
        .await?;
        metrics::counter!("kos_bills_issued_total").increment(issued);
        Ok(CycleReport {
            month: month.to_string(),
            issued,
            already_issued: already as u64 - issued,
        })
    }

    /// A line's bill for a month, as issued.
    pub async fn get(&self, number: &str, month: Month) -> Result<serde_json::Value, AppError> {
        crate::validate::line_number(number)?;
        let row: Option<(sqlx::types::Json<serde_json::Value>, String)> = sqlx::query_as(
            "SELECT bill, payment_status FROM bills WHERE line_number = $1 AND month = $2",
        )
        .bind(number)
        .bind(month.to_string())
        .fetch_optional(&self.pool)
        .await?;
        let (mut bill, status) = row.ok_or_else(|| {
            AppError::refused(
                ProblemCode::BillNotFound,
                format!("line {number} has no bill for {month}"),
            )
        })?;
        bill.0["billing"]["payment_status"] = serde_json::Value::String(status);
        Ok(bill.0)
    }
}

/// Issues `line`'s bill for `month` unless it has one (the caller holds the line's lock);
/// true if issued.
pub async fn issue(
    conn: &mut PgConnection,
    line: &Line,
    month: Month,
    status: PaymentStatus,
    issued_at: DateTime<Utc>,
    cause: &Cause,
) -> Result<bool, AppError> {
    let product = catalog::find(conn, &line.product_code)
        .await?
        .ok_or_else(|| anyhow::anyhow!("line {} is on unknown product", line.line_number))?;
    let bill = compute_bill(line, &product, month, status, issued_at);
    let inserted = sqlx::query(
        "INSERT INTO bills (line_number, month, total_amount, payment_status, bill, issued_at)
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
    )
    .bind(&line.line_number)
    .bind(month.to_string())
    .bind(bill.total_amount)
    .bind(payment_status_str(status))
    .bind(sqlx::types::Json(&bill))
    .bind(issued_at)
    .execute(&mut *conn)
    .await?;
    if inserted.rows_affected() == 0 {
        return Ok(false);
    }
    let sequence = lines::advance(conn, &line.line_number).await?;
    append_fact(conn, &KosFact::BillIssued(bill), sequence, cause).await?;
    Ok(true)
}

/// Records that `line`'s bill for `month` was paid in full (the caller holds the line's
/// lock); true if it was unpaid.
pub async fn record_payment(
    conn: &mut PgConnection,
    line: &Line,
    month: Month,
    paid_at: DateTime<Utc>,
    cause: &Cause,
) -> Result<bool, AppError> {
    let amount: Option<i64> = sqlx::query_scalar(
        "UPDATE bills SET payment_status = 'PAID'
          WHERE line_number = $1 AND month = $2 AND payment_status <> 'PAID'
          RETURNING total_amount",
    )
    .bind(&line.line_number)
    .bind(month.to_string())
    .fetch_optional(&mut *conn)
    .await?;
    let Some(amount) = amount else {
        return Ok(false);
    };
    let sequence = lines::advance(conn, &line.line_number).await?;
    let fact = KosFact::PaymentRecorded(PaymentRecorded {
        line_number: line.line_number.clone(),
        month: month.to_string(),
        amount: amount.max(0),
        payment_method: line.payment_method.clone(),
        paid_at,
    });
    append_fact(conn, &fact, sequence, cause).await?;
    Ok(true)
}

fn payment_status_str(status: PaymentStatus) -> &'static str {
    match status {
        PaymentStatus::Unpaid => "UNPAID",
        PaymentStatus::Paid => "PAID",
        PaymentStatus::Overdue => "OVERDUE",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(device_price: i64) -> Line {
        Line {
            line_number: "010-0000-0001".into(),
            customer_id: "CUST0001".into(),
            customer_name: "김민준".into(),
            operator: "KT".into(),
            status: "ACTIVE".into(),
            product_code: "5G-BASIC-001".into(),
            commitment_months: 24,
            contract_started_on: NaiveDate::from_ymd_opt(2025, 2, 1).unwrap(),
            contract_ends_on: NaiveDate::from_ymd_opt(2027, 2, 1).unwrap(),
            device_price,
            payment_method: "CARD".into(),
            sequence: 1,
        }
    }

    fn product(limited: bool) -> Product {
        Product {
            product_code: "5G-BASIC-001".into(),
            name: "5G 베이직".into(),
            operator: "KT".into(),
            monthly_fee: 55_000,
            data_mb: limited.then_some(10_240),
            voice_minutes: limited.then_some(300),
            sms_count: limited.then_some(300),
            on_sale: true,
            sequence: 1,
        }
    }

    fn month(s: &str) -> Month {
        s.parse().unwrap()
    }

    fn bill(device: i64, limited: bool, m: &str) -> BillIssued {
        compute_bill(
            &line(device),
            &product(limited),
            month(m),
            PaymentStatus::Unpaid,
            DateTime::from_timestamp(0, 0).unwrap(),
        )
    }

    #[test]
    fn months_parse_print_and_step() {
        assert_eq!(month("2025-03").to_string(), "2025-03");
        assert_eq!(month("2025-01").plus(-1), month("2024-12"));
        assert_eq!(month("2024-12").plus(1), month("2025-01"));
        assert_eq!(month("2025-02").until(month("2026-01")), 11);
        for bad in [
            "2025-13", "2025-00", "2025-3", "25-03", "2025/03", "", "abcd-ef", "2025-+3",
        ] {
            assert!(bad.parse::<Month>().is_err(), "{bad}");
        }
    }

    #[test]
    fn the_same_line_and_month_give_the_same_bill() {
        assert_eq!(
            bill(990_000, true, "2025-06"),
            bill(990_000, true, "2025-06")
        );
        assert_ne!(
            bill(990_000, true, "2025-06").usage,
            bill(990_000, true, "2025-07").usage
        );
    }

    #[test]
    fn the_total_is_fee_plus_usage_plus_installment_minus_discounts() {
        for m in [
            "2025-01", "2025-02", "2025-09", "2027-01", "2027-02", "2028-05",
        ] {
            for (device, limited) in [(0, true), (990_000, false), (1_397_000, true)] {
                let b = bill(device, limited, m);
                let k = month("2025-02").until(month(m)) as i64 + 1;
                let (inst, balance) = installment(device, 24, k);
                let discounts: i64 = b.discounts.iter().map(|d| d.amount).sum();
                assert_eq!(
                    b.total_amount,
                    b.monthly_fee + b.usage_charges + inst - discounts,
                    "{m}"
                );
                assert_eq!(b.device_installment_balance, balance);
                assert!(b.total_amount >= 0);
            }
        }
    }

    #[test]
    fn usage_beyond_the_allowance_is_charged_and_unlimited_usage_is_not() {
        let mut charged = 0;
        for m in 1..=12 {
            let b = bill(0, true, &format!("2025-{m:02}"));
            let expected = (b.usage.voice_minutes - 300).max(0) * VOICE_RATE
                + (b.usage.sms_count - 300).max(0) * SMS_RATE
                + (b.usage.data_mb - 10_240).max(0) * DATA_RATE;
            assert_eq!(b.usage_charges, expected);
            charged += (b.usage_charges > 0) as i32;
            assert_eq!(bill(0, false, &format!("2025-{m:02}")).usage_charges, 0);
        }
        assert!(charged > 0, "no month went over an allowance");
    }

    #[test]
    fn the_contract_discount_and_termination_fee_follow_the_contract() {
        let under = bill(0, true, "2025-02");
        assert!(under
            .discounts
            .iter()
            .any(|d| d.name == "선택약정 할인" && d.amount == 13_750));
        // Month 1 of 24: 23 months left.
        assert_eq!(under.early_termination_fee, 13_750 * 23);
        let last = bill(0, true, "2027-01");
        assert_eq!(last.early_termination_fee, 0);
        let after = bill(0, true, "2027-02");
        assert!(after.discounts.iter().all(|d| d.name != "선택약정 할인"));
        assert_eq!(after.early_termination_fee, 0);
    }

    #[test]
    fn the_device_is_paid_off_over_the_commitment() {
        let price = 1_000_003;
        let total: i64 = (1..=24).map(|k| installment(price, 24, k).0).sum();
        assert_eq!(total, price);
        assert_eq!(installment(price, 24, 0), (0, price));
        assert_eq!(installment(price, 24, 1), (41_666, price - 41_666));
        assert_eq!(installment(price, 24, 24).1, 0);
        assert_eq!(installment(price, 24, 25), (0, 0));
    }

    #[test]
    fn billing_and_due_dates_fall_in_the_next_month() {
        let b = bill(0, true, "2025-12");
        assert_eq!(
            b.billing.billing_date,
            NaiveDate::from_ymd_opt(2026, 1, 1).unwrap()
        );
        assert_eq!(
            b.billing.due_date,
            NaiveDate::from_ymd_opt(2026, 1, 25).unwrap()
        );
        assert_eq!(b.month, "2025-12");
    }
}
