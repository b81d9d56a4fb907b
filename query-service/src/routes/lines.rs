//! Lines: the summary, the products a line may change to, and its change history.

use axum::extract::{Path, Query, State};
use axum::response::Response;
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, NaiveDate, Utc};
use read_model::keys::View;
use read_model::views::{HistoryView, LineView, ProductsView};
use serde_json::{json, Value};
use service_kit::auth::Caller;

use super::bills::page_json;
use super::{
    doc_response, line_number, number, paging, AppState, IfNoneMatch, Params, PRIVATE_REVALIDATE,
};
use crate::error::AppError;
use crate::views::Doc;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/lines/{lineNumber}", get(summary))
        .route("/api/v1/lines/{lineNumber}/product-changes", get(changes))
        .route("/api/v1/products/available", get(available))
}

/// Reads a line's view, waiting for `minPosition` first when given.
async fn line_view(
    state: &AppState,
    params: &Params,
    view: View,
    line: &str,
) -> Result<Option<Doc>, AppError> {
    match number(params, "minPosition")? {
        Some(min) => {
            state.views.wait_for(line, min, state.max_wait).await?;
            state.views.get_fresh(&view).await
        }
        None => state.views.get(&view).await,
    }
}

fn line_not_found(line: &str) -> AppError {
    AppError::not_found("LINE_NOT_FOUND", format!("line {line} is not known"))
}

/// The line summary: customer, operator, status, current product, pending change.
#[utoipa::path(get, path = "/api/v1/lines/{lineNumber}", params(("lineNumber" = String, Path), ("minPosition" = Option<i64>, Query)),
    responses((status = 200, description = "The line summary"), (status = 403, description = "FORBIDDEN_LINE"), (status = 404, description = "LINE_NOT_FOUND")),
    security(("bearer" = [])))]
pub async fn summary(
    caller: Caller,
    State(state): State<AppState>,
    Path(line): Path<String>,
    Query(params): Query<Params>,
    if_none_match: IfNoneMatch,
) -> Result<Response, AppError> {
    let line = line_number(Some(line))?;
    caller.may_read_line(&line)?;
    let doc = line_view(&state, &params, View::Line { line: line.clone() }, &line)
        .await?
        .ok_or_else(|| line_not_found(&line))?;
    Ok(doc_response(&doc, &if_none_match, PRIVATE_REVALIDATE))
}

/// UFR-PROD-010/020: the current product and the products the line may change to (on
/// sale, same operator, not the current one).
#[utoipa::path(get, path = "/api/v1/products/available", params(("lineNumber" = String, Query)),
    responses((status = 200, description = "Current and available products"), (status = 403, description = "FORBIDDEN_LINE"), (status = 404, description = "LINE_NOT_FOUND")),
    security(("bearer" = [])))]
pub async fn available(
    caller: Caller,
    State(state): State<AppState>,
    Query(params): Query<Params>,
) -> Result<Json<Value>, AppError> {
    let line = line_number(params.get("lineNumber").cloned())?;
    caller.may_read_line(&line)?;
    let summary: LineView = line_view(&state, &params, View::Line { line: line.clone() }, &line)
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
    let current = products
        .iter()
        .find(|p| p.product_code == summary.current_product.product_code)
        .cloned();
    let available: Vec<_> = products
        .into_iter()
        .filter(|p| p.on_sale && p.product_code != summary.current_product.product_code)
        .collect();
    Ok(Json(json!({
        "lineNumber": line,
        "customerId": summary.customer_id,
        "operator": summary.operator,
        "status": summary.status,
        "currentProduct": current.map(|p| serde_json::to_value(p).unwrap_or_default())
            .unwrap_or_else(|| serde_json::to_value(&summary.current_product).unwrap_or_default()),
        "pendingChange": summary.pending_change,
        "availableProducts": available,
    })))
}

/// A line's product-change history, newest first, filtered by status and request time
/// (`from`/`to`: `YYYY-MM-DD` or RFC 3339; `to` as a date includes that day).
#[utoipa::path(get, path = "/api/v1/lines/{lineNumber}/product-changes",
    params(("lineNumber" = String, Path), ("status" = Option<String>, Query), ("from" = Option<String>, Query), ("to" = Option<String>, Query), ("page" = Option<i64>, Query), ("size" = Option<i64>, Query), ("minPosition" = Option<i64>, Query)),
    responses((status = 200, description = "A page of change requests"), (status = 403, description = "FORBIDDEN_LINE")),
    security(("bearer" = [])))]
pub async fn changes(
    caller: Caller,
    State(state): State<AppState>,
    Path(line): Path<String>,
    Query(params): Query<Params>,
) -> Result<Json<Value>, AppError> {
    let line = line_number(Some(line))?;
    caller.may_read_line(&line)?;
    let (page, size) = paging(&params)?;
    let status = params.get("status").map(|s| s.to_ascii_uppercase());
    if let Some(s) = &status {
        if ![
            "REQUESTED",
            "VALIDATED",
            "PROCESSING",
            "COMPLETED",
            "FAILED",
        ]
        .contains(&s.as_str())
        {
            return Err(AppError::bad(
                "INVALID_STATUS",
                format!("unknown status `{s}`"),
            ));
        }
    }
    let from = params.get("from").map(|v| instant(v, false)).transpose()?;
    let to = params.get("to").map(|v| instant(v, true)).transpose()?;
    let items =
        match line_view(&state, &params, View::History { line: line.clone() }, &line).await? {
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
    Ok(Json(page_json(&line, items, page, size, total)))
}

/// A bound: RFC 3339, or a date (its start; for an upper bound, the next day's start).
fn instant(value: &str, upper: bool) -> Result<DateTime<Utc>, AppError> {
    if let Ok(t) = DateTime::parse_from_rfc3339(value) {
        return Ok(t.with_timezone(&Utc) + chrono::Duration::nanoseconds(upper as i64));
    }
    let date = NaiveDate::parse_from_str(value, "%Y-%m-%d").map_err(|_| {
        AppError::bad(
            "INVALID_PARAMETER",
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
