use service_kit::auth::BearerScheme;
use utoipa::OpenApi;

use super::admin;

#[derive(OpenApi)]
#[openapi(
    info(title = "phonebill kos-mock", description = "Admin API of the simulated KOS back office. KOS itself integrates through the broker alone (see schemas/). Every path needs `Authorization: Bearer <token>` with an admin token from command-service's login (401 UNAUTHENTICATED without a valid one, 403 FORBIDDEN for another role). Errors are application/problem+json with a stable `code`."),
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

/// The admin API's OpenAPI document (`/api-docs/openapi.json`, and `kos-mock
/// print-openapi`).
pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_admin_route_documents_its_answer_and_its_problems() {
        let doc = serde_json::to_value(ApiDoc::openapi()).unwrap();
        let paths = doc["paths"].as_object().unwrap();
        assert!(paths.len() >= 10, "{} paths", paths.len());
        for (path, operations) in paths {
            for (method, operation) in operations.as_object().unwrap() {
                let responses = operation["responses"].as_object().unwrap();
                let answer = responses
                    .iter()
                    .find(|(status, _)| status.starts_with('2'))
                    .map(|(_, r)| r);
                assert!(
                    answer.is_some_and(|r| r["content"]["application/json"]["schema"].is_object()),
                    "{method} {path} has a typed answer"
                );
                for (status, response) in responses.iter().filter(|(s, _)| !s.starts_with('2')) {
                    let problem = &response["content"]["application/problem+json"]["schema"];
                    assert_eq!(
                        problem["$ref"], "#/components/schemas/Problem",
                        "{method} {path} {status} is a problem"
                    );
                    let description = response["description"].as_str().unwrap_or("");
                    assert!(
                        description
                            .chars()
                            .next()
                            .is_some_and(|c| c.is_ascii_uppercase()),
                        "{method} {path} {status} names its codes: {description:?}"
                    );
                }
                for status in ["401", "403"] {
                    assert!(responses.contains_key(status), "{method} {path} {status}");
                }
            }
        }
    }
}
