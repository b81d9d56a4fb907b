//! The yardstick of the freshness benchmark: the broker's own produce -> consume latency
//! through librdkafka, with the settings the outbox relay produces with (idempotent,
//! `acks=all`, `linger.ms=2`) and the projector consumes with (a group member,
//! `fetch.wait.max.ms=100`). `--clients` clients each send a message keyed by its own
//! key and wait until the consumer has it before sending the next, as the freshness
//! clients do with their changes. Prints `PAIR n=<n> p50_ms=<..> p99_ms=<..> max_ms=<..>`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use hdrhistogram::Histogram;
use rdkafka::admin::AdminOptions;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Message};
use tokio::sync::oneshot;

#[derive(Parser)]
struct Args {
    #[arg(long, default_value = "127.0.0.1:9092")]
    brokers: String,
    /// Messages in all (after a warm-up of one per client).
    #[arg(long, default_value_t = 1000)]
    messages: usize,
    #[arg(long, default_value_t = 8)]
    clients: usize,
    #[arg(long, default_value_t = 12)]
    partitions: i32,
    /// Extra producer setting `key=value` (repeatable), to try other settings.
    #[arg(long = "producer-set")]
    producer_set: Vec<String>,
    /// Extra consumer setting `key=value` (repeatable).
    #[arg(long = "consumer-set")]
    consumer_set: Vec<String>,
}

fn apply(config: &mut ClientConfig, settings: &[String]) -> anyhow::Result<()> {
    for setting in settings {
        let (key, value) = setting
            .split_once('=')
            .ok_or_else(|| anyhow::anyhow!("expected key=value, got {setting}"))?;
        config.set(key, value);
    }
    Ok(())
}

type Waiting = Arc<Mutex<HashMap<String, oneshot::Sender<Instant>>>>;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let topic = format!("kafka-pair-{}", uuid::Uuid::new_v4().simple());
    let mut base = ClientConfig::new();
    base.set("bootstrap.servers", &args.brokers)
        .set("socket.nagle.disable", "true");
    let admin = service_kit::kafka::Admin::new(base.clone())?;
    service_kit::kafka::ensure_topics(&admin, std::slice::from_ref(&topic), args.partitions)
        .await?;

    let mut consumer_config = base.clone();
    consumer_config
        .set("group.id", format!("{topic}.group"))
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "6000")
        .set("fetch.wait.max.ms", "100");
    apply(&mut consumer_config, &args.consumer_set)?;
    let consumer: StreamConsumer = consumer_config.create()?;
    consumer.subscribe(&[&topic])?;
    let mut producer_config = base.clone();
    producer_config
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "2");
    apply(&mut producer_config, &args.producer_set)?;
    let producer: FutureProducer = producer_config.create()?;

    let waiting: Waiting = Arc::default();
    let receiver = {
        let waiting = waiting.clone();
        tokio::spawn(async move {
            loop {
                let Ok(message) = consumer.recv().await else {
                    continue;
                };
                let arrived = Instant::now();
                let key = String::from_utf8_lossy(message.key().unwrap_or_default()).into_owned();
                if let Some(tx) = waiting.lock().expect("not poisoned").remove(&key) {
                    let _ = tx.send(arrived);
                }
            }
        })
    };

    // Warm-up: the group's first assignment and the producer's first connections.
    let warm = run(&producer, &topic, &waiting, args.clients, args.clients).await?;
    drop(warm);
    let samples = run(&producer, &topic, &waiting, args.clients, args.messages).await?;
    receiver.abort();
    let mut histogram = Histogram::<u64>::new(3)?;
    for s in &samples {
        histogram.record(s.as_micros() as u64)?;
    }
    let ms = |q: f64| histogram.value_at_quantile(q) as f64 / 1000.0;
    println!(
        "PAIR n={} p50_ms={:.2} p99_ms={:.2} max_ms={:.2}",
        samples.len(),
        ms(0.5),
        ms(0.99),
        histogram.max() as f64 / 1000.0
    );
    let _ = admin
        .client()
        .delete_topics(&[&topic], &AdminOptions::new())
        .await;
    Ok(())
}

/// `clients` loops share `messages`; each sends one and waits for it before the next.
async fn run(
    producer: &FutureProducer,
    topic: &str,
    waiting: &Waiting,
    clients: usize,
    messages: usize,
) -> anyhow::Result<Vec<Duration>> {
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for client in 0..clients {
        let (producer, topic, waiting, next) = (
            producer.clone(),
            topic.to_owned(),
            waiting.clone(),
            next.clone(),
        );
        tasks.spawn(async move {
            let mut samples = Vec::new();
            while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < messages {
                let key = format!("client-{client}-{}", samples.len());
                let (tx, rx) = oneshot::channel();
                waiting
                    .lock()
                    .expect("not poisoned")
                    .insert(key.clone(), tx);
                let started = Instant::now();
                producer
                    .send(
                        FutureRecord::to(&topic).key(&key).payload("x"),
                        Duration::from_secs(10),
                    )
                    .await
                    .map_err(|(e, _)| e)?;
                let arrived = tokio::time::timeout(Duration::from_secs(30), rx).await??;
                samples.push(arrived - started);
            }
            anyhow::Ok(samples)
        });
    }
    let mut all = Vec::new();
    while let Some(done) = tasks.join_next().await {
        all.extend(done??);
    }
    Ok(all)
}
