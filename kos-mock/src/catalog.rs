//! The product catalog: publish, withdraw, reprice. Each change commits with its
//! `kos.billing` fact (aggregate `KosProduct`, id = product code, one sequence per product).

use std::sync::Arc;

use events::kos::{KosFact, ProductPublished, ProductRepriced, ProductWithdrawn};
use serde::{Deserialize, Serialize};
use sqlx::{PgConnection, PgPool};
use tokio::sync::Notify;

use crate::error::AppError;
use crate::outbox::{append_fact, Cause};
use crate::validate;
use service_kit::problem::ProblemCode;

/// Highest monthly fee accepted, in won.
pub const MAX_MONTHLY_FEE: i64 = 10_000_000;

/// A product as KOS holds it.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Product {
    pub product_code: String,
    pub name: String,
    pub operator: String,
    pub monthly_fee: i64,
    /// MB; absent: unlimited.
    pub data_mb: Option<i64>,
    /// Minutes; absent: unlimited.
    pub voice_minutes: Option<i64>,
    /// Messages; absent: unlimited.
    pub sms_count: Option<i64>,
    pub on_sale: bool,
    /// Sequence of the product's last fact.
    pub sequence: i64,
}

impl Product {
    fn published(&self) -> ProductPublished {
        ProductPublished {
            product_code: self.product_code.clone(),
            name: self.name.clone(),
            operator: self.operator.clone(),
            monthly_fee: self.monthly_fee,
            data_mb: self.data_mb,
            voice_minutes: self.voice_minutes,
            sms_count: self.sms_count,
            on_sale: self.on_sale,
        }
    }
}

/// A product to publish (admin input).
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewProduct {
    pub product_code: String,
    pub name: String,
    pub operator: String,
    pub monthly_fee: i64,
    #[serde(default)]
    pub data_mb: Option<i64>,
    #[serde(default)]
    pub voice_minutes: Option<i64>,
    #[serde(default)]
    pub sms_count: Option<i64>,
}

impl NewProduct {
    pub fn validate(&self) -> Result<(), AppError> {
        validate::product_code(&self.product_code)?;
        validate::text(ProblemCode::InvalidName, "name", &self.name, 100)?;
        validate::operator(&self.operator)?;
        validate::amount("monthlyFee", self.monthly_fee, MAX_MONTHLY_FEE)?;
        for (field, value) in [
            ("dataMb", self.data_mb),
            ("voiceMinutes", self.voice_minutes),
            ("smsCount", self.sms_count),
        ] {
            if let Some(v) = value {
                validate::amount(field, v, 100_000_000)?;
            }
        }
        Ok(())
    }
}

#[derive(Clone)]
pub struct Catalog {
    pool: PgPool,
    committed: Arc<Notify>,
}

const COLUMNS: &str =
    "product_code, name, operator, monthly_fee, data_mb, voice_minutes, sms_count, on_sale, sequence";

impl Catalog {
    pub fn new(pool: PgPool, committed: Arc<Notify>) -> Self {
        Self { pool, committed }
    }

