//! Lines: the summary, the products a line may change to, and its change history.

use axum::extract::{Path, State};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use chrono::{DateTime, NaiveDate, Utc};
use read_model::keys::View;
use read_model::views::{
    ChangeRequestView, HistoryView, LineView, PendingChange, ProductRef, ProductView, ProductsView,
};
use serde::{Deserialize, Serialize};
use service_kit::auth::Caller;
use utoipa::openapi::schema::{AnyOfBuilder, Ref, Schema};
use utoipa::openapi::RefOr;
use utoipa::{IntoParams, PartialSchema, ToSchema};

use super::bills::Page;
use super::{
    doc_response, line_number, non_negative, paging, AppState, IfNoneMatch, QueryParams,
    SortedJson, PRIVATE_REVALIDATE,
};
use crate::error::AppError;
use crate::views::Doc;
use service_kit::problem::{Problem, ProblemCode, TokenProblems};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/lines/{lineNumber}", get(summary))
        .route("/api/v1/lines/{lineNumber}/product-changes", get(changes))
        .route("/api/v1/products/available", get(available))
}

/// Reads a line's view, waiting for `minPosition` first when given.
async fn line_view(
    state: &AppState,
    min_position: Option<&String>,
    view: View,
    line: &str,
) -> Result<Option<Doc>, AppError> {
    match non_negative("minPosition", min_position)? {
        Some(min) => {
            state.views.wait_for(line, min, state.max_wait).await?;
            state.views.get_fresh(&view).await
        }
        None => state.views.get(&view).await,
    }
}

fn line_not_found(line: &str) -> AppError {
    AppError::refused(
        ProblemCode::LineNotFound,
        format!("line {line} is not known"),
    )
}

/// `minPosition` alone: the line summary's and a change request's query.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct PositionParams {
    /// Wait (bounded) until the projection has reached this position (the `position` of
    /// a command's 202).
    #[param(value_type = Option<i64>, minimum = 0)]
    pub min_position: Option<String>,
}

/// The line summary: customer, operator, status, current product, pending change.
#[utoipa::path(get, path = "/api/v1/lines/{lineNumber}", tag = "lines",
    params(("lineNumber" = String, Path, description = "`010-1234-5678`"), PositionParams),
    responses(
        (status = 200, description = "The line summary (the stored view document, with an ETag)", body = LineView),
        (status = 304, description = "Not modified (If-None-Match)"),
        (status = 400, description = "INVALID_LINE_NUMBER, INVALID_PARAMETER (minPosition)", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "FORBIDDEN_LINE", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "LINE_NOT_FOUND", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "PROJECTION_BEHIND (minPosition not reached in time), READ_MODEL_UNAVAILABLE, AUTH_UNAVAILABLE, TIMEOUT", body = Problem, content_type = "application/problem+json"),
        TokenProblems),
    security(("bearer" = [])))]
pub async fn summary(
    caller: Caller,
    State(state): State<AppState>,
    Path(line): Path<String>,
    QueryParams(params): QueryParams<PositionParams>,
    if_none_match: IfNoneMatch,
) -> Result<Response, AppError> {
    let line = line_number(Some(line))?;
    caller.may_read_line(&line)?;
    let view = View::Line { line: line.clone() };
    let doc = line_view(&state, params.min_position.as_ref(), view, &line)
        .await?
        .ok_or_else(|| line_not_found(&line))?;
    Ok(doc_response(&doc, &if_none_match, PRIVATE_REVALIDATE))
}

/// The products' query.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct AvailableParams {
    /// `010-1234-5678`.
    #[param(required = true, value_type = String)]
    line_number: Option<String>,
    /// Wait (bounded) until the line's projection has reached this position (the
    /// `position` of a command's 202).
    #[param(value_type = Option<i64>, minimum = 0)]
    min_position: Option<String>,
}

/// A line's current product and the products it may change to (UFR-PROD-010/020).
// Fields in the order of the `json!` body this replaced (sorted), as `SortedJson` writes.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AvailableProducts {
    /// On sale, of the line's operator, not the current product.
    pub available_products: Vec<ProductView>,
    pub current_product: CurrentProduct,
    pub customer_id: String,
    pub line_number: String,
    pub operator: String,
    /// The change in flight (VALIDATED or PROCESSING); `null` when there is none.
    #[schema(required = true)]
    pub pending_change: Option<PendingChange>,
    /// `ACTIVE` or `SUSPENDED`; `UNKNOWN` until KOS registered the line.
    pub status: String,
}

