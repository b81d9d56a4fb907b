//! The analysts' HTTP API on the projector: `GET /api/v1/analytics/lines/{lineNumber}/state?at=`
//! (time travel). Analysts and admins only, with the same tokens as the other services
//! (`service_kit::auth`: 401 without a valid token, 403 `FORBIDDEN` for customers).
//! Errors are `application/problem+json` with a stable code.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{FromRef, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use service_kit::auth::{Authenticator, Caller};
use service_kit::http::problem;
use tokio::sync::Semaphore;

use crate::time_travel::{is_line_number, AsOfError, LineState, TimeTravel};

/// Time travels run at once; more wait their turn (each reads two partitions from
/// their beginning, and the projector's own work comes first).
const CONCURRENT_READS: usize = 2;

#[derive(Clone)]
pub struct AnalyticsState {
    pub auth: Authenticator,
    pub time_travel: TimeTravel,
    reads: Arc<Semaphore>,
}

impl AnalyticsState {
    pub fn new(auth: Authenticator, time_travel: TimeTravel) -> Self {
        Self {
            auth,
            time_travel,
            reads: Arc::new(Semaphore::new(CONCURRENT_READS)),
        }
    }
}

impl FromRef<AnalyticsState> for Authenticator {
    fn from_ref(state: &AnalyticsState) -> Self {
        state.auth.clone()
    }
}

pub fn router(state: AnalyticsState) -> Router {
    Router::new()
        .route(
            "/api/v1/analytics/lines/{lineNumber}/state",
            get(line_state),
        )
        .with_state(state)
}

/// The line as of `at` (RFC 3339): customer, operator, status, current product, the
/// change pending then, the sequences applied and the last event.
async fn line_state(
    caller: Caller,
    State(state): State<AnalyticsState>,
    Path(line): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<LineState>, Problem> {
    caller.require_analyst()?;
    if !is_line_number(&line) {
        return Err(AsOfError::BadLine(line).into());
    }
    let at = parse_at(params.get("at").map(String::as_str))?;
    let _turn = state.reads.acquire().await.map_err(|_| Problem::Closed)?;
    let (line_state, _) = state.time_travel.line_as_of(&line, at).await?;
    Ok(Json(line_state))
}

/// `at`: an RFC 3339 instant. A `+` offset sent unencoded arrives as a space (form
/// decoding of the query), so a space is read back as `+`.
pub fn parse_at(value: Option<&str>) -> Result<DateTime<Utc>, Problem> {
    let Some(value) = value else {
        return Err(Problem::bad_at(
            "at is required (RFC 3339, e.g. 2026-03-01T00:00:00Z)",
        ));
    };
    DateTime::parse_from_rfc3339(&value.replace(' ', "+"))
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| {
            Problem::bad_at(format!(
                "at `{value}` is not an RFC 3339 instant (e.g. 2026-03-01T00:00:00Z)"
            ))
        })
}

/// Why a request was refused; the one mapping to problem documents.
#[derive(Debug, thiserror::Error)]
pub enum Problem {
    #[error(transparent)]
    Auth(#[from] service_kit::auth::AuthError),
    #[error("{0}")]
    BadAt(String),
    #[error(transparent)]
    AsOf(#[from] AsOfError),
    #[error("shutting down")]
    Closed,
}

impl Problem {
    fn bad_at(detail: impl Into<String>) -> Self {
        Problem::BadAt(detail.into())
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let detail = self.to_string();
        let (status, code, title) = match &self {
            Problem::Auth(e) => return e.clone().into_response(),
            Problem::BadAt(_) | Problem::AsOf(AsOfError::Future { .. }) => {
                (StatusCode::BAD_REQUEST, "INVALID_AT", "Bad request")
            }
            Problem::AsOf(AsOfError::BadLine(_)) => (
                StatusCode::BAD_REQUEST,
                "INVALID_LINE_NUMBER",
                "Bad request",
            ),
            Problem::AsOf(AsOfError::NotFound { .. }) => {
                (StatusCode::NOT_FOUND, "LINE_NOT_FOUND", "Not found")
            }
            Problem::AsOf(AsOfError::Read(crate::time_travel::reader::ReadError::Truncated {
                ..
            })) => (
                StatusCode::CONFLICT,
                "HISTORY_INCOMPLETE",
                "History incomplete",
            ),
            Problem::AsOf(_) | Problem::Closed => {
                tracing::warn!(error = %detail, "time travel failed");
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "BROKER_UNAVAILABLE",
                    "Broker unavailable",
                )
            }
        };
        problem(status, code, title, &detail)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn at_reads_rfc_3339_with_any_offset() {
        let utc = Utc.with_ymd_and_hms(2026, 3, 1, 0, 0, 0).unwrap();
        assert_eq!(parse_at(Some("2026-03-01T00:00:00Z")).unwrap(), utc);
        assert_eq!(parse_at(Some("2026-03-01T09:00:00+09:00")).unwrap(), utc);
        // `+09:00` sent unencoded in a query string arrives as ` 09:00`.
        assert_eq!(parse_at(Some("2026-03-01T09:00:00 09:00")).unwrap(), utc);
    }

    #[test]
    fn a_missing_or_malformed_at_is_invalid_at() {
        for value in [None, Some("2026-03-01"), Some("yesterday"), Some("")] {
            let response = parse_at(value).unwrap_err().into_response();
            assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{value:?}");
        }
    }
}
