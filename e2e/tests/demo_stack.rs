//! The demo system end to end: a customer logs in on the command side, reads bills KOS
//! issued through the read side, changes their price plan and sees KOS complete it.

use std::time::Duration;

mod support;

use serde_json::{json, Value};
use support::stack::Stack;
use test_support::wait_until;

/// KOS's bills are snake_case documents; the API's are camelCase. Same fields otherwise.
fn camel_case(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(key, v)| {
                    let mut out = String::new();
                    let mut upper = false;
                    for c in key.chars() {
                        if c == '_' {
                            upper = true;
                        } else if upper {
                            out.extend(c.to_uppercase());
                            upper = false;
                        } else {
                            out.push(c);
                        }
                    }
                    (out, camel_case(v))
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(camel_case).collect()),
        other => other.clone(),
    }
}

/// The served bill without what KOS recorded later (the payment: `paidAmount`,
/// `paidAt`, checked here to be the whole total), times normalised.
fn as_issued(mut served: Value) -> Value {
    let billing = served["billing"].as_object_mut().unwrap();
    let paid_amount = billing.remove("paidAmount");
    let paid_at = billing.remove("paidAt");
    if billing["paymentStatus"] == "PAID" {
        assert_eq!(paid_amount.as_ref(), Some(&served["totalAmount"]));
        assert!(paid_at.is_some_and(|t| t.is_string()));
    }
    normalise_times(served)
}

/// KOS writes `issued_at` as `...Z`, the projection as `...+00:00` or `...Z`: one instant.
fn normalise_times(mut bill: Value) -> Value {
    let issued = bill["issuedAt"].as_str().unwrap_or_default();
    let utc = issued
        .trim_end_matches('Z')
        .trim_end_matches("+00:00")
        .to_owned();
    bill["issuedAt"] = Value::String(utc);
    bill
}

