//! One error type and its one mapping to `application/problem+json` with a stable code.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use service_kit::auth::AuthError;
use service_kit::http::problem;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("{detail}")]
    BadRequest { code: &'static str, detail: String },
    #[error("{detail}")]
    NotFound { code: &'static str, detail: String },
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error("the projection has not reached position {0} yet")]
    ProjectionBehind(i64),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl AppError {
    pub fn bad(code: &'static str, detail: impl Into<String>) -> Self {
        AppError::BadRequest {
            code,
            detail: detail.into(),
        }
    }

    pub fn not_found(code: &'static str, detail: impl Into<String>) -> Self {
        AppError::NotFound {
            code,
            detail: detail.into(),
        }
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let detail = self.to_string();
        match self {
            AppError::Auth(e) => e.into_response(),
            AppError::BadRequest { code, .. } => {
                problem(StatusCode::BAD_REQUEST, code, "Bad request", &detail)
            }
            AppError::NotFound { code, .. } => {
                problem(StatusCode::NOT_FOUND, code, "Not found", &detail)
            }
            AppError::ProjectionBehind(_) => problem(
                StatusCode::SERVICE_UNAVAILABLE,
                "PROJECTION_BEHIND",
                "Projection behind",
                &format!("{detail}; retry shortly"),
            ),
            AppError::Database(e) => {
                tracing::error!(error = %e, "read tables unavailable");
                problem(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "READ_MODEL_UNAVAILABLE",
                    "Read model unavailable",
                    "the read model cannot be reached; retry shortly",
                )
            }
            AppError::Internal(e) => {
                tracing::error!(error = %e, "internal error");
                problem(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "INTERNAL",
                    "Internal error",
                    "something went wrong on our side",
                )
            }
        }
    }
}
