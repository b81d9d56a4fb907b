//! The command side's copy of KOS reference data (catalog, lines), read by the pre-checks.
//! It is built from KOS facts: today from a seed file of `kos.billing` envelopes, later
//! straight from the topic. The request path never calls another service.

use std::path::Path;

use events::codec::decode;
use events::kos::{KosFact, LineStatus};
use sqlx::PgPool;

use crate::domain::reference::{LineFacts, ProductFacts};

/// customer, operator, status, product of the line; operator and on-sale of the target.
type ChangeRow = (String, String, String, String, Option<String>, Option<bool>);

#[derive(Clone)]
pub struct ReferenceData {
    pool: PgPool,
}

impl ReferenceData {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    /// The line and the target product in one round trip. `None` if the line is unknown.
    pub async fn for_change(
        &self,
        line_number: &str,
        target_product_code: &str,
    ) -> Result<Option<(LineFacts, Option<ProductFacts>)>, sqlx::Error> {
        let row: Option<ChangeRow> = sqlx::query_as(
            "SELECT l.customer_id, l.operator, l.status, l.product_code, p.operator, p.on_sale
               FROM ref_lines l
               LEFT JOIN ref_products p ON p.product_code = $2
              WHERE l.line_number = $1",
        )
        .bind(line_number)
        .bind(target_product_code)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(
            |(customer_id, operator, status, product_code, p_operator, p_on_sale)| {
                let line = LineFacts {
                    line_number: line_number.to_owned(),
                    customer_id,
                    operator,
                    status: if status == "ACTIVE" {
                        LineStatus::Active
                    } else {
                        LineStatus::Suspended
                    },
                    product_code,
                };
                let target = p_operator
                    .zip(p_on_sale)
                    .map(|(operator, on_sale)| ProductFacts {
                        product_code: target_product_code.to_owned(),
                        operator,
                        on_sale,
                    });
                (line, target)
            },
        ))
    }

    /// Applies one fact; a fact carries the full current state, so applying it again
    /// changes nothing.
    pub async fn apply(&self, fact: &KosFact) -> Result<(), sqlx::Error> {
        match fact {
            KosFact::ProductPublished(p) => {
                sqlx::query(
                    "INSERT INTO ref_products (product_code, name, operator, monthly_fee, on_sale)
                     VALUES ($1, $2, $3, $4, $5)
                     ON CONFLICT (product_code) DO UPDATE
                       SET name = EXCLUDED.name, operator = EXCLUDED.operator,
                           monthly_fee = EXCLUDED.monthly_fee, on_sale = EXCLUDED.on_sale,
                           updated_at = now()",
                )
                .bind(&p.product_code)
                .bind(&p.name)
                .bind(&p.operator)
                .bind(p.monthly_fee)
                .bind(p.on_sale)
                .execute(&self.pool)
                .await?;
            }
            KosFact::LineRegistered(l) => {
                sqlx::query(
                    "INSERT INTO ref_lines (line_number, customer_id, operator, status, product_code)
                     VALUES ($1, $2, $3, $4, $5)
                     ON CONFLICT (line_number) DO UPDATE
                       SET customer_id = EXCLUDED.customer_id, operator = EXCLUDED.operator,
                           status = EXCLUDED.status, product_code = EXCLUDED.product_code,
                           updated_at = now()",
                )
                .bind(&l.line_number)
                .bind(&l.customer_id)
                .bind(&l.operator)
                .bind(l.status.as_str())
                .bind(&l.product_code)
                .execute(&self.pool)
                .await?;
            }
            _ => {}
        }
        Ok(())
    }

    /// Loads a JSON-lines file of `kos.billing` envelopes; returns how many facts it applied.
    pub async fn load_file(&self, path: &Path) -> anyhow::Result<usize> {
        let text = tokio::fs::read_to_string(path).await?;
        let mut applied = 0;
        for (n, line) in text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
        {
            let (_, fact) = decode::<KosFact>(line.as_bytes())
                .map_err(|e| anyhow::anyhow!("{}:{}: {e}", path.display(), n + 1))?;
            self.apply(&fact).await?;
            applied += 1;
        }
        Ok(applied)
    }
}
