//! Customers and their lines: register, suspend, resume. Every change of a line commits
//! with its `kos.billing` fact (aggregate `KosLine`, id = line number). A line's line,
//! bill and payment facts share one sequence, advanced under the line's row lock.

use std::sync::Arc;

use chrono::{Months, NaiveDate, Utc};
use events::kos::{Contract, KosFact, LineRegistered, LineResumed, LineStatus, LineSuspended};
use serde::{Deserialize, Serialize};
use sqlx::{PgConnection, PgPool};
use tokio::sync::Notify;

use crate::catalog;
use crate::error::AppError;
use crate::outbox::{append_fact, Cause};
use crate::validate;
use service_kit::problem::ProblemCode;

/// Payment methods a line may use.
pub const PAYMENT_METHODS: [&str; 3] = ["AUTO_TRANSFER", "CARD", "GIRO"];

/// A line as KOS holds it.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Line {
    pub line_number: String,
    pub customer_id: String,
    pub customer_name: String,
    pub operator: String,
    /// `ACTIVE` or `SUSPENDED`.
    pub status: String,
    pub product_code: String,
    pub commitment_months: i32,
    pub contract_started_on: NaiveDate,
    pub contract_ends_on: NaiveDate,
    /// Device price paid in installments over the commitment (0: none).
    pub device_price: i64,
    pub payment_method: String,
    /// Sequence of the line's last fact.
    pub sequence: i64,
}

impl Line {
    pub fn is_active(&self) -> bool {
        self.status == LineStatus::Active.as_str()
    }

    pub fn contract(&self) -> Contract {
        Contract {
            commitment_months: self.commitment_months as u32,
            started_on: self.contract_started_on,
            ends_on: self.contract_ends_on,
        }
    }