/// The line's current product: the catalog's entry when the catalog has it, else what
/// the line's summary knows of it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum CurrentProduct {
    Catalog(ProductView),
    Line(ProductRef),
}

/// `anyOf` rather than the `oneOf` the derive writes for an untagged enum: a catalog
/// entry also has what a `ProductRef` requires, so it would match both.
impl utoipa::PartialSchema for CurrentProduct {
    fn schema() -> RefOr<Schema> {
        AnyOfBuilder::new()
            .item(Ref::from_schema_name(ProductView::name()))
            .item(Ref::from_schema_name(ProductRef::name()))
            .description(Some(
                "The line's current product: the catalog's entry (`ProductView`) when the \
                 catalog has it, else what the line's summary knows of it (`ProductRef`).",
            ))
            .into()
    }
}

impl ToSchema for CurrentProduct {
    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        schemas.push((ProductView::name().into(), ProductView::schema()));
        schemas.push((ProductRef::name().into(), ProductRef::schema()));
        ProductView::schemas(schemas);
        ProductRef::schemas(schemas);
    }
}

/// UFR-PROD-010/020: the current product and the products the line may change to (on
/// sale, same operator, not the current one).
#[utoipa::path(get, path = "/api/v1/products/available", tag = "lines", params(AvailableParams),
    responses(
        (status = 200, description = "Current and available products", body = AvailableProducts),
        (status = 400, description = "INVALID_LINE_NUMBER, INVALID_PARAMETER (minPosition)", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "FORBIDDEN_LINE", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "LINE_NOT_FOUND", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "PROJECTION_BEHIND (minPosition not reached in time), READ_MODEL_UNAVAILABLE, AUTH_UNAVAILABLE, TIMEOUT", body = Problem, content_type = "application/problem+json"),
        TokenProblems),
    security(("bearer" = [])))]
pub async fn available(
    caller: Caller,
    State(state): State<AppState>,
    QueryParams(params): QueryParams<AvailableParams>,
) -> Result<SortedJson<AvailableProducts>, AppError> {
    let line = line_number(params.line_number)?;
    caller.may_read_line(&line)?;
    let view = View::Line { line: line.clone() };
    let summary: LineView = line_view(&state, params.min_position.as_ref(), view, &line)
        .await?
        .ok_or_else(|| line_not_found(&line))?
        .json()?;
    let products = match state
        .views
        .get(&View::Products {
            operator: summary.operator.clone(),
        })
        .await?
    {
        Some(doc) => doc.json::<ProductsView>()?.products,
        None => vec![],
    };
    Ok(SortedJson(AvailableProducts::new(line, summary, products)))
}

impl AvailableProducts {
    fn new(line: String, summary: LineView, products: Vec<ProductView>) -> Self {
        let current = products
            .iter()
            .find(|p| p.product_code == summary.current_product.product_code)
            .cloned();
        let available_products = products
            .into_iter()
            .filter(|p| p.on_sale && p.product_code != summary.current_product.product_code)
            .collect();
        Self {
            available_products,
            current_product: match current {
                Some(p) => CurrentProduct::Catalog(p),
                None => CurrentProduct::Line(summary.current_product),
            },
            customer_id: summary.customer_id,
            line_number: line,
            operator: summary.operator,
            pending_change: summary.pending_change,
            status: summary.status,
        }
    }
}

/// A change request's status, as the `status` parameter names it (any case).
const STATUSES: [&str; 5] = [
    "REQUESTED",
    "VALIDATED",
    "PROCESSING",
    "COMPLETED",
    "FAILED",
];