#[tokio::test]
async fn a_customer_reads_each_bill_exactly_as_kos_issued_it_and_a_new_bill_cycle_month_becomes_queryable(
) {
    // Given: the demo system, and CUST0001 logged in.
    let stack = Stack::start(&["CUST0001"]).await;
    let (token, lines) = stack.login("CUST0001").await;
    assert_eq!(lines, ["010-0000-0001"]);
    let line = &lines[0];

    // When: the bill menu is read, then every month's bill.
    let (status, menu) = stack.query(&token, "/api/v1/bills/menu").await;
    assert_eq!(status, 200, "{menu}");
    assert_eq!(menu["customerId"], "CUST0001");
    assert_eq!(menu["lineNumber"], line.as_str());
    let months: Vec<String> = menu["months"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(months.len(), 6, "six months of demo bills: {menu}");

    // Then: each is KOS's bill, field for field (payment status included).
    for month in &months {
        let (status, served) = stack
            .query(
                &token,
                &format!("/api/v1/bills?lineNumber={line}&month={month}"),
            )
            .await;
        assert_eq!(status, 200, "{month}: {served}");
        let issued = stack
            .kos_get(&format!("/admin/lines/{line}/bills/{month}"))
            .await;
        assert_eq!(
            as_issued(served),
            normalise_times(camel_case(&issued)),
            "{month}"
        );
    }
    // When: KOS runs the bill cycle of a month the customer has no bill for yet.
    let new_month = "2027-01";
    let report = stack
        .kos_admin("/admin/bill-cycles", &json!({"month": new_month}))
        .await;
    // Every active demo line is billed (every 25th line is suspended).
    assert_eq!(report["issued"], 96, "{report}");

    // Then: the month appears on the menu and its bill is KOS's.
    wait_until(
        "the new month is on the bill menu",
        Duration::from_secs(30),
        || async {
            let (_, menu) = stack.query(&token, "/api/v1/bills/menu").await;
            menu["months"]
                .as_array()
                .is_some_and(|m| m.iter().any(|v| v == new_month))
        },
    )
    .await;
    let (status, served) = stack
        .query(
            &token,
            &format!("/api/v1/bills?lineNumber={line}&month={new_month}"),
        )
        .await;
    assert_eq!(status, 200);
    let issued = stack
        .kos_get(&format!("/admin/lines/{line}/bills/{new_month}"))
        .await;
    assert_eq!(as_issued(served), normalise_times(camel_case(&issued)));
    stack.stop().await;
}

#[tokio::test]
async fn a_product_change_is_visible_at_once_with_its_position_and_then_completed_with_the_new_product_on_the_line(
) {
    // Given: CUST0003 on 5G-STANDARD-001 (odd demo lines are KT on the standard plan).
    let stack = Stack::start(&["CUST0003"]).await;
    let (token, lines) = stack.login("CUST0003").await;
    let line = lines[0].clone();
    let (current, target) = stack.premium_offer(&token, &line).await;

    // When: the customer asks for the change.
    let (status, accepted) = stack
        .command(
            &token,
            "/api/v1/product-changes",
            &json!({"lineNumber": line, "currentProductCode": current, "targetProductCode": target}),
        )
        .await;
    assert_eq!(status, 202, "{accepted}");
    let request_id = accepted["requestId"].as_str().unwrap().to_owned();
    let position = accepted["position"].as_i64().unwrap();

    // Then: with the 202's position the read side shows the request at once.
    let (status, request) = stack
        .query(
            &token,
            &format!("/api/v1/product-changes/{request_id}?minPosition={position}"),
        )
        .await;
    assert_eq!(status, 200, "{request}");
    assert_eq!(request["targetProductCode"], target.as_str());
    assert!(
        ["REQUESTED", "VALIDATED", "PROCESSING", "COMPLETED"]
            .contains(&request["status"].as_str().unwrap()),
        "{request}"
    );

    // And later: KOS completes it, and the line summary carries the new product.
    stack.wait_completed(&token, &request_id).await;
    wait_until(
        "the line summary shows the new product",
        Duration::from_secs(30),
        || async {
            let (_, summary) = stack.query(&token, &format!("/api/v1/lines/{line}")).await;
            summary.to_string().contains(&target) && summary["pendingChange"].is_null()
        },
    )
    .await;
    let (_, history) = stack
        .query(&token, &format!("/api/v1/lines/{line}/product-changes"))
        .await;
    assert_eq!(history["items"][0]["requestId"], request_id.as_str());
    assert_eq!(history["items"][0]["status"], "COMPLETED");
    stack.stop().await;
}

#[tokio::test]
async fn a_login_token_reads_only_the_customers_own_lines_and_a_logout_ends_it_on_the_read_side() {
    // Given: two customers logged in.
    let stack = Stack::start(&["CUST0005", "CUST0006"]).await;
    let (token, lines) = stack.login("CUST0005").await;
    let (_, other_lines) = stack.login("CUST0006").await;
    let own = format!("/api/v1/lines/{}", lines[0]);
    let other = format!("/api/v1/lines/{}", other_lines[0]);

    // Then: their own line answers, the other customer's is refused without its data.
    assert_eq!(stack.query(&token, &own).await.0, 200);
    let (status, refused) = stack.query(&token, &other).await;
    assert_eq!(status, 403);
    assert_eq!(refused["code"], "FORBIDDEN_LINE");
    assert!(!refused.to_string().contains(&other_lines[0]));

    // When: the customer logs out on the command side.
    let response = stack
        .http
        .post(format!("{}/api/v1/auth/logout", stack.command))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);

    // Then: query-service refuses the token too.
    wait_until(
        "query-service hears of the logout",
        Duration::from_secs(10),
        || async { stack.query(&token, &own).await.0 == 401 },
    )
    .await;
    stack.stop().await;
}

#[tokio::test]
async fn each_service_serves_its_metrics_on_a_port_of_their_own_and_nothing_else_there() {
    // Given: the four services, each with a metrics port (as the chart deploys them).
    let stack = Stack::start(&[]).await;
    let http = reqwest::Client::new();
    let status = |url: String| {
        let http = http.clone();
        async move { http.get(url).send().await.unwrap().status().as_u16() }
    };
    for (service, api, metrics) in &stack.metrics {
        // Then: the metrics port answers /metrics in Prometheus' text format...
        let scraped = http.get(format!("{metrics}/metrics")).send().await.unwrap();
        assert_eq!(scraped.status(), 200, "{service}");
        let text = scraped.text().await.unwrap();
        assert!(text.contains("# TYPE"), "{service}: {text}");
        // ...and nothing else (no health, no API); the API port no metrics.
        for path in [
            "/health/ready",
            "/admin/parked",
            "/api/v1/auth/me",
            "/admin/settings",
        ] {
            assert_eq!(
                status(format!("{metrics}{path}")).await,
                404,
                "{service} {path}"
            );
        }
        assert_eq!(status(format!("{api}/metrics")).await, 404, "{service}");
        assert_eq!(status(format!("{api}/health/live")).await, 200, "{service}");
    }
    assert_eq!(stack.metrics.len(), 4);
    stack.stop().await;
}
