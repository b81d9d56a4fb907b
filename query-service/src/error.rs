//! One error type and its one mapping onto the shared problem model
//! (`service_kit::problem`): every problem carries a stable `code` clients may match on.

use axum::response::{IntoResponse, Response};
use service_kit::auth::AuthError;
use service_kit::problem::{Problem, ProblemCode, Refusal};

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// Bad input (`INVALID_*`) or nothing at what it names (`*_NOT_FOUND`).
    #[error(transparent)]
    Refused(#[from] Refusal),
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error("the projection has not reached position {0} yet; retry shortly")]
    ProjectionBehind(i64),
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
            AppError::Auth(e) => e.problem(),
            AppError::ProjectionBehind(_) => {
                Problem::new(ProblemCode::ProjectionBehind, self.to_string())
            }
            AppError::Database(_) => Problem::new(
                ProblemCode::ReadModelUnavailable,
                "the read model cannot be reached; retry shortly",
            ),
            AppError::Internal(_) => Problem::internal(),
        }
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        match &self {
            AppError::Database(e) => tracing::error!(error = %e, "read tables unavailable"),
            AppError::Internal(e) => tracing::error!(error = %e, "internal error"),
            _ => {}
        }
        self.problem().into_response()
    }
}
