//! The KOS loop from the command side: KOS's answers (published here by a stand-in
//! producer, exactly as on the wire) settle each change once; no answer in time fails it
//! with TIMEOUT; KOS facts keep the pre-checks' reference data current.

use std::time::Duration;

use chrono::Utc;
use events::kos::{
    Contract, KosFact, KosResult, LineProductChanged, LineRegistered, LineResumed, LineStatus,
    LineSuspended, ProductChangeExecuted, ProductChangeRefused, ProductWithdrawn,
};
use serde_json::{json, Value};
use service_kit::signed::Signer;
use uuid::Uuid;

use crate::helpers::{line, read_topic, spawn_app, spawn_app_with, valid_change, Options};

fn executed(request_id: Uuid, n: u32, order: &str) -> KosResult {
    KosResult::ProductChangeExecuted(ProductChangeExecuted {
        request_id,
        line_number: line(n),
        kos_order_id: order.into(),
        previous_product_code: "5G-STANDARD-001".into(),
        new_product_code: "5G-PREMIUM-001".into(),
        message: "product changed".into(),
        executed_at: Utc::now(),
    })
}

fn types(events: &[(String, Value)]) -> Vec<&str> {
    events.iter().map(|(t, _)| t.as_str()).collect()
}

#[tokio::test]
async fn a_change_kos_executes_ends_completed_and_the_line_fact_updates_the_reference_data() {
    // Given an accepted change on line 1 (KT, 5G-STANDARD-001)
    let app = spawn_app().await;
    let request_id = app.accepted_change(1).await;

    // When KOS executes it and publishes the line's new product
    app.kos.answer(&executed(request_id, 1, "KOS-0001")).await;
    app.kos
        .fact(
            &KosFact::LineProductChanged(LineProductChanged {
                line_number: line(1),
                previous_product_code: "5G-STANDARD-001".into(),
                new_product_code: "5G-PREMIUM-001".into(),
                kos_order_id: "KOS-0001".into(),
                request_id: Some(request_id),
            }),
            2,
        )
        .await;

    // Then the line records it COMPLETED, once
    app.wait_for("the change to complete", || async {
        types(&app.events_of(request_id).await).contains(&"ProductChangeCompleted")
    })
    .await;
    let events = app.events_of(request_id).await;
    assert_eq!(
        types(&events),
        [
            "ProductChangeRequested",
            "ProductChangeSentToKos",
            "ProductChangeCompleted"
        ]
    );
    assert_eq!(events[2].1["kos_order_id"], "KOS-0001");
    assert_eq!(events[2].1["new_product_code"], "5G-PREMIUM-001");
    // and the reference data follows KOS: the line is on the new product
    app.wait_for("the reference data to follow KOS", || async {
        let product: String =
            sqlx::query_scalar("SELECT product_code FROM ref_lines WHERE line_number = $1")
                .bind(line(1))
                .fetch_one(&app.pool)
                .await
                .unwrap();
        product == "5G-PREMIUM-001"
    })
    .await;
    // and the line takes a new change from its new product
    let next = json!({"lineNumber": line(1), "currentProductCode": "5G-PREMIUM-001", "targetProductCode": "5G-BASIC-001"});
    assert_eq!(app.post_change(&next, None).await.status().as_u16(), 202);
    // and the outcome reached the broker
    app.wait_until_relayed(Duration::from_secs(10)).await;
    let published = read_topic(&app.config.kafka.brokers, &app.topics.product_change()).await;
    assert!(published
        .iter()
        .any(|m| m.json["event_type"] == "ProductChangeCompleted"
            && m.json["payload"]["request_id"] == request_id.to_string()));
    app.stop().await;
}

#[tokio::test]
async fn a_change_kos_refuses_ends_failed_with_kos_reason() {
    let app = spawn_app().await;
    let request_id = app.accepted_change(2).await;

    app.kos
        .answer(&KosResult::ProductChangeRefused(ProductChangeRefused {
            request_id,
            line_number: line(2),
            kos_order_id: "KOS-0002".into(),
            reason_code: "SYSTEM_ERROR".into(),
            message: "KOS could not complete the order".into(),
            refused_at: Utc::now(),
        }))
        .await;

    app.wait_for("the change to fail", || async {
        types(&app.events_of(request_id).await).contains(&"ProductChangeFailed")
    })
    .await;
    let events = app.events_of(request_id).await;
    let failed = &events.last().unwrap().1;
    assert_eq!(failed["reason_code"], "KOS_REJECTED");
    assert_eq!(failed["kos_reason_code"], "SYSTEM_ERROR");
    assert!(failed["reason"]
        .as_str()
        .unwrap()
        .contains("KOS could not complete the order"));
    app.stop().await;
}

