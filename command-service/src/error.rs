//! One error type for the crate and its one mapping to `application/problem+json`
//! (RFC 9457). Every problem carries a stable `code` that clients may match on.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use events::product_change::{FailedCheck, Precheck};
use serde::Serialize;
use service_kit::auth::AuthError;
use uuid::Uuid;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The request itself is malformed (JSON, fields, headers).
    #[error("{detail}")]
    BadRequest { code: &'static str, detail: String },
    #[error("the request body is larger than this endpoint accepts")]
    PayloadTooLarge,
    #[error("send the body as application/json")]
    UnsupportedMediaType,
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

/// The problem document. `failed_checks` and `request_id` appear on pre-check failures.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Problem {
    #[serde(rename = "type")]
    pub type_uri: String,
    pub title: &'static str,
    pub status: u16,
    pub code: &'static str,
    pub detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<Uuid>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failed_checks: Option<Vec<ProblemCheck>>,
    /// On `ACCOUNT_LOCKED`: when a login may be tried again.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub locked_until: Option<DateTime<Utc>>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ProblemCheck {
    pub check: &'static str,
    pub message: String,
}

impl AppError {
    fn parts(&self) -> (StatusCode, &'static str, &'static str) {
        match self {
            AppError::BadRequest { code, .. } => (StatusCode::BAD_REQUEST, code, "Bad request"),
            AppError::PayloadTooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "PAYLOAD_TOO_LARGE",
                "Request body too large",
            ),
            AppError::UnsupportedMediaType => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "UNSUPPORTED_MEDIA_TYPE",
                "Unsupported media type",
            ),
            AppError::LineNotFound(_) => {
                (StatusCode::NOT_FOUND, "LINE_NOT_FOUND", "Line not found")
            }
            AppError::PrecheckFailed { failed_checks, .. } => {
                if failed_checks
                    .iter()
                    .any(|c| c.check == Precheck::NoChangeInFlight)
                {
                    (
                        StatusCode::CONFLICT,
                        "CHANGE_IN_FLIGHT",
                        "Another change is in progress",
                    )
                } else {
                    (
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "PRECHECK_FAILED",
                        "Pre-check failed",
                    )
                }
            }
            AppError::IdempotencyKeyReused => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "IDEMPOTENCY_KEY_REUSED",
                "Idempotency key reused",
            ),
            AppError::UnknownRequest(_) => {
                (StatusCode::NOT_FOUND, "UNKNOWN_REQUEST", "Unknown request")
            }
            AppError::Conflict => (
                StatusCode::CONFLICT,
                "CONCURRENT_UPDATE",
                "Concurrent update",
            ),
            AppError::Timeout => (
                StatusCode::SERVICE_UNAVAILABLE,
                "TIMEOUT",
                "Request timed out",
            ),
            AppError::InvalidCredentials => (
                StatusCode::UNAUTHORIZED,
                "INVALID_CREDENTIALS",
                "Invalid credentials",
            ),
            AppError::AccountLocked { .. } => {
                (StatusCode::LOCKED, "ACCOUNT_LOCKED", "Account locked")
            }
            AppError::Auth(e) => (e.status(), e.code(), e.title()),
            AppError::Database(_) | AppError::Internal(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "INTERNAL",
                "Internal error",
            ),
        }
    }

    pub fn problem(&self) -> Problem {
        let (status, code, title) = self.parts();
        let detail = match self {
            // Never show internals to a client; they are logged instead.
            AppError::Database(_) | AppError::Internal(_) => {
                "something went wrong on our side; try again".to_owned()
            }
            other => other.to_string(),
        };
        let (request_id, failed_checks) = match self {
            AppError::PrecheckFailed {
                request_id,
                failed_checks,
            } => (
                Some(*request_id),
                Some(
                    failed_checks
                        .iter()
                        .map(|c| ProblemCheck {
                            check: c.check.code(),
                            message: c.message.clone(),
                        })
                        .collect(),
                ),
            ),
            _ => (None, None),
        };
        Problem {
            type_uri: service_kit::http::problem_type(code),
            title,
            status: status.as_u16(),
            code,
            detail,
            request_id,
            failed_checks,
            locked_until: match self {
                AppError::AccountLocked { until } => Some(*until),
                _ => None,
            },
        }
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        if matches!(self, AppError::Database(_) | AppError::Internal(_)) {
            tracing::error!(error = ?self, "request failed");
        }
        let problem = self.problem();
        let status =
            StatusCode::from_u16(problem.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = service_kit::http::problem_json(status, &problem);
        if let AppError::Auth(e) = &self {
            for (name, value) in e.headers() {
                response.headers_mut().insert(name, value);
            }
        }
        response
    }
}
