//! Bills: the menu, one month's bill, and the bill-inquiry history.

use axum::extract::{FromRequestParts, Query, State};
use axum::http::request::Parts;
use axum::response::Response;
use axum::routing::get;
use axum::{Json, Router};
use chrono::{FixedOffset, Utc};
use events::bill_inquiry::{BillInquired, InquiryResult};
use read_model::keys::View;
use read_model::views::{InquiryView, LineView, MonthsView};
use serde_json::{json, Value};
use service_kit::auth::{Caller, Role};
use service_kit::http::CorrelationId;
use service_kit::sharded::Counter;
use uuid::Uuid;

use super::{
    doc_response, line_number, non_negative, paging, AppState, IfNoneMatch, Params,
    PRIVATE_REVALIDATE,
};
use crate::error::AppError;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/bills/menu", get(menu))
        .route("/api/v1/bills", get(bill))
        .route("/api/v1/bills/history", get(history))
}

/// The current month in Korea (`YYYY-MM`).
pub fn current_month() -> String {
    let kst = FixedOffset::east_opt(9 * 3600).expect("a valid offset");
    Utc::now().with_timezone(&kst).format("%Y-%m").to_string()
}

/// `YYYY-MM` (default: the current month); the value itself when it is one.
fn month(value: Option<String>) -> Result<String, AppError> {
    match value {
        None => Ok(current_month()),
        Some(m) => {
            let b = m.as_bytes();
            let ok = b.len() == 7
                && b[4] == b'-'
                && b.iter()
                    .enumerate()
                    .all(|(i, c)| i == 4 || c.is_ascii_digit())
                && (1..=12).contains(&m[5..].parse::<u32>().unwrap_or(0));
            if ok {
                Ok(m)
            } else {
                Err(AppError::bad(
                    "INVALID_MONTH",
                    format!("month `{m}` is not YYYY-MM"),
                ))
            }
        }
    }
}

async fn wait_if_asked(
    state: &AppState,
    min_position: Option<&String>,
    line: &str,
) -> Result<bool, AppError> {
    match non_negative("minPosition", min_position)? {
        Some(min) => {
            state.views.wait_for(line, min, state.max_wait).await?;
            Ok(true)
        }
        None => Ok(false),
    }
}

/// UFR-BILL-010: customer id, the caller's lines, the chosen line (default: a
/// customer's first), its months with a bill, current month.
#[utoipa::path(get, path = "/api/v1/bills/menu", params(("lineNumber" = Option<String>, Query)),
    responses((status = 200, description = "The bill menu"), (status = 403, description = "FORBIDDEN_LINE"), (status = 404, description = "LINE_NOT_FOUND")),
    security(("bearer" = [])))]
pub async fn menu(
    caller: Caller,
    State(state): State<AppState>,
    Query(params): Query<Params>,
) -> Result<Json<Value>, AppError> {
    let line = match (
        params.get("lineNumber"),
        caller.role(),
        caller.lines().first(),
    ) {
        (None, Role::Customer, Some(first)) => first.clone(),
        (given, _, _) => line_number(given.cloned())?,
    };
    caller.may_read_line(&line)?;
    let fresh = wait_if_asked(&state, params.get("minPosition"), &line).await?;
    let get = |v: View| {
        let views = state.views.clone();
        async move {
            if fresh {
                views.get_fresh(&v).await
            } else {
                views.get(&v).await
            }
        }
    };
    let summary = get(View::Line { line: line.clone() })
        .await?
        .ok_or_else(|| AppError::not_found("LINE_NOT_FOUND", format!("line {line} is not known")))?
        .json::<LineView>()?;
    let months = match get(View::Months { line: line.clone() }).await? {
        Some(doc) => doc.json::<MonthsView>()?.months,
        None => vec![],
    };
    let lines = match caller.role() {
        Role::Customer => caller.lines().to_vec(),
        Role::Analyst | Role::Admin => vec![line.clone()],
    };
    Ok(Json(json!({
        "customerId": summary.customer_id,
        "lines": lines,
        "lineNumber": line,
        "months": months,
        "currentMonth": current_month(),
    })))
}

