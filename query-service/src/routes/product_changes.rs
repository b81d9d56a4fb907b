//! One product-change request by id (status, products, message, times).

use std::time::Instant;

use axum::extract::{Path, State};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use read_model::keys::View;
use read_model::views::ChangeRequestView;
use service_kit::auth::Caller;
use uuid::Uuid;

use super::lines::PositionParams;
use super::{doc_response, non_negative, AppState, IfNoneMatch, QueryParams, PRIVATE_REVALIDATE};
use crate::error::AppError;
use service_kit::problem::{Problem, ProblemCode, TokenProblems};

pub fn router() -> Router<AppState> {
    Router::new().route("/api/v1/product-changes/{requestId}", get(by_id))
}

/// With `minPosition` (the `position` of the command's 202), waits (bounded) until the
/// request is projected and its line has reached that position. The request's line
/// decides who may read it.
#[utoipa::path(get, path = "/api/v1/product-changes/{requestId}", tag = "product-changes",
    params(("requestId" = Uuid, Path, description = "The `requestId` of the command's 202"), PositionParams),
    responses(
        (status = 200, description = "The change request (the stored view document, with an ETag)", body = ChangeRequestView),
        (status = 304, description = "Not modified (If-None-Match)"),
        (status = 400, description = "INVALID_REQUEST_ID, INVALID_PARAMETER (minPosition)", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "FORBIDDEN_LINE", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "REQUEST_NOT_FOUND (not projected yet, or no such request)", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "PROJECTION_BEHIND (with minPosition: the request or its line's position did not appear in time), READ_MODEL_UNAVAILABLE, AUTH_UNAVAILABLE, TIMEOUT", body = Problem, content_type = "application/problem+json"),
        TokenProblems),
    security(("bearer" = [])))]
pub async fn by_id(
    caller: Caller,
    State(state): State<AppState>,
    Path(id): Path<String>,
    QueryParams(params): QueryParams<PositionParams>,
    if_none_match: IfNoneMatch,
) -> Result<Response, AppError> {
    let id = Uuid::parse_str(&id).map_err(|_| {
        AppError::refused(
            ProblemCode::InvalidRequestId,
            format!("`{id}` is not a UUID"),
        )
    })?;
    let view = View::Request { id };
    let not_found = || {
        AppError::refused(
            ProblemCode::RequestNotFound,
            format!("no product-change request {id}"),
        )
    };
    let Some(min) = non_negative("minPosition", params.min_position.as_ref())? else {
        let doc = state.views.get(&view).await?.ok_or_else(not_found)?;
        caller.may_read_line(&doc.json::<ChangeRequestView>()?.line_number)?;
        return Ok(doc_response(&doc, &if_none_match, PRIVATE_REVALIDATE));
    };
    let deadline = Instant::now() + state.max_wait;
    // The request id alone does not name the line: wait for the request to appear, then
    // for its line's position.
    let appeared = state
        .views
        .wait_until(&view, deadline, || async {
            Ok(state.views.get_fresh(&view).await?.is_some())
        })
        .await?;
    if !appeared {
        return Err(AppError::ProjectionBehind(min));
    }
    let doc = state.views.get_fresh(&view).await?.ok_or_else(not_found)?;
    let line = doc.json::<ChangeRequestView>()?.line_number;
    caller.may_read_line(&line)?;
    let left = deadline.saturating_duration_since(Instant::now());
    state.views.wait_for(&line, min, left).await?;
    let doc = state.views.get_fresh(&view).await?.ok_or_else(not_found)?;
    Ok(doc_response(&doc, &if_none_match, PRIVATE_REVALIDATE))
}
