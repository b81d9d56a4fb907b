//! The outbox: an accepted change reaches the broker exactly once, in order, whatever
//! happens to the relay, and rows committing out of order are never skipped.

use std::time::Duration;

use events::schema::SchemaSet;
use tokio_util::sync::CancellationToken;

use crate::helpers::*;

#[tokio::test]
async fn an_accepted_change_is_published_once_with_a_schema_valid_envelope() {
    // Given a running service with its relay
    let app = spawn_app().await;

    // When a valid change is requested
    let response = app.post_change(&valid_change(1), None).await;
    assert_eq!(response.status(), 202);
    let body: serde_json::Value = response.json().await.unwrap();

    // Then the requested and sent-to-KOS events are on the topic, once each, valid
    app.wait_until_relayed(Duration::from_secs(20)).await;
    let messages = read_topic(&app.config.kafka.brokers, &app.topics.product_change()).await;
    assert_eq!(messages.len(), 2, "{messages:?}");
    assert_exactly_once_in_order(&messages);
    let schemas = SchemaSet::load();
    for m in &messages {
        schemas.validate(&m.json).unwrap();
        assert_eq!(m.json["payload"]["request_id"], body["requestId"]);
        assert_eq!(
            m.headers["event_type"],
            m.json["event_type"].as_str().unwrap()
        );
        assert_eq!(m.headers["event_version"], "1");
        assert_eq!(
            m.headers["correlation_id"],
            m.json["correlation_id"].as_str().unwrap()
        );
    }
    let types: Vec<&str> = messages
        .iter()
        .map(|m| m.json["event_type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["ProductChangeRequested", "ProductChangeSentToKos"]);
    assert_eq!(body["position"], 2);
    app.stop().await;
}

#[tokio::test]
async fn a_change_committed_while_the_relay_is_down_is_published_once_when_it_starts() {
    // Given a service whose relay is not running (killed after the commit)
    let app = spawn_app_with(Options {
        relay: false,
        ..Options::default()
    })
    .await;
    assert_eq!(app.post_change(&valid_change(3), None).await.status(), 202);
    assert_eq!(app.event_count().await, 2);
    assert!(
        read_topic(&app.config.kafka.brokers, &app.topics.product_change())
            .await
            .is_empty()
    );

    // When a relay starts
    let stop = CancellationToken::new();
    let relay = tokio::spawn(app.relay().run(stop.clone()));
    app.wait_until_relayed(Duration::from_secs(20)).await;

    // Then both events are on the topic exactly once
    let messages = read_topic(&app.config.kafka.brokers, &app.topics.product_change()).await;
    assert_eq!(messages.len(), 2);
    assert_exactly_once_in_order(&messages);
    stop.cancel();
    relay.await.unwrap();
    app.stop().await;
}

#[tokio::test]
async fn a_relay_killed_after_publishing_but_before_saving_its_cursor_does_not_publish_twice() {
    // Given events committed and published by a relay session that dies before it
    // records its cursor
    let app = spawn_app_with(Options {
        relay: false,
        ..Options::default()
    })
    .await;
    for n in [5, 7, 9] {
        assert_eq!(app.post_change(&valid_change(n), None).await.status(), 202);
    }
    let relay = app.relay();
    {
        let mut leading = relay.lead().await.unwrap();
        assert_eq!(leading.publish_batch().await.unwrap(), 6);
        // dropped here: the cursor was never saved, the lead is given up
    }
    assert_eq!(
        read_topic(&app.config.kafka.brokers, &app.topics.product_change())
            .await
            .len(),
        6
    );

    // When more changes come and a new relay takes over from the stale cursor
    assert_eq!(app.post_change(&valid_change(11), None).await.status(), 202);
    let stop = CancellationToken::new();
    let task = tokio::spawn(relay.run(stop.clone()));
    app.wait_until_relayed(Duration::from_secs(20)).await;

    // Then every event is on the topic exactly once, in per-line order
    let messages = read_topic(&app.config.kafka.brokers, &app.topics.product_change()).await;
    assert_eq!(messages.len(), 8);
    assert_exactly_once_in_order(&messages);
    stop.cancel();
    task.await.unwrap();
    app.stop().await;
}

#[tokio::test]
async fn an_event_committing_after_a_later_one_is_not_skipped() {
    // Given a transaction that writes an event for line 13 and stays open
    let app = spawn_app().await;
    let mut slow = app.pool.begin().await.unwrap();
    let request_id = uuid::Uuid::new_v4();
    let payload = serde_json::json!({"ProductChangeRequested": {
        "request_id": request_id, "line_number": line(13), "customer_id": "CUST0013",
        "operator": "KT", "current_product_code": "5G-STANDARD-001",
        "target_product_code": "5G-PREMIUM-001", "requested_at": "2026-03-01T09:00:00Z"}});
    sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
         VALUES ('Line', $1, 1, 'ProductChangeRequested', '1', $2, '{}')",
    )
    .bind(line(13))
    .bind(&payload)
    .execute(&mut *slow)
    .await
    .unwrap();

    // When a later transaction commits first and the relay runs meanwhile
    assert_eq!(app.post_change(&valid_change(15), None).await.status(), 202);
    slow.commit().await.unwrap();

    // Then both are published, none skipped or repeated
    app.wait_until_relayed(Duration::from_secs(20)).await;
    let messages = read_topic(&app.config.kafka.brokers, &app.topics.product_change()).await;
    let lines: Vec<&str> = messages.iter().map(|m| m.key.as_str()).collect();
    assert_eq!(messages.len(), 3, "{lines:?}");
    assert!(lines.contains(&line(13).as_str()));
    assert_exactly_once_in_order(&messages);
    app.stop().await;
}

#[tokio::test]
async fn the_relays_read_is_a_range_scan_from_its_cursor_whatever_the_table_size() {
    // Given an event store holding 20,000 events, one transaction id each, analyzed
    let app = spawn_app_with(Options {
        relay: false,
        ..Options::default()
    })
    .await;
    sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version,
                             payload, metadata, tx_id)
         SELECT 'Line', '010-' || (g / 2), g % 2, 'ProductChangeRequested', '1', '{}', '{}',
                (g + 3)::text::xid8
           FROM generate_series(1, 20000) g",
    )
    .execute(&app.pool)
    .await
    .unwrap();
    sqlx::query("ANALYZE events")
        .execute(&app.pool)
        .await
        .unwrap();
    let mut conn = app.pool.acquire().await.unwrap();
    sqlx::query(&format!(
        "PREPARE relay_batch(text, bigint, bigint, text) AS {}",
        command_service::relay::NEXT_BATCH
    ))
    .execute(&mut *conn)
    .await
    .unwrap();

    for mode in ["force_generic_plan", "force_custom_plan"] {
        // When the relay's prepared read is planned (as sqlx runs it: generic after a
        // few executions) with its cursor near the end of the table
        sqlx::query(&format!("SET plan_cache_mode = {mode}"))
            .execute(&mut *conn)
            .await
            .unwrap();
        let (plan,): (serde_json::Value,) =
            sqlx::query_as("EXPLAIN (FORMAT JSON) EXECUTE relay_batch('19900', 0, 500, 'Line')")
                .fetch_one(&mut *conn)
                .await
                .unwrap();

        // Then it is one index scan on events_outbox, bounded by all three conditions:
        // no sort, no other index, nothing that grows with the table
        let mut nodes = Vec::new();
        collect_plan_nodes(&plan[0]["Plan"], &mut nodes);
        let kinds: Vec<&str> = nodes
            .iter()
            .map(|n| n["Node Type"].as_str().unwrap())
            .collect();
        assert_eq!(kinds, ["Limit", "Index Scan"], "{mode}: {plan}");
        assert_eq!(nodes[1]["Index Name"], "events_outbox", "{mode}: {plan}");
        assert!(nodes[1].get("Filter").is_none(), "{mode}: {plan}");
    }
    app.stop().await;
}

fn collect_plan_nodes<'a>(node: &'a serde_json::Value, into: &mut Vec<&'a serde_json::Value>) {
    into.push(node);
    for child in node["Plans"].as_array().into_iter().flatten() {
        collect_plan_nodes(child, into);
    }
}
