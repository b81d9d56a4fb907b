//! `POST /api/v1/product-changes` and `POST /api/v1/product-changes/validation`.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use service_kit::auth::Caller;
use service_kit::http::CorrelationId;

use super::extract::IdempotencyKey;
use super::AppState;
use crate::domain::line::RequestOutcome;
use crate::domain::line_number::LineNumber;
use crate::domain::product_change::ChangeRequest;
use crate::error::AppError;
use crate::product_change::Trace;
use service_kit::http::ApiJson;
use service_kit::problem::{Problem, ProblemCode, TokenProblems};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/product-changes", post(request_change))
        .route("/api/v1/product-changes/validation", post(validate_change))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProductChangeBody {
    /// `010-1234-5678`
    pub line_number: String,
    pub current_product_code: String,
    pub target_product_code: String,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Accepted {
    pub request_id: Uuid,
    pub line_number: String,
    /// `PROCESSING`: validated and handed to KOS.
    pub status: &'static str,
    /// The line's stream position after this request: pass it as `minPosition` to a
    /// query to read your own write.
    pub position: u64,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Validation {
    pub line_number: String,
    /// True when every check passed.
    pub valid: bool,
    pub checks: Vec<CheckOutcome>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CheckOutcome {
    pub check: &'static str,
    pub passed: bool,
    pub message: String,
}

impl ProductChangeBody {
    /// Checks the shape of every field; the domain checks come later.
    fn parse(self) -> Result<(LineNumber, ChangeRequest), AppError> {
        let line = LineNumber::parse(&self.line_number)
            .map_err(|detail| AppError::bad_request(ProblemCode::InvalidLineNumber, detail))?;
        for (field, value) in [
            ("currentProductCode", &self.current_product_code),
            ("targetProductCode", &self.target_product_code),
        ] {
            let ok = !value.is_empty()
                && value.len() <= 64
                && value
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if !ok {
                return Err(AppError::bad_request(
                    ProblemCode::InvalidProductCode,
                    format!("{field} must be 1 to 64 letters, digits, '-' or '_'"),
                ));
            }
        }
        Ok((
            line,
            ChangeRequest {
                current_product_code: self.current_product_code,
                target_product_code: self.target_product_code,
            },
        ))
    }
}

/// Request a product change for a line.
#[utoipa::path(
    post,
    path = "/api/v1/product-changes",
    security(("bearer" = [])),
    request_body = ProductChangeBody,
    params(("Idempotency-Key" = Option<String>, Header, description = "Repeat a request safely: the same key from the same caller gets the same answer and one change (keys are per caller)")),
    responses(
        (status = 202, description = "Validated and handed to KOS", body = Accepted),
        (status = 400, description = "Malformed input; nothing stored", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "FORBIDDEN_LINE: not the caller's line (customers) or an analyst", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown line", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Another change is in progress (CHANGE_IN_FLIGHT); the rejection is recorded", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Pre-checks failed (PRECHECK_FAILED, recorded) or IDEMPOTENCY_KEY_REUSED", body = Problem, content_type = "application/problem+json"),
        TokenProblems
    )
)]
pub(super) async fn request_change(
    State(state): State<AppState>,
    caller: Caller,
    CorrelationId(correlation_id): CorrelationId,
    IdempotencyKey(key): IdempotencyKey,
    ApiJson(body): ApiJson<ProductChangeBody>,
) -> Result<Response, AppError> {
    let (line, request) = body.parse()?;
    caller.may_change_line(line.as_str())?;
    let trace = Trace::here(correlation_id, Uuid::new_v4());
    let decision = state
        .changes
        .request(
            &line,
            request,
            key.as_deref().map(|key| (caller.customer_id(), key)),
            trace,
        )
        .await?;
    metrics::counter!("phonebill_product_changes_total", "outcome" => match decision.record.outcome {
        RequestOutcome::Processing => "accepted",
        RequestOutcome::Rejected(_) => "rejected",
    })
    .increment(1);
    match decision.record.outcome {
        RequestOutcome::Processing => {
            let location = format!("/api/v1/product-changes/{}", decision.request_id);
            let body = Accepted {
                request_id: decision.request_id,
                line_number: line.to_string(),
                status: "PROCESSING",
                position: decision.record.position,
            };
            Ok((
                StatusCode::ACCEPTED,
                [(header::LOCATION, location)],
                Json(body),
            )
                .into_response())
        }
        RequestOutcome::Rejected(failed_checks) => Err(AppError::PrecheckFailed {
            request_id: decision.request_id,
            failed_checks,
        }),
    }
}

/// Run the pre-checks for a product change without recording anything.
#[utoipa::path(
    post,
    path = "/api/v1/product-changes/validation",
    security(("bearer" = [])),
    request_body = ProductChangeBody,
    responses(
        (status = 200, description = "Every check with its result", body = Validation),
        (status = 400, description = "Malformed input", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "FORBIDDEN_LINE: not the caller's line", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown line", body = Problem, content_type = "application/problem+json"),
        TokenProblems
    )
)]
pub(super) async fn validate_change(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<ProductChangeBody>,
) -> Result<Json<Validation>, AppError> {
    let (line, request) = body.parse()?;
    caller.may_read_line(line.as_str())?;
    let results = state.changes.validate(&line, &request).await?;
    Ok(Json(Validation {
        line_number: line.to_string(),
        valid: results.iter().all(|r| r.passed),
        checks: results
            .into_iter()
            .map(|r| CheckOutcome {
                check: r.check.code(),
                passed: r.passed,
                message: r.message,
            })
            .collect(),
    }))
}
