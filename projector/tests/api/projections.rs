//! The processor fed directly (PostgreSQL and Redis, no broker): views, idempotence,
//! parking.

use std::time::Duration;

use projector::processor::{lock_views, Outcome};
use read_model::keys::View;
use uuid::Uuid;

use crate::helpers::*;

#[tokio::test]
async fn given_a_completed_change_when_projected_then_request_line_history_and_position_views_agree_in_redis_and_postgres(
) {
    let mut t = TestProcessor::new().await;
    let l = line(1);
    let r = Uuid::new_v4();
    assert_eq!(
        t.feed_kos(1, product("5G-PREMIUM-001", 89000)).await,
        Outcome::Applied
    );
    assert_eq!(t.feed_kos(1, registered(&l)).await, Outcome::Applied);
    assert_eq!(
        t.feed_line(&l, 1, requested(&l, r, 0)).await,
        Outcome::Applied
    );
    assert_eq!(t.feed_line(&l, 2, sent(&l, r, 1)).await, Outcome::Applied);

    let summary = t.redis_json(&format!("line:{{line:{l}}}")).await.unwrap();
    assert_eq!(summary["pendingChange"]["status"], "PROCESSING");
    assert_eq!(summary["status"], "ACTIVE");

    assert_eq!(
        t.feed_line(&l, 3, completed(&l, r, 2)).await,
        Outcome::Applied
    );
    let request = t.redis_json(&format!("request:{{req:{r}}}")).await.unwrap();
    assert_eq!(request["status"], "COMPLETED");
    assert_eq!(request["newProductCode"], "5G-PREMIUM-001");
    let summary = t.redis_json(&format!("line:{{line:{l}}}")).await.unwrap();
    assert!(summary.get("pendingChange").is_none());
    assert_eq!(summary["currentProduct"]["productCode"], "5G-PREMIUM-001");
    assert_eq!(
        summary["currentProduct"]["productName"],
        "name of 5G-PREMIUM-001"
    );
    let history = t
        .redis_json(&format!("history:{{line:{l}}}"))
        .await
        .unwrap();
    assert_eq!(history["items"].as_array().unwrap().len(), 1);
    assert_eq!(t.redis_json(&format!("pos:{{line:{l}}}")).await.unwrap(), 3);

    let pg: serde_json::Value =
        sqlx::query_scalar("SELECT doc FROM change_requests WHERE request_id = $1")
            .bind(r)
            .fetch_one(&t.pool)
            .await
            .unwrap();
    assert_eq!(pg, request);
    t.cleanup().await;
}

