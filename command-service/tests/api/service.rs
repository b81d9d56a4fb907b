//! Operability: health, readiness, metrics, OpenAPI, validation without side effects.

use crate::helpers::*;

#[tokio::test]
async fn health_metrics_and_openapi_are_served() {
    let app = spawn_app().await;
    let get = |path: &str| app.http.get(format!("{}{path}", app.address)).send();
    assert_eq!(get("/health/live").await.unwrap().status(), 200);
    let ready: serde_json::Value = get("/health/ready").await.unwrap().json().await.unwrap();
    assert_eq!(ready["status"], "UP", "{ready}");
    assert_eq!(app.post_change(&valid_change(1), None).await.status(), 202);
    let metrics = get("/metrics").await.unwrap().text().await.unwrap();
    assert!(metrics.contains("http_server_requests_total"), "{metrics}");
    assert!(metrics.contains("phonebill_product_changes_total"));
    // The relay's backlog gauge, once the relay has read the outbox (it leads, then reads).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let metrics = get("/metrics").await.unwrap().text().await.unwrap();
        if metrics.contains("phonebill_outbox_pending") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no phonebill_outbox_pending: {metrics}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let doc: serde_json::Value = get("/api-docs/openapi.json")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(doc["paths"]["/api/v1/product-changes"]["post"].is_object());
    assert!(doc["paths"]["/api/v1/product-changes/validation"]["post"].is_object());
    app.stop().await;
}

#[tokio::test]
async fn validation_reports_every_check_and_records_nothing() {
    let app = spawn_app().await;
    let response = app
        .http
        .post(format!("{}/api/v1/product-changes/validation", app.address))
        .json(&valid_change(1))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["valid"], true);
    assert_eq!(body["checks"].as_array().unwrap().len(), 6);
    assert_eq!(app.event_count().await, 0);
    app.stop().await;
}

#[test]
fn in_production_the_binary_refuses_to_start_without_the_event_hubs_secret() {
    // Given the production configuration shape with every setting but the secret
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_command-service"))
        .env("PHONEBILL_ENV", "production")
        .env("PHONEBILL_KAFKA_SECURITY_PROTOCOL", "sasl_ssl")
        .env("PHONEBILL_KAFKA_SASL_USERNAME", "$ConnectionString")
        .env(
            "PHONEBILL_KAFKA_BROKERS",
            "phonebill.servicebus.windows.net:9093",
        )
        .env(
            "PHONEBILL_DATABASE_URL",
            "postgres://phonebill@db.example:5432/phonebill?sslmode=require",
        )
        .env_remove("PHONEBILL_KAFKA_SASL_PASSWORD")
        .output()
        .expect("the binary runs");
    // Then it exits at once, naming the missing variable
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("PHONEBILL_KAFKA_SASL_PASSWORD"), "{stderr}");
}
