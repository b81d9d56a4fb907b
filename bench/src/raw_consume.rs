//! The yardstick of the replay benchmark: a plain rdkafka consumer reading topics from
//! the beginning to their end (partition EOF on every partition), doing nothing with
//! the messages but touching their payloads (with `--decode`, also parsing each one's
//! envelope: the least any reader of the events does). Prints `raw_events=<n>
//! raw_seconds=<s> raw_rate=<n/s>` (`decode_` instead of `raw_` with `--decode`).

use std::collections::HashSet;
use std::time::{Duration, Instant};

use clap::Parser;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

#[derive(Parser)]
struct Args {
    #[arg(long, default_value = "127.0.0.1:9092")]
    brokers: String,
    /// Topics to read (comma-separated), as the replay reads them.
    #[arg(long, value_delimiter = ',')]
    topics: Vec<String>,
    /// Parse each message's envelope (JSON) too.
    #[arg(long)]
    decode: bool,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let started = Instant::now();
    // One consumer per topic (partition EOF does not name its topic), as the replay does.
    let readers: Vec<_> = args
        .topics
        .iter()
        .map(|topic| {
            let (brokers, topic, decode) = (args.brokers.clone(), topic.clone(), args.decode);
            std::thread::spawn(move || read_topic(&brokers, &topic, decode))
        })
        .collect();
    let (mut events, mut bytes) = (0u64, 0u64);
    for reader in readers {
        let (e, b) = reader.join().expect("reader thread")?;
        events += e;
        bytes += b;
    }
    let seconds = started.elapsed().as_secs_f64();
    let name = if args.decode { "decode" } else { "raw" };
    println!(
        "{name}_events={events} {name}_bytes={bytes} {name}_seconds={seconds:.3} {name}_rate={:.0}",
        events as f64 / seconds
    );
    Ok(())
}

fn read_topic(brokers: &str, topic: &str, decode: bool) -> anyhow::Result<(u64, u64)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("raw-consume-{}", std::process::id()))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .create()?;
    let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
    let mut assignment = TopicPartitionList::new();
    let mut open = HashSet::new();
    for p in metadata.topics()[0].partitions() {
        assignment.add_partition_offset(topic, p.id(), Offset::Beginning)?;
        open.insert(p.id());
    }
    consumer.assign(&assignment)?;
    let (mut events, mut bytes) = (0u64, 0u64);
    while !open.is_empty() {
        match consumer.poll(Duration::from_millis(500)) {
            None => {}
            Some(Err(KafkaError::PartitionEOF(p))) => {
                open.remove(&p);
            }
            Some(Err(e)) => anyhow::bail!("consumer error: {e}"),
            Some(Ok(m)) => {
                let payload = m.payload().unwrap_or_default();
                if decode {
                    // An inquiry message carries a batch of envelopes.
                    events::codec::decode_envelopes(payload)?;
                }
                events += 1;
                bytes += payload.len() as u64;
            }
        }
    }
    Ok((events, bytes))
}
