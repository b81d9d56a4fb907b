//! One variant per view instance: its Redis key, its TTL and how to build it from the
//! PostgreSQL read tables.
//!
//! Keys of one line share the hash tag `{line:<number>}`, so they live in one cluster
//! slot and any multi-key operation on a line stays legal on a clustered Redis.

use std::time::Duration;

use sqlx::PgPool;
use uuid::Uuid;

use crate::views::{ChangeRequestView, HistoryView, MonthsView, ProductView, ProductsView};

/// Bill data: 1 h (seed cache policy).
pub const BILL_TTL: Duration = Duration::from_secs(3600);
/// Product info: 4 h (seed cache policy).
pub const PRODUCT_TTL: Duration = Duration::from_secs(4 * 3600);
/// Everything else a line shows: the L2 policy of 30 min.
pub const LINE_TTL: Duration = Duration::from_secs(30 * 60);

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum View {
    Bill {
        line: String,
        month: String,
    },
    Months {
        line: String,
    },
    Line {
        line: String,
    },
    History {
        line: String,
    },
    Request {
        id: Uuid,
    },
    Products {
        operator: String,
    },
    /// The line stream's last applied sequence (read-your-writes).
    Position {
        line: String,
    },
}

impl View {
    pub fn redis_key(&self, prefix: &str) -> String {
        match self {
            View::Bill { line, month } => format!("{prefix}bill:{{line:{line}}}:{month}"),
            View::Months { line } => format!("{prefix}months:{{line:{line}}}"),
            View::Line { line } => format!("{prefix}line:{{line:{line}}}"),
            View::History { line } => format!("{prefix}history:{{line:{line}}}"),
            View::Request { id } => format!("{prefix}request:{{req:{id}}}"),
            View::Products { operator } => format!("{prefix}products:{{op:{operator}}}"),
            View::Position { line } => format!("{prefix}pos:{{line:{line}}}"),
        }
    }

    pub fn ttl(&self) -> Duration {
        match self {
            View::Bill { .. } | View::Months { .. } => BILL_TTL,
            View::Products { .. } => PRODUCT_TTL,
            _ => LINE_TTL,
        }
    }

    /// The view as stored in Redis (JSON; the position as a decimal), built from the read
    /// tables; `None` when the view does not exist.
    pub async fn load(&self, pool: &PgPool) -> Result<Option<Vec<u8>>, sqlx::Error> {
        let json: Option<serde_json::Value> = match self {
            View::Bill { line, month } => {
                sqlx::query_scalar("SELECT doc FROM bills WHERE line_number = $1 AND month = $2")
                    .bind(line)
                    .bind(month)
                    .fetch_optional(pool)
                    .await?
            }
            View::Months { line } => {
                let months: Vec<String> = sqlx::query_scalar(
                    "SELECT month FROM bills WHERE line_number = $1 ORDER BY month DESC",
                )
                .bind(line)
                .fetch_all(pool)
                .await?;
                Some(to_json(&MonthsView {
                    line_number: line.clone(),
                    months,
                }))
            }
            View::Line { line } => {
                // The product's name comes from the catalog as it is now.
                sqlx::query_scalar(
                    "SELECT CASE WHEN p.doc IS NULL THEN l.doc
                                 ELSE jsonb_set(l.doc, '{currentProduct,productName}', p.doc->'name')
                            END
                       FROM lines l
                       LEFT JOIN products p ON p.product_code = l.doc->'currentProduct'->>'productCode'
                      WHERE l.line_number = $1",
                )
                    .bind(line)
                    .fetch_optional(pool)
                    .await?
            }
            View::History { line } => {
                let docs: Vec<serde_json::Value> = sqlx::query_scalar(
                    "SELECT doc FROM change_requests WHERE line_number = $1
                      ORDER BY requested_at DESC, request_id",
                )
                .bind(line)
                .fetch_all(pool)
                .await?;
                let items = docs
                    .into_iter()
                    .filter_map(|d| serde_json::from_value::<ChangeRequestView>(d).ok())
                    .collect();
                Some(to_json(&HistoryView {
                    line_number: line.clone(),
                    items,
                }))
            }
            View::Request { id } => {
                sqlx::query_scalar("SELECT doc FROM change_requests WHERE request_id = $1")
                    .bind(id)
                    .fetch_optional(pool)
                    .await?
            }
            View::Products { operator } => {
                let docs: Vec<serde_json::Value> = sqlx::query_scalar(
                    "SELECT doc FROM products WHERE operator = $1 AND on_sale
                      ORDER BY product_code",
                )
                .bind(operator)
                .fetch_all(pool)
                .await?;
                let products = docs
                    .into_iter()
                    .filter_map(|d| serde_json::from_value::<ProductView>(d).ok())
                    .collect();
                Some(to_json(&ProductsView {
                    operator: operator.clone(),
                    products,
                }))
            }
            View::Position { line } => {
                let position = position(pool, line).await?;
                return Ok(Some(position.to_string().into_bytes()));
            }
        };
        Ok(json.map(|v| serde_json::to_vec(&v).expect("JSON values serialize")))
    }
}

