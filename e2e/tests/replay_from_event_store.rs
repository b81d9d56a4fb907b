//! A replay that reads product changes from the command side's event store (as when the
//! broker's retention has removed the topic's beginning) builds the same views as the
//! broker's copy of the same events did live.

mod support;

use std::time::{Duration, Instant};

use analyst::compare::{compare, dump};
use analyst::replay::{self, HistorySource, ReplayOptions};
use read_model::namespace::ActiveNamespace;
use service_kit::redis_conn::RedisConn;
use support::stack::Stack;

#[tokio::test]
async fn a_replay_reading_product_changes_from_the_event_store_rebuilds_the_live_views() {
    // Given: two customers' changes went through command-service, KOS and the projector.
    let stack = Stack::start(&["CUST0003", "CUST0004"]).await;
    stack.change_to_premium("CUST0003").await;
    stack.change_to_premium("CUST0004").await;
    let config = stack.projector.clone();
    let redis = RedisConn::connect(&config.redis).await.unwrap();
    let live_schema = config.database.schema.clone();
    let live_prefix = config.redis.key_prefix.clone();

    // When: a replay reads phonebill.product-change from the event store.
    let report = replay::run(
        &config,
        ReplayOptions {
            id: Some("es".into()),
            source: HistorySource::EventStore,
            progress: false,
            flush_every: 50,
            ..Default::default()
        },
    )
    .await
    .unwrap();

    // Then: the product changes came from the event store (4 events per completed change:
    // requested, sent, completed, each once) and the views equal the live ones.
    let topic = format!("{}phonebill.product-change", config.kafka.topic_prefix);
    assert_eq!(report.from_event_store, [topic], "{report:?}");
    assert_eq!(report.rejected, 0, "{report:?}");
    assert_eq!(report.parked, 0, "{report:?}");
    let replayed_changes: i64 = sqlx::query_scalar(&format!(
        "SELECT count(*) FROM \"{live_schema}_es\".apply_log WHERE aggregate_type = 'Line'"
    ))
    .fetch_one(&stack.read_pool)
    .await
    .unwrap();
    let stored: i64 = sqlx::query_scalar(&format!(
        "SELECT count(*) FROM \"{}\".events WHERE aggregate_type = 'Line'",
        config.event_store_schema
    ))
    .fetch_one(&stack.read_pool)
    .await
    .unwrap();
    assert!(stored >= 6, "{stored} stored events");
    assert_eq!(replayed_changes, stored);
    let namespace = |id: &str, schema: String, key_prefix: String| ActiveNamespace {
        id: id.into(),
        schema,
        key_prefix,
        consumer_group: String::new(),
    };
    let live_ns = namespace("base", live_schema.clone(), live_prefix.clone());
    let rebuilt_ns = namespace(
        "es",
        format!("{live_schema}_es"),
        format!("{live_prefix}es:"),
    );
    // The live projector rewrites Redis just after its commits: poll until it settles.
    let deadline = Instant::now() + Duration::from_secs(10);
    let comparison = loop {
        let comparison = compare(&stack.read_pool, &redis, &live_ns, &rebuilt_ns)
            .await
            .unwrap();
        if comparison.differing == 0 || Instant::now() > deadline {
            break comparison;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        comparison.differing, 0,
        "views differ: {:#?}",
        comparison.examples
    );
    let live = dump(&stack.read_pool, &live_schema, &redis, &live_prefix)
        .await
        .unwrap();
    assert!(
        live.keys().any(|k| k.starts_with("pg:change_requests:"))
            && live.keys().any(|k| k.starts_with("redis:request:")),
        "the live views hold the changes"
    );
    stack.stop().await;
}
