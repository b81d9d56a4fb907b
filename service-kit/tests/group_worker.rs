//! The group worker against a real broker (`PHONEBILL_TEST_KAFKA_BROKERS`): each test has
//! its own topic prefix and consumer group.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering as AtomicOrdering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use clap::Parser;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use service_kit::group_worker::{GroupWorker, Handler, Ordering, Run, Settings, Verdict};
use service_kit::kafka::{self, KafkaConfig};
use test_support::{brokers, wait_until, Namespace};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

const DEADLINE: Duration = Duration::from_secs(30);

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    kafka: KafkaConfig,
}

/// A topic of `partitions`, its dead-letter topic and a group, all named for this test.
struct Bench {
    kafka: KafkaConfig,
    topic: String,
    dead_letter_topic: String,
    group: String,
    producer: FutureProducer,
}

impl Bench {
    async fn new(partitions: i32) -> Self {
        let ns = Namespace::new();
        let kafka = Cli::parse_from(["test", "--kafka-brokers", &brokers()]).kafka;
        let topic = ns.group("input");
        let dead_letter_topic = ns.group("dead-letter");
        let admin = kafka::admin(&kafka, "group-worker-test").await.unwrap();
        kafka::ensure_topics(&admin, std::slice::from_ref(&topic), partitions)
            .await
            .unwrap();
        kafka::ensure_topics(&admin, std::slice::from_ref(&dead_letter_topic), 1)
            .await
            .unwrap();
        let producer = kafka::client_config(&kafka, "group-worker-test")
            .set("enable.idempotence", "true")
            .create()
            .unwrap();
        Self {
            kafka,
            topic,
            dead_letter_topic,
            group: ns.group("worker"),
            producer,
        }
    }

    fn worker(&self, ordering: Ordering) -> GroupWorker {
        let member = kafka::group_member(&self.kafka, "group-worker-test", &self.group, "worker");
        let settings = Settings::new(
            "test-worker",
            vec![self.topic.clone()],
            &self.dead_letter_topic,
            ordering,
        )
        .max_backoff(Duration::from_millis(200));
        GroupWorker::new(
            &member,
            &kafka::client_config(&self.kafka, "group-worker-test"),
            settings,
        )
        .unwrap()
    }

    async fn produce(&self, key: &str, payload: &str) {
        self.producer
            .send(
                FutureRecord::to(&self.topic).key(key).payload(payload),
                Duration::from_secs(10),
            )
            .await
            .unwrap();
    }

    /// The group's committed offset of partition 0 (`None`: nothing committed).
    async fn committed(&self) -> Option<i64> {
        let config = kafka::client_config(&self.kafka, "group-worker-test")
            .set("group.id", &self.group)
            .clone();
        let topic = self.topic.clone();
        tokio::task::spawn_blocking(move || {
            let consumer: BaseConsumer = config.create().unwrap();
            let mut list = TopicPartitionList::new();
            list.add_partition(&topic, 0);
            let committed = consumer
                .committed_offsets(list, Duration::from_secs(10))
                .unwrap();
            match committed.elements()[0].offset() {
                Offset::Offset(o) => Some(o),
                _ => None,
            }
        })
        .await
        .unwrap()
    }

    /// Everything on the dead-letter topic so far.
    async fn dead_letters(&self) -> Vec<OwnedMessage> {
        let config = kafka::client_config(&self.kafka, "group-worker-test")
            .set("group.id", format!("reader-{}", Uuid::new_v4()))
            .set("enable.partition.eof", "true")
            .clone();
        let topic = self.dead_letter_topic.clone();
        tokio::task::spawn_blocking(move || {
            let consumer: BaseConsumer = config.create().unwrap();
            let mut list = TopicPartitionList::new();
            list.add_partition_offset(&topic, 0, Offset::Beginning)
                .unwrap();
            consumer.assign(&list).unwrap();
            let deadline = Instant::now() + DEADLINE;
            let mut read = vec![];
            while Instant::now() < deadline {
                match consumer.poll(Duration::from_millis(200)) {
                    None => continue,
                    Some(Err(rdkafka::error::KafkaError::PartitionEOF(_))) => break,
                    Some(other) => read.push(other.unwrap().detach()),
                }
            }
            read
        })
        .await
        .unwrap()
    }
}

