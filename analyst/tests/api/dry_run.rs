//! `replay --dry-run`: what a replay would read, planned from the broker, with nothing
//! created or written.

use analyst::replay::{self, ReplayOptions};
use events::topics::Topics;
use uuid::Uuid;

use crate::helpers::*;

#[tokio::test]
async fn given_events_on_the_topics_when_a_replay_is_dry_run_then_it_counts_them_per_topic_and_creates_nothing(
) {
    // Given: three KOS facts and two product-change events on the test's topics
    let config = test_config();
    create_topics(&config).await;
    let topics = Topics::new(&config.kafka.topic_prefix);
    let producer = producer();
    let (a, b) = (line(1), line(2));
    let change = Uuid::new_v4();
    for (key, bytes) in [
        (
            "5G-STANDARD-001",
            kos_event(1, &product("5G-STANDARD-001", 69000)),
        ),
        (a.as_str(), kos_event(1, &registered(&a))),
        (b.as_str(), kos_event(1, &registered(&b))),
    ] {
        publish(&producer, &topics.kos_billing(), key, &bytes).await;
    }
    for (sequence, event) in [(1, requested(&a, change, 0)), (2, sent(&a, change, 0))] {
        publish(
            &producer,
            &topics.product_change(),
            &a,
            &line_event(&a, sequence, &event),
        )
        .await;
    }

    // When
    let options = ReplayOptions {
        id: Some("dry".into()),
        ..ReplayOptions::default()
    };
    let plan = replay::dry_run(&config, &options).await.unwrap();

    // Then: each topic's events, from the broker, and the total
    let events = |topic: &str| {
        let planned = plan.topics.iter().find(|t| t.topic == topic).unwrap();
        assert_eq!(planned.source, "broker", "{topic}");
        assert_eq!(
            planned.partitions.len() as i32,
            config.kafka.topic_partitions
        );
        planned.events
    };
    assert_eq!(events(&topics.kos_billing()), 3);
    assert_eq!(events(&topics.product_change()), 2);
    assert_eq!(events(&topics.bill_inquiries()), 0);
    assert_eq!(plan.estimated_events, 5);
    // and nothing was created: no schema of the test's at all
    let pool = sqlx::PgPool::connect(&test_support::database_url())
        .await
        .unwrap();
    let schemas: i64 =
        sqlx::query_scalar("SELECT count(*) FROM pg_namespace WHERE nspname LIKE $1 || '%'")
            .bind(&config.database.schema)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(schemas, 0);
}
