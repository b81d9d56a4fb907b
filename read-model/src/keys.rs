//! One variant per view instance: its Redis key, its TTL and how to build it from the
//! PostgreSQL read tables.
//!
//! Keys of one line share the hash tag `{line:<number>}`, so they live in one cluster
//! slot and any multi-key operation on a line stays legal on a clustered Redis.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use chrono::{DateTime, Utc};

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
    /// Joined, not `format!`ted: query-service makes the key of every query (its L1 is
    /// keyed by it), and the formatting machinery cost more than the cache lookup.
    pub fn redis_key(&self, prefix: &str) -> String {
        match self {
            View::Bill { line, month } => [prefix, "bill:{line:", line, "}:", month].concat(),
            View::Months { line } => [prefix, "months:{line:", line, "}"].concat(),
            View::Line { line } => [prefix, "line:{line:", line, "}"].concat(),
            View::History { line } => [prefix, "history:{line:", line, "}"].concat(),
            View::Request { id } => {
                let mut buffer = Uuid::encode_buffer();
                let id = id.hyphenated().encode_lower(&mut buffer);
                [prefix, "request:{req:", id, "}"].concat()
            }
            View::Products { operator } => [prefix, "products:{op:", operator, "}"].concat(),
            View::Position { line } => [prefix, "pos:{line:", line, "}"].concat(),
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
    /// tables; `None` when the view does not exist. One statement on `db` (a pool, or the
    /// projector's transaction holding the view's lock).
    pub async fn load<'e>(
        &self,
        db: impl sqlx::PgExecutor<'e>,
    ) -> Result<Option<Vec<u8>>, sqlx::Error> {
        let json: Option<serde_json::Value> = match self {
            View::Bill { line, month } => {
                sqlx::query_scalar("SELECT doc FROM bills WHERE line_number = $1 AND month = $2")
                    .bind(line)
                    .bind(month)
                    .fetch_optional(db)
                    .await?
            }
            View::Months { line } => {
                let months: Vec<String> = sqlx::query_scalar(
                    "SELECT month FROM bills WHERE line_number = $1 ORDER BY month COLLATE \"C\" DESC",
                )
                .bind(line)
                .fetch_all(db)
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
                    .fetch_optional(db)
                    .await?
            }
            View::History { line } => {
                let docs: Vec<serde_json::Value> = sqlx::query_scalar(
                    "SELECT doc FROM change_requests WHERE line_number = $1
                      ORDER BY requested_at DESC, request_id",
                )
                .bind(line)
                .fetch_all(db)
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
                    .fetch_optional(db)
                    .await?
            }
            View::Products { operator } => {
                let docs: Vec<serde_json::Value> = sqlx::query_scalar(
                    "SELECT doc FROM products WHERE operator = $1 AND on_sale
                      ORDER BY product_code COLLATE \"C\"",
                )
                .bind(operator)
                .fetch_all(db)
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
                let position = position(db, line).await?;
                return Ok(Some(position.to_string().into_bytes()));
            }
        };
        Ok(json.map(|v| serde_json::to_vec(&v).expect("JSON values serialize")))
    }
}

/// (line, month, doc)
pub type BillRow = (String, String, serde_json::Value);
/// (line, doc) as stored, without the product's name.
pub type LineRow = (String, serde_json::Value);
/// (request id, line, requested at, doc)
pub type RequestRow = (Uuid, String, DateTime<Utc>, serde_json::Value);
/// (product code, operator, on sale, doc)
pub type ProductRow = (String, String, bool, serde_json::Value);

/// The read tables' contents views are built from: a slice of them read from
/// PostgreSQL by [`load_slice`], or held in memory by a replay that wrote them.
#[derive(Debug, Default)]
pub struct Rows {
    pub bills: Vec<BillRow>,
    pub lines: Vec<LineRow>,
    pub requests: Vec<RequestRow>,
    pub products: Vec<ProductRow>,
    /// The line streams' last applied sequences.
    pub positions: Vec<(String, i64)>,
}

/// The products, for [`build_line_views`] and [`build_product_views`].
pub async fn load_products(pool: &PgPool) -> Result<Vec<ProductRow>, sqlx::Error> {
    sqlx::query_as("SELECT product_code, operator, on_sale, doc FROM products")
        .fetch_all(pool)
        .await
}

/// The end of the slice of about `lines` lines after `after` (`""`: from the first):
/// `None` when fewer are left, so the last slice runs to the end. Every table's rows of
/// a line fall in one slice (the bounds are compared in one collation).
pub async fn slice_end(
    pool: &PgPool,
    after: &str,
    lines: i64,
) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT line_number FROM lines WHERE line_number > $1 ORDER BY line_number
         OFFSET $2 LIMIT 1",
    )
    .bind(after)
    .bind(lines.max(1) - 1)
    .fetch_optional(pool)
    .await
}