/// The change history's query.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct ChangesParams {
    /// REQUESTED, VALIDATED, PROCESSING, COMPLETED or FAILED (any case).
    status: Option<String>,
    /// Requested at or after: `YYYY-MM-DD` (that day's start) or RFC 3339.
    from: Option<String>,
    /// Requested before: RFC 3339, or `YYYY-MM-DD` (that day included).
    to: Option<String>,
    /// From 0 (the default) to 100,000.
    #[param(value_type = Option<i64>, minimum = 0, maximum = 100_000)]
    page: Option<String>,
    /// From 1 to 100; 20 when left out.
    #[param(value_type = Option<i64>, minimum = 1, maximum = 100)]
    size: Option<String>,
    /// Wait (bounded) until the line's projection has reached this position (the
    /// `position` of a command's 202).
    #[param(value_type = Option<i64>, minimum = 0)]
    min_position: Option<String>,
}

/// A line's product-change history, newest first, filtered by status and request time
/// (`from`/`to`: `YYYY-MM-DD` or RFC 3339; `to` as a date includes that day).
#[utoipa::path(get, path = "/api/v1/lines/{lineNumber}/product-changes", tag = "lines",
    params(("lineNumber" = String, Path, description = "`010-1234-5678`"), ChangesParams),
    responses(
        (status = 200, description = "A page of change requests", body = Page<ChangeRequestView>),
        (status = 400, description = "INVALID_LINE_NUMBER, INVALID_STATUS, INVALID_PAGE (beyond 100,000), INVALID_PARAMETER (page, size, from, to, minPosition)", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "FORBIDDEN_LINE", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "PROJECTION_BEHIND (minPosition not reached in time), READ_MODEL_UNAVAILABLE, AUTH_UNAVAILABLE, TIMEOUT", body = Problem, content_type = "application/problem+json"),
        TokenProblems),
    security(("bearer" = [])))]
pub async fn changes(
    caller: Caller,
    State(state): State<AppState>,
    Path(line): Path<String>,
    QueryParams(params): QueryParams<ChangesParams>,
) -> Result<SortedJson<Page<ChangeRequestView>>, AppError> {
    let line = line_number(Some(line))?;
    caller.may_read_line(&line)?;
    let (page, size) = paging(params.page.as_ref(), params.size.as_ref())?;
    let status = params.status.map(|s| s.to_ascii_uppercase());
    if let Some(s) = &status {
        if !STATUSES.contains(&s.as_str()) {
            return Err(AppError::refused(
                ProblemCode::InvalidStatus,
                format!("unknown status `{s}`"),
            ));
        }
    }
    let from = params.from.map(|v| instant(&v, false)).transpose()?;
    let to = params.to.map(|v| instant(&v, true)).transpose()?;
    let view = View::History { line: line.clone() };
    let items = match line_view(&state, params.min_position.as_ref(), view, &line).await? {
        Some(doc) => doc.json::<HistoryView>()?.items,
        None => vec![],
    };
    let matching: Vec<_> = items
        .into_iter()
        .filter(|i| status.as_ref().is_none_or(|s| &i.status == s))
        .filter(|i| from.is_none_or(|f| i.requested_at >= f))
        .filter(|i| to.is_none_or(|t| i.requested_at < t))
        .collect();
    let total = matching.len();
    let items: Vec<_> = matching.into_iter().skip(page * size).take(size).collect();
    Ok(SortedJson(Page::new(line, items, page, size, total)))
}

/// A bound: RFC 3339, or a date (its start; for an upper bound, the next day's start).
fn instant(value: &str, upper: bool) -> Result<DateTime<Utc>, AppError> {
    if let Ok(t) = DateTime::parse_from_rfc3339(value) {
        return Ok(t.with_timezone(&Utc) + chrono::Duration::nanoseconds(upper as i64));
    }
    let date = NaiveDate::parse_from_str(value, "%Y-%m-%d").map_err(|_| {
        AppError::refused(
            ProblemCode::InvalidParameter,
            format!("`{value}` is not a date (YYYY-MM-DD) or RFC 3339 time"),
        )
    })?;
    let date = if upper {
        date.succ_opt().unwrap_or(date)
    } else {
        date
    };
    Ok(date
        .and_hms_opt(0, 0, 0)
        .expect("midnight exists")
        .and_utc())
}

#[cfg(test)]
mod tests {
    use super::*;
    use read_model::views::ProductRef;
    use serde_json::{json, Value};