/// The bill's query string. Three fields rather than the other routes' map: this is the
/// hottest route, and a map allocates and hashes every key. Read as the map is: a
/// repeated parameter's last value counts, others are ignored, nothing is refused here.
#[derive(Default)]
pub struct BillParams {
    line_number: Option<String>,
    month: Option<String>,
    min_position: Option<String>,
}

impl<S: Send + Sync> FromRequestParts<S> for BillParams {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Self::parse(parts.uri.query().unwrap_or_default()))
    }
}

impl BillParams {
    fn parse(query: &str) -> Self {
        let mut params = BillParams::default();
        let mut set = |name: &str, value: &str| {
            let field = match name {
                "lineNumber" => &mut params.line_number,
                "month" => &mut params.month,
                "minPosition" => &mut params.min_position,
                _ => return,
            };
            *field = Some(value.to_owned());
        };
        if query.bytes().any(|b| b == b'%' || b == b'+') {
            for (name, value) in form_urlencoded::parse(query.as_bytes()) {
                set(&name, &value);
            }
        } else {
            // Nothing to decode: the pairs as they are, split as `form_urlencoded` splits
            // them (a test compares). Its decoding checked and copied every byte, which on
            // this route cost as much as the L1 lookup.
            for pair in query.split('&').filter(|pair| !pair.is_empty()) {
                let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
                set(name, value);
            }
        }
        params
    }
}

/// UFR-BILL-020/030: the bill of a month (default: the current one). Every call is
/// recorded as a bill inquiry (UFR-BILL-040).
#[utoipa::path(get, path = "/api/v1/bills", params(("lineNumber" = String, Query), ("month" = Option<String>, Query), ("minPosition" = Option<i64>, Query)),
    responses((status = 200, description = "The bill"), (status = 304, description = "Not modified (If-None-Match)"), (status = 403, description = "FORBIDDEN_LINE"), (status = 404, description = "BILL_NOT_FOUND")),
    security(("bearer" = [])))]
pub async fn bill(
    caller: Caller,
    State(state): State<AppState>,
    params: BillParams,
    CorrelationId(correlation_id): CorrelationId,
    if_none_match: IfNoneMatch,
) -> Result<Response, AppError> {
    let line = line_number(params.line_number)?;
    caller.may_read_line(&line)?;
    let month = month(params.month)?;
    let fresh = wait_if_asked(&state, params.min_position.as_ref(), &line).await?;
    let view = View::Bill { line, month };
    let doc = if fresh {
        state.views.get_fresh(&view).await?
    } else {
        state.views.get(&view).await?
    };
    // Taken back for the inquiry rather than copied for the view.
    let View::Bill { line, month } = view else {
        unreachable!("the view was made a bill above")
    };
    let result = if doc.is_some() {
        InquiryResult::Found
    } else {
        InquiryResult::NotFound
    };
    inquiry_outcomes()[usize::from(doc.is_some())].increment(1);
    let answer = match &doc {
        Some(doc) => Ok(doc_response(doc, &if_none_match, PRIVATE_REVALIDATE)),
        None => Err(AppError::not_found(
            "BILL_NOT_FOUND",
            format!("no bill of {month} for line {line}"),
        )),
    };
    state.inquiries.record(
        BillInquired {
            inquiry_id: Uuid::new_v4(),
            line_number: line,
            month,
            customer_id: Some(caller.customer_id().to_owned()),
            result,
            inquired_at: Utc::now(),
        },
        correlation_id,
    );
    answer
}

