use axum::routing::get;
use axum::{Json, Router};
use utoipa::OpenApi;

use super::{bills, lines, product_changes, AppState};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "phonebill query-service",
        description = "Bills, lines, products and change requests, served from the projections. Errors are application/problem+json with a stable `code`. `minPosition` (the `position` of a command's 202) waits, at most 2 s by default, for the projection; past that 503 PROJECTION_BEHIND."
    ),
    paths(
        bills::menu,
        bills::bill,
        bills::history,
        lines::summary,
        lines::available,
        lines::changes,
        product_changes::by_id
    )
)]
struct ApiDoc;

pub fn router() -> Router<AppState> {
    Router::new().route(
        "/api-docs/openapi.json",
        get(|| async { Json(ApiDoc::openapi()) }),
    )
}
