//! The admin API is for admins: no token, another role's token, a token signed with
//! another key and a logged-out admin token are refused on every `/admin` route, and
//! nothing changes. Health, metrics and the OpenAPI document need no token.

use chrono::{Duration as TimeDelta, Utc};
use serde_json::{json, Value};
use service_kit::auth::{KeySet, RedisRevocations, Role, SystemClock, Tokens, LOCAL_DEV_KID};
use service_kit::redis_conn::RedisConn;
use std::sync::Arc;

use crate::helpers::*;

/// The OpenAPI document, fetched without a token.
async fn openapi(app: &TestApp) -> Value {
    reqwest::get(app.url("/api-docs/openapi.json"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Every operation of the OpenAPI document, with its path parameters filled in.
async fn every_admin_operation(app: &TestApp) -> Vec<(reqwest::Method, String)> {
    let doc = openapi(app).await;
    let mut operations = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        let concrete = path
            .replace("{line_number}", &line(1))
            .replace("{month}", "2026-11")
            .replace("{product_code}", "5G-STANDARD")
            .replace("{request_id}", &uuid::Uuid::new_v4().to_string());
        for method in item.as_object().unwrap().keys() {
            operations.push((method.to_uppercase().parse().unwrap(), concrete.clone()));
        }
    }
    assert!(operations.len() >= 15, "{operations:?}");
    assert!(operations
        .iter()
        .all(|(_, path)| path.starts_with("/admin/")));
    operations
}

/// Sends each operation with `client` and checks the refusal; then checks nothing changed.
async fn refused_everywhere(app: &TestApp, client: &reqwest::Client, status: u16, code: &str) {
    let before = app.row_counts().await;
    let settings_before: Value = app.get("/admin/settings").await.json().await.unwrap();
    let line_before = app.line_state(1).await;
    for (method, path) in every_admin_operation(app).await {
        let response = client
            .request(method.clone(), app.url(&path))
            .json(&json!({"month": "2026-11", "successRate": 0.0, "customerId": "EVIL"}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), status, "{method} {path}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["code"], code, "{method} {path}: {body}");
    }
    assert_eq!(app.row_counts().await, before);
    let settings_after: Value = app.get("/admin/settings").await.json().await.unwrap();
    assert_eq!(settings_after, settings_before);
    assert_eq!(app.line_state(1).await, line_before);
}

#[tokio::test]
async fn given_no_token_when_any_admin_route_is_called_then_401_and_nothing_changes() {
    let app = spawn_app().await;
    app.wait_until_published().await;
    refused_everywhere(&app, &reqwest::Client::new(), 401, "UNAUTHENTICATED").await;
    let response = reqwest::get(app.url("/admin/settings")).await.unwrap();
    assert_eq!(
        response.headers()["www-authenticate"],
        "Bearer realm=\"phonebill\""
    );
    app.stop().await;
}

#[tokio::test]
async fn given_a_customer_or_analyst_token_when_any_admin_route_is_called_then_403() {
    let app = spawn_app().await;
    app.wait_until_published().await;
    for role in [Role::Customer, Role::Analyst] {
        let client = client_with_token(&token(&app.config, "CUST0001", role));
        refused_everywhere(&app, &client, 403, "FORBIDDEN").await;
    }
    app.stop().await;
}

#[tokio::test]
async fn given_an_admin_token_signed_with_another_key_then_401() {
    // Given a token that names the service's key id but was signed by someone else
    let app = spawn_app().await;
    app.wait_until_published().await;
    let forger = KeySet::from_seed(LOCAL_DEV_KID, [0xff; 32]);
    let forged = Tokens::new(&app.config.jwt, forger, Arc::new(SystemClock))
        .issue("admin", Role::Admin, vec![])
        .0;
    // Then every admin route refuses it
    refused_everywhere(&app, &client_with_token(&forged), 401, "UNAUTHENTICATED").await;
    app.stop().await;
}

#[tokio::test]
async fn given_an_admin_logged_out_when_the_old_token_is_used_then_401() {
    // Given an admin token that works
    let app = spawn_app().await;
    let (token, claims) = tokens(&app.config).issue("admin", Role::Admin, vec![]);
    let admin = client_with_token(&token);
    let settings = admin.get(app.url("/admin/settings")).send().await.unwrap();
    assert_eq!(settings.status(), 200);

    // When command-service records its logout in Redis
    let redis = RedisConn::connect(&app.config.redis).await.unwrap();
    RedisRevocations::new(redis, &app.config.redis.key_prefix)
        .revoke(&claims.jti, Utc::now() + TimeDelta::minutes(30), Utc::now())
        .await
        .unwrap();

    // Then kos-mock refuses it at once
    let settings = admin.get(app.url("/admin/settings")).send().await.unwrap();
    assert_eq!(settings.status(), 401);
    let body: Value = settings.json().await.unwrap();
    assert_eq!(body["code"], "UNAUTHENTICATED");
    app.stop().await;
}

#[tokio::test]
async fn health_metrics_and_the_openapi_document_need_no_token_and_name_the_scheme() {
    let app = spawn_app_with(Options {
        seed_demo: false,
        ..Options::default()
    })
    .await;
    for path in ["/health/live", "/health/ready", "/metrics"] {
        let response = reqwest::get(app.url(path)).await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
    }
    let doc = openapi(&app).await;
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    assert_eq!(doc["security"], json!([{"bearer": []}]));
    app.stop().await;
}
