//! One error type for the admin API and its one mapping onto the shared problem model
//! (`service_kit::problem`): every problem carries a stable `code` clients may match on.

use axum::response::{IntoResponse, Response};
use service_kit::problem::{Problem, ProblemCode, Refusal};

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The request is malformed, names what does not exist, or contradicts KOS's state
    /// (`INVALID_*`, `LINE_NOT_FOUND`, `LINE_EXISTS`, `OPERATOR_MISMATCH`, ...).
    #[error(transparent)]
    Refused(#[from] Refusal),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl AppError {
    pub fn refused(code: ProblemCode, detail: impl Into<String>) -> Self {
        Refusal::new(code, detail).into()
    }

    /// The problem document this error answers with.
    pub fn problem(&self) -> Problem {
        match self {
            AppError::Refused(refusal) => refusal.problem(),
            // Never show internals to a client; they are logged instead.
            AppError::Database(_) | AppError::Internal(_) => Problem::internal(),
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
