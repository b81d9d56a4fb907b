//! Bad input gets a problem+json answer with a stable code and changes nothing.

use serde_json::{json, Value};

use crate::helpers::*;

async fn assert_problem(response: reqwest::Response, status: u16, code: &str) -> serde_json::Value {
    assert_eq!(response.status().as_u16(), status);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["code"], code, "{body}");
    assert_eq!(body["status"], status);
    assert!(!body["detail"].as_str().unwrap().is_empty());
    body
}

#[tokio::test]
async fn malformed_requests_are_refused_with_stable_codes_and_store_nothing() {
    let app = spawn_app().await;
    let path = "/api/v1/product-changes";
    let json_type = "application/json";
    let cases: Vec<(&str, &str, Vec<u8>, u16, &str)> = vec![
        ("broken JSON", json_type, b"{\"lineNumber\": ".to_vec(), 400, "MALFORMED_JSON"),
        ("not an object", json_type, b"[1,2,3]".to_vec(), 400, "INVALID_FIELDS"),
        ("missing field", json_type, br#"{"lineNumber":"010-0000-0001","currentProductCode":"5G-STANDARD-001"}"#.to_vec(), 400, "INVALID_FIELDS"),
        ("unknown field", json_type, br#"{"lineNumber":"010-0000-0001","currentProductCode":"5G-STANDARD-001","targetProductCode":"5G-PREMIUM-001","discount":100}"#.to_vec(), 400, "INVALID_FIELDS"),
        ("wrong type", json_type, br#"{"lineNumber":1,"currentProductCode":"a","targetProductCode":"b"}"#.to_vec(), 400, "INVALID_FIELDS"),
        ("bad line number", json_type, br#"{"lineNumber":"01000000001","currentProductCode":"5G-STANDARD-001","targetProductCode":"5G-PREMIUM-001"}"#.to_vec(), 400, "INVALID_LINE_NUMBER"),
        ("bad product code", json_type, br#"{"lineNumber":"010-0000-0001","currentProductCode":"5G-STANDARD-001","targetProductCode":"'; drop table events;--"}"#.to_vec(), 400, "INVALID_PRODUCT_CODE"),
        ("empty product code", json_type, br#"{"lineNumber":"010-0000-0001","currentProductCode":"","targetProductCode":"5G-PREMIUM-001"}"#.to_vec(), 400, "INVALID_PRODUCT_CODE"),
        ("oversized body", json_type, format!(r#"{{"lineNumber":"010-0000-0001","currentProductCode":"{}","targetProductCode":"x"}}"#, "A".repeat(64 * 1024)).into_bytes(), 413, "PAYLOAD_TOO_LARGE"),
        ("not JSON", "text/plain", b"lineNumber=010-0000-0001".to_vec(), 415, "UNSUPPORTED_MEDIA_TYPE"),
    ];
    for (name, content_type, body, status, code) in cases {
        for path in [path, "/api/v1/product-changes/validation"] {
            let response = app.post_raw(path, content_type, body.clone()).await;
            assert_eq!(response.status().as_u16(), status, "{name} on {path}");
            assert_problem(response, status, code).await;
        }
    }
    let response = app
        .http
        .post(format!("{}{path}", app.address))
        .header("Idempotency-Key", "has spaces in it")
        .json(&valid_change(1))
        .send()
        .await
        .unwrap();
    assert_problem(response, 400, "INVALID_IDEMPOTENCY_KEY").await;
    assert_eq!(app.event_count().await, 0, "bad input stored something");
    app.stop().await;
}

#[tokio::test]
async fn an_unknown_line_is_not_found_and_stores_nothing() {
    let app = spawn_app().await;
    let body = json!({"lineNumber": "010-9999-9999", "currentProductCode": "5G-STANDARD-001", "targetProductCode": "5G-PREMIUM-001"});
    assert_problem(app.post_change(&body, None).await, 404, "LINE_NOT_FOUND").await;
    assert_eq!(app.event_count().await, 0);
    app.stop().await;
}

#[tokio::test]
async fn a_failed_precheck_is_refused_naming_each_check_and_kept_for_audit() {
    let app = spawn_app().await;
    // Line 1 is KT on 5G-STANDARD-001; the target is LGU's and not on sale, and the
    // current product named is wrong.
    let body = json!({"lineNumber": line(1), "currentProductCode": "5G-BASIC-001", "targetProductCode": "LTE-DATA-002"});
    let problem = assert_problem(app.post_change(&body, None).await, 422, "PRECHECK_FAILED").await;
    let checks: Vec<&str> = problem["failedChecks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["check"].as_str().unwrap())
        .collect();
    assert_eq!(
        checks,
        ["TARGET_ON_SALE", "SAME_OPERATOR", "CURRENT_PRODUCT_MATCHES"]
    );
    let stored: Vec<String> = sqlx::query_scalar("SELECT event_type FROM events")
        .fetch_all(&app.pool)
        .await
        .unwrap();
    assert_eq!(stored, ["ProductChangeRejected"]);

    // A suspended line (every 25th demo line)
    let problem = assert_problem(
        app.post_change(&valid_change(25), None).await,
        422,
        "PRECHECK_FAILED",
    )
    .await;
    assert_eq!(problem["failedChecks"][0]["check"], "LINE_ACTIVE");
    app.stop().await;
}

#[tokio::test]
async fn a_second_change_while_one_is_in_flight_is_a_conflict() {
    let app = spawn_app().await;
    let first = app.post_change(&valid_change(1), None).await;
    assert_eq!(first.status(), 202);
    let first: serde_json::Value = first.json().await.unwrap();
    let problem = assert_problem(
        app.post_change(&valid_change(1), None).await,
        409,
        "CHANGE_IN_FLIGHT",
    )
    .await;
    assert!(problem["failedChecks"][0]["message"]
        .as_str()
        .unwrap()
        .contains(first["requestId"].as_str().unwrap()));
    app.stop().await;
}

#[tokio::test]
async fn an_idempotency_key_reused_by_its_caller_for_another_request_is_refused() {
    // Given a customer's change sent with a key
    let app = spawn_app().await;
    let first = valid_change(1);
    assert_eq!(app.post_change(&first, Some("k-1")).await.status(), 202);

    // When the same customer sends another request with that key
    let mut other = first.clone();
    other["targetProductCode"] = json!("5G-BASIC-001");

    // Then it is refused and nothing is recorded
    assert_problem(
        app.post_change(&other, Some("k-1")).await,
        422,
        "IDEMPOTENCY_KEY_REUSED",
    )
    .await;
    assert_eq!(app.event_count().await, 2);
    app.stop().await;
}

#[tokio::test]
async fn given_another_customer_used_a_key_when_a_customer_sends_it_then_it_is_theirs_alone() {
    // Given CUST0001's change with key `shared`
    let app = spawn_app().await;
    let first = app.post_change(&valid_change(1), Some("shared")).await;
    assert_eq!(first.status(), 202);
    let first: Value = first.json().await.unwrap();

    // When CUST0003 sends the same key for their own line
    let other = app.post_change(&valid_change(3), Some("shared")).await;

    // Then it is a new change of theirs (no 422 telling them the key was used, and no
    // way to take a key before its owner does)
    assert_eq!(other.status(), 202);
    let other: Value = other.json().await.unwrap();
    assert_ne!(other["requestId"], first["requestId"]);
    assert_eq!(other["lineNumber"], line(3));

    // And CUST0001's repeat still gets their first answer
    let again: Value = app
        .post_change(&valid_change(1), Some("shared"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(again["requestId"], first["requestId"]);
    app.stop().await;
}

#[tokio::test]
async fn a_rejected_request_repeated_with_its_key_gets_the_same_rejection() {
    let app = spawn_app().await;
    let first = assert_problem(
        app.post_change(&valid_change(25), Some("k-25")).await,
        422,
        "PRECHECK_FAILED",
    )
    .await;
    let again = assert_problem(
        app.post_change(&valid_change(25), Some("k-25")).await,
        422,
        "PRECHECK_FAILED",
    )
    .await;
    assert_eq!(first, again);
    assert_eq!(app.event_count().await, 1);
    app.stop().await;
}