#[tokio::test]
async fn a_change_kos_never_answers_fails_with_timeout_and_a_late_answer_does_not_flip_it() {
    // Given KOS has one second to answer
    let app = spawn_app_with(Options {
        kos_timeout: Duration::from_secs(1),
        ..Options::default()
    })
    .await;
    let request_id = app.accepted_change(3).await;

    // When it does not answer in time, then the change fails with TIMEOUT
    app.wait_for("the timeout", || async {
        types(&app.events_of(request_id).await).contains(&"ProductChangeFailed")
    })
    .await;
    let events = app.events_of(request_id).await;
    assert_eq!(events.last().unwrap().1["reason_code"], "TIMEOUT");
    let pending: i64 = sqlx::query_scalar("SELECT count(*) FROM kos_deadlines")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(pending, 0, "a settled change leaves no deadline behind");

    // When KOS answers after all (twice, as a redelivery would)
    app.kos.answer(&executed(request_id, 3, "KOS-0003")).await;
    app.kos.answer(&executed(request_id, 3, "KOS-0003")).await;

    // Then the answer is kept for audit, once, and the outcome stays FAILED
    app.wait_for("the late answer", || async {
        types(&app.events_of(request_id).await).contains(&"ProductChangeLateAnswerRecorded")
    })
    .await;
    // A later change on the same line is handled after the duplicate (same partition).
    let next = app.accepted_change(3).await;
    app.kos.answer(&executed(next, 3, "KOS-0004")).await;
    app.wait_for("the next change to complete", || async {
        types(&app.events_of(next).await).contains(&"ProductChangeCompleted")
    })
    .await;
    assert_eq!(
        types(&app.events_of(request_id).await),
        [
            "ProductChangeRequested",
            "ProductChangeSentToKos",
            "ProductChangeFailed",
            "ProductChangeLateAnswerRecorded"
        ]
    );
    app.stop().await;
}

#[tokio::test]
async fn a_redelivered_answer_is_recorded_once() {
    let app = spawn_app().await;
    let first = app.accepted_change(4).await;
    app.kos.answer(&executed(first, 4, "KOS-0005")).await;
    app.wait_for("the change to complete", || async {
        types(&app.events_of(first).await).contains(&"ProductChangeCompleted")
    })
    .await;

    // When the same answer arrives again, then a later answer on the line (behind it in
    // the same partition) is applied and the first change still has one outcome.
    app.kos.answer(&executed(first, 4, "KOS-0005")).await;
    let body = json!({"lineNumber": line(4), "currentProductCode": "5G-LITE-002", "targetProductCode": "5G-STANDARD-002"});
    let response = app.post_change(&body, None).await;
    assert_eq!(response.status().as_u16(), 202);
    let second: Uuid = response.json::<Value>().await.unwrap()["requestId"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    app.kos.answer(&executed(second, 4, "KOS-0006")).await;
    app.wait_for("the second change to complete", || async {
        types(&app.events_of(second).await).contains(&"ProductChangeCompleted")
    })
    .await;
    assert_eq!(
        types(&app.events_of(first).await),
        [
            "ProductChangeRequested",
            "ProductChangeSentToKos",
            "ProductChangeCompleted"
        ]
    );
    app.stop().await;
}

#[tokio::test]
async fn an_undecodable_kos_message_is_dead_lettered_and_later_answers_still_apply() {
    let app = spawn_app().await;
    let garbage = b"{\"event_type\": \"ProductChangeExecuted\", \"oops\": true}".to_vec();
    app.kos
        .publish_raw(&app.topics.kos_results(), &garbage)
        .await;

    let request_id = app.accepted_change(5).await;
    app.kos.answer(&executed(request_id, 5, "KOS-0007")).await;
    app.wait_for("the change to complete", || async {
        types(&app.events_of(request_id).await).contains(&"ProductChangeCompleted")
    })
    .await;

    let dead = read_topic(&app.config.kafka.brokers, &app.topics.dead_letter()).await;
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0].payload, garbage, "the original bytes are kept");
    assert_eq!(
        dead[0].headers.get("dlq-source-topic"),
        Some(&app.topics.kos_results())
    );
    assert_eq!(
        dead[0].headers.get("dlq-consumer").map(String::as_str),
        Some("command-service")
    );
    assert!(dead[0].headers["dlq-reason"].contains("not a valid envelope"));
    app.stop().await;
}

