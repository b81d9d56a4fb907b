//! `command-service print-openapi` (what the web app's client check reads) writes the
//! document served on `/api-docs/openapi.json`, without a database, Redis or broker.

#[test]
fn print_openapi_writes_the_served_document() {
    let printed = test_support::printed_openapi(env!("CARGO_BIN_EXE_command-service"));
    let served = serde_json::to_value(command_service::routes::openapi::document()).unwrap();
    assert_eq!(printed, served);
    for path in ["/api/v1/auth/login", "/api/v1/product-changes"] {
        assert!(printed["paths"][path].is_object(), "{path} is documented");
    }
}
