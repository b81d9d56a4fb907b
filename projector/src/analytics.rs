//! The analysts' HTTP API on the projector: `GET /api/v1/analytics/lines/{lineNumber}/state?at=`
//! (time travel). Analysts and admins only, with the same tokens as the other services
//! (`service_kit::auth`: 401 without a valid token, 403 `FORBIDDEN` for customers).
//! Errors are `application/problem+json` with a stable code.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{FromRef, Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use service_kit::auth::{Authenticator, Caller};
use service_kit::problem::{Problem, ProblemCode, TokenProblems};
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::time_travel::{is_line_number, AsOfError, LineState, TimeTravel};

/// Time travels run at once; more wait their turn (each reads two partitions from
/// their beginning, and the projector's own work comes first).
const CONCURRENT_READS: usize = 2;
/// Time travels that may wait for a turn; past that, 503 `TIME_TRAVEL_BUSY` at once, so
/// a burst of requests cannot pile up memory and connections behind the two readers.
const MAX_WAITING: usize = 8;

#[derive(Clone)]
pub struct AnalyticsState {
    pub auth: Authenticator,
    pub time_travel: TimeTravel,
    reads: Turns,
}

impl AnalyticsState {
    pub fn new(auth: Authenticator, time_travel: TimeTravel) -> Self {
        Self {
            auth,
            time_travel,
            reads: Turns::new(CONCURRENT_READS, MAX_WAITING),
        }
    }
}

/// A few at once, a bounded number waiting, the rest refused.
#[derive(Clone)]
struct Turns {
    running: Arc<Semaphore>,
    waiting: Arc<AtomicUsize>,
    max_waiting: usize,
}

struct Waiting(Arc<AtomicUsize>);

impl Drop for Waiting {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Turns {
    fn new(at_once: usize, max_waiting: usize) -> Self {
        Self {
            running: Arc::new(Semaphore::new(at_once)),
            waiting: Arc::new(AtomicUsize::new(0)),
            max_waiting,
        }
    }

