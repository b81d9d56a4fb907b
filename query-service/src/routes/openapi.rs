//! The OpenAPI document (`/api-docs/openapi.json`, and `query-service print-openapi`):
//! every route with its query, its 200 body's schema and the problem codes it answers
//! with. The bill, line-summary and change-request routes send the stored view documents
//! as they are; their schemas are the view types of `read_model::views`.

use service_kit::auth::BearerScheme;
use utoipa::OpenApi;

use super::{bills, health, lines, product_changes};

#[derive(OpenApi)]
#[openapi(
    info(title = "phonebill query-service", description = "Bills, lines, products and change requests, served from the projections. Every API path needs `Authorization: Bearer <token>` (from command-service's login); a customer reads only their own lines (403 FORBIDDEN_LINE). Errors are application/problem+json with a stable `code` (each response lists the codes it may carry). `minPosition` (the `position` of a command's 202) waits, at most 2 s by default, for the projection; past that 503 PROJECTION_BEHIND."),
    paths(
        bills::menu,
        bills::bill,
        bills::history,
        lines::summary,
        lines::available,
        lines::changes,
        product_changes::by_id,
        health::live,
        health::ready
    ),
    modifiers(&BearerScheme)
)]
struct ApiDoc;

/// The service's OpenAPI document.
pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}
