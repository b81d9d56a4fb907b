//! Bills: the menu, one month's bill, and the bill-inquiry history.

use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use chrono::{FixedOffset, Utc};
use events::bill_inquiry::{BillInquired, InquiryResult};
use read_model::keys::View;
use read_model::views::{BillView, InquiryView, LineView, MonthsView};
use serde::{Deserialize, Serialize};
use service_kit::auth::{Caller, Role};
use service_kit::http::CorrelationId;
use service_kit::sharded::Counter;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::{
    doc_response, line_number, non_negative, paging, AppState, IfNoneMatch, QueryParams,
    SortedJson, PRIVATE_REVALIDATE,
};
use crate::error::AppError;
use crate::inquiry_history;
use service_kit::problem::{Problem, ProblemCode, TokenProblems};

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
                Err(AppError::refused(
                    ProblemCode::InvalidMonth,
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

/// The bill menu's query.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct MenuParams {
    /// `010-1234-5678`; a customer's first line when left out (required of analysts and
    /// admins).
    line_number: Option<String>,
    /// Wait (bounded) until the line's projection has reached this position (the
    /// `position` of a command's 202).
    #[param(value_type = Option<i64>, minimum = 0)]
    min_position: Option<String>,
}

/// The bill menu (UFR-BILL-010).
// Fields in the order of the `json!` body this replaced (sorted), as `SortedJson` writes.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BillMenu {
    /// The current month in Korea (`YYYY-MM`).
    pub current_month: String,
    pub customer_id: String,
    /// The line chosen.
    pub line_number: String,
    /// A customer's lines; for analysts and admins, the line chosen.
    pub lines: Vec<String>,
    /// The chosen line's months with a bill (`YYYY-MM`), newest first.
    pub months: Vec<String>,
}

/// UFR-BILL-010: customer id, the caller's lines, the chosen line (default: a
/// customer's first), its months with a bill, current month.
#[utoipa::path(get, path = "/api/v1/bills/menu", tag = "bills", params(MenuParams),
    responses(
        (status = 200, description = "The bill menu", body = BillMenu),
        (status = 400, description = "INVALID_LINE_NUMBER (also: none given by an analyst or admin), INVALID_PARAMETER (minPosition)", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "FORBIDDEN_LINE", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "LINE_NOT_FOUND", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "PROJECTION_BEHIND (minPosition not reached in time), READ_MODEL_UNAVAILABLE, AUTH_UNAVAILABLE, TIMEOUT", body = Problem, content_type = "application/problem+json"),
        TokenProblems),
    security(("bearer" = [])))]
pub async fn menu(
    caller: Caller,
    State(state): State<AppState>,
    QueryParams(params): QueryParams<MenuParams>,
) -> Result<SortedJson<BillMenu>, AppError> {
    let line = match (params.line_number, caller.role(), caller.lines().first()) {
        (None, Role::Customer, Some(first)) => first.clone(),
        (given, _, _) => line_number(given)?,
    };
    caller.may_read_line(&line)?;
    let fresh = wait_if_asked(&state, params.min_position.as_ref(), &line).await?;
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
        .ok_or_else(|| {
            AppError::refused(
                ProblemCode::LineNotFound,
                format!("line {line} is not known"),
            )
        })?
        .json::<LineView>()?;
    let months = match get(View::Months { line: line.clone() }).await? {
        Some(doc) => doc.json::<MonthsView>()?.months,
        None => vec![],
    };
    let lines = match caller.role() {
        Role::Customer => caller.lines().to_vec(),
        Role::Analyst | Role::Admin => vec![line.clone()],
    };
    Ok(SortedJson(BillMenu {
        current_month: current_month(),
        customer_id: summary.customer_id,
        line_number: line,
        lines,
        months,
    }))
}

