//! KOS carries out the changes the command side sends, once per request, and answers.

use std::time::Duration;

use chrono::TimeDelta;
use serde_json::json;
use uuid::Uuid;

use crate::helpers::*;

const TTL: TimeDelta = TimeDelta::seconds(300);

#[tokio::test]
async fn a_sent_change_is_executed_answered_and_published_as_a_fact() {
    let app = spawn_app().await;
    let producer = producer();
    let request = change_request(&line(1), "5G-STANDARD-001", "5G-PREMIUM-001", TTL);
    let id = request_id(&request);
    produce_request(&producer, &app.topics, &request).await;

    let answers = app.wait_for_answers(id, 1).await;
    let answer = &answers[0].json;
    assert_eq!(answer["event_type"], "ProductChangeExecuted");
    assert_eq!(answers[0].key, line(1));
    assert_eq!(answer["payload"]["new_product_code"], "5G-PREMIUM-001");
    assert_eq!(
        answer["payload"]["previous_product_code"],
        "5G-STANDARD-001"
    );
    assert_eq!(answer["correlation_id"], request.correlation_id.to_string());
    assert_eq!(answer["causation_id"], request.event_id.to_string());
    let order_id = answer["payload"]["kos_order_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(answer["aggregate_id"], order_id);
    assert_eq!(answer["sequence"], 1);

    app.wait_until_published().await;
    let facts = read_topic(&brokers(), &app.topics.kos_billing()).await;
    let changed: Vec<_> = facts
        .iter()
        .filter(|m| m.json["event_type"] == "LineProductChanged")
        .collect();
    assert_eq!(changed.len(), 1);
    let fact = &changed[0].json;
    assert_eq!(changed[0].key, line(1));
    assert_eq!(fact["payload"]["request_id"], id.to_string());
    assert_eq!(fact["payload"]["kos_order_id"], order_id);
    assert_eq!(fact["payload"]["new_product_code"], "5G-PREMIUM-001");
    assert_facts_in_order(&facts);

    assert_eq!(app.line_state(1).await["productCode"], "5G-PREMIUM-001");
    let order = app.wait_for_order(id).await;
    assert_eq!(order["outcome"], "EXECUTED");
    assert_eq!(order["kosOrderId"], order_id);
    assert_eq!(order["executions"], 1);
    app.stop().await;
}

#[tokio::test]
async fn with_a_success_rate_of_zero_kos_refuses_with_system_error_and_the_line_is_unchanged() {
    let app = spawn_app_with(Options {
        success_rate: 0.0,
        ..Options::default()
    })
    .await;
    let request = change_request(&line(2), "5G-LITE-002", "5G-PREMIUM-002", TTL);
    let id = request_id(&request);
    produce_request(&producer(), &app.topics, &request).await;

    let answer = app.wait_for_answers(id, 1).await[0].json.clone();
    assert_eq!(answer["event_type"], "ProductChangeRefused");
    assert_eq!(answer["payload"]["reason_code"], "SYSTEM_ERROR");
    assert_eq!(app.line_state(2).await["productCode"], "5G-LITE-002");
    let order = app.wait_for_order(id).await;
    assert_eq!(order["executions"], 0);
    assert_eq!(order["reasonCode"], "SYSTEM_ERROR");
    app.stop().await;
}

#[tokio::test]
async fn a_change_of_a_suspended_line_is_refused_with_line_suspended() {
    let app = spawn_app().await;
    // Demo line 25 is suspended (KT, on 5G-STANDARD-001).
    assert_eq!(app.line_state(25).await["status"], "SUSPENDED");
    let request = change_request(&line(25), "5G-STANDARD-001", "5G-PREMIUM-001", TTL);
    let id = request_id(&request);
    produce_request(&producer(), &app.topics, &request).await;

    let answer = app.wait_for_answers(id, 1).await[0].json.clone();
    assert_eq!(answer["payload"]["reason_code"], "LINE_SUSPENDED");
    assert_eq!(app.line_state(25).await["productCode"], "5G-STANDARD-001");

    // Other refusals name their reason too.
    let producer = producer();
    let cases = [
        (
            line(9999),
            "5G-STANDARD-001",
            "5G-PREMIUM-001",
            "LINE_NOT_FOUND",
        ),
        (
            line(1),
            "5G-STANDARD-001",
            "LTE-SLIM-001",
            "PRODUCT_NOT_ON_SALE",
        ),
        (
            line(1),
            "5G-STANDARD-001",
            "5G-PREMIUM-002",
            "OPERATOR_MISMATCH",
        ),
        (
            line(1),
            "5G-BASIC-001",
            "5G-PREMIUM-001",
            "CURRENT_PRODUCT_MISMATCH",
        ),
    ];
    for (number, current, target, code) in cases {
        let request = change_request(&number, current, target, TTL);
        produce_request(&producer, &app.topics, &request).await;
        let answer = app.wait_for_answers(request_id(&request), 1).await[0]
            .json
            .clone();
        assert_eq!(answer["payload"]["reason_code"], code, "{number} {target}");
    }
    assert_eq!(app.line_state(1).await["productCode"], "5G-STANDARD-001");
    app.stop().await;
}

#[tokio::test]
async fn a_request_past_its_answer_by_is_refused_as_expired_and_not_executed() {
    let app = spawn_app().await;
    let request = change_request(
        &line(3),
        "5G-STANDARD-001",
        "5G-PREMIUM-001",
        TimeDelta::seconds(-1),
    );
    let id = request_id(&request);
    produce_request(&producer(), &app.topics, &request).await;

    let answer = app.wait_for_answers(id, 1).await[0].json.clone();
    assert_eq!(answer["event_type"], "ProductChangeRefused");
    assert_eq!(answer["payload"]["reason_code"], "REQUEST_EXPIRED");
    assert_eq!(app.line_state(3).await["productCode"], "5G-STANDARD-001");
    let order = app.wait_for_order(id).await;
    assert_eq!(order["executions"], 0);
    app.wait_until_published().await;
    let facts = read_topic(&brokers(), &app.topics.kos_billing()).await;
    assert!(facts
        .iter()
        .all(|m| m.json["event_type"] != "LineProductChanged"));
    app.stop().await;
}

#[tokio::test]
async fn a_duplicated_and_redelivered_request_is_executed_once_and_answered_alike_each_time() {
    let app = spawn_app().await;
    let producer = producer();
    let request = change_request(&line(4), "5G-LITE-002", "5G-STANDARD-002", TTL);
    let id = request_id(&request);
    produce_request(&producer, &app.topics, &request).await;
    produce_request(&producer, &app.topics, &request).await;

    let answers = app.wait_for_answers(id, 2).await;
    assert_eq!(
        answers[0].payload, answers[1].payload,
        "the two answers differ"
    );
    assert_eq!(answers[0].json["event_type"], "ProductChangeExecuted");
    let order = app.wait_for_order(id).await;
    assert_eq!(order["executions"], 1);
    assert_eq!(order["deliveries"], 2);

    // A restart under a new consumer group reads the topic again from the start: both
    // copies are redelivered, answered again the same way, and not executed again.
    let mut config = app.stop_keep().await;
    config.kos.consumer_group = format!("kos-again-{}", Uuid::new_v4().simple());
    config.seed_demo = false;
    let app = start(config).await;
    let answers = app.wait_for_answers(id, 4).await;
    assert!(answers.iter().all(|a| a.payload == answers[0].payload));
    let order = app.order(id).await.unwrap();
    assert_eq!(order["executions"], 1);
    assert_eq!(order["deliveries"], 4);
    assert_eq!(app.line_state(4).await["productCode"], "5G-STANDARD-002");
    app.stop().await;
}

#[tokio::test]
async fn an_undecodable_message_is_dead_lettered_and_the_next_request_is_still_answered() {
    let app = spawn_app().await;
    let producer = producer();
    let topic = app.topics.product_change();
    publish(&producer, &topic, &line(5), b"{not json").await;
    let mut bad_payload = change_request(&line(5), "5G-STANDARD-001", "5G-PREMIUM-001", TTL);
    bad_payload.payload = json!({"request_id": "not-a-uuid"});
    produce_request(&producer, &app.topics, &bad_payload).await;
    // Another event type of the topic is ignored, not dead-lettered.
    let mut other = change_request(&line(5), "5G-STANDARD-001", "5G-PREMIUM-001", TTL);
    other.event_type = "ProductChangeCompleted".into();
    produce_request(&producer, &app.topics, &other).await;
    let good = change_request(&line(5), "5G-STANDARD-001", "5G-PREMIUM-001", TTL);
    produce_request(&producer, &app.topics, &good).await;

    app.wait_for_answers(request_id(&good), 1).await;
    let dead = eventually("two dead letters", Duration::from_secs(30), || async {
        let dead = read_topic(&brokers(), &app.topics.dead_letter()).await;
        (dead.len() >= 2).then_some(dead)
    })
    .await;
    assert_eq!(dead.len(), 2);
    assert_eq!(dead[0].payload, b"{not json");
    for d in &dead {
        assert_eq!(d.key, line(5));
        assert_eq!(d.headers["dlq-source-topic"], topic);
        assert_eq!(d.headers["dlq-consumer"], app.config.kos.consumer_group);
        assert!(!d.headers["dlq-reason"].is_empty());
        assert!(d.headers.contains_key("dlq-source-offset"));
    }
    app.stop().await;
}
