//! The projector against the broker: dead letters, a Redis outage, SIGKILL mid-stream.

use std::collections::BTreeMap;
use std::time::Duration;

use events::kos::KosFact;
use events::product_change::ProductChangeEvent;
use uuid::Uuid;

use crate::helpers::*;

/// Events for `lines` lines: per line a registration, two bills, a payment, and two
/// change requests (one completed, one failed); `per_line` events each.
fn stream(lines: u32) -> Vec<(String, String, Vec<u8>)> {
    let mut out = vec![];
    for n in 0..lines {
        let l = line(10_000 + n);
        let (r1, r2) = (
            Uuid::new_v5(&Uuid::NAMESPACE_OID, format!("{l}/1").as_bytes()),
            Uuid::new_v5(&Uuid::NAMESPACE_OID, format!("{l}/2").as_bytes()),
        );
        let kos: Vec<KosFact> = vec![
            registered(&l),
            bill(&l, "2026-01", 60000 + n as i64),
            bill(&l, "2026-02", 61000),
            payment(&l, "2026-01"),
        ];
        let changes: Vec<ProductChangeEvent> = vec![
            requested(&l, r1, 0),
            sent(&l, r1, 1),
            completed(&l, r1, 2),
            requested(&l, r2, 3),
            sent(&l, r2, 4),
            failed(&l, r2, 5),
        ];
        for (i, f) in kos.iter().enumerate() {
            out.push(("kos".into(), l.clone(), kos_event(i as u64 + 1, f)));
        }
        for (i, e) in changes.iter().enumerate() {
            out.push(("line".into(), l.clone(), line_event(&l, i as u64 + 1, e)));
        }
    }
    out
}

const PER_LINE: i64 = 10;

async fn produce_all(topics: &events::topics::Topics, events: Vec<(String, String, Vec<u8>)>) {
    let producer = producer();
    let mut pending = futures::stream::FuturesOrdered::new();
    for (kind, key, bytes) in events {
        let topic = if kind == "kos" {
            topics.kos_billing()
        } else {
            topics.product_change()
        };
        let producer = producer.clone();
        pending.push_back(async move { publish(&producer, &topic, &key, &bytes).await });
        if pending.len() >= 200 {
            use futures::StreamExt;
            while pending.next().await.is_some() {}
        }
    }
    use futures::StreamExt;
    while pending.next().await.is_some() {}
}

async fn applied_count(pool: &sqlx::PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM apply_log")
        .fetch_one(pool)
        .await
        .unwrap_or(0)
}

#[tokio::test]
async fn given_a_malformed_message_then_it_is_dead_lettered_with_its_reason_and_later_good_messages_are_applied(
) {
    let app = spawn_app(test_config()).await;
    let producer = producer();
    let garbage = b"{not json".to_vec();
    publish(
        &producer,
        &app.topics.kos_billing(),
        "010-0000-0001",
        &garbage,
    )
    .await;
    // Decodes as JSON but breaks its schema (negative sequence).
    let mut bad: serde_json::Value =
        serde_json::from_slice(&kos_event(1, &product("X-1", 1000))).unwrap();
    bad["sequence"] = serde_json::json!(-1);
    let bad = serde_json::to_vec(&bad).unwrap();
    publish(
        &producer,
        &app.topics.product_change(),
        "010-0000-0002",
        &bad,
    )
    .await;
    publish(
        &producer,
        &app.topics.kos_billing(),
        "5G-PREMIUM-001",
        &kos_event(1, &product("5G-PREMIUM-001", 89000)),
    )
    .await;

    let pool = app.pool.clone();
    wait_until(
        "the good product is applied",
        Duration::from_secs(30),
        || {
            let pool = pool.clone();
            async move {
                sqlx::query_scalar::<_, i64>("SELECT count(*) FROM products")
                    .fetch_one(&pool)
                    .await
                    .unwrap()
                    == 1
            }
        },
    )
    .await;
    let dead = read_topic(&app.topics.dead_letter()).await;
    assert_eq!(dead.len(), 2, "{dead:?}");
    let by_topic: BTreeMap<String, &Received> = dead
        .iter()
        .map(|d| (d.headers["dlq-source-topic"].clone(), d))
        .collect();
    let from_kos = by_topic[&app.topics.kos_billing()];
    assert_eq!(from_kos.payload, garbage, "original bytes kept");
    assert_eq!(from_kos.key, "010-0000-0001");
    assert!(from_kos.headers["dlq-reason"].contains("not a valid envelope"));
    assert_eq!(from_kos.headers["dlq-consumer"], app.config.consumer_group);
    assert_eq!(from_kos.headers["source"], "test", "original headers kept");
    let from_changes = by_topic[&app.topics.product_change()];
    assert_eq!(from_changes.payload, bad);
    assert!(!from_changes.headers["dlq-reason"].is_empty());
    app.stop().await;
}