    fn product(code: &str, on_sale: bool, data_mb: Option<i64>) -> ProductView {
        ProductView {
            product_code: code.into(),
            name: format!("{code} plan"),
            operator: "KT".into(),
            monthly_fee: 55_000,
            data_mb,
            voice_minutes: Some(300),
            sms_count: None,
            on_sale,
        }
    }

    fn summary(current: &str, product_name: Option<&str>, pending: bool) -> LineView {
        LineView {
            line_number: "010-1234-5678".into(),
            customer_id: "CUST0001".into(),
            customer_name: Some("Kim".into()),
            operator: "KT".into(),
            status: "ACTIVE".into(),
            suspension_reason: None,
            current_product: ProductRef {
                product_code: current.into(),
                product_name: product_name.map(Into::into),
            },
            contract: None,
            pending_change: pending.then(|| PendingChange {
                request_id: uuid::Uuid::from_u128(7),
                target_product_code: "P2".into(),
                status: "PROCESSING".into(),
                requested_at: "2026-03-01T10:00:00Z".parse().unwrap(),
            }),
            registered: true,
        }
    }

    /// The body as the handler built it before it had a type (verbatim).
    fn before(line: &str, summary: LineView, products: Vec<ProductView>) -> Value {
        let current = products
            .iter()
            .find(|p| p.product_code == summary.current_product.product_code)
            .cloned();
        let available: Vec<_> = products
            .into_iter()
            .filter(|p| p.on_sale && p.product_code != summary.current_product.product_code)
            .collect();
        json!({
            "lineNumber": line,
            "customerId": summary.customer_id,
            "operator": summary.operator,
            "status": summary.status,
            "currentProduct": current.map(|p| serde_json::to_value(p).unwrap_or_default())
                .unwrap_or_else(|| serde_json::to_value(&summary.current_product).unwrap_or_default()),
            "pendingChange": summary.pending_change,
            "availableProducts": available,
        })
    }

    #[test]
    fn the_typed_products_answer_is_the_bytes_the_json_body_was() {
        let catalogs = [
            vec![],
            vec![product("P1", true, Some(1024)), product("P2", true, None)],
            vec![product("P2", false, None), product("P3", true, Some(5))],
        ];
        for products in catalogs {
            for (name, pending) in [(None, false), (Some("Basic"), true)] {
                let line = "010-1234-5678";
                let old = before(line, summary("P1", name, pending), products.clone());
                let new = AvailableProducts::new(
                    line.into(),
                    summary("P1", name, pending),
                    products.clone(),
                );
                // What `SortedJson` sends.
                let sent = serde_json::to_value(&new).unwrap();
                assert_eq!(
                    serde_json::to_string(&old).unwrap(),
                    serde_json::to_string(&sent).unwrap()
                );
            }
        }
    }

    #[test]
    fn a_change_page_is_the_bytes_the_json_body_was() {
        let item = ChangeRequestView {
            request_id: uuid::Uuid::from_u128(9),
            line_number: "010-1234-5678".into(),
            status: "FAILED".into(),
            current_product_code: "P1".into(),
            target_product_code: "P2".into(),
            new_product_code: None,
            message: Some("no".into()),
            failure_reason: Some("KOS_REJECTED".into()),
            kos_reason_code: None,
            kos_order_id: None,
            failed_checks: vec!["SAME_OPERATOR".into()],
            requested_at: "2026-03-01T10:00:00Z".parse().unwrap(),
            sent_at: None,
            completed_at: None,
            failed_at: Some("2026-03-01T10:00:01Z".parse().unwrap()),
            updated_at: "2026-03-01T10:00:01Z".parse().unwrap(),
            late_answer: None,
        };
        for (items, page, size, total) in [(vec![], 0, 20, 0), (vec![item.clone(), item], 1, 2, 5)]
        {
            let old = json!({
                "lineNumber": "010-1234-5678",
                "items": items,
                "page": page,
                "size": size,
                "totalElements": total,
                "totalPages": usize::div_ceil(total, size),
            });
            let new = Page::new("010-1234-5678".into(), items, page, size, total);
            assert_eq!(
                serde_json::to_string(&old).unwrap(),
                serde_json::to_string(&serde_json::to_value(&new).unwrap()).unwrap()
            );
        }
    }
}