fn start<H: Handler>(
    worker: GroupWorker,
    handler: Arc<H>,
) -> (CancellationToken, JoinHandle<GroupWorker>) {
    let stop = CancellationToken::new();
    let running = tokio::spawn({
        let stop = stop.clone();
        async move {
            worker.run(handler, stop).await;
            worker
        }
    });
    (stop, running)
}

fn text(bytes: Option<&[u8]>) -> String {
    String::from_utf8_lossy(bytes.unwrap_or_default()).into_owned()
}

/// Records what it handled, taking a while per message; counts messages in hand at once.
#[derive(Default)]
struct Recorder {
    seen: Mutex<Vec<(String, String, i64)>>,
    in_hand: AtomicUsize,
    most_in_hand: AtomicUsize,
    work: Duration,
}

impl Recorder {
    fn payloads(&self) -> Vec<String> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .map(|(_, p, _)| p.clone())
            .collect()
    }
}

#[async_trait]
impl Handler for Recorder {
    async fn handle(&self, messages: &[OwnedMessage]) -> anyhow::Result<Vec<Verdict>> {
        let now = self.in_hand.fetch_add(1, AtomicOrdering::SeqCst) + 1;
        self.most_in_hand.fetch_max(now, AtomicOrdering::SeqCst);
        tokio::time::sleep(self.work).await;
        {
            let mut seen = self.seen.lock().unwrap();
            for m in messages {
                seen.push((text(m.key()), text(m.payload()), m.offset()));
            }
        }
        self.in_hand.fetch_sub(1, AtomicOrdering::SeqCst);
        Ok(vec![Verdict::Done; messages.len()])
    }
}

#[tokio::test]
async fn given_many_keys_on_few_partitions_when_consumed_by_key_then_each_keys_order_holds_while_keys_run_side_by_side(
) {
    // Given ten messages for each of twelve keys on two partitions
    let bench = Bench::new(2).await;
    for n in 0..10 {
        for key in 0..12 {
            bench
                .produce(&format!("line-{key}"), &format!("{key}:{n}"))
                .await;
        }
    }

    // When a worker takes them by key, at most eight at a time
    let recorder = Arc::new(Recorder {
        work: Duration::from_millis(20),
        ..Recorder::default()
    });
    let (stop, running) = start(bench.worker(Ordering::key(8)), recorder.clone());
    wait_until("every message handled", DEADLINE, || async {
        recorder.seen.lock().unwrap().len() >= 120
    })
    .await;
    stop.cancel();
    running.await.unwrap();

    // Then each key's messages were handled once each, in the order they were produced
    let mut by_key: BTreeMap<String, Vec<u32>> = BTreeMap::new();
    for (key, payload, _) in recorder.seen.lock().unwrap().iter() {
        let n = payload.split(':').nth(1).unwrap().parse().unwrap();
        by_key.entry(key.clone()).or_default().push(n);
    }
    assert_eq!(by_key.len(), 12);
    for (key, ns) in &by_key {
        assert_eq!(ns, &(0..10).collect::<Vec<_>>(), "order of {key}");
    }
    // and keys were handled side by side, never more than the bound
    let most = recorder.most_in_hand.load(AtomicOrdering::SeqCst);
    assert!(most > 1 && most <= 8, "{most} messages in hand at once");
}

/// Fails every attempt at a message `hold` until `pass` is set; the others pass.
#[derive(Default)]
struct Holds {
    pass: AtomicBool,
    done: AtomicUsize,
}

#[async_trait]
impl Handler for Holds {
    async fn handle(&self, messages: &[OwnedMessage]) -> anyhow::Result<Vec<Verdict>> {
        let held = messages.iter().any(|m| text(m.payload()) == "hold");
        if held && !self.pass.load(AtomicOrdering::SeqCst) {
            anyhow::bail!("the database is away");
        }
        self.done.fetch_add(messages.len(), AtomicOrdering::SeqCst);
        Ok(vec![Verdict::Done; messages.len()])
    }
}

