//! Lines, available products, change requests, history, read-your-writes, the role.

use uuid::Uuid;

use crate::helpers::{completed, failed, line, product, registered, requested, sent};
use crate::helpers::{spawn_app, spawn_app_with};

#[tokio::test]
async fn given_a_product_change_when_queried_with_the_commands_position_then_the_request_is_shown_at_once(
) {
    let app = spawn_app().await;
    let l = line(201);
    let r = Uuid::new_v4();
    // What the command side commits for an accepted request: position 2.
    app.line_events(&l, 1, &[requested(&l, r, 0), sent(&l, r, 1)])
        .await;
    let response = app
        .get(&format!("/api/v1/product-changes/{r}?minPosition=2"))
        .await;
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["status"], "PROCESSING");
    assert_eq!(body["targetProductCode"], "5G-PREMIUM-001");
    assert!(body["sentAt"].is_string());
    app.stop().await;
}

#[tokio::test]
async fn given_a_position_the_projection_never_reaches_then_the_query_gives_up_with_503_projection_behind(
) {
    let app = spawn_app_with(300).await;
    let response = app
        .get(&format!("/api/v1/lines/{}?minPosition=5", line(202)))
        .await;
    assert_eq!(response.status(), 503);
    let problem: serde_json::Value = response.json().await.unwrap();
    assert_eq!(problem["code"], "PROJECTION_BEHIND");
    let response = app
        .get(&format!(
            "/api/v1/product-changes/{}?minPosition=1",
            Uuid::new_v4()
        ))
        .await;
    assert_eq!(response.status(), 503);
    app.stop().await;
}

#[tokio::test]
async fn given_a_line_with_changes_then_summary_available_products_and_filtered_paginated_history_answer(
) {
    let app = spawn_app().await;
    let l = line(203);
    let (r1, r2) = (Uuid::new_v4(), Uuid::new_v4());
    app.kos_facts(&[
        (1, product("5G-STANDARD-001", 69000)),
        (1, product("5G-PREMIUM-001", 89000)),
        (1, product("5G-LITE-001", 39000)),
        (1, registered(&l)),
    ])
    .await;
    // The catalog is there before the line's changes (as in production).
    crate::helpers::wait_until(
        "the catalog is projected",
        std::time::Duration::from_secs(30),
        || async {
            let body: serde_json::Value = app
                .get(&format!("/api/v1/products/available?lineNumber={l}"))
                .await
                .json()
                .await
                .unwrap();
            body["availableProducts"].as_array().map(Vec::len) == Some(2)
        },
    )
    .await;
    app.line_events(
        &l,
        1,
        &[
            requested(&l, r1, 0),
            sent(&l, r1, 1),
            failed(&l, r1, 2),
            requested(&l, r2, 3),
            sent(&l, r2, 4),
            completed(&l, r2, 5),
        ],
    )
    .await;

    let summary: serde_json::Value = app
        .get(&format!("/api/v1/lines/{l}?minPosition=6"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(summary["currentProduct"]["productCode"], "5G-PREMIUM-001");
    assert_eq!(
        summary["currentProduct"]["productName"],
        "name of 5G-PREMIUM-001"
    );
    assert_eq!(summary["status"], "ACTIVE");

    let available: serde_json::Value = app
        .get(&format!("/api/v1/products/available?lineNumber={l}"))
        .await
        .json()
        .await
        .unwrap();
    let codes: Vec<&str> = available["availableProducts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["productCode"].as_str().unwrap())
        .collect();
    assert_eq!(codes, ["5G-LITE-001", "5G-STANDARD-001"]);
    assert_eq!(available["currentProduct"]["productCode"], "5G-PREMIUM-001");

    let page: serde_json::Value = app
        .get(&format!("/api/v1/lines/{l}/product-changes?page=0&size=1"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page["totalElements"], 2);
    assert_eq!(page["totalPages"], 2);
    assert_eq!(
        page["items"][0]["requestId"],
        r2.to_string(),
        "newest first"
    );
    let failed_only: serde_json::Value = app
        .get(&format!(
            "/api/v1/lines/{l}/product-changes?status=FAILED&from=2026-03-01&to=2026-03-01"
        ))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(failed_only["totalElements"], 1);
    assert_eq!(failed_only["items"][0]["failureReason"], "KOS_REJECTED");
    let none: serde_json::Value = app
        .get(&format!(
            "/api/v1/lines/{l}/product-changes?from=2026-03-02"
        ))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(none["totalElements"], 0);
    assert_eq!(
        app.get(&format!("/api/v1/lines/{l}/product-changes?size=101"))
            .await
            .status(),
        400
    );
    assert_eq!(app.get("/api/v1/lines/010-9999-9999").await.status(), 404);
    app.stop().await;
}

#[tokio::test]
async fn given_the_query_role_then_another_schemas_table_is_refused() {
    let app = spawn_app().await;
    let other = format!("other_{}", Uuid::new_v4().simple());
    sqlx::query(&format!("CREATE SCHEMA {other}"))
        .execute(&app.projector.pool)
        .await
        .unwrap();
    sqlx::query(&format!("CREATE TABLE {other}.events (id int)"))
        .execute(&app.projector.pool)
        .await
        .unwrap();
    let query_pool =
        read_model::connect_read_only(&app.config.database.url, &app.config.database.schema, 1)
            .await
            .unwrap();
    let err = sqlx::query(&format!("SELECT * FROM {other}.events"))
        .execute(&query_pool)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("permission denied"), "{err}");
    query_pool.close().await;
    sqlx::query(&format!("DROP SCHEMA {other} CASCADE"))
        .execute(&app.projector.pool)
        .await
        .unwrap();
    let openapi = app.get("/api-docs/openapi.json").await;
    assert_eq!(openapi.status(), 200);
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains("http_server_requests_total"),
        "the requests above are counted: {metrics}"
    );
    app.stop().await;
}