#[tokio::test]
async fn a_result_or_fact_kos_did_not_sign_changes_nothing_and_is_dead_lettered_with_the_reason() {
    // Given a change sent to KOS, and line 9 with its owner
    let app = spawn_app().await;
    let request_id = app.accepted_change(8).await;
    let owner_of = |line: String| {
        let pool = app.pool.clone();
        async move {
            sqlx::query_scalar::<_, String>(
                "SELECT customer_id FROM ref_lines WHERE line_number = $1",
            )
            .bind(line)
            .fetch_one(&pool)
            .await
            .unwrap()
        }
    };
    let owner = owner_of(line(9)).await;

    // When a pod holding the broker's credentials but not KOS's key answers the change
    // (unsigned) and registers line 9 to another customer (signed with a key of its own,
    // under KOS's key id), with a sequence ahead of any KOS will reach
    app.kos
        .impostor(None)
        .answer(&executed(request_id, 8, "KOS-FORGED"))
        .await;
    let forger = Signer::parse(&format!("local-dev:{}", "A".repeat(43) + "=")).unwrap();
    let stolen = KosFact::LineRegistered(LineRegistered {
        line_number: line(9),
        customer_id: "CUST-ATTACKER".into(),
        customer_name: "Mallory".into(),
        operator: "KT".into(),
        status: LineStatus::Active,
        product_code: "5G-PREMIUM-001".into(),
        contract: Contract {
            commitment_months: 0,
            started_on: Utc::now().date_naive(),
            ends_on: Utc::now().date_naive(),
        },
    });
    app.kos
        .impostor(Some(forger))
        .fact(&stolen, 1_000_000_000)
        .await;

    // Then both go to the dead-letter topic with the reason
    app.wait_for("two dead letters", || async {
        read_topic(&app.config.kafka.brokers, &app.topics.dead_letter())
            .await
            .len()
            == 2
    })
    .await;
    let dead = read_topic(&app.config.kafka.brokers, &app.topics.dead_letter()).await;
    let mut reasons: Vec<&str> = dead
        .iter()
        .map(|d| d.headers["dlq-reason"].as_str())
        .collect();
    reasons.sort();
    assert_eq!(
        reasons,
        [
            "the message is not signed",
            "the message's signature does not match key `local-dev`"
        ]
    );
    // and nothing changed: the line is its owner's, the change still waits for KOS
    assert_eq!(owner_of(line(9)).await, owner);
    let events = app.events_of(request_id).await;
    assert!(
        !types(&events)
            .iter()
            .any(|t| *t == "ProductChangeCompleted" || *t == "ProductChangeFailed"),
        "{events:?}"
    );
    // and KOS's own answer still settles it
    app.kos.answer(&executed(request_id, 8, "KOS-0010")).await;
    app.wait_for("the change to complete", || async {
        types(&app.events_of(request_id).await).contains(&"ProductChangeCompleted")
    })
    .await;
    app.stop().await;
}

#[tokio::test]
async fn an_answer_to_a_request_never_sent_is_dead_lettered() {
    let app = spawn_app().await;
    app.kos
        .answer(&executed(Uuid::new_v4(), 6, "KOS-0008"))
        .await;
    app.wait_for("the dead letter", || async {
        !read_topic(&app.config.kafka.brokers, &app.topics.dead_letter())
            .await
            .is_empty()
    })
    .await;
    let dead = read_topic(&app.config.kafka.brokers, &app.topics.dead_letter()).await;
    assert!(dead[0].headers["dlq-reason"].contains("never sent to KOS"));
    app.stop().await;
}

