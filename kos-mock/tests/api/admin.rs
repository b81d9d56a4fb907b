//! The admin API: bad input is refused with a stable code and changes nothing; the bill
//! cycle and the demo seed are idempotent; settings; health and the OpenAPI document.

use chrono::{Datelike, Utc};
use serde_json::{json, Value};

use crate::helpers::*;

/// (name, path, content type, body, status, code)
type Case = (
    &'static str,
    &'static str,
    &'static str,
    Vec<u8>,
    u16,
    &'static str,
);

async fn assert_problem(response: reqwest::Response, status: u16, code: &str) -> Value {
    assert_eq!(response.status().as_u16(), status);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["code"], code, "{body}");
    assert_eq!(body["status"], status);
    assert!(!body["detail"].as_str().unwrap().is_empty());
    body
}

#[tokio::test]
async fn bad_admin_input_is_refused_with_a_stable_code_and_changes_nothing() {
    let app = spawn_app().await;
    app.wait_until_published().await;
    let before = app.row_counts().await;
    let settings_before: Value = app.get("/admin/settings").await.json().await.unwrap();
    let json = "application/json";
    let cases: Vec<Case> = vec![
        ("broken JSON", "/admin/customers", json, b"{\"customerId\": ".to_vec(), 400, "MALFORMED_JSON"),
        ("unknown field", "/admin/customers", json, br#"{"customerId":"CUST9","name":"a","vip":true}"#.to_vec(), 400, "INVALID_FIELDS"),
        ("bad customer id", "/admin/customers", json, br#"{"customerId":"cust 9","name":"a"}"#.to_vec(), 400, "INVALID_CUSTOMER_ID"),
        ("blank name", "/admin/customers", json, br#"{"customerId":"CUST9","name":"  "}"#.to_vec(), 400, "INVALID_NAME"),
        ("not JSON", "/admin/customers", "text/plain", b"CUST9".to_vec(), 415, "UNSUPPORTED_MEDIA_TYPE"),
        ("bad line number", "/admin/lines", json, br#"{"lineNumber":"01000000001","customerId":"CUST0001","productCode":"5G-BASIC-001"}"#.to_vec(), 400, "INVALID_LINE_NUMBER"),
        ("bad product code", "/admin/lines", json, br#"{"lineNumber":"010-5555-0001","customerId":"CUST0001","productCode":"'; drop table lines;--"}"#.to_vec(), 400, "INVALID_PRODUCT_CODE"),
        ("long contract", "/admin/lines", json, br#"{"lineNumber":"010-5555-0001","customerId":"CUST0001","productCode":"5G-BASIC-001","commitmentMonths":99}"#.to_vec(), 400, "INVALID_CONTRACT"),
        ("bad payment method", "/admin/lines", json, br#"{"lineNumber":"010-5555-0001","customerId":"CUST0001","productCode":"5G-BASIC-001","paymentMethod":"CASH"}"#.to_vec(), 400, "INVALID_PAYMENT_METHOD"),
        ("negative fee", "/admin/products", json, br#"{"productCode":"X-1","name":"x","operator":"KT","monthlyFee":-1}"#.to_vec(), 400, "INVALID_AMOUNT"),
        ("bad operator", "/admin/products", json, br#"{"productCode":"X-1","name":"x","operator":"k t","monthlyFee":1}"#.to_vec(), 400, "INVALID_OPERATOR"),
        ("reprice negative", "/admin/products/5G-BASIC-001/reprice", json, br#"{"monthlyFee":-5}"#.to_vec(), 400, "INVALID_AMOUNT"),
        ("bad month", "/admin/bill-cycles", json, br#"{"month":"2025-13"}"#.to_vec(), 400, "INVALID_MONTH"),
        ("suspend without reason", "/admin/lines/010-0000-0001/suspend", json, br#"{"reason":""}"#.to_vec(), 400, "INVALID_REASON"),
        ("suspend bad line", "/admin/lines/0100000/suspend", json, br#"{"reason":"x"}"#.to_vec(), 400, "INVALID_LINE_NUMBER"),
        ("oversized body", "/admin/customers", json, format!(r#"{{"customerId":"CUST9","name":"{}"}}"#, "A".repeat(64 * 1024)).into_bytes(), 413, "PAYLOAD_TOO_LARGE"),
        ("unknown customer", "/admin/lines", json, br#"{"lineNumber":"010-5555-0001","customerId":"CUST7777","productCode":"5G-BASIC-001"}"#.to_vec(), 404, "CUSTOMER_NOT_FOUND"),
        ("unknown product", "/admin/lines", json, br#"{"lineNumber":"010-5555-0001","customerId":"CUST0001","productCode":"NOPE-1"}"#.to_vec(), 404, "PRODUCT_NOT_FOUND"),
        ("operator mismatch", "/admin/lines", json, br#"{"lineNumber":"010-5555-0001","customerId":"CUST0001","productCode":"5G-BASIC-001","operator":"LGU"}"#.to_vec(), 409, "OPERATOR_MISMATCH"),
        ("line exists", "/admin/lines", json, br#"{"lineNumber":"010-0000-0001","customerId":"CUST0001","productCode":"5G-BASIC-001"}"#.to_vec(), 409, "LINE_EXISTS"),
        ("customer renamed", "/admin/customers", json, br#"{"customerId":"CUST0001","name":"someone else"}"#.to_vec(), 409, "CUSTOMER_EXISTS"),
        ("product changes operator", "/admin/products", json, br#"{"productCode":"5G-BASIC-001","name":"x","operator":"LGU","monthlyFee":1}"#.to_vec(), 409, "OPERATOR_MISMATCH"),
        ("withdraw unknown", "/admin/products/NOPE-1/withdraw", json, b"{}".to_vec(), 404, "PRODUCT_NOT_FOUND"),
        ("resume unknown line", "/admin/lines/010-9999-9999/resume", json, b"{}".to_vec(), 404, "LINE_NOT_FOUND"),
    ];
    for (name, path, content_type, body, status, code) in cases {
        let response = app.post_raw(path, content_type, body).await;
        assert_eq!(response.status().as_u16(), status, "{name}");
        assert_problem(response, status, code).await;
    }
    for (body, code) in [
        (json!({"successRate": 1.5}), "INVALID_SETTINGS"),
        (
            json!({"latencyMinMs": 900, "latencyMaxMs": 100}),
            "INVALID_SETTINGS",
        ),
        (json!({"successRate": "high"}), "INVALID_FIELDS"),
    ] {
        assert_problem(app.put("/admin/settings", &body).await, 400, code).await;
    }
    assert_problem(
        app.get("/admin/orders/not-a-uuid").await,
        400,
        "INVALID_REQUEST_ID",
    )
    .await;
    assert_problem(
        app.get("/admin/orders/7d0e7a4c-6b8b-4d3f-9b59-1f2f4a9e0c11")
            .await,
        404,
        "ORDER_NOT_FOUND",
    )
    .await;
    assert_problem(
        app.get("/admin/lines/010-0000-0001/bills/2025-1").await,
        400,
        "INVALID_MONTH",
    )
    .await;
    assert_problem(
        app.get("/admin/lines/010-0000-0001/bills/2001-01").await,
        404,
        "BILL_NOT_FOUND",
    )
    .await;

    assert_eq!(
        app.row_counts().await,
        before,
        "bad input changed something"
    );
    let settings_after: Value = app.get("/admin/settings").await.json().await.unwrap();
    assert_eq!(settings_after, settings_before);
    app.stop().await;
}

#[tokio::test]
async fn the_bill_cycle_run_twice_for_a_month_issues_each_bill_once() {
    let app = spawn_app().await;
    let now = Utc::now().date_naive();
    let month = format!("{:04}-{:02}", now.year(), now.month());
    let first: Value = app
        .post("/admin/bill-cycles", &json!({"month": month}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(first["issued"], 96, "{first}");
    assert_eq!(first["alreadyIssued"], 0);
    let second: Value = app
        .post("/admin/bill-cycles", &json!({"month": month}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(second["issued"], 0, "{second}");
    assert_eq!(second["alreadyIssued"], 96);
    // A month the demo seed already billed issues nothing new.
    let previous = chrono::Months::new(1);
    let last = now.checked_sub_months(previous).unwrap();
    let seeded: Value = app
        .post(
            "/admin/bill-cycles",
            &json!({"month": format!("{:04}-{:02}", last.year(), last.month())}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(seeded["issued"], 0, "{seeded}");

    let bill: Value = app
        .get(&format!("/admin/lines/{}/bills/{month}", line(1)))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(bill["month"], month);
    assert_eq!(bill["product_code"], "5G-STANDARD-001");
    let discounts: i64 = bill["discounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["amount"].as_i64().unwrap())
        .sum();
    assert!(
        bill["total_amount"].as_i64().unwrap() >= bill["monthly_fee"].as_i64().unwrap() - discounts
    );

    app.wait_until_published().await;
    let facts = read_topic(&brokers(), &app.topics.kos_billing()).await;
    let this_month: Vec<_> = facts
        .iter()
        .filter(|m| m.json["event_type"] == "BillIssued" && m.json["payload"]["month"] == month)
        .collect();
    assert_eq!(this_month.len(), 96);
    // Suspended lines (every 25th) get no bill.
    assert!(this_month.iter().all(|m| m.key != line(25)));
    app.stop().await;
}

#[tokio::test]
async fn the_demo_seed_is_idempotent_and_settings_change_at_run_time() {
    let app = spawn_app().await;
    let before = app.row_counts().await;
    let report = kos_mock::demo::seed_now(&app.pool, kos_mock::demo::LINES)
        .await
        .unwrap();
    assert_eq!(report, kos_mock::demo::SeedReport::default());
    assert_eq!(app.row_counts().await, before);
    // products, customers, lines, bills
    assert_eq!(&before[..4], &[8, 100, 100, 600]);

    // A load test's larger set adds only the customers the demo does not have.
    let report = kos_mock::demo::seed_now(&app.pool, 103).await.unwrap();
    assert_eq!((report.customers, report.lines, report.bills), (3, 3, 18));
    assert_eq!(&app.row_counts().await[..4], &[8, 103, 103, 618]);
    assert!(kos_mock::demo::seed_now(&app.pool, 0).await.is_err());

    let changed: Value = app
        .put(
            "/admin/settings",
            &json!({"successRate": 0.5, "latencyMaxMs": 700}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(changed["successRate"], 0.5);
    assert_eq!(changed["latencyMaxMs"], 700);
    assert_eq!(changed["latencyMinMs"], 10);
    assert_eq!(changed["randomSeed"], 42);
    let read: Value = app.get("/admin/settings").await.json().await.unwrap();
    assert_eq!(read, changed);
    app.stop().await;
}

#[tokio::test]
async fn health_metrics_and_the_openapi_document_are_served() {
    let app = spawn_app_with(Options {
        seed_demo: false,
        ..Options::default()
    })
    .await;
    assert_eq!(app.get("/health/live").await.status(), 200);
    let ready = app.get("/health/ready").await;
    assert_eq!(ready.status(), 200);
    assert_eq!(app.get("/metrics").await.status(), 200);
    let doc: Value = app
        .get("/api-docs/openapi.json")
        .await
        .json()
        .await
        .unwrap();
    for path in [
        "/admin/lines",
        "/admin/bill-cycles",
        "/admin/settings",
        "/admin/orders/{request_id}",
    ] {
        assert!(
            doc["paths"].get(path).is_some(),
            "{path} missing from the OpenAPI document"
        );
    }
    app.stop().await;
}
