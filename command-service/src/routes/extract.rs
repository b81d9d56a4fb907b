//! Extractors that turn every kind of bad input into a problem with a stable code (the
//! JSON body's is `service_kit::http::ApiJson`).

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use service_kit::problem::ProblemCode;

use crate::error::AppError;

/// The optional `Idempotency-Key` header: 1 to 255 visible ASCII characters.
pub struct IdempotencyKey(pub Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for IdempotencyKey {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let Some(value) = parts.headers.get("idempotency-key") else {
            return Ok(IdempotencyKey(None));
        };
        let bad = || {
            AppError::bad_request(
                ProblemCode::InvalidIdempotencyKey,
                "Idempotency-Key must be 1 to 255 visible ASCII characters",
            )
        };
        let key = value.to_str().map_err(|_| bad())?;
        if key.is_empty() || key.len() > 255 || !key.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(bad());
        }
        Ok(IdempotencyKey(Some(key.to_owned())))
    }
}
