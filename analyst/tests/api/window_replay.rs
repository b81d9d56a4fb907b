//! A `--since`/`--until` replay: the audit namespace it builds holds the effects of the
//! events the broker stamped inside the window, and nothing else.

use std::collections::BTreeSet;
use std::time::Duration;

use analyst::replay::{self, ReplayOptions};
use chrono::{DateTime, Utc};
use events::topics::Topics;
use events::{codec, Envelope};
use rdkafka::producer::FutureProducer;
use service_kit::redis_conn::RedisConn;
use uuid::Uuid;

use crate::helpers::*;

/// Publishes each message stamped `at` and returns the envelopes.
async fn publish_stamped(
    producer: &FutureProducer,
    at: DateTime<Utc>,
    messages: &[(String, String, Vec<u8>)],
) -> Vec<Envelope> {
    for (topic, key, bytes) in messages {
        publish_at(producer, topic, key, bytes, at).await;
    }
    messages
        .iter()
        .map(|(_, _, bytes)| codec::decode_envelope(bytes).unwrap())
        .collect()
}

async fn texts(pool: &sqlx::PgPool, sql: &str) -> BTreeSet<String> {
    sqlx::query_scalar::<_, String>(sql)
        .fetch_all(pool)
        .await
        .unwrap()
        .into_iter()
        .collect()
}

#[tokio::test]
async fn given_events_before_inside_and_after_a_window_when_replayed_with_since_and_until_then_the_namespace_holds_only_the_effects_of_those_inside(
) {
    // Given: one partition per topic (so broker order is stamp order, and the message
    // stamped late below sits between the window's ends) ...
    let mut config = test_config();
    config.kafka.topic_partitions = 1;
    let pool = projector::startup::prepare_database(&config).await.unwrap();
    let redis = RedisConn::connect(&config.redis).await.unwrap();
    create_topics(&config).await;
    let topics = Topics::new(&config.kafka.topic_prefix);
    let (kos, changes) = (topics.kos_billing(), topics.product_change());
    let kos_msg = |key: &str, sequence: u64, fact: events::kos::KosFact| {
        (kos.clone(), key.to_owned(), kos_event(sequence, &fact))
    };
    let change_msg = |l: &str, sequence: u64, event| {
        (
            changes.clone(),
            l.to_owned(),
            line_event(l, sequence, &event),
        )
    };
    let (a, b, c, d) = (line(1), line(2), line(3), line(4));
    let (change_a, change_b) = (Uuid::new_v4(), Uuid::new_v4());
    let producer = producer();
    let start = Utc::now() - chrono::Duration::hours(1);
    let at = |minutes: i64| start + chrono::Duration::minutes(minutes);
    let (since, until) = (at(10), at(30));
    // ... events stamped before the window: a product, line A registered and billed,
    // a change on A sent to KOS ...
    publish_stamped(
        &producer,
        at(0),
        &[
            kos_msg("5G-STANDARD-001", 1, product("5G-STANDARD-001", 69000)),
            kos_msg(&a, 1, registered(&a)),
            kos_msg(&a, 2, bill(&a, "2026-01", 65000)),
            change_msg(&a, 1, requested(&a, change_a, 0)),
            change_msg(&a, 2, sent(&a, change_a, 0)),
        ],
    )
    .await;
    // ... inside it: line B registered and billed, a change on B sent to KOS, and A's
    // next bill (its earlier events are outside: a sequence gap, applied) ...
    let inside = publish_stamped(
        &producer,
        at(20),
        &[
            kos_msg(&b, 1, registered(&b)),
            kos_msg(&b, 2, bill(&b, "2026-01", 61000)),
            kos_msg(&a, 3, bill(&a, "2026-02", 66000)),
            change_msg(&b, 1, requested(&b, change_b, 20)),
            change_msg(&b, 2, sent(&b, change_b, 20)),
        ],
    )
    .await;
    // ... one written among them but stamped before the window (a producer's clock
    // behind) ...
    publish_stamped(&producer, at(5), &[kos_msg(&d, 1, registered(&d))]).await;
    // ... and after it: B's next bill and payment, B's change completed, line C.
    publish_stamped(
        &producer,
        at(40),
        &[
            kos_msg(&b, 3, bill(&b, "2026-02", 62000)),
            kos_msg(&b, 4, payment(&b, "2026-01")),
            change_msg(&b, 3, completed(&b, change_b, 40)),
            kos_msg(&c, 1, registered(&c)),
        ],
    )
    .await;

    // When
    let report = tokio::time::timeout(
        Duration::from_secs(120),
        replay::run(
            &config,
            ReplayOptions {
                id: Some("w1".into()),
                since: Some(since),
                until: Some(until),
                progress: false,
                flush_every: 3,
                ..Default::default()
            },
        ),
    )
    .await
    .expect("the replay ends")
    .unwrap();

    // Then: the report counts the window's events applied and the one message read
    // between them but stamped before the window passed over (the reads start and end at
    // the offsets the broker gives for the window's times) ...
    assert_eq!(report.applied, inside.len() as u64, "{report:?}");
    assert_eq!(report.outside_window, 1, "{report:?}");
    assert_eq!(
        report.messages,
        report.applied + report.outside_window,
        "{report:?}"
    );
    assert_eq!(
        report.parked + report.rejected + report.duplicates,
        0,
        "{report:?}"
    );
    // ... and the namespace's read tables hold exactly their effects.
    let ns = format!("\"{}_w1\"", config.database.schema);
    let applied: BTreeSet<String> =
        texts(&pool, &format!("SELECT event_id::text FROM {ns}.apply_log")).await;
    let expected: BTreeSet<String> = inside.iter().map(|e| e.event_id.to_string()).collect();
    assert_eq!(applied, expected);
    assert_eq!(
        texts(&pool, &format!("SELECT line_number FROM {ns}.lines")).await,
        BTreeSet::from([b.clone()]),
        "only B was registered or changed in the window"
    );
    assert_eq!(
        texts(
            &pool,
            &format!("SELECT line_number || ' ' || month || ' ' || (doc->>'totalAmount') FROM {ns}.bills")
        )
        .await,
        BTreeSet::from([format!("{a} 2026-02 66000"), format!("{b} 2026-01 61000")]),
    );
    assert_eq!(
        texts(
            &pool,
            &format!("SELECT request_id::text || ' ' || status FROM {ns}.change_requests")
        )
        .await,
        BTreeSet::from([format!("{change_b} PROCESSING")]),
        "B's change is not completed: its completion came after the window"
    );
    assert!(
        texts(&pool, &format!("SELECT product_code FROM {ns}.products"))
            .await
            .is_empty()
    );
    // The views in Redis are filled from those tables.
    let prefix = format!("{}w1:", config.redis.key_prefix);
    let line_b = redis_json(&redis, &prefix, &format!("line:{{line:{b}}}")).await;
    assert!(line_b.is_some(), "B's line view is in Redis");
    let line_a = redis_json(&redis, &prefix, &format!("line:{{line:{a}}}")).await;
    assert!(line_a.is_none(), "A was registered before the window");
    let bill_a = redis_json(&redis, &prefix, &format!("bill:{{line:{a}}}:2026-02")).await;
    assert_eq!(bill_a.unwrap()["totalAmount"], 66000);

    cleanup(&pool, &config, &redis).await;
}