/// A fresh bill inquiry of a line for 2026-03.
fn inquiry_of(line: &str) -> events::bill_inquiry::BillInquired {
    events::bill_inquiry::BillInquired {
        inquiry_id: Uuid::new_v4(),
        line_number: line.into(),
        month: "2026-03".into(),
        customer_id: None,
        result: events::bill_inquiry::InquiryResult::Found,
        inquired_at: chrono::Utc::now(),
    }
}

#[tokio::test]
async fn given_facts_on_kos_topic_that_kos_did_not_sign_then_they_are_dead_lettered_unapplied_and_kos_own_facts_apply(
) {
    use service_kit::signed::Signer;
    // Given a fact published without a signature, one signed with another key under
    // KOS's key id, then one of KOS's own
    let app = spawn_app(test_config()).await;
    let producer = producer();
    let topic = app.topics.kos_billing();
    let forger = Signer::parse(&format!("local-dev:{}=", "A".repeat(43))).unwrap();
    let unsigned = kos_event(1, &product("5G-FREE-001", 0));
    let forged = kos_event(1, &product("5G-FREE-002", 0));
    test_support::publish_signed(&producer, &topic, "5G-FREE-001", &unsigned, None).await;
    test_support::publish_signed(&producer, &topic, "5G-FREE-002", &forged, Some(&forger)).await;
    let genuine = kos_event(1, &product("5G-PREMIUM-001", 89000));
    publish(&producer, &topic, "5G-PREMIUM-001", &genuine).await;

    // Then KOS's fact is applied, the other two are not, and both are dead letters
    wait_until("two dead letters", Duration::from_secs(30), || async {
        read_topic(&app.topics.dead_letter()).await.len() == 2
    })
    .await;
    let pool = app.pool.clone();
    let products = || {
        let pool = pool.clone();
        async move {
            sqlx::query_scalar::<_, String>("SELECT product_code FROM products ORDER BY 1")
                .fetch_all(&pool)
                .await
                .unwrap()
        }
    };
    wait_until(
        "KOS's own fact applied",
        Duration::from_secs(30),
        || async { !products().await.is_empty() },
    )
    .await;
    assert_eq!(products().await, ["5G-PREMIUM-001"]);
    let dead = read_topic(&app.topics.dead_letter()).await;
    let mut reasons: Vec<(&str, &str)> = dead
        .iter()
        .map(|d| (d.key.as_str(), d.headers["dlq-reason"].as_str()))
        .collect();
    reasons.sort();
    assert_eq!(
        reasons,
        [
            ("5G-FREE-001", "the message is not signed"),
            (
                "5G-FREE-002",
                "the message's signature does not match key `local-dev`"
            )
        ]
    );
    app.stop().await;
}

