use axum::routing::get;
use axum::{Json, Router};
use service_kit::auth::BearerScheme;
use utoipa::OpenApi;

use super::{bills, lines, product_changes, AppState};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "phonebill query-service",
        description = "Bills, lines, products and change requests, served from the projections. Every API path needs `Authorization: Bearer <token>` (from command-service's login); a customer reads only their own lines (403 FORBIDDEN_LINE). Errors are application/problem+json with a stable `code`. `minPosition` (the `position` of a command's 202) waits, at most 2 s by default, for the projection; past that 503 PROJECTION_BEHIND."
    ),
    paths(
        bills::menu,
        bills::bill,
        bills::history,
        lines::summary,
        lines::available,
        lines::changes,
        product_changes::by_id
    ),
    modifiers(&BearerScheme)
)]
struct ApiDoc;

pub fn router() -> Router<AppState> {
    Router::new().route(
        "/api-docs/openapi.json",
        get(|| async { Json(ApiDoc::openapi()) }),
    )
}
