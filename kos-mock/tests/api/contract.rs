//! Everything kos-mock writes to the broker validates against `schemas/`.

use chrono::{Datelike, TimeDelta, Utc};
use events::schema::SchemaSet;
use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn every_fact_and_answer_matches_its_schema_after_the_demo_seed_a_bill_cycle_and_changes() {
    let app = spawn_app().await;
    let now = Utc::now().date_naive();
    let month = format!("{:04}-{:02}", now.year(), now.month());
    let response = app
        .post("/admin/bill-cycles", &json!({"month": month}))
        .await;
    assert_eq!(response.status(), 200);
    // Admin actions of every kind.
    assert_eq!(
        app.post(
            &format!("/admin/lines/{}/suspend", line(7)),
            &json!({"reason": "분실 신고"})
        )
        .await
        .status(),
        200
    );
    assert_eq!(
        app.post(&format!("/admin/lines/{}/resume", line(7)), &json!({}))
            .await
            .status(),
        200
    );
    assert_eq!(app.post("/admin/products", &json!({"productCode": "5G-YOUTH-001", "name": "5G 청춘", "operator": "KT", "monthlyFee": 45000, "dataMb": 20480})).await.status(), 200);
    assert_eq!(
        app.post(
            "/admin/products/5G-YOUTH-001/reprice",
            &json!({"monthlyFee": 42000})
        )
        .await
        .status(),
        200
    );
    assert_eq!(
        app.post("/admin/products/5G-YOUTH-001/withdraw", &json!({}))
            .await
            .status(),
        200
    );
    assert_eq!(
        app.post(
            "/admin/customers",
            &json!({"customerId": "CUST9001", "name": "홍길동"})
        )
        .await
        .status(),
        201
    );
    assert_eq!(app.post("/admin/lines", &json!({"lineNumber": "010-9001-0001", "customerId": "CUST9001", "productCode": "5G-BASIC-001", "commitmentMonths": 12, "devicePrice": 600000})).await.status(), 201);
    // One change executed, one refused.
    let producer = producer();
    let ok = change_request(
        &line(11),
        "5G-STANDARD-001",
        "5G-BASIC-001",
        TimeDelta::seconds(300),
    );
    let refused = change_request(
        &line(12),
        "5G-LITE-002",
        "LTE-DATA-002",
        TimeDelta::seconds(300),
    );
    produce_request(&producer, &app.topics, &ok).await;
    produce_request(&producer, &app.topics, &refused).await;
    app.wait_for_answers(request_id(&ok), 1).await;
    app.wait_for_answers(request_id(&refused), 1).await;
    app.wait_until_published().await;

    let schemas = SchemaSet::load();
    let facts = read_topic(&brokers(), &app.topics.kos_billing()).await;
    let results = read_topic(&brokers(), &app.topics.kos_results()).await;
    let mut types = std::collections::BTreeMap::new();
    for m in facts.iter().chain(&results) {
        schemas
            .validate(&m.json)
            .unwrap_or_else(|e| panic!("{} does not match its schema: {e}", m.json));
        assert_eq!(
            m.headers["event_type"],
            m.json["event_type"].as_str().unwrap()
        );
        assert_eq!(m.headers["event_version"], "1");
        assert_eq!(
            m.headers["correlation_id"],
            m.json["correlation_id"].as_str().unwrap()
        );
        *types
            .entry(m.json["event_type"].as_str().unwrap().to_owned())
            .or_insert(0) += 1;
    }
    // The demo set: 8 products, 100 lines, 6 months of bills for each, 5 of them paid;
    // then this month's cycle for the 96 active lines.
    assert_eq!(types["ProductPublished"], 8 + 1);
    assert_eq!(types["LineRegistered"], 100 + 1);
    assert_eq!(types["BillIssued"], 600 + 96);
    assert_eq!(types["PaymentRecorded"], 500);
    for t in [
        "ProductRepriced",
        "ProductWithdrawn",
        "LineSuspended",
        "LineResumed",
        "LineProductChanged",
        "ProductChangeExecuted",
        "ProductChangeRefused",
    ] {
        assert_eq!(types[t], 1, "{t}");
    }
    assert_facts_in_order(&facts);
    app.stop().await;
}