#[tokio::test]
async fn given_a_burst_of_bill_inquiries_with_a_repeat_and_a_malformed_one_then_each_is_recorded_once_and_the_malformed_one_is_dead_lettered(
) {
    use events::bill_inquiry;
    // Given: 400 inquiries of one line (one partition, so they queue up and are recorded
    // in batches), one of them published twice, then a message that is not an envelope.
    let app = spawn_app(test_config()).await;
    let producer = producer();
    let line = "010-0000-0007";
    let inquiries: Vec<Vec<u8>> = (0..400)
        .map(|_| events::codec::encode(&bill_inquiry::envelope(&inquiry_of(line), Uuid::new_v4())))
        .collect();
    let topic = app.topics.bill_inquiries();
    let sends = inquiries
        .iter()
        .chain(std::iter::once(&inquiries[7]))
        .map(|bytes| publish(&producer, &topic, line, bytes));
    futures::future::join_all(sends).await;
    publish(&producer, &topic, line, b"{not json").await;

    // Then: 400 recorded, the malformed one dead-lettered, nothing else.
    let pool = app.pool.clone();
    let recorded = || {
        let pool = pool.clone();
        async move {
            sqlx::query_scalar::<_, i64>("SELECT count(*) FROM bill_inquiries")
                .fetch_one(&pool)
                .await
                .unwrap()
        }
    };
    wait_until(
        "400 inquiries are recorded",
        Duration::from_secs(60),
        || async { recorded().await >= 400 },
    )
    .await;
    wait_until(
        "the malformed one is dead-lettered",
        Duration::from_secs(30),
        || async { !read_topic(&app.topics.dead_letter()).await.is_empty() },
    )
    .await;
    assert_eq!(recorded().await, 400);
    let dead = read_topic(&app.topics.dead_letter()).await;
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0].payload, b"{not json");
    assert_eq!(dead[0].headers["dlq-source-topic"], topic);
    app.stop().await;
}

#[tokio::test]
async fn given_batches_of_bill_inquiries_one_sent_twice_and_one_with_a_bad_element_then_every_good_inquiry_is_recorded_once_and_the_bad_batch_is_dead_lettered_whole(
) {
    use events::bill_inquiry;
    // Given: three batches of 100 inquiries of two lines, as query-service publishes them
    // (one message each), the second sent twice, then a batch whose last row is not an
    // inquiry.
    let app = spawn_app(test_config()).await;
    let producer = producer();
    let inquiry = |i: usize| {
        let line = if i.is_multiple_of(2) {
            "010-0000-0008"
        } else {
            "010-0000-0009"
        };
        (inquiry_of(line), Uuid::new_v4())
    };
    let batches: Vec<Vec<u8>> = (0..3)
        .map(|_| bill_inquiry::encode_batch(&(0..100).map(inquiry).collect::<Vec<_>>()))
        .collect();
    let two = String::from_utf8(bill_inquiry::encode_batch(&[inquiry(0), inquiry(1)])).unwrap();
    // The second row's result is not one an inquiry can have.
    let at = two.rfind(r#""FOUND""#).unwrap();
    let bad = format!(
        r#"{}"MAYBE"{}"#,
        &two[..at],
        &two[at + r#""FOUND""#.len()..]
    );
    let topic = app.topics.bill_inquiries();
    for bytes in [
        &batches[0],
        &batches[1],
        &batches[1],
        &batches[2],
        bad.as_bytes(),
    ] {
        publish(&producer, &topic, "batch", bytes).await;
    }

    // Then: 300 recorded, each once, with its line; the bad batch dead-lettered as sent,
    // and none of it recorded.
    let pool = app.pool.clone();
    let recorded = || {
        let pool = pool.clone();
        async move {
            sqlx::query_as::<_, (String, i64)>(
                "SELECT line_number, count(*) FROM bill_inquiries GROUP BY 1 ORDER BY 1",
            )
            .fetch_all(&pool)
            .await
            .unwrap()
        }
    };
    wait_until(
        "the bad batch is dead-lettered",
        Duration::from_secs(60),
        || async { !read_topic(&app.topics.dead_letter()).await.is_empty() },
    )
    .await;
    // The dead letter is the last message: everything before it was handled.
    assert_eq!(
        recorded().await,
        vec![
            ("010-0000-0008".to_owned(), 150),
            ("010-0000-0009".to_owned(), 150)
        ]
    );
    let dead = read_topic(&app.topics.dead_letter()).await;
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0].payload, bad.as_bytes());
    assert!(dead[0].headers["dlq-reason"].contains("row 1"), "{dead:?}");
    app.stop().await;
}

