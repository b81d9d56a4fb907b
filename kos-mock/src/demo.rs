//! The demo data set: 8 products of 2 operators, 100 customers with a line each (or as
//! many as a load test asks for), and the six months of bills before the current month
//! (the older five paid). Deterministic
//! (the same as `bench/generate_facts.py` for products and lines) and
//! idempotent: what exists is left alone, so a second run adds nothing. Everything it
//! adds is published as facts, like any other change.

use chrono::{NaiveDate, NaiveTime, TimeDelta, Utc};
use events::kos::{LineStatus, PaymentStatus};
use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

use crate::billing::{self, Month};
use crate::catalog::{self, NewProduct};
use crate::error::AppError;
use crate::lines::{self, NewCustomer, NewLine, PAYMENT_METHODS};
use crate::outbox::Cause;
use crate::simulation::hash_str;
use service_kit::problem::ProblemCode;

/// Lines (and customers) in the demo set unless asked for more.
pub const LINES: u32 = 100;
/// The most customers a demo set may have (account ids stay `CUST` and four digits).
pub const MAX_CUSTOMERS: u32 = 9_999;
/// Months of bills before the current month.
pub const BILL_MONTHS: i32 = 6;
/// Correlation id of everything the demo seed publishes.
pub const CORRELATION: Uuid = Uuid::from_u128(0x0000_0000_0000_4000_8000_0000_0000_0001);

type ProductRow = (
    &'static str,
    &'static str,
    &'static str,
    i64,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    bool,
);

/// code, name, operator, fee (won), data MB, voice minutes, SMS (None: unlimited), on sale.
pub const PRODUCTS: [ProductRow; 8] = [
    (
        "5G-BASIC-001",
        "5G 베이직",
        "KT",
        55_000,
        Some(10_240),
        Some(300),
        Some(300),
        true,
    ),
    (
        "5G-STANDARD-001",
        "5G 스탠다드",
        "KT",
        69_000,
        Some(51_200),
        None,
        None,
        true,
    ),
    (
        "5G-PREMIUM-001",
        "5G 프리미엄",
        "KT",
        89_000,
        None,
        None,
        None,
        true,
    ),
    (
        "LTE-SLIM-001",
        "LTE 슬림 (판매 종료)",
        "KT",
        33_000,
        Some(3_072),
        Some(200),
        Some(100),
        false,
    ),
    (
        "5G-LITE-002",
        "5G 라이트",
        "LGU",
        49_000,
        Some(8_192),
        Some(300),
        Some(300),
        true,
    ),
    (
        "5G-STANDARD-002",
        "5G 스탠다드 플러스",
        "LGU",
        65_000,
        Some(40_960),
        None,
        None,
        true,
    ),
    (
        "5G-PREMIUM-002",
        "5G 프리미엄 플러스",
        "LGU",
        95_000,
        None,
        None,
        None,
        true,
    ),
    (
        "LTE-DATA-002",
        "LTE 데이터 (판매 종료)",
        "LGU",
        39_000,
        Some(6_144),
        None,
        None,
        false,
    ),
];

const SURNAMES: [&str; 10] = ["김", "이", "박", "최", "정", "강", "조", "윤", "장", "임"];
const GIVEN: [&str; 10] = [
    "민준", "서연", "도윤", "하은", "시우", "지유", "예준", "서윤", "주원", "지아",
];
const DEVICE_PRICES: [i64; 3] = [990_000, 1_155_000, 1_397_000];

/// Line `n` of the demo set: `010-0000-nnnn`.
pub fn line_number(n: u32) -> String {
    format!("010-{:04}-{:04}", n / 10_000, n % 10_000)
}

/// Customer and line `n` (1-based) of the demo set. Odd lines are KT on
/// 5G-STANDARD-001, even lines LGU on 5G-LITE-002; every 25th is suspended.
pub fn demo_line(n: u32) -> (NewCustomer, NewLine) {
    let kt = n % 2 == 1;
    let number = line_number(n);
    let customer_id = format!("CUST{n:04}");
    let started =
        NaiveDate::from_ymd_opt(2024 + (n % 2) as i32, 1 + n % 12, 1).expect("valid demo date");
    let device_price = if n.is_multiple_of(3) {
        0
    } else {
        DEVICE_PRICES[(hash_str(3, &number) % 3) as usize]
    };
    (
        NewCustomer {
            customer_id: customer_id.clone(),
            name: format!(
                "{}{}",
                SURNAMES[(n % 10) as usize],
                GIVEN[((n / 10) % 10) as usize]
            ),
        },
        NewLine {
            line_number: number,
            customer_id,
            product_code: if kt { "5G-STANDARD-001" } else { "5G-LITE-002" }.into(),
            operator: Some(if kt { "KT" } else { "LGU" }.into()),
            commitment_months: 24,
            contract_started_on: Some(started),
            device_price,
            payment_method: Some(PAYMENT_METHODS[(n % 3) as usize].into()),
            status: Some(if n.is_multiple_of(25) {
                LineStatus::Suspended
            } else {
                LineStatus::Active
            }),
        },
    )
}

