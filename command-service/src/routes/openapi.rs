use service_kit::auth::BearerScheme;
use utoipa::OpenApi;

use super::{auth, product_changes};

#[derive(OpenApi)]
#[openapi(
    info(title = "phonebill command-service", description = "Product-change commands and login. Every endpoint but login and the JWKS document needs `Authorization: Bearer <token>`. Errors are application/problem+json with a stable `code`."),
    paths(
        product_changes::request_change,
        product_changes::validate_change,
        auth::login,
        auth::logout,
        auth::logout_all,
        auth::me,
        auth::set_password,
        auth::jwks
    ),
    modifiers(&BearerScheme)
)]
struct ApiDoc;

/// The service's OpenAPI document (`/api-docs/openapi.json`, and
/// `command-service print-openapi`).
pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}
