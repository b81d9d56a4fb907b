//! The bounded reader against the real broker (`PHONEBILL_TEST_KAFKA_BROKERS`): each test
//! writes to topics of its own (a uuid prefix) and reads them back.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{ClientConfig, Message};
use service_kit::bounded_reader::{
    BoundedReader, Bounds, Ended, EndedBy, Error, Flow, PartitionPlan, Plan,
};
use service_kit::kafka::{admin, ensure_topics, KafkaConfig};
use test_support::{brokers, Namespace};

fn kafka() -> KafkaConfig {
    use clap::Parser;
    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        kafka: KafkaConfig,
    }
    let mut kafka = Cli::parse_from(["test"]).kafka;
    kafka.brokers = brokers();
    kafka
}

/// A new topic of `partitions` partitions, named for this test alone.
async fn topic(partitions: i32) -> String {
    let name = Namespace::new().group("bounded");
    let admin = admin(&kafka(), "bounded-reader-test").await.unwrap();
    ensure_topics(&admin, std::slice::from_ref(&name), partitions)
        .await
        .unwrap();
    // Metadata reaches every broker connection shortly after creation.
    let reader = BoundedReader::from_config(&kafka(), "bounded-reader-test").unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while reader
        .partitions(&name)
        .map_or(true, |p| p.len() != partitions as usize)
    {
        assert!(Instant::now() < deadline, "topic {name} never appeared");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    name
}

/// Writes each (partition, time) as one message stamped then, in the order given, and
/// waits until the broker has them all.
fn produce(topic: &str, messages: &[(i32, DateTime<Utc>)]) {
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("enable.idempotence", "true")
        .create()
        .unwrap();
    for (partition, at) in messages {
        let payload = at.to_rfc3339();
        producer
            .send(
                BaseRecord::<(), _>::to(topic)
                    .partition(*partition)
                    .payload(&payload)
                    .timestamp(at.timestamp_millis()),
            )
            .map_err(|(e, _)| e)
            .unwrap();
    }
    producer.flush(Duration::from_secs(10)).unwrap();
}

fn reader() -> BoundedReader {
    BoundedReader::from_config(&kafka(), "bounded-reader-test")
        .unwrap()
        .silence(Duration::from_secs(20))
}

/// Reads `plan` on a blocking thread (with a deadline): the (partition, offset) of every
/// message handed over, and where each partition ended.
async fn read_all(reader: BoundedReader, plan: Plan) -> (Vec<(i32, i64)>, Vec<Ended>) {
    let read = tokio::task::spawn_blocking(move || {
        let mut seen = vec![];
        let ended = reader
            .read(&plan, |m| {
                seen.push((m.partition(), m.offset()));
                Ok::<_, Error>(Flow::Continue)
            })
            .unwrap();
        seen.sort_unstable();
        (seen, ended)
    });
    tokio::time::timeout(Duration::from_secs(60), read)
        .await
        .expect("the read ends")
        .unwrap()
}

fn ended(partition: i32, next: i64, by: EndedBy) -> Ended {
    Ended {
        partition,
        next,
        by,
    }
}

#[tokio::test]
async fn given_messages_over_several_partitions_when_read_since_a_time_up_to_a_cut_then_exactly_those_between_come_back_and_every_partition_ends(
) {
    // Given: partition 0 stamped at minutes 0, 10, 20, 30, 40; partition 1 at 5, 15, 25,
    // 35, 45; partition 2 empty.
    let topic = topic(3).await;
    let base = Utc::now() - chrono::Duration::hours(2);
    let at = |minutes: i64| base + chrono::Duration::minutes(minutes);
    produce(
        &topic,
        &[0, 10, 20, 30, 40]
            .map(|m| (0, at(m)))
            .into_iter()
            .chain([5, 15, 25, 35, 45].map(|m| (1, at(m))))
            .collect::<Vec<_>>(),
    );

    // When: planned from minute 10 with the cut at minute 35.
    let reader = reader();
    let plan = reader
        .plan(
            &topic,
            Bounds {
                since: Some(at(10)),
                until: None,
                cut: Some(at(35)),
            },
        )
        .unwrap();

    // Then: the plan starts at each partition's first message from minute 10 and ends at
    // the high watermark ...
    let partition = |partition, start, end| PartitionPlan {
        partition,
        low: 0,
        high: end,
        start,
        end,
    };
    assert_eq!(
        plan.partitions,
        vec![partition(0, 1, 5), partition(1, 1, 5), partition(2, 0, 0)]
    );
    // ... and the read hands over minutes 10, 20, 30 and 15, 25, ending each partition at
    // its first message from minute 35 on, the empty one at once.
    let (seen, ends) = read_all(reader, plan).await;
    assert_eq!(seen, vec![(0, 1), (0, 2), (0, 3), (1, 1), (1, 2)]);
    assert_eq!(
        ends,
        vec![
            ended(0, 4, EndedBy::Cut),
            ended(1, 3, EndedBy::Cut),
            ended(2, 0, EndedBy::Empty),
        ]
    );
}

#[tokio::test]
async fn given_messages_written_after_the_plan_when_read_up_to_until_or_the_high_watermark_then_the_read_ends_at_the_planned_offsets(
) {
    // Given: four messages on each of two partitions, stamped at minutes 0, 10, 20, 30.
    let topic = topic(2).await;
    let base = Utc::now() - chrono::Duration::hours(2);
    let at = |minutes: i64| base + chrono::Duration::minutes(minutes);
    let stamps = [0, 10, 20, 30];
    produce(
        &topic,
        &stamps
            .map(|m| (0, at(m)))
            .into_iter()
            .chain(stamps.map(|m| (1, at(m))))
            .collect::<Vec<_>>(),
    );
    let reader = reader();
    let whole = reader.plan(&topic, Bounds::default()).unwrap();
    let until = reader
        .plan(
            &topic,
            Bounds {
                until: Some(at(20)),
                ..Default::default()
            },
        )
        .unwrap();
    // ... and more written after the plans (stamped early, so no cut would stop them).
    produce(&topic, &[(0, at(1)), (1, at(1))]);

    // When / Then: the whole plan ends at the high watermark of its making ...
    let (seen, ends) = read_all(reader, whole).await;
    assert_eq!(seen.len(), 8, "{seen:?}");
    assert_eq!(
        ends,
        vec![ended(0, 4, EndedBy::End), ended(1, 4, EndedBy::End)]
    );
    // ... and the `until` plan before the first message stamped at or after it.
    let reader = self::reader();
    let (seen, ends) = read_all(reader, until).await;
    assert_eq!(seen, vec![(0, 0), (0, 1), (1, 0), (1, 1)]);
    assert_eq!(
        ends,
        vec![ended(0, 2, EndedBy::End), ended(1, 2, EndedBy::End)]
    );
}

#[tokio::test]
async fn given_a_caller_that_stops_a_partition_when_read_then_that_partition_ends_there_and_only_it(
) {
    // Given: three messages on each of two partitions.
    let topic = topic(2).await;
    let base = Utc::now() - chrono::Duration::hours(1);
    produce(
        &topic,
        &[
            (0, base),
            (0, base),
            (0, base),
            (1, base),
            (1, base),
            (1, base),
        ],
    );
    let reader = reader();

    // When: planned for partition 1 alone, and stopped at its second message.
    let plan = reader.plan_partition(&topic, 1, Bounds::default()).unwrap();
    let mut seen = vec![];
    let ends = reader
        .read(&plan, |m| {
            if m.offset() == 1 {
                return Ok::<_, Error>(Flow::Stop);
            }
            seen.push((m.partition(), m.offset()));
            Ok(Flow::Continue)
        })
        .unwrap();

    // Then
    assert_eq!(seen, vec![(1, 0)]);
    assert_eq!(ends, vec![ended(1, 1, EndedBy::Caller)]);
    assert!(matches!(
        reader.plan_partition(&topic, 7, Bounds::default()),
        Err(Error::NoPartition { partition: 7, .. })
    ));
}

#[tokio::test]
async fn given_an_empty_topic_when_read_then_every_partition_is_done_at_once() {
    let topic = topic(3).await;
    let reader = reader();

    let plan = reader.plan(&topic, Bounds::default()).unwrap();
    let (seen, ends) = read_all(reader, plan).await;

    assert!(seen.is_empty());
    assert_eq!(
        ends,
        (0..3)
            .map(|p| ended(p, 0, EndedBy::Empty))
            .collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn given_a_topic_that_does_not_exist_when_planned_then_it_says_so() {
    let reader = reader();

    let error = reader
        .plan(&Namespace::new().group("missing"), Bounds::default())
        .unwrap_err();

    assert!(matches!(error, Error::NoTopic(_)), "{error}");
    assert!(error.to_string().contains("is not on the broker"));
}

#[tokio::test]
async fn given_a_stop_flag_set_when_read_then_the_read_ends_stopped() {
    let topic = topic(1).await;
    produce(&topic, &[(0, Utc::now())]);
    let stop = Arc::new(AtomicBool::new(true));
    let reader = reader().stop_on(stop);

    let plan = reader.plan(&topic, Bounds::default()).unwrap();
    let result = reader.read(&plan, |_| Ok::<_, Error>(Flow::Continue));

    assert!(matches!(result, Err(Error::Stopped)), "{result:?}");
}

#[tokio::test]
async fn given_a_broker_that_does_not_answer_when_read_then_the_read_fails_once_silent_for_long() {
    // Given: a reader of a port nobody listens on, and a plan made by hand.
    let mut kafka = kafka();
    kafka.brokers = "127.0.0.1:1".into();
    let reader = BoundedReader::from_config(&kafka, "bounded-reader-test")
        .unwrap()
        .silence(Duration::from_secs(2));
    let plan = Plan {
        topic: "nowhere".into(),
        partitions: vec![PartitionPlan {
            partition: 0,
            low: 0,
            high: 1,
            start: 0,
            end: 1,
        }],
        cut_ms: None,
    };

    // When
    let read =
        tokio::task::spawn_blocking(move || reader.read(&plan, |_| Ok::<_, Error>(Flow::Continue)));
    let result = tokio::time::timeout(Duration::from_secs(30), read)
        .await
        .expect("the read ends")
        .unwrap();

    // Then
    assert!(matches!(result, Err(Error::Silent(_))), "{result:?}");
}
