//! Bills: menu, bill with ETag, 404, inquiry history, Redis flush and refill, L1
//! invalidation.

use std::time::Duration;

use query_service::views::refill;
use redis::AsyncCommands;

use crate::helpers::spawn_app;
use crate::helpers::{bill, line, payment, registered, wait_until};

#[tokio::test]
async fn given_a_projected_bill_when_queried_then_it_is_served_with_an_etag_and_revalidates_to_304()
{
    let app = spawn_app().await;
    let l = line(101);
    app.kos_facts(&[
        (1, registered(&l)),
        (2, bill(&l, "2026-02", 70000)),
        (3, bill(&l, "2026-03", 65000)),
    ])
    .await;
    let path = format!("/api/v1/bills?lineNumber={l}&month=2026-03");
    app.wait_for_status(&path, 200).await;

    let response = app.get(&path).await;
    let etag = response.headers()["etag"].to_str().unwrap().to_owned();
    assert_eq!(response.headers()["cache-control"], "private, no-cache");
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["totalAmount"], 65000);
    assert_eq!(body["billing"]["paymentStatus"], "UNPAID");

    let again = app
        .http
        .get(format!("{}{path}", app.address))
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 304);

    // A repeated parameter's last value counts and unknown ones are ignored.
    let repeated = app
        .get(&format!(
            "/api/v1/bills?month=2020-01&lineNumber={l}&utm_source=mail&month=2026-03"
        ))
        .await;
    assert_eq!(repeated.status(), 200);
    assert_eq!(repeated.headers()["etag"].to_str().unwrap(), etag);

    let menu: serde_json::Value = app
        .get(&format!("/api/v1/bills/menu?lineNumber={l}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(menu["customerId"], "CUST001");
    assert_eq!(menu["months"], serde_json::json!(["2026-03", "2026-02"]));
    assert_eq!(menu["currentMonth"].as_str().unwrap().len(), 7);
    app.stop().await;
}

#[tokio::test]
async fn given_no_bill_for_the_month_then_404_bill_not_found_as_problem_json_and_bad_input_is_400()
{
    let app = spawn_app().await;
    let response = app
        .get("/api/v1/bills?lineNumber=010-0000-0999&month=2020-01")
        .await;
    assert_eq!(response.status(), 404);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let problem: serde_json::Value = response.json().await.unwrap();
    assert_eq!(problem["code"], "BILL_NOT_FOUND");
    for (path, code) in [
        ("/api/v1/bills?lineNumber=12345", "INVALID_LINE_NUMBER"),
        ("/api/v1/bills?month=2026-03", "INVALID_LINE_NUMBER"),
        (
            "/api/v1/bills?lineNumber=010-0000-0999&minPosition=-1",
            "INVALID_PARAMETER",
        ),
        (
            "/api/v1/bills?lineNumber=010-0000-0999&month=2020-13",
            "INVALID_MONTH",
        ),
        (
            "/api/v1/bills/history?lineNumber=010-0000-0999&size=101",
            "INVALID_PARAMETER",
        ),
    ] {
        let response = app.get(path).await;
        assert_eq!(response.status(), 400, "{path}");
        assert_eq!(
            response.json::<serde_json::Value>().await.unwrap()["code"],
            code
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn given_bill_queries_then_each_is_recorded_and_listed_in_the_inquiry_history_newest_first() {
    let app = spawn_app().await;
    let l = line(102);
    app.kos_facts(&[(1, bill(&l, "2026-03", 65000))]).await;
    app.wait_for_status(&format!("/api/v1/bills?lineNumber={l}&month=2026-03"), 200)
        .await;
    app.get(&format!("/api/v1/bills?lineNumber={l}&month=2025-01"))
        .await;
    let path = format!("/api/v1/bills/history?lineNumber={l}&size=1");
    wait_until(
        "the inquiries are projected",
        Duration::from_secs(30),
        || async {
            let page: serde_json::Value = app.get(&path).await.json().await.unwrap();
            page["items"][0]["month"] == "2025-01"
        },
    )
    .await;
    let page: serde_json::Value = app.get(&path).await.json().await.unwrap();
    assert_eq!(page["items"].as_array().unwrap().len(), 1);
    assert!(page["totalElements"].as_u64().unwrap() >= 2);
    assert_eq!(page["items"][0]["month"], "2025-01");
    assert_eq!(page["items"][0]["result"], "NOT_FOUND");
    // And they are counted as recorded (the counter is the process's, shared by the
    // tests running beside this one, so at least these two).
    let metrics = app.get("/metrics").await.text().await.unwrap();
    let recorded = metrics
        .lines()
        .find_map(|l| l.strip_prefix("phonebill_bill_inquiries_recorded_total "))
        .and_then(|v| v.trim().parse::<f64>().ok());
    assert!(recorded.is_some_and(|n| n >= 2.0), "{metrics}");
    app.stop().await;
}

#[tokio::test]
async fn given_redis_flushed_while_running_then_queries_still_answer_from_postgres_and_redis_is_refilled(
) {
    let app = spawn_app().await;
    let l = line(103);
    app.kos_facts(&[(1, registered(&l)), (2, bill(&l, "2026-03", 65000))])
        .await;
    let path = format!("/api/v1/bills?lineNumber={l}&month=2026-03");
    app.wait_for_status(&path, 200).await;
    let before: serde_json::Value = app.get(&path).await.json().await.unwrap();

    let mut redis = app.projector.redis.clone();
    let prefix = &app.config.redis.key_prefix;
    let keys: Vec<String> = redis.keys(format!("{prefix}*")).await.unwrap();
    assert!(!keys.is_empty());
    let () = redis.del(&keys).await.unwrap();

    let after: serde_json::Value = app.get(&path).await.json().await.unwrap();
    assert_eq!(after, before);
    let summary = app.get(&format!("/api/v1/lines/{l}")).await;
    assert_eq!(summary.status(), 200);
    let refilled: Option<Vec<u8>> = redis
        .get(format!("{prefix}line:{{line:{l}}}"))
        .await
        .unwrap();
    assert!(refilled.is_some(), "the line view is back in Redis");
    app.stop().await;
}

#[tokio::test]
async fn given_a_newer_document_written_after_a_query_loaded_the_view_when_the_query_refills_redis_then_the_newer_one_stays(
) {
    let app = spawn_app().await;
    let mut redis = app.projector.redis.clone();
    let key = format!("{}line:{{line:{}}}", app.config.redis.key_prefix, line(104));
    let ttl = Duration::from_secs(600);

    // Given Redis lost the view, when a query refills it, then it is put with its TTL
    assert!(refill(&mut redis, &key, b"loaded", ttl).await.unwrap());
    let held: Option<Vec<u8>> = redis.get(&key).await.unwrap();
    assert_eq!(held.as_deref(), Some(&b"loaded"[..]));
    let expires_in: i64 = redis.ttl(&key).await.unwrap();
    assert!((1..=600).contains(&expires_in), "{expires_in}");

    // Given the projector wrote a newer document after the query loaded an older one,
    // when the query's refill lands, then it leaves the newer one
    let () = redis.set(&key, b"newer by the projector").await.unwrap();
    assert!(!refill(&mut redis, &key, b"older", ttl).await.unwrap());
    let held: Option<Vec<u8>> = redis.get(&key).await.unwrap();
    assert_eq!(held.as_deref(), Some(&b"newer by the projector"[..]));
    app.stop().await;
}

#[tokio::test]
async fn given_a_bill_held_in_the_l1_cache_when_the_projection_changes_it_then_the_next_query_sees_the_change(
) {
    let app = spawn_app().await;
    let l = line(104);
    app.kos_facts(&[(1, bill(&l, "2026-03", 65000))]).await;
    let path = format!("/api/v1/bills?lineNumber={l}&month=2026-03");
    app.wait_for_status(&path, 200).await;
    for _ in 0..3 {
        let body: serde_json::Value = app.get(&path).await.json().await.unwrap();
        assert_eq!(body["billing"]["paymentStatus"], "UNPAID");
    }
    app.kos_facts(&[(2, payment(&l, "2026-03"))]).await;
    wait_until("the payment shows", Duration::from_secs(30), || async {
        let body: serde_json::Value = app.get(&path).await.json().await.unwrap();
        body["billing"]["paymentStatus"] == "PAID"
    })
    .await;
    app.stop().await;
}