#[tokio::test]
async fn reference_data_follows_kos_facts_in_order_and_ignores_redeliveries() {
    let app = spawn_app().await;
    let status = |n: u32| {
        let pool = app.pool.clone();
        async move {
            sqlx::query_scalar::<_, String>("SELECT status FROM ref_lines WHERE line_number = $1")
                .bind(line(n))
                .fetch_one(&pool)
                .await
                .unwrap()
        }
    };
    let suspended = KosFact::LineSuspended(LineSuspended {
        line_number: line(7),
        reason: "lost phone".into(),
    });

    // KOS suspends line 7: a change on it now fails the LINE_ACTIVE pre-check
    app.kos.fact(&suspended, 2).await;
    app.wait_for("the suspension", || async {
        status(7).await == "SUSPENDED"
    })
    .await;
    let refused = app.post_change(&valid_change(7), None).await;
    assert_eq!(refused.status().as_u16(), 422);
    let problem: Value = refused.json().await.unwrap();
    assert_eq!(problem["failedChecks"][0]["check"], "LINE_ACTIVE");

    // KOS resumes it; then the old suspension is redelivered and changes nothing
    app.kos
        .fact(
            &KosFact::LineResumed(LineResumed {
                line_number: line(7),
            }),
            3,
        )
        .await;
    app.wait_for("the resumption", || async { status(7).await == "ACTIVE" })
        .await;
    app.kos.fact(&suspended, 2).await;
    // A later fact of the same line (same partition, behind the redelivery) marks the point
    // where the redelivery has been handled.
    app.kos
        .fact(
            &KosFact::LineProductChanged(LineProductChanged {
                line_number: line(7),
                previous_product_code: "5G-STANDARD-001".into(),
                new_product_code: "5G-BASIC-001".into(),
                kos_order_id: "KOS-0009".into(),
                request_id: None,
            }),
            4,
        )
        .await;
    app.wait_for("the product change fact", || async {
        sqlx::query_scalar::<_, String>("SELECT product_code FROM ref_lines WHERE line_number = $1")
            .bind(line(7))
            .fetch_one(&app.pool)
            .await
            .unwrap()
            == "5G-BASIC-001"
    })
    .await;
    assert_eq!(
        status(7).await,
        "ACTIVE",
        "a redelivered fact changed the line"
    );

    // KOS withdraws the target product: the TARGET_ON_SALE pre-check now fails
    app.kos
        .fact(
            &KosFact::ProductWithdrawn(ProductWithdrawn {
                product_code: "5G-PREMIUM-001".into(),
                operator: "KT".into(),
            }),
            2,
        )
        .await;
    app.wait_for("the withdrawal", || async {
        let on_sale: bool = sqlx::query_scalar(
            "SELECT on_sale FROM ref_products WHERE product_code = '5G-PREMIUM-001'",
        )
        .fetch_one(&app.pool)
        .await
        .unwrap();
        !on_sale
    })
    .await;
    let body = json!({"lineNumber": line(7), "currentProductCode": "5G-BASIC-001", "targetProductCode": "5G-PREMIUM-001"});
    let check = app
        .post_raw(
            "/api/v1/product-changes/validation",
            "application/json",
            serde_json::to_vec(&body).unwrap(),
        )
        .await;
    let validation: Value = check.json().await.unwrap();
    let failed: Vec<&str> = validation["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["passed"] == false)
        .map(|c| c["check"].as_str().unwrap())
        .collect();
    assert_eq!(failed, ["TARGET_ON_SALE"]);
    app.stop().await;
}

#[tokio::test]
async fn deadlines_are_kept_with_the_events_and_an_older_writers_rows_still_get_theirs() {
    let app = spawn_app().await;
    let deadline = |request_id: Uuid| {
        let pool = app.pool.clone();
        async move {
            sqlx::query_scalar::<_, String>(
                "SELECT line_number || ' ' || to_char(answer_by AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US')
                   FROM kos_deadlines WHERE request_id = $1",
            )
            .bind(request_id)
            .fetch_optional(&pool)
            .await
            .unwrap()
        }
    };

    // An accepted change opens its deadline in the statement that writes its events.
    let request_id = app.accepted_change(4).await;
    let sent = app.events_of(request_id).await;
    let answer_by: chrono::DateTime<Utc> =
        sent[1].1["answer_by"].as_str().unwrap().parse().unwrap();
    assert_eq!(
        deadline(request_id).await,
        Some(format!(
            "{} {}",
            line(4),
            answer_by.format("%Y-%m-%dT%H:%M:%S%.6f")
        ))
    );
    let kept: Vec<bool> =
        sqlx::query_scalar("SELECT deadline_kept FROM events WHERE aggregate_id = $1")
            .bind(line(4))
            .fetch_all(&app.pool)
            .await
            .unwrap();
    assert_eq!(kept, [true, true]);

    // KOS's answer closes it.
    app.kos.answer(&executed(request_id, 4, "KOS-0004")).await;
    app.wait_for("the change to complete", || async {
        types(&app.events_of(request_id).await).contains(&"ProductChangeCompleted")
    })
    .await;
    assert_eq!(deadline(request_id).await, None);

    // A row written as a version before migration 0005 wrote them (no `deadline_kept`)
    // still gets its deadline from the trigger.
    let older = Uuid::new_v4();
    sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
         SELECT aggregate_type, aggregate_id, sequence + 100, event_type, event_version,
                replace(payload::text, $1, $2)::json, metadata
           FROM events WHERE event_type = 'ProductChangeSentToKos' AND aggregate_id = $3",
    )
    .bind(request_id.to_string())
    .bind(older.to_string())
    .bind(line(4))
    .execute(&app.pool)
    .await
    .unwrap();
    assert!(deadline(older).await.is_some());
    app.stop().await;
}
