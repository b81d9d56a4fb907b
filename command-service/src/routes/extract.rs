//! Extractors that turn every kind of bad input into a problem with a stable code.

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use service_kit::http::{json_object, JsonBodyError};

use crate::error::AppError;

/// `axum::Json`, but only a JSON object, and rejections become problems: 400
/// `MALFORMED_JSON` or `INVALID_FIELDS`, 413 `PAYLOAD_TOO_LARGE`, 415
/// `UNSUPPORTED_MEDIA_TYPE` (see `service_kit::http::json_object`).
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = AppError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        json_object(req, state)
            .await
            .map(ApiJson)
            .map_err(|e| match e {
                JsonBodyError::TooLarge => AppError::PayloadTooLarge,
                JsonBodyError::UnsupportedMediaType => AppError::UnsupportedMediaType,
                JsonBodyError::Malformed(detail) => AppError::BadRequest {
                    code: "MALFORMED_JSON",
                    detail,
                },
                JsonBodyError::InvalidFields(detail) => AppError::BadRequest {
                    code: "INVALID_FIELDS",
                    detail,
                },
            })
    }
}

/// The optional `Idempotency-Key` header: 1 to 255 visible ASCII characters.
pub struct IdempotencyKey(pub Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for IdempotencyKey {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let Some(value) = parts.headers.get("idempotency-key") else {
            return Ok(IdempotencyKey(None));
        };
        let bad = || AppError::BadRequest {
            code: "INVALID_IDEMPOTENCY_KEY",
            detail: "Idempotency-Key must be 1 to 255 visible ASCII characters".into(),
        };
        let key = value.to_str().map_err(|_| bad())?;
        if key.is_empty() || key.len() > 255 || !key.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(bad());
        }
        Ok(IdempotencyKey(Some(key.to_owned())))
    }
}