/// Every view the read tables hold, built as [`View::load`] builds each one (same
/// queries without the key filter, same documents byte for byte), for filling a fresh
/// namespace's Redis after a replay. Lines, bills and requests are read in full: memory
/// grows with the read model (a few hundred bytes per view).
pub async fn load_all(pool: &PgPool) -> Result<Vec<(View, Vec<u8>)>, sqlx::Error> {
    let bytes = |v: &serde_json::Value| serde_json::to_vec(v).expect("JSON values serialize");
    let mut out = vec![];
    let bills: Vec<(String, String, serde_json::Value)> =
        sqlx::query_as("SELECT line_number, month, doc FROM bills")
            .fetch_all(pool)
            .await?;
    let mut months: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for (line, month, doc) in bills {
        months.entry(line.clone()).or_default().push(month.clone());
        out.push((View::Bill { line, month }, bytes(&doc)));
    }
    for (line, mut list) in months {
        list.sort_by(|a, b| b.cmp(a));
        let doc = to_json(&MonthsView {
            line_number: line.clone(),
            months: list,
        });
        out.push((View::Months { line }, bytes(&doc)));
    }
    let lines: Vec<(String, serde_json::Value)> = sqlx::query_as(
        "SELECT l.line_number,
                CASE WHEN p.doc IS NULL THEN l.doc
                     ELSE jsonb_set(l.doc, '{currentProduct,productName}', p.doc->'name')
                END
           FROM lines l
           LEFT JOIN products p ON p.product_code = l.doc->'currentProduct'->>'productCode'",
    )
    .fetch_all(pool)
    .await?;
    for (line, doc) in lines {
        out.push((View::Line { line }, bytes(&doc)));
    }
    let requests: Vec<(Uuid, String, serde_json::Value)> = sqlx::query_as(
        "SELECT request_id, line_number, doc FROM change_requests
          ORDER BY line_number, requested_at DESC, request_id",
    )
    .fetch_all(pool)
    .await?;
    let mut history: Vec<(String, Vec<ChangeRequestView>)> = vec![];
    for (id, line, doc) in requests {
        out.push((View::Request { id }, bytes(&doc)));
        if history.last().is_none_or(|(l, _)| *l != line) {
            history.push((line.clone(), vec![]));
        }
        if let Ok(item) = serde_json::from_value::<ChangeRequestView>(doc) {
            history.last_mut().expect("pushed").1.push(item);
        }
    }
    for (line, items) in history {
        let doc = to_json(&HistoryView {
            line_number: line.clone(),
            items,
        });
        out.push((View::History { line }, bytes(&doc)));
    }
    let products: Vec<(String, Option<serde_json::Value>)> = sqlx::query_as(
        "SELECT o.operator, p.doc
           FROM (SELECT DISTINCT operator FROM products) o
           LEFT JOIN products p ON p.operator = o.operator AND p.on_sale
          ORDER BY o.operator, p.product_code",
    )
    .fetch_all(pool)
    .await?;
    let mut by_operator: Vec<(String, Vec<ProductView>)> = vec![];
    for (operator, doc) in products {
        if by_operator.last().is_none_or(|(o, _)| *o != operator) {
            by_operator.push((operator.clone(), vec![]));
        }
        if let Some(p) = doc.and_then(|d| serde_json::from_value::<ProductView>(d).ok()) {
            by_operator.last_mut().expect("pushed").1.push(p);
        }
    }
    for (operator, products) in by_operator {
        let doc = to_json(&ProductsView {
            operator: operator.clone(),
            products,
        });
        out.push((View::Products { operator }, bytes(&doc)));
    }
    let positions: Vec<(String, i64)> =
        sqlx::query_as("SELECT aggregate_id, sequence FROM applied WHERE aggregate_type = $1")
            .bind(crate::LINE_AGGREGATE)
            .fetch_all(pool)
            .await?;
    for (line, sequence) in positions {
        out.push((View::Position { line }, sequence.to_string().into_bytes()));
    }
    Ok(out)
}

/// The line stream's last applied sequence (0 when nothing was applied).
pub async fn position(pool: &PgPool, line: &str) -> Result<i64, sqlx::Error> {
    let position: Option<i64> = sqlx::query_scalar(
        "SELECT sequence FROM applied WHERE aggregate_type = $1 AND aggregate_id = $2",
    )
    .bind(crate::LINE_AGGREGATE)
    .bind(line)
    .fetch_optional(pool)
    .await?;
    Ok(position.unwrap_or(0))
}

fn to_json<T: serde::Serialize>(v: &T) -> serde_json::Value {
    serde_json::to_value(v).expect("views serialize")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lines_keys_share_one_hash_tag() {
        let line = "010-1234-5678".to_owned();
        let keys = [
            View::Bill {
                line: line.clone(),
                month: "2024-03".into(),
            },
            View::Months { line: line.clone() },
            View::Line { line: line.clone() },
            View::History { line: line.clone() },
            View::Position { line },
        ];
        for key in keys {
            assert!(
                key.redis_key("t.").contains("{line:010-1234-5678}"),
                "{key:?}"
            );
        }
    }
}
