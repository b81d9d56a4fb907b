//! Why a caller was refused, and the problem each answer carries.

use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};

use crate::problem::{Problem, ProblemCode};

/// Why a request was refused before its handler ran.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AuthError {
    #[error("send an access token: Authorization: Bearer <token>")]
    MissingToken,
    #[error("{0}")]
    InvalidToken(&'static str),
    #[error("the token cannot be checked right now; try again")]
    Unavailable,
    #[error("you may not act on this line")]
    ForbiddenLine,
    #[error("your role does not allow this")]
    ForbiddenRole,
    #[error("too many requests; retry after {retry_after_secs} seconds")]
    RateLimited { retry_after_secs: u64 },
}

impl AuthError {
    pub fn code(&self) -> ProblemCode {
        match self {
            AuthError::MissingToken | AuthError::InvalidToken(_) => ProblemCode::Unauthenticated,
            AuthError::Unavailable => ProblemCode::AuthUnavailable,
            AuthError::ForbiddenLine => ProblemCode::ForbiddenLine,
            AuthError::ForbiddenRole => ProblemCode::Forbidden,
            AuthError::RateLimited { .. } => ProblemCode::RateLimited,
        }
    }

    /// The problem, with `WWW-Authenticate` on 401 and `Retry-After` on 429.
    pub fn problem(&self) -> Problem {
        let problem = Problem::new(self.code(), self.to_string());
        match self {
            AuthError::MissingToken | AuthError::InvalidToken(_) => problem.with_header(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"phonebill\""),
            ),
            AuthError::RateLimited { retry_after_secs } => problem.retry_after(*retry_after_secs),
            _ => problem,
        }
    }
}

impl IntoResponse for AuthError {
    fn into_response(self) -> Response {
        self.problem().into_response()
    }
}
