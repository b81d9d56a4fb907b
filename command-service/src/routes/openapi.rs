use axum::routing::get;
use axum::{Json, Router};
use utoipa::OpenApi;

use super::product_changes;
use super::AppState;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "phonebill command-service",
        description = "Product-change commands. Errors are application/problem+json with a stable `code`."
    ),
    paths(product_changes::request_change, product_changes::validate_change)
)]
struct ApiDoc;

pub fn router() -> Router<AppState> {
    Router::new().route(
        "/api-docs/openapi.json",
        get(|| async { Json(ApiDoc::openapi()) }),
    )
}