#[tokio::test]
async fn given_events_applied_when_each_is_delivered_again_then_nothing_changes_and_none_is_applied_twice(
) {
    let mut t = TestProcessor::new().await;
    let l = line(2);
    let (r1, r2) = (Uuid::new_v4(), Uuid::new_v4());
    let events = [
        requested(&l, r1, 0),
        sent(&l, r1, 1),
        failed(&l, r1, 2),
        requested(&l, r2, 3),
        sent(&l, r2, 4),
    ];
    for (i, e) in events.iter().enumerate() {
        assert_eq!(
            t.feed_line(&l, i as u64 + 1, e.clone()).await,
            Outcome::Applied
        );
    }
    t.feed_kos(1, bill(&l, "2026-03", 65000)).await;
    let before = dump(&t.pool, &t.redis, &t.config.redis.key_prefix).await;

    for (i, e) in events.iter().enumerate() {
        assert_eq!(
            t.feed_line(&l, i as u64 + 1, e.clone()).await,
            Outcome::Duplicate
        );
    }
    assert_eq!(
        t.feed_kos(1, bill(&l, "2026-03", 1)).await,
        Outcome::Duplicate
    );

    assert_eq!(
        dump(&t.pool, &t.redis, &t.config.redis.key_prefix).await,
        before
    );
    let max_times: i32 = sqlx::query_scalar("SELECT max(times) FROM apply_log")
        .fetch_one(&t.pool)
        .await
        .unwrap();
    assert_eq!(max_times, 1);
    let history = t
        .redis_json(&format!("history:{{line:{l}}}"))
        .await
        .unwrap();
    let statuses: Vec<&str> = history["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["PROCESSING", "FAILED"], "newest first");
    t.cleanup().await;
}

#[tokio::test]
async fn given_a_line_on_a_product_not_yet_published_when_the_product_is_published_or_renamed_then_the_line_summary_shows_its_name(
) {
    // Given: a line registered on 5G-STANDARD-001 before the catalog has it (facts of
    // different partitions arrive in any order).
    let mut t = TestProcessor::new().await;
    let l = line(4);
    let key = format!("line:{{line:{l}}}");
    assert_eq!(t.feed_kos(1, registered(&l)).await, Outcome::Applied);
    let summary = t.redis_json(&key).await.unwrap();
    assert!(summary["currentProduct"].get("productName").is_none());

    // When: the product is published, then: the line's summary carries its name.
    assert_eq!(
        t.feed_kos(1, product("5G-STANDARD-001", 69000)).await,
        Outcome::Applied
    );
    let summary = t.redis_json(&key).await.unwrap();
    assert_eq!(
        summary["currentProduct"]["productName"],
        "name of 5G-STANDARD-001"
    );

    // When: it is published again under a new name, then: the summary follows.
    let mut renamed = product("5G-STANDARD-001", 69000);
    if let events::kos::KosFact::ProductPublished(p) = &mut renamed {
        p.name = "5G Standard Plus".into();
    }
    assert_eq!(t.feed_kos(2, renamed).await, Outcome::Applied);
    let summary = t.redis_json(&key).await.unwrap();
    assert_eq!(summary["currentProduct"]["productName"], "5G Standard Plus");
    t.cleanup().await;
}

#[tokio::test]
async fn given_a_bill_and_its_payment_when_projected_then_the_bill_shows_paid_and_the_month_is_listed(
) {
    let mut t = TestProcessor::new().await;
    let l = line(3);
    t.feed_kos(1, bill(&l, "2026-02", 70000)).await;
    t.feed_kos(2, bill(&l, "2026-03", 65000)).await;
    assert_eq!(
        t.feed_kos(3, payment(&l, "2026-03")).await,
        Outcome::Applied
    );

    let bill = t
        .redis_json(&format!("bill:{{line:{l}}}:2026-03"))
        .await
        .unwrap();
    assert_eq!(bill["totalAmount"], 65000);
    assert_eq!(bill["billing"]["paymentStatus"], "PAID");
    assert_eq!(bill["discounts"][0]["name"], "family");
    let months = t.redis_json(&format!("months:{{line:{l}}}")).await.unwrap();
    assert_eq!(months["months"], serde_json::json!(["2026-03", "2026-02"]));
    t.cleanup().await;
}

#[tokio::test]
async fn given_an_event_that_cannot_be_applied_then_its_line_is_parked_later_events_wait_other_lines_go_on_and_a_retry_drains_it(
) {
    let mut t = TestProcessor::new().await;
    let (stuck, other) = (line(4), line(5));
    let (r, r_other) = (Uuid::new_v4(), Uuid::new_v4());

    // A Completed for a request the projector never saw: the line parks.
    assert_eq!(
        t.feed_line(&stuck, 1, completed(&stuck, r, 0)).await,
        Outcome::Parked
    );
    let r2 = Uuid::new_v4();
    assert_eq!(
        t.feed_line(&stuck, 2, requested(&stuck, r2, 1)).await,
        Outcome::Parked
    );
    assert!(t
        .redis_json(&format!("request:{{req:{r2}}}"))
        .await
        .is_none());
    // Another line goes on.
    assert_eq!(
        t.feed_line(&other, 1, requested(&other, r_other, 0)).await,
        Outcome::Applied
    );
    let parked: i64 = sqlx::query_scalar("SELECT count(*) FROM parked")
        .fetch_one(&t.pool)
        .await
        .unwrap();
    assert_eq!(parked, 2);

    // Still unfixable: the retry keeps both, in order.
    let report = t.processor.retry_parked().await.unwrap();
    assert_eq!((report.applied, report.still_parked), (0, 2));

    // An operator repairs the missing request; the retry drains the line in order.
    sqlx::query(
        "INSERT INTO change_requests (request_id, line_number, status, requested_at, doc)
         VALUES ($1, $2, 'PROCESSING', now(), $3)",
    )
    .bind(r)
    .bind(&stuck)
    .bind(serde_json::json!({
        "requestId": r, "lineNumber": stuck, "status": "PROCESSING",
        "currentProductCode": "5G-STANDARD-001", "targetProductCode": "5G-PREMIUM-001",
        "requestedAt": at(0), "updatedAt": at(0)
    }))
    .execute(&t.pool)
    .await
    .unwrap();
    let report = t.processor.retry_parked().await.unwrap();
    assert_eq!((report.applied, report.still_parked), (2, 0));
    assert_eq!(
        t.redis_json(&format!("request:{{req:{r2}}}"))
            .await
            .unwrap()["status"],
        "VALIDATED"
    );
    assert_eq!(
        t.redis_json(&format!("pos:{{line:{stuck}}}"))
            .await
            .unwrap(),
        2
    );
    t.cleanup().await;
}

#[tokio::test]
async fn given_the_query_role_then_it_reads_the_read_tables_and_is_refused_everything_else() {
    let t = TestProcessor::new().await;
    let url = format!(
        "postgres://{}@127.0.0.1:5432/phonebill",
        t.config.query_role
    );
    let pool = read_model::connect_read_only(&url, &t.config.database.schema, 1)
        .await
        .unwrap();
    sqlx::query("SELECT * FROM bills")
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("SELECT * FROM applied")
        .execute(&pool)
        .await
        .unwrap();
    for refused in [
        "SELECT * FROM parked".to_owned(),
        "SELECT * FROM apply_log".to_owned(),
        format!(
            "INSERT INTO {}.lines VALUES ('x', '{{}}')",
            t.config.database.schema
        ),
        "SELECT * FROM pg_catalog.pg_authid".to_owned(),
    ] {
        let err = sqlx::query(&refused).execute(&pool).await.unwrap_err();
        assert!(
            err.to_string().contains("permission denied"),
            "{refused}: {err}"
        );
    }
    pool.close().await;
    t.cleanup().await;
}

#[tokio::test]
async fn given_another_replica_rewriting_a_line_summary_when_this_one_rewrites_it_too_then_it_waits_and_leaves_the_newest_document(
) {
    let mut t = TestProcessor::new().await;
    let l = line(60);
    assert_eq!(t.feed_kos(1, registered(&l)).await, Outcome::Applied);
    let view = View::Line { line: l.clone() };
    let key = view.redis_key(&t.config.redis.key_prefix);

    // Given another replica holding the view's lock: it is between its load and its write
    let mut other = t.pool.begin().await.unwrap();
    lock_views(&mut other, &[key]).await.unwrap();
    let holder: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut *other)
        .await
        .unwrap();

    // When this replica rewrites the same view
    let processor = t.processor.clone();
    let rewriting = tokio::spawn(async move { processor.refresh(&[view]).await });

    // Then it waits for that lock rather than loading now
    let pool = t.pool.clone();
    wait_until(
        "this replica's rewrite waits for the view's lock",
        Duration::from_secs(10),
        || {
            let pool = pool.clone();
            async move {
                let waiting: i64 = sqlx::query_scalar(
                    "SELECT count(*) FROM pg_locks w
                       JOIN pg_locks g USING (locktype, database, classid, objid, objsubid)
                      WHERE w.locktype = 'advisory' AND NOT w.granted
                        AND g.granted AND g.pid = $1",
                )
                .bind(holder)
                .fetch_one(&pool)
                .await
                .unwrap();
                waiting > 0
            }
        },
    )
    .await;
    // And once the other replica's newer state is committed and its lock released, the
    // document this one leaves in Redis is that newer state
    sqlx::query(
        "UPDATE lines SET doc = jsonb_set(doc, '{status}', '\"SUSPENDED\"') WHERE line_number = $1",
    )
    .bind(&l)
    .execute(&mut *other)
    .await
    .unwrap();
    other.commit().await.unwrap();
    rewriting.await.unwrap().unwrap();
    let summary = t.redis_json(&format!("line:{{line:{l}}}")).await.unwrap();
    assert_eq!(summary["status"], "SUSPENDED");
    t.cleanup().await;
}
