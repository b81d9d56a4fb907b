//! The command side's copy of KOS reference data (catalog, lines), read by the pre-checks.
//! It is built from the facts KOS publishes on `kos.billing` (see `kos_inbox`); a file of
//! such envelopes can be imported in bulk (`command-service load-facts`, used by the
//! benchmark to register thousands of lines quickly). The request path never calls
//! another service.

use std::path::Path;

use events::codec::decode;
use events::kos::{KosFact, LineStatus};
use sqlx::PgPool;

use crate::domain::reference::{LineFacts, ProductFacts};

/// customer, operator, status, product of the line; operator and on-sale of the target.
pub(crate) type ChangeRow = (String, String, String, String, Option<String>, Option<bool>);

#[derive(Clone)]
pub struct ReferenceData {
    pool: PgPool,
}

impl ReferenceData {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    /// Applies one `kos.billing` fact at its aggregate `sequence`. A fact at or below the
    /// sequence already applied to its row is a redelivery and changes nothing; returns
    /// whether the fact changed anything. Bill and payment facts carry nothing the
    /// pre-checks need.
    pub async fn apply(&self, sequence: u64, fact: &KosFact) -> Result<bool, sqlx::Error> {
        let seq = sequence as i64;
        let query = match fact {
            KosFact::ProductPublished(p) => sqlx::query(
                "INSERT INTO ref_products (product_code, name, operator, monthly_fee, on_sale, kos_sequence)
                 VALUES ($1, $2, $3, $4, $5, $6)
                 ON CONFLICT (product_code) DO UPDATE
                   SET name = EXCLUDED.name, operator = EXCLUDED.operator,
                       monthly_fee = EXCLUDED.monthly_fee, on_sale = EXCLUDED.on_sale,
                       kos_sequence = EXCLUDED.kos_sequence, updated_at = now()
                   WHERE ref_products.kos_sequence < EXCLUDED.kos_sequence",
            )
            .bind(&p.product_code)
            .bind(&p.name)
            .bind(&p.operator)
            .bind(p.monthly_fee)
            .bind(p.on_sale)
            .bind(seq),
            KosFact::ProductWithdrawn(p) => sqlx::query(
                "UPDATE ref_products SET on_sale = false, kos_sequence = $2, updated_at = now()
                  WHERE product_code = $1 AND kos_sequence < $2",
            )
            .bind(&p.product_code)
            .bind(seq),
            KosFact::ProductRepriced(p) => sqlx::query(
                "UPDATE ref_products SET monthly_fee = $2, kos_sequence = $3, updated_at = now()
                  WHERE product_code = $1 AND kos_sequence < $3",
            )
            .bind(&p.product_code)
            .bind(p.monthly_fee)
            .bind(seq),
            KosFact::LineRegistered(l) => sqlx::query(
                "INSERT INTO ref_lines (line_number, customer_id, operator, status, product_code, kos_sequence)
                 VALUES ($1, $2, $3, $4, $5, $6)
                 ON CONFLICT (line_number) DO UPDATE
                   SET customer_id = EXCLUDED.customer_id, operator = EXCLUDED.operator,
                       status = EXCLUDED.status, product_code = EXCLUDED.product_code,
                       kos_sequence = EXCLUDED.kos_sequence, updated_at = now()
                   WHERE ref_lines.kos_sequence < EXCLUDED.kos_sequence",
            )
            .bind(&l.line_number)
            .bind(&l.customer_id)
            .bind(&l.operator)
            .bind(l.status.as_str())
            .bind(&l.product_code)
            .bind(seq),
            KosFact::LineSuspended(l) => line_status(&l.line_number, LineStatus::Suspended, seq),
            KosFact::LineResumed(l) => line_status(&l.line_number, LineStatus::Active, seq),
            KosFact::LineProductChanged(l) => sqlx::query(
                "UPDATE ref_lines SET product_code = $2, kos_sequence = $3, updated_at = now()
                  WHERE line_number = $1 AND kos_sequence < $3",
            )
            .bind(&l.line_number)
            .bind(&l.new_product_code)
            .bind(seq),
            KosFact::BillIssued(_) | KosFact::PaymentRecorded(_) => return Ok(false),
        };
        let done = query.execute(&self.pool).await?;
        Ok(done.rows_affected() > 0)
    }

    /// Imports a JSON-lines file of `kos.billing` envelopes through the same `apply` as
    /// the topic; returns how many facts changed something.
    pub async fn load_file(&self, path: &Path) -> anyhow::Result<usize> {
        let text = tokio::fs::read_to_string(path).await?;
        let mut applied = 0;
        for (n, line) in text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
        {
            let (envelope, fact) = decode::<KosFact>(line.as_bytes())
                .map_err(|e| anyhow::anyhow!("{}:{}: {e}", path.display(), n + 1))?;
            if self.apply(envelope.sequence, &fact).await? {
                applied += 1;
            }
        }
        Ok(applied)
    }
}

fn line_status(
    line_number: &str,
    status: LineStatus,
    seq: i64,
) -> sqlx::query::Query<'_, sqlx::Postgres, sqlx::postgres::PgArguments> {
    sqlx::query(
        "UPDATE ref_lines SET status = $2, kos_sequence = $3, updated_at = now()
          WHERE line_number = $1 AND kos_sequence < $3",
    )
    .bind(line_number)
    .bind(status.as_str())
    .bind(seq)
}

/// The columns `change_facts` reads, from `ref_lines l` joined with `ref_products p`.
pub(crate) const CHANGE_COLUMNS: &str =
    "l.customer_id, l.operator, l.status, l.product_code, p.operator, p.on_sale";

pub(crate) fn change_facts(
    line_number: &str,
    target_product_code: &str,
    (customer_id, operator, status, product_code, p_operator, p_on_sale): ChangeRow,
) -> (LineFacts, Option<ProductFacts>) {
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
}