    fn registered(&self) -> LineRegistered {
        LineRegistered {
            line_number: self.line_number.clone(),
            customer_id: self.customer_id.clone(),
            customer_name: self.customer_name.clone(),
            operator: self.operator.clone(),
            status: if self.is_active() {
                LineStatus::Active
            } else {
                LineStatus::Suspended
            },
            product_code: self.product_code.clone(),
            contract: self.contract(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewCustomer {
    pub customer_id: String,
    pub name: String,
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Customer {
    pub customer_id: String,
    pub name: String,
}

/// A line to register (admin input).
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewLine {
    pub line_number: String,
    pub customer_id: String,
    pub product_code: String,
    /// Defaults to the product's operator; if given it must be the product's.
    #[serde(default)]
    pub operator: Option<String>,
    /// Months of commitment (0: none).
    #[serde(default)]
    pub commitment_months: u32,
    /// Defaults to today.
    #[serde(default)]
    pub contract_started_on: Option<NaiveDate>,
    #[serde(default)]
    pub device_price: i64,
    /// `AUTO_TRANSFER` (default), `CARD` or `GIRO`.
    #[serde(default)]
    pub payment_method: Option<String>,
    /// `ACTIVE` (default) or `SUSPENDED`.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub status: Option<LineStatus>,
}

impl NewLine {
    pub fn validate(&self) -> Result<(), AppError> {
        validate::line_number(&self.line_number)?;
        validate::customer_id(&self.customer_id)?;
        validate::product_code(&self.product_code)?;
        if let Some(op) = &self.operator {
            validate::operator(op)?;
        }
        if self.commitment_months > 48 {
            return Err(AppError::refused(
                ProblemCode::InvalidContract,
                "commitmentMonths must be between 0 and 48",
            ));
        }
        validate::amount("devicePrice", self.device_price, 10_000_000)?;
        if let Some(method) = &self.payment_method {
            if !PAYMENT_METHODS.contains(&method.as_str()) {
                return Err(AppError::refused(
                    ProblemCode::InvalidPaymentMethod,
                    format!("paymentMethod must be one of {PAYMENT_METHODS:?}"),
                ));
            }
        }
        Ok(())
    }
}

#[derive(Clone)]
pub struct Lines {
    pool: PgPool,
    committed: Arc<Notify>,
}

const SELECT: &str = "SELECT l.line_number, l.customer_id, c.name AS customer_name, l.operator,
        l.status, l.product_code, l.commitment_months, l.contract_started_on,
        l.contract_ends_on, l.device_price, l.payment_method, l.sequence
   FROM lines l JOIN customers c USING (customer_id)";

impl Lines {
    pub fn new(pool: PgPool, committed: Arc<Notify>) -> Self {
        Self { pool, committed }
    }

    /// Adds a customer; the same customer again is accepted (false: it existed).
    pub async fn add_customer(&self, new: NewCustomer) -> Result<(Customer, bool), AppError> {
        validate::customer_id(&new.customer_id)?;
        validate::text(ProblemCode::InvalidName, "name", &new.name, 100)?;
        let created = add_customer(&mut *self.pool.acquire().await?, &new).await?;
        let customer: Customer =
            sqlx::query_as("SELECT customer_id, name FROM customers WHERE customer_id = $1")
                .bind(&new.customer_id)
                .fetch_one(&self.pool)
                .await?;
        if customer.name != new.name {
            return Err(AppError::refused(
                ProblemCode::CustomerExists,
                format!("customer {} exists with another name", new.customer_id),
            ));
        }
        Ok((customer, created))
    }

    pub async fn register(&self, new: NewLine, cause: Cause) -> Result<Line, AppError> {
        new.validate()?;
        let mut tx = self.pool.begin().await?;
        let line = register(&mut tx, &new, &cause).await?;
        tx.commit().await?;
        self.committed.notify_one();
        Ok(line)
    }

    pub async fn get(&self, number: &str) -> Result<Line, AppError> {
        validate::line_number(number)?;
        sqlx::query_as(&format!("{SELECT} WHERE l.line_number = $1"))
            .bind(number)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| not_found(number))
    }

    /// Suspends an active line. Already suspended: nothing happens.
    pub async fn suspend(
        &self,
        number: &str,
        reason: &str,
        cause: Cause,
    ) -> Result<Line, AppError> {
        validate::line_number(number)?;
        validate::text(ProblemCode::InvalidReason, "reason", reason, 200)?;
        self.set_status(number, LineStatus::Suspended, Some(reason), cause)
            .await
    }

    /// Resumes a suspended line. Already active: nothing happens.
    pub async fn resume(&self, number: &str, cause: Cause) -> Result<Line, AppError> {
        validate::line_number(number)?;
        self.set_status(number, LineStatus::Active, None, cause)
            .await
    }

    async fn set_status(
        &self,
        number: &str,
        status: LineStatus,
        reason: Option<&str>,
        cause: Cause,
    ) -> Result<Line, AppError> {
        let mut tx = self.pool.begin().await?;
        let line = lock(&mut tx, number)
            .await?
            .ok_or_else(|| not_found(number))?;
        if line.status == status.as_str() {
            return Ok(line);
        }
        sqlx::query("UPDATE lines SET status = $2 WHERE line_number = $1")
            .bind(number)
            .bind(status.as_str())
            .execute(&mut *tx)
            .await?;
        let sequence = advance(&mut tx, number).await?;
        let fact = match status {
            LineStatus::Suspended => KosFact::LineSuspended(LineSuspended {
                line_number: number.to_owned(),
                reason: reason.unwrap_or("suspended").to_owned(),
            }),
            LineStatus::Active => KosFact::LineResumed(LineResumed {
                line_number: number.to_owned(),
            }),
        };
        append_fact(&mut tx, &fact, sequence, &cause).await?;
        let line = lock(&mut tx, number)
            .await?
            .ok_or_else(|| not_found(number))?;
        tx.commit().await?;
        self.committed.notify_one();
        Ok(line)
    }
}

/// Adds a customer unless the id exists; true if added.
pub async fn add_customer(conn: &mut PgConnection, new: &NewCustomer) -> Result<bool, sqlx::Error> {
    let result = sqlx::query(
        "INSERT INTO customers (customer_id, name) VALUES ($1, $2) ON CONFLICT DO NOTHING",
    )
    .bind(&new.customer_id)
    .bind(&new.name)
    .execute(conn)
    .await?;
    Ok(result.rows_affected() == 1)
}

/// Registers a validated line with its `LineRegistered` fact (sequence 1).
pub async fn register(
    conn: &mut PgConnection,
    new: &NewLine,
    cause: &Cause,
) -> Result<Line, AppError> {
    let customer: Option<String> =
        sqlx::query_scalar("SELECT name FROM customers WHERE customer_id = $1")
            .bind(&new.customer_id)
            .fetch_optional(&mut *conn)
            .await?;
    if customer.is_none() {
        return Err(AppError::refused(
            ProblemCode::CustomerNotFound,
            format!("customer {} is not known", new.customer_id),
        ));
    }
    let product = catalog::find(conn, &new.product_code)
        .await?
        .ok_or_else(|| {
            AppError::refused(
                ProblemCode::ProductNotFound,
                format!("product {} is not known", new.product_code),
            )
        })?;
    let operator = new.operator.clone().unwrap_or(product.operator.clone());
    if operator != product.operator {
        return Err(AppError::refused(
            ProblemCode::OperatorMismatch,
            format!(
                "product {} is sold by {}, not {operator}",
                product.product_code, product.operator
            ),
        ));
    }
    let started = new
        .contract_started_on
        .unwrap_or_else(|| Utc::now().date_naive());
    let ends = started
        .checked_add_months(Months::new(new.commitment_months))
        .ok_or_else(|| {
            AppError::refused(ProblemCode::InvalidContract, "contract dates out of range")
        })?;
    let status = new.status.unwrap_or(LineStatus::Active);
    let inserted = sqlx::query(
        "INSERT INTO lines (line_number, customer_id, operator, status, product_code,
                commitment_months, contract_started_on, contract_ends_on, device_price,
                payment_method, sequence)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 1) ON CONFLICT DO NOTHING",
    )
    .bind(&new.line_number)
    .bind(&new.customer_id)
    .bind(&operator)
    .bind(status.as_str())
    .bind(&new.product_code)
    .bind(new.commitment_months as i32)
    .bind(started)
    .bind(ends)
    .bind(new.device_price)
    .bind(new.payment_method.as_deref().unwrap_or(PAYMENT_METHODS[0]))
    .execute(&mut *conn)
    .await?;
    if inserted.rows_affected() == 0 {
        return Err(AppError::refused(
            ProblemCode::LineExists,
            format!("line {} is already registered", new.line_number),
        ));
    }
    let line = lock(conn, &new.line_number)
        .await?
        .ok_or_else(|| not_found(&new.line_number))?;
    append_fact(conn, &KosFact::LineRegistered(line.registered()), 1, cause).await?;
    Ok(line)
}

/// The line, locked for this transaction (the lock orders its facts).
pub async fn lock(conn: &mut PgConnection, number: &str) -> Result<Option<Line>, sqlx::Error> {
    sqlx::query_as(&format!(
        "{SELECT} WHERE l.line_number = $1 FOR UPDATE OF l"
    ))
    .bind(number)
    .fetch_optional(conn)
    .await
}

/// Takes the line's next fact sequence (the caller holds its lock).
pub async fn advance(conn: &mut PgConnection, number: &str) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "UPDATE lines SET sequence = sequence + 1 WHERE line_number = $1 RETURNING sequence",
    )
    .bind(number)
    .fetch_one(conn)
    .await
}

fn not_found(number: &str) -> AppError {
    AppError::refused(
        ProblemCode::LineNotFound,
        format!("line {number} is not known"),
    )
}