/// `phonebill_consumer_lag_seconds` of `group` on partition 0, as last published.
fn lag_seconds(group: &str) -> Option<f64> {
    let metrics = service_kit::telemetry::render(&service_kit::telemetry::metrics_handle());
    let group = format!("group=\"{group}\"");
    metrics
        .lines()
        .filter(|l| l.starts_with("phonebill_consumer_lag_seconds{"))
        .find(|l| l.contains(&group) && l.contains("partition=\"0\""))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

#[tokio::test]
async fn given_a_consumer_stuck_on_a_message_then_its_lag_in_seconds_grows_until_it_goes_on_and_then_is_zero(
) {
    // Given a message done, then one the handler keeps failing
    let bench = Bench::new(1).await;
    bench.produce("line-1", "first").await;
    bench.produce("line-1", "hold").await;
    let holds = Arc::new(Holds::default());
    let (stop, running) = start(bench.worker(Ordering::partition(Run::ONE)), holds.clone());
    wait_until("the first message done", DEADLINE, || async {
        holds.done.load(AtomicOrdering::SeqCst) == 1
    })
    .await;

    // Then its lag in seconds, published with the client's statistics, grows while stuck
    let stuck = test_support::eventually("a lag in seconds", DEADLINE, || async {
        lag_seconds(&bench.group).filter(|s| *s > 0.0)
    })
    .await;
    wait_until("the lag growing", DEADLINE, || async {
        lag_seconds(&bench.group).is_some_and(|s| s > stuck)
    })
    .await;

    // When the handler goes on, the lag is zero once the statistics see it
    holds.pass.store(true, AtomicOrdering::SeqCst);
    wait_until("no lag", DEADLINE, || async {
        lag_seconds(&bench.group) == Some(0.0)
    })
    .await;
    assert_eq!(holds.done.load(AtomicOrdering::SeqCst), 2);
    stop.cancel();
    running.await.unwrap();
}

/// Fails every attempt until `pass` is set.
#[derive(Default)]
struct Flaky {
    pass: AtomicBool,
    attempts: AtomicUsize,
    done: Mutex<Vec<String>>,
}

#[async_trait]
impl Handler for Flaky {
    async fn handle(&self, messages: &[OwnedMessage]) -> anyhow::Result<Vec<Verdict>> {
        self.attempts.fetch_add(1, AtomicOrdering::SeqCst);
        if !self.pass.load(AtomicOrdering::SeqCst) {
            anyhow::bail!("the database is away");
        }
        let mut done = self.done.lock().unwrap();
        done.extend(messages.iter().map(|m| text(m.payload())));
        Ok(vec![Verdict::Done; messages.len()])
    }
}

#[tokio::test]
async fn given_a_failing_handler_when_it_is_retried_then_no_offset_is_committed_until_it_passes() {
    // Given a message whose handler fails
    let bench = Bench::new(1).await;
    bench.produce("line-1", "first").await;
    let flaky = Arc::new(Flaky::default());
    let (stop, running) = start(bench.worker(Ordering::partition(Run::ONE)), flaky.clone());

    // When it has been retried a few times, then nothing is committed
    wait_until("retries", DEADLINE, || async {
        flaky.attempts.load(AtomicOrdering::SeqCst) >= 4
    })
    .await;
    assert_eq!(bench.committed().await, None);
    assert!(flaky.done.lock().unwrap().is_empty());

    // When the handler passes, then the message is done once and its offset committed
    flaky.pass.store(true, AtomicOrdering::SeqCst);
    wait_until(
        "the offset committed past the message",
        DEADLINE,
        || async { bench.committed().await == Some(1) },
    )
    .await;
    assert_eq!(*flaky.done.lock().unwrap(), ["first"]);
    stop.cancel();
    running.await.unwrap();
}

/// Gives up on payloads starting with `bad`.
#[derive(Default)]
struct Picky {
    done: Mutex<Vec<String>>,
}

#[async_trait]
impl Handler for Picky {
    async fn handle(&self, messages: &[OwnedMessage]) -> anyhow::Result<Vec<Verdict>> {
        Ok(messages
            .iter()
            .map(|m| {
                let payload = text(m.payload());
                if payload.starts_with("bad") {
                    Verdict::dead("malformed", format!("cannot read {payload}"))
                } else {
                    self.done.lock().unwrap().push(payload);
                    Verdict::Done
                }
            })
            .collect())
    }
}

#[tokio::test]
async fn given_a_dead_verdict_then_the_message_lands_on_the_dead_letter_topic_with_its_headers_and_later_messages_go_on(
) {
    // Given a good, a bad and a good message
    let bench = Bench::new(1).await;
    bench.produce("line-1", "good-1").await;
    bench.produce("line-1", "bad-2").await;
    bench.produce("line-1", "good-3").await;

    // When a worker handles them in runs
    let picky = Arc::new(Picky::default());
    let (stop, running) = start(
        bench.worker(Ordering::partition(Run::up_to(8))),
        picky.clone(),
    );
    wait_until("every offset committed", DEADLINE, || async {
        bench.committed().await == Some(3)
    })
    .await;
    stop.cancel();
    running.await.unwrap();

    // Then the good ones are done and the bad one is on the dead-letter topic, as it was,
    // with where it came from, why, and which consumer gave up on it
    assert_eq!(*picky.done.lock().unwrap(), ["good-1", "good-3"]);
    let dead = bench.dead_letters().await;
    assert_eq!(dead.len(), 1);
    assert_eq!(text(dead[0].payload()), "bad-2");
    assert_eq!(text(dead[0].key()), "line-1");
    let headers: HashMap<String, String> = dead[0]
        .headers()
        .unwrap()
        .iter()
        .map(|h| (h.key.to_owned(), text(h.value)))
        .collect();
    assert_eq!(headers[events::dead_letter::REASON], "cannot read bad-2");
    assert_eq!(headers[events::dead_letter::SOURCE_TOPIC], bench.topic);
    assert_eq!(headers[events::dead_letter::SOURCE_PARTITION], "0");
    assert_eq!(headers[events::dead_letter::SOURCE_OFFSET], "1");
    assert_eq!(headers[events::dead_letter::CONSUMER], "test-worker");
}

/// Handles everything except `stuck`, which fails for as long as it runs.
struct StuckAt {
    stuck: String,
    done: Mutex<Vec<String>>,
    tried_stuck: AtomicBool,
}

#[async_trait]
impl Handler for StuckAt {
    async fn handle(&self, messages: &[OwnedMessage]) -> anyhow::Result<Vec<Verdict>> {
        for m in messages {
            let payload = text(m.payload());
            if payload == self.stuck {
                self.tried_stuck.store(true, AtomicOrdering::SeqCst);
                anyhow::bail!("cannot handle {payload} yet");
            }
            self.done.lock().unwrap().push(payload);
        }
        Ok(vec![Verdict::Done; messages.len()])
    }
}

#[tokio::test]
async fn given_a_worker_stopped_while_a_message_fails_when_a_new_worker_joins_the_group_then_nothing_done_comes_again_and_nothing_is_skipped(
) {
    // Given ten messages and a worker that handles the first five and is stuck at the sixth
    let bench = Bench::new(1).await;
    for n in 0..10 {
        bench.produce("line-1", &format!("m{n}")).await;
    }
    let first = Arc::new(StuckAt {
        stuck: "m5".into(),
        done: Mutex::new(vec![]),
        tried_stuck: AtomicBool::new(false),
    });
    let (stop, running) = start(bench.worker(Ordering::partition(Run::ONE)), first.clone());
    wait_until("the stuck message tried", DEADLINE, || async {
        first.tried_stuck.load(AtomicOrdering::SeqCst)
    })
    .await;

    // When it stops, and a new worker of the same group takes over
    stop.cancel();
    drop(running.await.unwrap());
    assert_eq!(bench.committed().await, Some(5));
    let second = Arc::new(Recorder::default());
    let (stop, running) = start(bench.worker(Ordering::partition(Run::ONE)), second.clone());
    wait_until("the rest handled", DEADLINE, || async {
        second.seen.lock().unwrap().len() >= 5
    })
    .await;

    // Then the new worker starts at the stuck message: nothing done comes again, nothing
    // is skipped
    assert_eq!(*first.done.lock().unwrap(), ["m0", "m1", "m2", "m3", "m4"]);
    assert_eq!(second.payloads(), ["m5", "m6", "m7", "m8", "m9"]);
    wait_until("everything committed", DEADLINE, || async {
        bench.committed().await == Some(10)
    })
    .await;
    stop.cancel();
    drop(running.await.unwrap());

    // and a third worker, after one more message, gets that message only
    bench.produce("line-1", "m10").await;
    let third = Arc::new(Recorder::default());
    let (stop, running) = start(bench.worker(Ordering::key(4)), third.clone());
    wait_until("the new message handled", DEADLINE, || async {
        !third.seen.lock().unwrap().is_empty()
    })
    .await;
    assert_eq!(third.payloads(), ["m10"]);
    stop.cancel();
    running.await.unwrap();
    assert_eq!(bench.committed().await, Some(11));
}