#[tokio::test]
async fn given_redis_down_for_ten_seconds_while_events_stream_in_then_nothing_is_dead_lettered_or_lost_and_the_views_catch_up(
) {
    let mut own = OwnRedis::start();
    let mut config = test_config();
    config.redis.url = own.url();
    config.redis.cluster = false; // its own single node, stopped and restarted below
    config.redis.timeout_ms = 300;
    let app = spawn_app(config).await;
    let lines = 30;
    let events = stream(lines);
    let (first, rest) = events.split_at(events.len() / 3);
    produce_all(&app.topics, first.to_vec()).await;
    let pool = app.pool.clone();
    wait_until(
        "the first third is applied",
        Duration::from_secs(60),
        || {
            let pool = pool.clone();
            let n = first.len() as i64;
            async move { applied_count(&pool).await >= n }
        },
    )
    .await;

    own.stop();
    let producing = {
        let topics = app.topics.clone();
        let rest = rest.to_vec();
        tokio::spawn(async move { produce_all(&topics, rest).await })
    };
    tokio::time::sleep(Duration::from_secs(10)).await; // the outage itself, not a wait
    own.resume();
    producing.await.unwrap();

    let total = events.len() as i64;
    wait_until("every event is applied", Duration::from_secs(120), || {
        let pool = pool.clone();
        async move { applied_count(&pool).await == total }
    })
    .await;
    // The restarted Redis is empty (no persistence): views written before the outage
    // are misses that query-service refills from PostgreSQL. Every line with events
    // during or after the outage has its latest views in Redis once it is back.
    let prefix = app.config.redis.key_prefix.clone();
    let first_lines = first.len() as u32 / PER_LINE as u32;
    for n in first_lines..lines {
        let l = line(10_000 + n);
        let redis = app.redis.clone();
        let prefix = prefix.clone();
        wait_until(
            "the line's position is in Redis",
            Duration::from_secs(30),
            || {
                let redis = redis.clone();
                let key = format!("pos:{{line:{l}}}");
                let prefix = prefix.clone();
                async move { redis_json(&redis, &prefix, &key).await == Some(serde_json::json!(6)) }
            },
        )
        .await;
        let history = redis_json(&app.redis, &prefix, &format!("history:{{line:{l}}}"))
            .await
            .unwrap();
        assert_eq!(history["items"][0]["status"], "FAILED");
    }
    let parked: i64 = sqlx::query_scalar("SELECT count(*) FROM parked")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(parked, 0);
    assert!(read_topic(&app.topics.dead_letter()).await.is_empty());
    app.stop().await;
}

/// The projector binary as a child process (so it can be SIGKILLed).
fn spawn_binary(config: &projector::configuration::Config) -> std::process::Child {
    std::process::Command::new(env!("CARGO_BIN_EXE_projector"))
        .env("PHONEBILL_HTTP_ADDR", "127.0.0.1:0")
        .env("PHONEBILL_DATABASE_URL", &config.database.url)
        .env("PHONEBILL_DATABASE_SCHEMA", &config.database.schema)
        .env("PHONEBILL_QUERY_ROLE", &config.query_role)
        .env("PHONEBILL_QUERY_ROLE_LOGIN", "true")
        .env("PHONEBILL_KAFKA_BROKERS", &config.kafka.brokers)
        .env("PHONEBILL_TOPIC_PREFIX", &config.kafka.topic_prefix)
        .env(
            "PHONEBILL_TOPIC_PARTITIONS",
            config.kafka.topic_partitions.to_string(),
        )
        .env("PHONEBILL_REDIS_URL", &config.redis.url)
        .env("PHONEBILL_REDIS_CLUSTER", config.redis.cluster.to_string())
        .env("PHONEBILL_REDIS_KEY_PREFIX", &config.redis.key_prefix)
        .env("PHONEBILL_CONSUMER_GROUP", &config.consumer_group)
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("projector binary starts")
}