/// The bill's query string. Parsed by hand rather than through [`QueryParams`]: this is
/// the hottest route, and building a map allocates and hashes every key. Read as
/// `QueryParams` reads: a repeated parameter's last value counts, others are ignored,
/// nothing is refused here.
#[derive(Debug, Default, IntoParams)]
#[into_params(parameter_in = Query, rename_all = "camelCase")]
pub struct BillParams {
    /// `010-1234-5678`.
    #[param(required = true, value_type = String)]
    line_number: Option<String>,
    /// `YYYY-MM`; the current month (in Korea) when left out.
    month: Option<String>,
    /// Wait (bounded) until the line's projection has reached this position (the
    /// `position` of a command's 202).
    #[param(value_type = Option<i64>, minimum = 0)]
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
#[utoipa::path(get, path = "/api/v1/bills", tag = "bills", params(BillParams),
    responses(
        (status = 200, description = "The bill (the stored view document, with an ETag)", body = BillView),
        (status = 304, description = "Not modified (If-None-Match)"),
        (status = 400, description = "INVALID_LINE_NUMBER, INVALID_MONTH, INVALID_PARAMETER (minPosition)", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "FORBIDDEN_LINE", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "BILL_NOT_FOUND", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "PROJECTION_BEHIND (minPosition not reached in time), READ_MODEL_UNAVAILABLE, AUTH_UNAVAILABLE, TIMEOUT", body = Problem, content_type = "application/problem+json"),
        TokenProblems),
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
        None => Err(AppError::refused(
            ProblemCode::BillNotFound,
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

/// The inquiry history's query.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct HistoryParams {
    /// `010-1234-5678`.
    #[param(required = true, value_type = String)]
    line_number: Option<String>,
    /// From 0 (the default) to 100,000.
    #[param(value_type = Option<i64>, minimum = 0, maximum = 100_000)]
    page: Option<String>,
    /// From 1 to 100; 20 when left out.
    #[param(value_type = Option<i64>, minimum = 1, maximum = 100)]
    size: Option<String>,
}

/// UFR-BILL-040: the line's bill inquiries, newest first (read from the read table;
/// the history is append-only and rarely read, so it is not cached).
#[utoipa::path(get, path = "/api/v1/bills/history", tag = "bills", params(HistoryParams),
    responses(
        (status = 200, description = "A page of inquiries", body = Page<InquiryView>),
        (status = 400, description = "INVALID_LINE_NUMBER, INVALID_PAGE (beyond 100,000), INVALID_PARAMETER (page, size)", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "FORBIDDEN_LINE", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "READ_MODEL_UNAVAILABLE, AUTH_UNAVAILABLE, TIMEOUT", body = Problem, content_type = "application/problem+json"),
        TokenProblems),
    security(("bearer" = [])))]
pub async fn history(
    caller: Caller,
    State(state): State<AppState>,
    QueryParams(params): QueryParams<HistoryParams>,
) -> Result<SortedJson<Page<InquiryView>>, AppError> {
    let line = line_number(params.line_number)?;
    caller.may_read_line(&line)?;
    let (page, size) = paging(params.page.as_ref(), params.size.as_ref())?;
    let (items, total) = inquiry_history::page(&state.views.pool(), &line, page, size).await?;
    Ok(SortedJson(Page::new(line, items, page, size, total)))
}

/// One page of a line's history, newest first.
// Fields in the order of the `json!` body this replaced (sorted), as `SortedJson` writes.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Page<T> {
    pub items: Vec<T>,
    pub line_number: String,
    /// From 0.
    pub page: usize,
    pub size: usize,
    pub total_elements: usize,
    pub total_pages: usize,
}

impl<T> Page<T> {
    pub fn new(line: String, items: Vec<T>, page: usize, size: usize, total: usize) -> Self {
        Self {
            items,
            line_number: line,
            page,
            size,
            total_elements: total,
            total_pages: total.div_ceil(size),
        }
    }
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
    fn the_typed_menu_and_inquiry_page_are_the_bytes_the_json_bodies_were() {
        let old = serde_json::json!({
            "customerId": "CUST0001",
            "lines": ["010-1234-5678", "010-1234-5679"],
            "lineNumber": "010-1234-5678",
            "months": ["2026-03", "2026-02"],
            "currentMonth": "2026-04",
        });
        let new = BillMenu {
            current_month: "2026-04".into(),
            customer_id: "CUST0001".into(),
            line_number: "010-1234-5678".into(),
            lines: vec!["010-1234-5678".into(), "010-1234-5679".into()],
            months: vec!["2026-03".into(), "2026-02".into()],
        };
        let old = serde_json::to_string(&old).unwrap();
        assert_eq!(old, serde_json::to_string(&new).unwrap());
        assert_eq!(
            old,
            serde_json::to_string(&serde_json::to_value(&new).unwrap()).unwrap()
        );

        let item = InquiryView {
            inquiry_id: Uuid::from_u128(1),
            line_number: "010-1234-5678".into(),
            month: "2026-03".into(),
            result: "FOUND".into(),
            inquired_at: "2026-03-05T01:02:03.456Z".parse().unwrap(),
        };
        let old = serde_json::json!({
            "lineNumber": "010-1234-5678",
            "items": vec![item.clone()],
            "page": 2usize,
            "size": 1usize,
            "totalElements": 3usize,
            "totalPages": 3usize,
        });
        let new = Page::new("010-1234-5678".into(), vec![item], 2, 1, 3);
        assert_eq!(
            serde_json::to_string(&old).unwrap(),
            serde_json::to_string(&serde_json::to_value(&new).unwrap()).unwrap()
        );
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
