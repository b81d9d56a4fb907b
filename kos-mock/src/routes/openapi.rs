use axum::routing::get;
use axum::{Json, Router};
use service_kit::auth::BearerScheme;
use utoipa::OpenApi;

use super::admin;
use super::AppState;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "phonebill kos-mock",
        description = "Admin API of the simulated KOS back office. KOS itself integrates through the broker alone (see schemas/). Every path needs `Authorization: Bearer <token>` with an admin token from command-service's login (401 UNAUTHENTICATED without a valid one, 403 FORBIDDEN for another role). Errors are application/problem+json with a stable `code`."
    ),
    paths(
        admin::add_customer,
        admin::register_line,
        admin::get_line,
        admin::suspend_line,
        admin::resume_line,
        admin::get_bill,
        admin::list_products,
        admin::get_product,
        admin::publish_product,
        admin::withdraw_product,
        admin::reprice_product,
        admin::run_bill_cycle,
        admin::get_settings,
        admin::put_settings,
        admin::get_order
    ),
    security(("bearer" = [])),
    modifiers(&BearerScheme)
)]
struct ApiDoc;

pub fn router() -> Router<AppState> {
    Router::new().route(
        "/api-docs/openapi.json",
        get(|| async { Json(ApiDoc::openapi()) }),
    )
}
