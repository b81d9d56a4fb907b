//! Extractors that turn every kind of bad input into a problem with a stable code.

use axum::extract::{FromRequest, Request};
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