/// `phonebill_bill_inquiries_total` by outcome (failure, success), resolved once.
fn inquiry_outcomes() -> &'static [&'static Counter; 2] {
    static OUTCOMES: std::sync::OnceLock<[&'static Counter; 2]> = std::sync::OnceLock::new();
    OUTCOMES.get_or_init(|| {
        ["failure", "success"].map(|outcome| {
            Counter::register(
                metrics::counter!("phonebill_bill_inquiries_total", "outcome" => outcome),
            )
        })
    })
}

/// UFR-BILL-040: the line's bill inquiries, newest first (read from the read table;
/// the history is append-only and rarely read, so it is not cached).
#[utoipa::path(get, path = "/api/v1/bills/history", params(("lineNumber" = String, Query), ("page" = Option<i64>, Query), ("size" = Option<i64>, Query)),
    responses((status = 200, description = "A page of inquiries"), (status = 403, description = "FORBIDDEN_LINE")),
    security(("bearer" = [])))]
pub async fn history(
    caller: Caller,
    State(state): State<AppState>,
    Query(params): Query<Params>,
) -> Result<Json<Value>, AppError> {
    let line = line_number(params.get("lineNumber").cloned())?;
    caller.may_read_line(&line)?;
    let (page, size) = paging(&params)?;
    let pool = &state.views.pool();
    let total: i64 =
        sqlx::query_scalar("SELECT count(*) FROM bill_inquiries WHERE line_number = $1")
            .bind(&line)
            .fetch_one(pool)
            .await?;
    let items: Vec<InquiryView> = sqlx::query_as(
        "SELECT inquiry_id, line_number, month, result, inquired_at FROM bill_inquiries
          WHERE line_number = $1 ORDER BY inquired_at DESC, inquiry_id LIMIT $2 OFFSET $3",
    )
    .bind(&line)
    .bind(size as i64)
    .bind((page * size) as i64)
    .fetch_all(pool)
    .await?;
    Ok(Json(page_json(&line, items, page, size, total as usize)))
}

pub fn page_json<T: serde::Serialize>(
    line: &str,
    items: Vec<T>,
    page: usize,
    size: usize,
    total: usize,
) -> Value {
    json!({
        "lineNumber": line,
        "items": items,
        "page": page,
        "size": size,
        "totalElements": total,
        "totalPages": total.div_ceil(size),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn by_form_urlencoded(query: &str) -> (Option<String>, Option<String>, Option<String>) {
        let mut found = (None, None, None);
        for (name, value) in form_urlencoded::parse(query.as_bytes()) {
            let value = Some(value.into_owned());
            match &*name {
                "lineNumber" => found.0 = value,
                "month" => found.1 = value,
                "minPosition" => found.2 = value,
                _ => {}
            }
        }
        found
    }

    proptest! {
        #[test]
        fn the_bill_query_reads_as_form_urlencoded_reads_it(
            pairs in proptest::collection::vec(
                (
                    prop::sample::select(vec!["lineNumber", "month", "minPosition", "other", "", "line%4Eumber"]),
                    "[a-z0-9=%+&-]{0,8}",
                ),
                0..5,
            ),
            joiner in prop::sample::select(vec!["&", "&&", "=&"]),
        ) {
            let query = pairs
                .iter()
                .map(|(name, value)| format!("{name}={value}"))
                .collect::<Vec<_>>()
                .join(joiner);
            let parsed = BillParams::parse(&query);
            prop_assert_eq!(
                (parsed.line_number, parsed.month, parsed.min_position),
                by_form_urlencoded(&query),
                "{}", query
            );
        }
    }

    #[test]
    fn a_plain_bill_query_is_read_without_decoding() {
        let parsed = BillParams::parse("lineNumber=010-1234-5678&month=2026-03&x&=y&month=2026-04");
        assert_eq!(parsed.line_number.as_deref(), Some("010-1234-5678"));
        assert_eq!(
            parsed.month.as_deref(),
            Some("2026-04"),
            "the last one counts"
        );
        assert_eq!(parsed.min_position, None);
    }
}