/// The rows of the lines in (`after`, `upto`] (`upto` `None`: to the end), without
/// the products: what [`build_line_views`] needs for those lines, so the views of a read
/// model of any size are built in slices of bounded memory.
pub async fn load_slice(
    pool: &PgPool,
    after: &str,
    upto: Option<&str>,
) -> Result<Rows, sqlx::Error> {
    let range = |column: &str| match upto {
        Some(_) => format!("{column} > $1 AND {column} <= $2"),
        None => format!("{column} > $1 AND $2::text IS NULL"),
    };
    let bills = format!(
        "SELECT line_number, month, doc FROM bills WHERE {}",
        range("line_number")
    );
    let lines = format!(
        "SELECT line_number, doc FROM lines WHERE {}",
        range("line_number")
    );
    let requests = format!(
        "SELECT request_id, line_number, requested_at, doc FROM change_requests WHERE {}",
        range("line_number")
    );
    let positions = format!(
        "SELECT aggregate_id, sequence FROM applied WHERE aggregate_type = $3 AND {}",
        range("aggregate_id")
    );
    Ok(Rows {
        bills: sqlx::query_as(&bills)
            .bind(after)
            .bind(upto)
            .fetch_all(pool)
            .await?,
        lines: sqlx::query_as(&lines)
            .bind(after)
            .bind(upto)
            .fetch_all(pool)
            .await?,
        requests: sqlx::query_as(&requests)
            .bind(after)
            .bind(upto)
            .fetch_all(pool)
            .await?,
        products: vec![],
        positions: sqlx::query_as(&positions)
            .bind(after)
            .bind(upto)
            .bind(crate::LINE_AGGREGATE)
            .fetch_all(pool)
            .await?,
    })
}

/// Every view of `rows`, as [`View::load`]'s queries build each one from the tables,
/// handed to `emit` one by one (so they can be written while the rest is built).
pub fn build_all(mut rows: Rows, mut emit: impl FnMut(View, Vec<u8>)) {
    let products = std::mem::take(&mut rows.products);
    build_line_views(rows, &products, &mut emit);
    build_product_views(products, &mut emit);
}

/// The views of the lines in `rows` (bills, months, line, requests, history,
/// position), with the product names of `products`; `rows.products` is not read.
pub fn build_line_views(rows: Rows, products: &[ProductRow], mut emit: impl FnMut(View, Vec<u8>)) {
    let Rows {
        bills,
        lines,
        requests,
        positions,
        ..
    } = rows;
    build_bills(bills, &mut emit);
    build_lines(lines, products, &mut emit);
    build_requests(requests, &mut emit);
    for (line, sequence) in positions {
        emit(View::Position { line }, sequence.to_string().into_bytes());
    }
}

/// Each operator's list of products on sale.
pub fn build_product_views(products: Vec<ProductRow>, mut emit: impl FnMut(View, Vec<u8>)) {
    build_products(products, &mut emit);
}

fn bytes(v: &serde_json::Value) -> Vec<u8> {
    serde_json::to_vec(v).expect("JSON values serialize")
}

/// Each bill, and each line's months with a bill, newest first.
fn build_bills(bills: Vec<BillRow>, emit: &mut impl FnMut(View, Vec<u8>)) {
    let mut months: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (line, month, doc) in bills {
        months.entry(line.clone()).or_default().push(month.clone());
        emit(View::Bill { line, month }, bytes(&doc));
    }
    for (line, mut list) in months {
        list.sort_by(|a, b| b.cmp(a));
        let doc = to_json(&MonthsView {
            line_number: line.clone(),
            months: list,
        });
        emit(View::Months { line }, bytes(&doc));
    }
}

/// Each line's summary, its product's name from the catalog as it is now (`jsonb_set` in
/// the query).
fn build_lines(lines: Vec<LineRow>, products: &[ProductRow], emit: &mut impl FnMut(View, Vec<u8>)) {
    let names: HashMap<&str, &serde_json::Value> = products
        .iter()
        .filter_map(|(code, _, _, doc)| doc.get("name").map(|n| (code.as_str(), n)))
        .collect();
    for (line, mut doc) in lines {
        let code = doc["currentProduct"]["productCode"]
            .as_str()
            .map(str::to_owned);
        if let (Some(name), Some(current)) = (
            code.and_then(|c| names.get(c.as_str()).copied()),
            doc.get_mut("currentProduct")
                .and_then(serde_json::Value::as_object_mut),
        ) {
            current.insert("productName".into(), name.clone());
        }
        emit(View::Line { line }, bytes(&doc));
    }
}

/// Each change request, and each line's history of them.
fn build_requests(mut requests: Vec<RequestRow>, emit: &mut impl FnMut(View, Vec<u8>)) {
    // Newest first, as `ORDER BY requested_at DESC, request_id` (timestamptz keeps
    // microseconds).
    requests.sort_by(|a, b| {
        let micros = |t: &DateTime<Utc>| t.timestamp_micros();
        (&a.1, std::cmp::Reverse(micros(&a.2)), a.0).cmp(&(
            &b.1,
            std::cmp::Reverse(micros(&b.2)),
            b.0,
        ))
    });
    let mut history: Vec<(String, Vec<ChangeRequestView>)> = vec![];
    for (id, line, _, doc) in requests {
        emit(View::Request { id }, bytes(&doc));
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
        emit(View::History { line }, bytes(&doc));
    }
}

