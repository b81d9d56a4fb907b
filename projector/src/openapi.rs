//! The projector's OpenAPI document (`/api-docs/openapi.json`, and `projector
//! print-openapi`): the analysts' time travel, the admins' parked events, health.

use service_kit::auth::BearerScheme;
use utoipa::OpenApi;

use crate::{admin, analytics, startup};

#[derive(OpenApi)]
#[openapi(
    info(title = "phonebill projector", description = "The projector's own endpoints: a line as it stood at a past moment (analysts and admins), the parked events and a reconciliation of lines (admins), health. Every API path needs `Authorization: Bearer <token>` (from command-service's login). Errors are application/problem+json with a stable `code`."),
    paths(
        analytics::line_state,
        admin::list_parked,
        admin::retry_parked,
        admin::reconciliation,
        startup::ready
    ),
    modifiers(&BearerScheme)
)]
struct ApiDoc;

/// The service's OpenAPI document.
pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}
