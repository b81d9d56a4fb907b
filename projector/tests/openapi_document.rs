//! The projector's OpenAPI document: `projector print-openapi` writes the one served on
//! `/api-docs/openapi.json`, without a database, Redis or broker, and every operation
//! documents its answer's schema and its problems.

#[test]
fn print_openapi_writes_the_served_document_with_every_answer_typed() {
    // Given: the binary's printed document and the library's
    let printed = test_support::printed_openapi(env!("CARGO_BIN_EXE_projector"));
    let served = serde_json::to_value(projector::openapi::document()).unwrap();

    // Then: they are the same, and every route is there with a typed 200
    assert_eq!(printed, served);
    for (path, method) in [
        ("/api/v1/analytics/lines/{lineNumber}/state", "get"),
        ("/admin/parked", "get"),
        ("/admin/parked/retry", "post"),
        ("/health/ready", "get"),
    ] {
        let responses = &printed["paths"][path][method]["responses"];
        assert!(
            responses["200"]["content"]["application/json"]["schema"].is_object(),
            "{method} {path} has a typed 200"
        );
        if path.starts_with("/api/") || path.starts_with("/admin/") {
            for status in ["401", "403", "429"] {
                let problem = &responses[status]["content"]["application/problem+json"];
                assert_eq!(
                    problem["schema"]["$ref"], "#/components/schemas/Problem",
                    "{method} {path} documents its {status} as a problem"
                );
            }
        }
    }
}