/// What a seed run added.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct SeedReport {
    pub products: u32,
    pub customers: u32,
    pub lines: u32,
    pub bills: u32,
    pub payments: u32,
}

/// Loads the demo set of `customers` customers (1..=[`MAX_CUSTOMERS`]); `today` fixes
/// the six billed months. A larger set keeps the smaller one's first customers as they are.
pub async fn seed(pool: &PgPool, today: NaiveDate, customers: u32) -> Result<SeedReport, AppError> {
    if !(1..=MAX_CUSTOMERS).contains(&customers) {
        return Err(AppError::refused(
            ProblemCode::InvalidDemoSize,
            format!("a demo set has 1 to {MAX_CUSTOMERS} customers"),
        ));
    }
    let cause = Cause::new(CORRELATION);
    let mut report = SeedReport::default();
    for (code, name, operator, fee, data, voice, sms, on_sale) in PRODUCTS {
        let new = NewProduct {
            product_code: code.into(),
            name: name.into(),
            operator: operator.into(),
            monthly_fee: fee,
            data_mb: data,
            voice_minutes: voice,
            sms_count: sms,
        };
        let mut tx = pool.begin().await?;
        if catalog::insert_if_absent(&mut tx, &new, on_sale, &cause).await? {
            report.products += 1;
        }
        tx.commit().await?;
    }
    let current = Month::of(today);
    for n in 1..=customers {
        let (customer, new_line) = demo_line(n);
        let mut tx = pool.begin().await?;
        if lines::add_customer(&mut tx, &customer).await? {
            report.customers += 1;
        }
        let line = match lines::lock(&mut tx, &new_line.line_number).await? {
            Some(line) => line,
            None => {
                report.lines += 1;
                lines::register(&mut tx, &new_line, &cause).await?
            }
        };
        for back in (1..=BILL_MONTHS).rev() {
            let month = current.plus(-back);
            let billing_date = month.plus(1).first_day();
            let issued_at = billing_date.and_time(NaiveTime::MIN).and_utc();
            if billing::issue(
                &mut tx,
                &line,
                month,
                PaymentStatus::Unpaid,
                issued_at,
                &cause,
            )
            .await?
            {
                report.bills += 1;
                // Every month but the last is paid, a few days before it is due.
                if back > 1 {
                    let paid_at = issued_at + TimeDelta::days(20);
                    if billing::record_payment(&mut tx, &line, month, paid_at, &cause).await? {
                        report.payments += 1;
                    }
                }
            }
        }
        tx.commit().await?;
    }
    tracing::info!(?report, "demo data seeded");
    Ok(report)
}

/// [`seed`] for the current month.
pub async fn seed_now(pool: &PgPool, customers: u32) -> Result<SeedReport, AppError> {
    seed(pool, Utc::now().date_naive(), customers).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_demo_lines_follow_the_documented_pattern() {
        let (c1, l1) = demo_line(1);
        assert_eq!(l1.line_number, "010-0000-0001");
        assert_eq!(c1.customer_id, "CUST0001");
        assert_eq!(l1.operator.as_deref(), Some("KT"));
        assert_eq!(l1.product_code, "5G-STANDARD-001");
        let (_, l2) = demo_line(2);
        assert_eq!(l2.operator.as_deref(), Some("LGU"));
        assert_eq!(l2.product_code, "5G-LITE-002");
        assert_eq!(demo_line(25).1.status, Some(LineStatus::Suspended));
        assert_eq!(demo_line(24).1.status, Some(LineStatus::Active));
        assert_eq!(demo_line(100).1.line_number, "010-0000-0100");
        for n in 1..=LINES {
            demo_line(n).1.validate().unwrap();
        }
        let (last_customer, last_line) = demo_line(MAX_CUSTOMERS);
        assert_eq!(last_customer.customer_id, "CUST9999");
        assert_eq!(last_line.line_number, "010-0000-9999");
        last_line.validate().unwrap();
    }

    #[test]
    fn demo_products_are_valid_and_both_operators_sell() {
        for (code, name, operator, fee, data, voice, sms, _) in PRODUCTS {
            NewProduct {
                product_code: code.into(),
                name: name.into(),
                operator: operator.into(),
                monthly_fee: fee,
                data_mb: data,
                voice_minutes: voice,
                sms_count: sms,
            }
            .validate()
            .unwrap();
        }
        assert_eq!(PRODUCTS.iter().filter(|p| p.2 == "KT" && p.7).count(), 3);
        assert_eq!(PRODUCTS.iter().filter(|p| p.2 == "LGU" && p.7).count(), 3);
    }
}
