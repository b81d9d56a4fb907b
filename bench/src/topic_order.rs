//! Checks a topic's per-line order: reads every partition from the beginning to its end
//! and, for each aggregate (line), requires the events' sequences never to go back in
//! offset order. The fault tests run it after killing brokers. Prints `ORDER topic=<t>
//! events=<n> aggregates=<n> out_of_order=<n> duplicates=<n>` and exits 1 when anything
//! is out of order. A duplicate (the same sequence again, right after itself) is counted,
//! not refused: at-least-once topics have them by design (kos-mock answers every delivery
//! of a request), and the caller decides where none may be.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use clap::Parser;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

#[derive(Parser)]
struct Args {
    #[arg(long, default_value = "127.0.0.1:9092")]
    brokers: String,
    #[arg(long)]
    topic: String,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &args.brokers)
        .set("group.id", format!("topic-order-{}", std::process::id()))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .create()?;
    let metadata = consumer.fetch_metadata(Some(&args.topic), Duration::from_secs(10))?;
    let mut assignment = TopicPartitionList::new();
    let mut open = HashSet::new();
    for p in metadata.topics()[0].partitions() {
        assignment.add_partition_offset(&args.topic, p.id(), Offset::Beginning)?;
        open.insert(p.id());
    }
    anyhow::ensure!(!open.is_empty(), "topic {} has no partitions", args.topic);
    consumer.assign(&assignment)?;
    let mut last: HashMap<String, u64> = HashMap::new();
    let (mut events, mut out_of_order, mut duplicates) = (0u64, 0u64, 0u64);
    let deadline = Instant::now() + Duration::from_secs(120);
    while !open.is_empty() {
        anyhow::ensure!(
            Instant::now() < deadline,
            "could not read {} to its end",
            args.topic
        );
        let message = match consumer.poll(Duration::from_millis(200)) {
            None => continue,
            Some(Err(KafkaError::PartitionEOF(p))) => {
                open.remove(&p);
                continue;
            }
            Some(m) => m?,
        };
        for envelope in events::codec::decode_envelopes(message.payload().unwrap_or_default())? {
            events += 1;
            match last.insert(envelope.aggregate_id.clone(), envelope.sequence) {
                Some(previous) if previous == envelope.sequence => duplicates += 1,
                Some(previous) if previous > envelope.sequence => out_of_order += 1,
                _ => {}
            }
        }
    }
    println!(
        "ORDER topic={} events={events} aggregates={} out_of_order={out_of_order} duplicates={duplicates}",
        args.topic,
        last.len()
    );
    if out_of_order > 0 {
        std::process::exit(1);
    }
    Ok(())
}