#[tokio::test]
async fn given_the_projector_sigkilled_while_5000_events_stream_in_when_restarted_then_views_equal_a_rebuild_and_no_event_was_applied_twice(
) {
    let config = test_config();
    let pool = startup_pool(&config).await;
    let lines = 500;
    let events = stream(lines);
    let total = events.len() as i64;
    assert_eq!(total, PER_LINE * lines as i64);
    let topics = events::topics::Topics::new(&config.kafka.topic_prefix);
    // Topics exist before the producer starts (the binary would create them too).
    let admin = service_kit::kafka::admin(&config.kafka, "test")
        .await
        .unwrap();
    service_kit::kafka::ensure_topics(
        &admin,
        &[
            topics.product_change(),
            topics.kos_billing(),
            topics.bill_inquiries(),
            topics.dead_letter(),
        ],
        PARTITIONS,
    )
    .await
    .unwrap();

    let mut child = spawn_binary(&config);
    let producing = {
        let topics = topics.clone();
        tokio::spawn(async move { produce_all(&topics, events).await })
    };
    wait_until("a third is applied", Duration::from_secs(120), || {
        let pool = pool.clone();
        async move { applied_count(&pool).await >= total / 3 }
    })
    .await;
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let at_kill = applied_count(&pool).await;
    assert!(at_kill < total, "killed before the end ({at_kill})");
    producing.await.unwrap();

    let mut child = spawn_binary(&config);
    wait_until("every event is applied", Duration::from_secs(240), || {
        let pool = pool.clone();
        async move { applied_count(&pool).await == total }
    })
    .await;
    // The restarted projector keeps running: "applied" is its PostgreSQL commit, and the
    // Redis rewrite of the last events follows it, so the comparison below waits for it.
    let max_times: i32 = sqlx::query_scalar("SELECT max(times) FROM apply_log")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(max_times, 1, "an event was applied twice");

    // A from-scratch rebuild from the same topics into a fresh schema and prefix.
    let mut rebuild = test_config();
    rebuild.kafka.topic_prefix = config.kafka.topic_prefix.clone();
    let rebuilt = spawn_app(rebuild).await;
    wait_until(
        "the rebuild applies every event",
        Duration::from_secs(240),
        || {
            let pool = rebuilt.pool.clone();
            async move { applied_count(&pool).await == total }
        },
    )
    .await;
    let redis = service_kit::redis_conn::RedisConn::connect(&config.redis)
        .await
        .unwrap();
    // Both projectors are idle once every event is applied, save for the Redis rewrite
    // that follows each commit: give it a bounded moment, then compare.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let (after_crash, from_scratch) = loop {
        let after_crash = dump(&pool, &redis, &config.redis.key_prefix).await;
        let from_scratch = dump(
            &rebuilt.pool,
            &rebuilt.redis,
            &rebuilt.config.redis.key_prefix,
        )
        .await;
        if after_crash == from_scratch || std::time::Instant::now() > deadline {
            break (after_crash, from_scratch);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    child.kill().unwrap();
    child.wait().unwrap();
    let differing: Vec<&String> = after_crash
        .keys()
        .chain(from_scratch.keys())
        .filter(|k| after_crash.get(*k) != from_scratch.get(*k))
        .take(5)
        .collect();
    assert!(
        differing.is_empty(),
        "views differ from a rebuild, e.g. {:?}",
        differing
            .iter()
            .map(|k| (k, after_crash.get(*k), from_scratch.get(*k)))
            .collect::<Vec<_>>()
    );
    assert!(
        after_crash.len() > total as usize,
        "the dump covers the views"
    );
    cleanup(&pool, &config, &redis).await;
    rebuilt.stop().await;
}

async fn startup_pool(config: &projector::configuration::Config) -> sqlx::PgPool {
    projector::startup::prepare_database(config).await.unwrap()
}
