//! One error type for the crate and its one mapping onto the shared problem model
//! (`service_kit::problem`): every problem carries a stable `code` clients may match on.

use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use events::product_change::{FailedCheck, Precheck};
use service_kit::auth::AuthError;
use service_kit::problem::{Problem, ProblemCheck, ProblemCode, Refusal};
use uuid::Uuid;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The request itself is malformed (fields, headers, path).
    #[error(transparent)]
    BadRequest(#[from] Refusal),
    #[error("line {0} is not known")]
    LineNotFound(String),
    /// The pre-checks refused the change; the rejection was recorded.
    #[error("the product change failed its pre-checks")]
    PrecheckFailed {
        request_id: Uuid,
        failed_checks: Vec<FailedCheck>,
    },
    #[error("the Idempotency-Key was already used for a different request")]
    IdempotencyKeyReused,
    /// A KOS answer names a request the line never sent to KOS (never reaches HTTP).
    #[error("request {0} was never sent to KOS")]
    UnknownRequest(Uuid),
    /// Another writer committed to the same line first; retried before it reaches a client.
    #[error("concurrent update of the line")]
    Conflict,
    #[error("the request took too long")]
    Timeout,
    /// Wrong customer id or password (the same answer whether the customer exists).
    #[error("check your customer id or password")]
    InvalidCredentials,
    #[error("the account is locked after too many failed logins until {until}")]
    AccountLocked { until: DateTime<Utc> },
    /// No or a bad token, no permission, too many requests.
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl AppError {
    pub fn bad_request(code: ProblemCode, detail: impl Into<String>) -> Self {
        Refusal::new(code, detail).into()
    }

    fn code(&self) -> ProblemCode {
        match self {
            AppError::BadRequest(refusal) => refusal.code,
            AppError::LineNotFound(_) => ProblemCode::LineNotFound,
            AppError::PrecheckFailed { failed_checks, .. } => {
                if failed_checks
                    .iter()
                    .any(|c| c.check == Precheck::NoChangeInFlight)
                {
                    ProblemCode::ChangeInFlight
                } else {
                    ProblemCode::PrecheckFailed
                }
            }
            AppError::IdempotencyKeyReused => ProblemCode::IdempotencyKeyReused,
            AppError::UnknownRequest(_) => ProblemCode::UnknownRequest,
            AppError::Conflict => ProblemCode::ConcurrentUpdate,
            AppError::Timeout => ProblemCode::Timeout,
            AppError::InvalidCredentials => ProblemCode::InvalidCredentials,
            AppError::AccountLocked { .. } => ProblemCode::AccountLocked,
            AppError::Auth(e) => e.code(),
            AppError::Database(_) | AppError::Internal(_) => ProblemCode::Internal,
        }
    }

    /// The problem document this error answers with.
    pub fn problem(self) -> Problem {
        let code = self.code();
        match self {
            AppError::Auth(e) => e.problem(),
            // Never show internals to a client; they are logged instead.
            AppError::Database(_) | AppError::Internal(_) => Problem::internal(),
            AppError::PrecheckFailed {
                request_id,
                ref failed_checks,
            } => Problem {
                request_id: Some(request_id),
                failed_checks: Some(
                    failed_checks
                        .iter()
                        .map(|c| ProblemCheck {
                            check: c.check.code(),
                            message: c.message.clone(),
                        })
                        .collect(),
                ),
                ..Problem::new(code, self.to_string())
            },
            AppError::AccountLocked { until } => Problem {
                locked_until: Some(until),
                ..Problem::new(code, self.to_string())
            },
            other => Problem::new(code, other.to_string()),
        }
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        if matches!(self, AppError::Database(_) | AppError::Internal(_)) {
            tracing::error!(error = ?self, "request failed");
        }
        self.problem().into_response()
    }
}
