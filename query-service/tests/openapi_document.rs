//! The OpenAPI document served on `/api-docs/openapi.json` is complete enough to generate
//! a client from: every operation's 200 answer has a schema, every API operation names
//! its problem codes, and every schema it refers to is in the document. Fetched from the
//! route alone (no database, Redis or broker needed); `e2e/tests/query_api/auth.rs`
//! checks that the running service serves it to anyone.

use axum::body::Body;
use axum::http::Request;
use serde_json::Value;
use tower::ServiceExt;

/// Every `$ref` under `value`.
fn refs<'a>(value: &'a Value, found: &mut Vec<&'a str>) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(r)) = map.get("$ref") {
                found.push(r);
            }
            map.values().for_each(|v| refs(v, found));
        }
        Value::Array(items) => items.iter().for_each(|v| refs(v, found)),
        _ => {}
    }
}

#[tokio::test]
async fn every_operation_of_the_openapi_document_has_a_schema_for_its_200_answer() {
    let response = service_kit::http::openapi_route::<()>(query_service::routes::openapi::document)
        .oneshot(
            Request::get("/api-docs/openapi.json")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    let doc: Value = serde_json::from_slice(&body).unwrap();

    let paths = doc["paths"].as_object().expect("paths");
    for expected in [
        "/api/v1/bills/menu",
        "/api/v1/bills",
        "/api/v1/bills/history",
        "/api/v1/lines/{lineNumber}",
        "/api/v1/lines/{lineNumber}/product-changes",
        "/api/v1/products/available",
        "/api/v1/product-changes/{requestId}",
        "/health/live",
        "/health/ready",
    ] {
        assert!(paths.contains_key(expected), "{expected} is documented");
    }
    let mut operations = 0;
    for (path, item) in paths {
        for (method, operation) in item.as_object().expect("a path item") {
            operations += 1;
            let ok = &operation["responses"]["200"];
            let schema = &ok["content"]["application/json"]["schema"];
            assert!(
                schema.is_object() && !schema.as_object().unwrap().is_empty(),
                "{method} {path}: its 200 answer has no schema: {ok}"
            );
            if path.starts_with("/api/") {
                for status in ["400", "401", "403"] {
                    let description = operation["responses"][status]["description"]
                        .as_str()
                        .unwrap_or_default();
                    assert!(
                        description.chars().any(|c| c.is_ascii_uppercase()),
                        "{method} {path}: {status} names its problem codes: {description:?}"
                    );
                }
            }
        }
    }
    assert!(operations >= 9, "{operations} operations");

    let mut found = Vec::new();
    refs(&doc, &mut found);
    assert!(!found.is_empty());
    for r in found {
        let name = r
            .strip_prefix("#/components/schemas/")
            .unwrap_or_else(|| panic!("{r} is not a schema reference"));
        assert!(
            doc["components"]["schemas"][name].is_object(),
            "{r} is in the document"
        );
    }
}

/// `query-service print-openapi` (what the web app's client check reads) writes the
/// document the route serves, without a database, Redis or broker.
#[test]
fn print_openapi_writes_the_served_document() {
    let printed = test_support::printed_openapi(env!("CARGO_BIN_EXE_query-service"));
    let served = serde_json::to_value(query_service::routes::openapi::document()).unwrap();
    assert_eq!(printed, served);
}