/// Each operator's products on sale. Every operator with a product, on sale or not, has
/// a list (maybe empty). Codes sort byte-wise, as the queries' `COLLATE "C"`.
fn build_products(products: Vec<ProductRow>, emit: &mut impl FnMut(View, Vec<u8>)) {
    let mut by_operator: BTreeMap<String, Vec<(String, serde_json::Value)>> = BTreeMap::new();
    for (code, operator, on_sale, doc) in products {
        let list = by_operator.entry(operator).or_default();
        if on_sale {
            list.push((code, doc));
        }
    }
    for (operator, mut list) in by_operator {
        list.sort_by(|a, b| a.0.cmp(&b.0));
        let products = list
            .into_iter()
            .filter_map(|(_, d)| serde_json::from_value::<ProductView>(d).ok())
            .collect();
        let doc = to_json(&ProductsView {
            operator: operator.clone(),
            products,
        });
        emit(View::Products { operator }, bytes(&doc));
    }
}

/// The line stream's last applied sequence (0 when nothing was applied).
pub async fn position<'e>(db: impl sqlx::PgExecutor<'e>, line: &str) -> Result<i64, sqlx::Error> {
    let position: Option<i64> = sqlx::query_scalar(
        "SELECT sequence FROM applied WHERE aggregate_type = $1 AND aggregate_id = $2",
    )
    .bind(crate::LINE_AGGREGATE)
    .bind(line)
    .fetch_optional(db)
    .await?;
    Ok(position.unwrap_or(0))
}

fn to_json<T: serde::Serialize>(v: &T) -> serde_json::Value {
    serde_json::to_value(v).expect("views serialize")
}

#[cfg(test)]
mod tests {
    use super::*;

    use serde_json::json;

    #[test]
    fn built_views_name_the_lines_product_list_every_operator_and_put_newest_requests_first() {
        let request = |id: u128, at: &str| {
            let doc = json!({
                "requestId": Uuid::from_u128(id), "lineNumber": "010-0000-0001",
                "currentProductCode": "A", "targetProductCode": "B", "status": "COMPLETED",
                "requestedAt": at, "updatedAt": at
            });
            (
                Uuid::from_u128(id),
                "010-0000-0001".to_owned(),
                at.parse().unwrap(),
                doc,
            )
        };
        let product = |code: &str, operator: &str, on_sale: bool| {
            let doc = json!({"productCode": code, "name": format!("name {code}"),
                             "operator": operator, "monthlyFee": 1, "onSale": on_sale});
            (code.to_owned(), operator.to_owned(), on_sale, doc)
        };
        let rows = Rows {
            lines: vec![(
                "010-0000-0001".into(),
                json!({"currentProduct": {"productCode": "B"}}),
            )],
            requests: vec![
                request(1, "2026-01-01T00:00:00Z"),
                request(2, "2026-02-01T00:00:00Z"),
            ],
            products: vec![product("B", "KT", true), product("C", "LGU", false)],
            ..Default::default()
        };
        let mut views = BTreeMap::new();
        build_all(rows, |view, bytes| {
            views.insert(
                view,
                serde_json::from_slice::<serde_json::Value>(&bytes).unwrap(),
            );
        });

        let line = &views[&View::Line {
            line: "010-0000-0001".into(),
        }];
        assert_eq!(line["currentProduct"]["productName"], "name B");
        let history = &views[&View::History {
            line: "010-0000-0001".into(),
        }];
        let ids: Vec<&str> = history["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["requestId"].as_str().unwrap())
            .collect();
        assert_eq!(
            ids,
            [
                Uuid::from_u128(2).to_string(),
                Uuid::from_u128(1).to_string()
            ]
        );
        let lgu = &views[&View::Products {
            operator: "LGU".into(),
        }];
        assert_eq!(
            lgu["products"],
            json!([]),
            "an operator with nothing on sale"
        );
    }

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

    #[test]
    fn each_view_has_the_key_the_projector_writes_and_the_query_side_reads() {
        let line = || "010-1234-5678".to_owned();
        let id = Uuid::parse_str("6a0e54f1-8b1f-4c83-9d7c-2f4e1b7ab001").unwrap();
        let expected = [
            (
                View::Bill {
                    line: line(),
                    month: "2024-03".into(),
                },
                "t.bill:{line:010-1234-5678}:2024-03",
            ),
            (
                View::Months { line: line() },
                "t.months:{line:010-1234-5678}",
            ),
            (View::Line { line: line() }, "t.line:{line:010-1234-5678}"),
            (
                View::History { line: line() },
                "t.history:{line:010-1234-5678}",
            ),
            (
                View::Request { id },
                "t.request:{req:6a0e54f1-8b1f-4c83-9d7c-2f4e1b7ab001}",
            ),
            (
                View::Products {
                    operator: "KT".into(),
                },
                "t.products:{op:KT}",
            ),
            (
                View::Position { line: line() },
                "t.pos:{line:010-1234-5678}",
            ),
        ];
        for (view, key) in expected {
            assert_eq!(view.redis_key("t."), key);
        }
    }
}