    pub async fn list(&self) -> Result<Vec<Product>, AppError> {
        Ok(sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM products ORDER BY product_code"
        ))
        .fetch_all(&self.pool)
        .await?)
    }

    pub async fn get(&self, code: &str) -> Result<Product, AppError> {
        validate::product_code(code)?;
        sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM products WHERE product_code = $1"
        ))
        .bind(code)
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| not_found(code))
    }

    /// Puts a product on sale (new, or updated to this state) and publishes its full state.
    /// A product keeps its operator.
    pub async fn publish(&self, new: NewProduct, cause: Cause) -> Result<Product, AppError> {
        new.validate()?;
        let mut tx = self.pool.begin().await?;
        if let Some(existing) = lock(&mut tx, &new.product_code).await? {
            if existing.operator != new.operator {
                return Err(AppError::refused(
                    ProblemCode::OperatorMismatch,
                    format!(
                        "product {} is sold by {}, not {}",
                        new.product_code, existing.operator, new.operator
                    ),
                ));
            }
        }
        let product: Product = sqlx::query_as(&format!(
            "INSERT INTO products ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, true, 1)
             ON CONFLICT (product_code) DO UPDATE SET name = EXCLUDED.name,
                 monthly_fee = EXCLUDED.monthly_fee, data_mb = EXCLUDED.data_mb,
                 voice_minutes = EXCLUDED.voice_minutes, sms_count = EXCLUDED.sms_count,
                 on_sale = true, sequence = products.sequence + 1
             RETURNING {COLUMNS}"
        ))
        .bind(&new.product_code)
        .bind(&new.name)
        .bind(&new.operator)
        .bind(new.monthly_fee)
        .bind(new.data_mb)
        .bind(new.voice_minutes)
        .bind(new.sms_count)
        .fetch_one(&mut *tx)
        .await?;
        let fact = KosFact::ProductPublished(product.published());
        append_fact(&mut tx, &fact, product.sequence, &cause).await?;
        tx.commit().await?;
        self.committed.notify_one();
        Ok(product)
    }

    /// Takes a product off sale (lines on it keep it). Already off sale: nothing happens.
    pub async fn withdraw(&self, code: &str, cause: Cause) -> Result<Product, AppError> {
        validate::product_code(code)?;
        let mut tx = self.pool.begin().await?;
        let product = lock(&mut tx, code).await?.ok_or_else(|| not_found(code))?;
        if !product.on_sale {
            return Ok(product);
        }
        let product: Product = sqlx::query_as(&format!(
            "UPDATE products SET on_sale = false, sequence = sequence + 1
              WHERE product_code = $1 RETURNING {COLUMNS}"
        ))
        .bind(code)
        .fetch_one(&mut *tx)
        .await?;
        let fact = KosFact::ProductWithdrawn(ProductWithdrawn {
            product_code: product.product_code.clone(),
            operator: product.operator.clone(),
        });
        append_fact(&mut tx, &fact, product.sequence, &cause).await?;
        tx.commit().await?;
        self.committed.notify_one();
        Ok(product)
    }

    /// Changes a product's monthly fee. The same fee again: nothing happens.
    pub async fn reprice(
        &self,
        code: &str,
        monthly_fee: i64,
        cause: Cause,
    ) -> Result<Product, AppError> {
        validate::product_code(code)?;
        validate::amount("monthlyFee", monthly_fee, MAX_MONTHLY_FEE)?;
        let mut tx = self.pool.begin().await?;
        let before = lock(&mut tx, code).await?.ok_or_else(|| not_found(code))?;
        if before.monthly_fee == monthly_fee {
            return Ok(before);
        }
        let product: Product = sqlx::query_as(&format!(
            "UPDATE products SET monthly_fee = $2, sequence = sequence + 1
              WHERE product_code = $1 RETURNING {COLUMNS}"
        ))
        .bind(code)
        .bind(monthly_fee)
        .fetch_one(&mut *tx)
        .await?;
        let fact = KosFact::ProductRepriced(ProductRepriced {
            product_code: product.product_code.clone(),
            operator: product.operator.clone(),
            previous_monthly_fee: before.monthly_fee,
            monthly_fee,
        });
        append_fact(&mut tx, &fact, product.sequence, &cause).await?;
        tx.commit().await?;
        self.committed.notify_one();
        Ok(product)
    }
}

/// Adds a product with its `ProductPublished` fact unless the code exists; true if added.
pub async fn insert_if_absent(
    conn: &mut PgConnection,
    new: &NewProduct,
    on_sale: bool,
    cause: &Cause,
) -> Result<bool, sqlx::Error> {
    let inserted: Option<Product> = sqlx::query_as(&format!(
        "INSERT INTO products ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 1)
         ON CONFLICT (product_code) DO NOTHING RETURNING {COLUMNS}"
    ))
    .bind(&new.product_code)
    .bind(&new.name)
    .bind(&new.operator)
    .bind(new.monthly_fee)
    .bind(new.data_mb)
    .bind(new.voice_minutes)
    .bind(new.sms_count)
    .bind(on_sale)
    .fetch_optional(&mut *conn)
    .await?;
    match inserted {
        Some(product) => {
            let fact = KosFact::ProductPublished(product.published());
            append_fact(conn, &fact, product.sequence, cause).await?;
            Ok(true)
        }
        None => Ok(false),
    }
}

/// The product, locked for this transaction.
pub async fn lock(conn: &mut PgConnection, code: &str) -> Result<Option<Product>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM products WHERE product_code = $1 FOR UPDATE"
    ))
    .bind(code)
    .fetch_optional(conn)
    .await
}

/// The product as of this transaction, without a lock.
pub async fn find(conn: &mut PgConnection, code: &str) -> Result<Option<Product>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM products WHERE product_code = $1"
    ))
    .bind(code)
    .fetch_optional(conn)
    .await
}

fn not_found(code: &str) -> AppError {
    AppError::refused(
        ProblemCode::ProductNotFound,
        format!("product {code} is not known"),
    )
}