    /// A turn (held until dropped), or `Busy` if `max_waiting` others already wait.
    async fn take(&self) -> Result<OwnedSemaphorePermit, AnalyticsError> {
        if let Ok(turn) = self.running.clone().try_acquire_owned() {
            return Ok(turn);
        }
        let waiting = Waiting(self.waiting.clone());
        if self.waiting.fetch_add(1, Ordering::SeqCst) >= self.max_waiting {
            return Err(AnalyticsError::Busy);
        }
        let turn = self.running.clone().acquire_owned().await;
        drop(waiting);
        turn.map_err(|_| AnalyticsError::Closed)
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
#[utoipa::path(get, path = "/api/v1/analytics/lines/{lineNumber}/state", tag = "analytics",
    params(
        ("lineNumber" = String, Path, description = "010-1234-5678"),
        ("at" = String, Query, description = "An RFC 3339 instant, e.g. 2026-03-01T00:00:00Z")),
    responses(
        (status = 200, description = "The line as it stood at `at`", body = LineState),
        (status = 400, description = "INVALID_AT (missing, not RFC 3339, or in the future), INVALID_LINE_NUMBER", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "FORBIDDEN: not an analyst or admin", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "LINE_NOT_FOUND: no event of the line before `at`", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "HISTORY_INCOMPLETE: the broker no longer holds the line's first KOS facts (its product changes are then read from the event store)", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "TIME_TRAVEL_BUSY (with Retry-After), BROKER_UNAVAILABLE, AUTH_UNAVAILABLE, TIMEOUT", body = Problem, content_type = "application/problem+json"),
        TokenProblems),
    security(("bearer" = [])))]
pub(crate) async fn line_state(
    caller: Caller,
    State(state): State<AnalyticsState>,
    Path(line): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<LineState>, AnalyticsError> {
    caller.require_analyst()?;
    if !is_line_number(&line) {
        return Err(AsOfError::BadLine(line).into());
    }
    let at = parse_at(params.get("at").map(String::as_str))?;
    let _turn = state.reads.take().await?;
    let (line_state, _) = state.time_travel.line_as_of(&line, at).await?;
    Ok(Json(line_state))
}

/// `at`: an RFC 3339 instant. A `+` offset sent unencoded arrives as a space (form
/// decoding of the query), so a space is read back as `+`.
pub fn parse_at(value: Option<&str>) -> Result<DateTime<Utc>, AnalyticsError> {
    let Some(value) = value else {
        return Err(AnalyticsError::bad_at(
            "at is required (RFC 3339, e.g. 2026-03-01T00:00:00Z)",
        ));
    };
    DateTime::parse_from_rfc3339(&value.replace(' ', "+"))
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| {
            AnalyticsError::bad_at(format!(
                "at `{value}` is not an RFC 3339 instant (e.g. 2026-03-01T00:00:00Z)"
            ))
        })
}

/// Why a request was refused; the one mapping to problem documents.
#[derive(Debug, thiserror::Error)]
pub enum AnalyticsError {
    #[error(transparent)]
    Auth(#[from] service_kit::auth::AuthError),
    #[error("{0}")]
    BadAt(String),
    #[error(transparent)]
    AsOf(#[from] AsOfError),
    #[error("shutting down")]
    Closed,
    #[error("too many time travels are waiting; retry in a second")]
    Busy,
}

impl AnalyticsError {
    fn bad_at(detail: impl Into<String>) -> Self {
        AnalyticsError::BadAt(detail.into())
    }
}

impl AnalyticsError {
    fn code(&self) -> ProblemCode {
        match self {
            AnalyticsError::Auth(e) => e.code(),
            AnalyticsError::Busy => ProblemCode::TimeTravelBusy,
            AnalyticsError::BadAt(_) | AnalyticsError::AsOf(AsOfError::Future { .. }) => {
                ProblemCode::InvalidAt
            }
            AnalyticsError::AsOf(AsOfError::BadLine(_)) => ProblemCode::InvalidLineNumber,
            AnalyticsError::AsOf(AsOfError::NotFound { .. }) => ProblemCode::LineNotFound,
            AnalyticsError::AsOf(AsOfError::Read(
                crate::time_travel::reader::ReadError::Truncated { .. },
            )) => ProblemCode::HistoryIncomplete,
            AnalyticsError::AsOf(_) | AnalyticsError::Closed => ProblemCode::BrokerUnavailable,
        }
    }
}

impl IntoResponse for AnalyticsError {
    fn into_response(self) -> Response {
        let code = self.code();
        match self {
            AnalyticsError::Auth(e) => e.into_response(),
            AnalyticsError::Busy => Problem::new(code, self.to_string())
                .retry_after(1)
                .into_response(),
            other => {
                if code == ProblemCode::BrokerUnavailable {
                    tracing::warn!(error = %other, "time travel failed");
                }
                Problem::new(code, other.to_string()).into_response()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::StatusCode;
    use chrono::TimeZone;

    #[test]
    fn at_reads_rfc_3339_with_any_offset() {
        let utc = Utc.with_ymd_and_hms(2026, 3, 1, 0, 0, 0).unwrap();
        assert_eq!(parse_at(Some("2026-03-01T00:00:00Z")).unwrap(), utc);
        assert_eq!(parse_at(Some("2026-03-01T09:00:00+09:00")).unwrap(), utc);
        // `+09:00` sent unencoded in a query string arrives as ` 09:00`.
        assert_eq!(parse_at(Some("2026-03-01T09:00:00 09:00")).unwrap(), utc);
    }

    #[tokio::test]
    async fn past_the_waiting_bound_a_time_travel_is_refused_busy_at_once() {
        // Given one reader busy and one request waiting for it (bound: one waiting)
        let turns = Turns::new(1, 1);
        let running = turns.take().await.unwrap();
        let queued = tokio::spawn({
            let turns = turns.clone();
            async move { turns.take().await.map(drop).is_ok() }
        });
        while turns.waiting.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }

        // When another comes, it is refused with 503 and Retry-After
        let refused = turns.take().await.unwrap_err().into_response();
        assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(refused.headers()["retry-after"], "1");

        // Then the waiting one gets its turn once the reader is done, and the count of
        // waiting requests is back to zero
        drop(running);
        assert!(queued.await.unwrap());
        assert_eq!(turns.waiting.load(Ordering::SeqCst), 0);
        assert!(turns.take().await.is_ok());
    }

    #[test]
    fn a_missing_or_malformed_at_is_invalid_at() {
        for value in [None, Some("2026-03-01"), Some("yesterday"), Some("")] {
            let response = parse_at(value).unwrap_err().into_response();
            assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{value:?}");
        }
    }
}
