//! `phonebill-analyst replay`: rebuilds the read model from the event streams into a fresh
//! namespace while the live one keeps serving, then (on request) switches query-service
//! and the live projector over and drops the old namespace.
//!
//! - Source: the broker, read from the beginning (or a `--since`/`--until` window found
//!   with the broker's offsets-for-times and checked against each message's timestamp)
//!   to the high watermarks of the replay's start, by one [`reader`] thread per topic
//!   with manual assignment in a throwaway group: the live group is never joined and its
//!   offsets never touched.
//! - Or, for `phonebill.product-change` when the broker no longer holds its beginning
//!   (retention) or when asked, the command side's event store ([`event_store`]). KOS's
//!   topics are not in our event store: their lost beginning stops the replay.
//! - Apply: the live projector's projections over [`store::MemStore`], flushed in bulk with
//!   the progress (`replay_progress`) in the same transaction: an interrupted replay
//!   started again with the same `--id` resumes from its last flush.
//! - Hand-over: the replay records its end offsets in the control table. At the switch
//!   each live projector rewinds its partitions to min(its position, those ends) and
//!   goes on in the new namespace: events it applied to the old namespace after the
//!   replay's ends reach the new one too (the checkpoints skip any seen twice).

pub mod cache;
pub mod event_store;
pub mod reader;
pub mod store;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use events::topics::Topics;
use futures::{StreamExt, TryStreamExt};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rdkafka::ClientConfig;
use read_model::keys::View;
use read_model::namespace::ActiveNamespace;
use serde::Serialize;
use serde_json::json;
use service_kit::bounded_reader::{BoundedReader, Bounds, Plan};
use service_kit::redis_conn::RedisConn;
use sqlx::PgPool;
use std::io::IsTerminal;
use tokio::sync::mpsc;

use projector::configuration::Config;
use projector::namespace::{delete_views, Control};
use projector::processor::{Outcome, Processor};
use projector::{db, startup};

use crate::replay::reader::{Batch, Item, Window};
use crate::replay::store::{Budget, Catalog, MemStore};

#[derive(Debug, Clone)]
pub struct ReplayOptions {
    /// Namespace id; the same id resumes an interrupted replay.
    pub id: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    /// Switch query-service and the live projector to the new namespace when done.
    pub switch: bool,
    /// Switch even when the new namespace differs from the event store.
    pub force: bool,
    /// After the switch, drop the namespace that was active (after `drop_grace`).
    pub drop_old: bool,
    pub drop_grace: Duration,
    /// Events held in memory between bulk writes.
    pub flush_every: usize,
    /// Memory for the rows kept across flushes (see [`store::Budget`]), shared by the
    /// workers.
    pub memory_bytes: usize,
    /// Appliers side by side, each owning a share of the partitions.
    pub workers: usize,
    /// Draw the progress bar (on stderr, when it is a terminal).
    pub progress: bool,
    /// Where `phonebill.product-change`'s history is read from.
    pub source: HistorySource,
    /// Stop after about this many messages (at the end of a batch), with everything read
    /// so far flushed: the namespace stays `building`, and the same `--id` continues.
    pub max_events: Option<u64>,
}

/// Where a replay reads `phonebill.product-change` from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum HistorySource {
    /// The broker, or the event store when the broker no longer holds the beginning.
    #[default]
    Auto,
    /// The broker only (a lost beginning stops the replay).
    Broker,
    /// The command side's event store.
    EventStore,
}

/// What a topic's replay reads, given where the broker's log of it starts.
#[derive(Debug, PartialEq, Eq)]
pub enum Read {
    Broker,
    EventStore,
}

/// Chooses a topic's source. `lost`: a partition whose log starts after the replay's
/// start offset (partition, first offset held). Only `phonebill.product-change` is in
/// the event store; the other topics hold KOS's facts and the inquiry records.
pub fn choose_read(
    topic: &str,
    is_product_change: bool,
    source: HistorySource,
    lost: Option<(i32, i64)>,
) -> anyhow::Result<Read> {
    match (is_product_change, source, lost) {
        (true, HistorySource::EventStore, _) | (true, HistorySource::Auto, Some(_)) => {
            Ok(Read::EventStore)
        }
        (_, _, None) => Ok(Read::Broker),
        (true, _, Some((p, low))) => anyhow::bail!(
            "the broker no longer holds the beginning of {topic} partition {p} (first offset \
             {low}): replay with --source event-store (or auto) to read the event store instead"
        ),
        (false, _, Some((p, low))) => anyhow::bail!(
            "the broker no longer holds the beginning of {topic} partition {p} (first offset \
             {low}), and the event store does not hold this topic (only \
             phonebill.product-change): a replay would miss events; keep this topic's \
             retention unlimited"
        ),
    }
}

impl Default for ReplayOptions {
    fn default() -> Self {
        Self {
            id: None,
            since: None,
            until: None,
            switch: false,
            force: false,
            drop_old: false,
            drop_grace: Duration::from_secs(10),
            flush_every: 5_000,
            memory_bytes: 32 << 20,
            workers: 1,
            progress: true,
            source: HistorySource::Auto,
            max_events: None,
        }
    }
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct ReplayReport {
    pub id: String,
    pub schema: String,
    pub key_prefix: String,
    /// Messages read from the broker (in and out of the window).
    pub messages: u64,
    pub applied: u64,
    pub duplicates: u64,
    pub parked: u64,
    pub rejected: u64,
    pub outside_window: u64,
    pub views: u64,
    pub seconds: f64,
    /// Where the time went: schema, migrations, schema compilation and planning before
    /// the first read; reading and applying (with the bulk flushes on the way); the last
    /// flush, the Redis fill and the bookkeeping after.
    pub prepare_seconds: f64,
    pub apply_seconds: f64,
    pub finish_seconds: f64,
    pub events_per_second: f64,
    /// Topics read from the event store instead of the broker.
    pub from_event_store: Vec<String>,
    /// False when stopped early (`max_events`): run again with the same id to go on.
    pub complete: bool,
    pub switched_from: Option<String>,
    pub dropped: Option<String>,
    /// The process's peak resident memory (Linux `VmHWM`), MiB.
    pub peak_rss_mib: Option<f64>,
    /// Rows that left the replay's memory for its budget (read back from PostgreSQL
    /// when needed again).
    pub evicted_rows: u64,
}

impl ReplayReport {
    /// The durations, from the replay's start, the end of its preparation and the end of
    /// its reading (the finish is timed apart), and the rate over the whole.
    fn time(&mut self, started: Instant, prepared: Instant, applied_at: Instant) {
        self.seconds = started.elapsed().as_secs_f64();
        self.prepare_seconds = (prepared - started).as_secs_f64();
        self.apply_seconds = (applied_at - prepared).as_secs_f64();
        self.events_per_second = self.messages as f64 / self.seconds;
        self.peak_rss_mib = peak_rss_mib();
    }
}

/// The process's peak resident memory so far (Linux `VmHWM`), MiB; `None` elsewhere.
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some((kib / 1024.0 * 10.0).round() / 10.0)
}

/// What a replay would read, planned without writing anything: each topic's source and
/// partitions' offsets, and the events to read. A replay resumed with `--id` reads less
/// (from where it stopped); the plan is from the window's start.
#[derive(Debug, Serialize)]
pub struct ReplayPlan {
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    pub topics: Vec<PlannedTopic>,
    pub estimated_events: u64,
}

#[derive(Debug, Serialize)]
pub struct PlannedTopic {
    pub topic: String,
    /// `broker`, or `event-store` when the broker no longer holds the beginning.
    pub source: &'static str,
    /// (partition, first offset to read, first offset not to read).
    pub partitions: Vec<(i32, i64, i64)>,
    pub events: u64,
}

/// `replay --dry-run`: the plan of [`run`], nothing created or written.
pub async fn dry_run(config: &Config, options: &ReplayOptions) -> anyhow::Result<ReplayPlan> {
    config.check()?;
    let sources = plan(config, options, &HashMap::new()).await?;
    let planned = |source: &'static str, (topic, plan): &(String, TopicPlan)| PlannedTopic {
        topic: topic.clone(),
        source,
        partitions: plan
            .broker
            .partitions
            .iter()
            .map(|p| (p.partition, p.start, p.end))
            .collect(),
        events: match source {
            "broker" => plan.total,
            _ => plan.ends.iter().map(|(_, e)| *e as u64).sum(),
        },
    };
    let topics = (sources.broker.iter().map(|t| planned("broker", t)))
        .chain(
            sources
                .event_store
                .iter()
                .map(|t| planned("event-store", t)),
        )
        .collect();
    Ok(ReplayPlan {
        since: options.since,
        until: options.until,
        topics,
        estimated_events: sources.estimate,
    })
}

/// The topics a replay reads.
pub fn topics(config: &Config) -> Vec<String> {
    let t = Topics::new(&config.kafka.topic_prefix);
    vec![t.product_change(), t.kos_billing(), t.bill_inquiries()]
}

pub async fn run(config: &Config, options: ReplayOptions) -> anyhow::Result<ReplayReport> {
    config.check()?;
    let started = Instant::now();
    let target = open_namespace(config, &options).await?;
    let resumed = !target.progress.is_empty();
    let window = Window {
        since_ms: options.since.map(|t| t.timestamp_millis()),
        until_ms: options.until.map(|t| t.timestamp_millis()),
    };
    let sources = plan(config, &options, &target.progress).await?;
    let partitions = (sources.broker.iter())
        .chain(&sources.event_store)
        .map(|(topic, plan)| (topic.clone(), plan.broker.partitions.len()))
        .collect();
    check_workers(&partitions, options.workers)?;
    let processor = startup::processor(&target.ns_config, target.pool.clone()).await?;
    let estimate = sources.estimate;
    let from_event_store = sources.event_store.iter().map(|(t, _)| t.clone()).collect();
    let mut readers = Readers::spawn(config, &target.base_pool, sources, window, &processor);
    let prepared = Instant::now();
    let bar = progress_bar(options.progress, estimate);
    let _progress_lines = ProgressLines::start(options.progress, &bar, &target.id);
    let Target {
        control,
        id,
        ns,
        pool,
        progress,
        ..
    } = target;
    let workers = options.workers.max(1);
    let budget = Budget::of_bytes(options.memory_bytes / workers, estimate as usize / workers);
    let catalog = Catalog::default();
    let mut stores: Vec<MemStore> = (0..workers)
        .map(|_| MemStore::new(pool.clone(), !resumed, budget, catalog.clone()))
        .collect();
    for ((topic, partition), next) in progress {
        stores[worker_of(partition, workers)]
            .progress
            .insert((topic, partition), next);
    }
    let mut report = ReplayReport {
        id: id.clone(),
        schema: ns.schema.clone(),
        key_prefix: ns.key_prefix.clone(),
        from_event_store,
        ..Default::default()
    };
    let mut ends: BTreeMap<String, BTreeMap<String, i64>> = BTreeMap::new();
    let result = rebuild(
        &mut readers.rx,
        stores,
        &mut report,
        &mut ends,
        &bar,
        &options,
    )
    .await;
    readers.stop().await;
    let (complete, mut stores) = result?;
    report.complete = complete;
    report.evicted_rows = stores.iter().map(|s| s.evicted).sum();
    let applied_at = Instant::now();
    if !report.complete {
        // Stopped early: what was read is flushed with its progress; no views, no ends.
        for store in &mut stores {
            store.flush().await?;
            store.wait_written().await?;
        }
        bar.finish_and_clear();
        report.time(started, prepared, applied_at);
        pool.close().await;
        return Ok(report);
    }
    // The last rows go to PostgreSQL in the background while Redis is filled.
    for store in &mut stores {
        store.flush_behind();
    }
    bar.finish_and_clear();
    let retried = report.parked > 0;
    if retried {
        // An event parked behind a fact read later (a line registered before its
        // product was published, on another partition) is applied now that the whole
        // history is read, as `projector retry-parked` would.
        for store in &mut stores {
            store.wait_written().await?;
        }
        let retry = processor.retry_parked().await?;
        report.applied += retry.applied;
        report.parked = retry.still_parked;
    }
    let redis = RedisConn::connect(&config.redis).await?;
    report.views = publish_views(&mut stores, retried, &pool, &redis, &ns.key_prefix).await?;
    record_ends(&pool, &ends).await?;
    let applied_total: i64 = sqlx::query_scalar("SELECT count(*) FROM apply_log")
        .fetch_one(&pool)
        .await?;
    control.mark_ready(&id, &json!(ends), applied_total).await?;
    report.time(started, prepared, applied_at);
    report.finish_seconds = applied_at.elapsed().as_secs_f64();
    if options.switch {
        crate::reconcile::gate(config, &control, &id, options.force).await?;
        switch_over(&control, &id, &options, &redis, &mut report).await?;
    }
    pool.close().await;
    Ok(report)
}

/// The namespace a replay builds, with its read schema prepared.
struct Target {
    /// The configured (base) namespace's pool: the control table and the event store.
    base_pool: PgPool,
    control: Control,
    id: String,
    ns: ActiveNamespace,
    /// The configuration pointed at the new namespace.
    ns_config: Config,
    pool: PgPool,
    /// Where an interrupted replay of this id stopped: (topic, partition) -> next offset.
    progress: HashMap<(String, i32), i64>,
}

/// Creates the namespace (or takes up an interrupted replay of the same id, started with
/// the same window), migrates its schema and reads its progress.
async fn open_namespace(config: &Config, options: &ReplayOptions) -> anyhow::Result<Target> {
    let base_pool = db::connect(config).await?;
    let control = Control::open(config, base_pool.clone()).await?;
    let id = options
        .id
        .clone()
        .unwrap_or_else(|| format!("r{}", Utc::now().format("%Y%m%d%H%M%S")));
    let ns = control.namespace_for(&id)?;
    let kind = if options.since.is_some() || options.until.is_some() {
        "window"
    } else {
        "full"
    };
    if let Some(existing) = control.get(&id).await? {
        anyhow::ensure!(
            existing.state == "building",
            "namespace {id} is {}; choose another --id",
            existing.state
        );
        anyhow::ensure!(
            existing.kind == kind
                && existing.since == options.since
                && existing.until == options.until,
            "namespace {id} was started with another window; resume it with the same options"
        );
        tracing::info!(%id, "resuming an interrupted replay");
    }
    control
        .create(&ns, kind, options.since, options.until)
        .await?;
    let mut ns_config = config.clone();
    ns_config.database.schema = ns.schema.clone();
    ns_config.redis.key_prefix = ns.key_prefix.clone();
    // Per worker: its flush and its reads; one more for the bookkeeping.
    ns_config.database.max_connections = 1 + 2 * options.workers.max(1) as u32;
    let pool = startup::prepare_database(&ns_config).await?;
    control.grant().await?;
    let progress: Vec<(String, i32, i64)> =
        sqlx::query_as("SELECT topic, partition, next_offset FROM replay_progress")
            .fetch_all(&pool)
            .await?;
    let progress = progress.into_iter().map(|(t, p, o)| ((t, p), o)).collect();
    Ok(Target {
        base_pool,
        control,
        id,
        ns,
        ns_config,
        pool,
        progress,
    })
}

/// Where each topic is read from, with its partitions' starts and ends.
struct Sources {
    broker: Vec<(String, TopicPlan)>,
    event_store: Vec<(String, TopicPlan)>,
    /// Messages to read, about (for the progress bar).
    estimate: u64,
}

/// Plans every topic on the broker (from the window's start, or past a resumed replay's
/// progress, to the ends as of now) and chooses its source.
async fn plan(
    config: &Config,
    options: &ReplayOptions,
    progress: &HashMap<(String, i32), i64>,
) -> anyhow::Result<Sources> {
    let client = service_kit::kafka::client_config(&config.kafka, "projector-replay");
    // Each partition also ends at its first message stamped from now on, so topics
    // written all the time still end; later messages are the live projector's (it starts
    // at these end offsets after a switch).
    let bounds = Bounds {
        since: options.since,
        until: options.until,
        cut: Some(Utc::now()),
    };
    let topics = topics(config);
    let product_change = Topics::new(&config.kafka.topic_prefix).product_change();
    let mut plans = vec![];
    let mut estimate = 0u64;
    let mut from_event_store = vec![];
    let topic_plans = futures::future::try_join_all(
        topics
            .iter()
            .map(|topic| plan_topic(&client, topic, bounds, progress)),
    )
    .await?;
    for (topic, plan) in topics.iter().zip(topic_plans) {
        let is_product_change = *topic == product_change;
        match choose_read(topic, is_product_change, options.source, plan.lost)? {
            Read::Broker => {
                estimate += plan.total;
                plans.push((topic.clone(), plan));
            }
            Read::EventStore => {
                estimate += plan.ends.iter().map(|(_, e)| *e as u64).sum::<u64>();
                from_event_store.push((topic.clone(), plan));
            }
        }
    }
    Ok(Sources {
        broker: plans,
        event_store: from_event_store,
        estimate,
    })
}

/// The readers of a replay (a thread per broker topic, a task per event-store topic),
/// all sending into one channel.
struct Readers {
    rx: mpsc::Receiver<Batch>,
    stop: Arc<AtomicBool>,
    broker: Vec<std::thread::JoinHandle<()>>,
    event_store: Vec<tokio::task::JoinHandle<()>>,
}

impl Readers {
    fn spawn(
        config: &Config,
        base_pool: &PgPool,
        sources: Sources,
        window: Window,
        processor: &Processor,
    ) -> Self {
        let (tx, rx) = mpsc::channel::<Batch>(2);
        let stop = Arc::new(AtomicBool::new(false));
        // The event store's snapshot is taken now, after the broker's ends were read.
        let event_store: Vec<_> = sources
            .event_store
            .iter()
            .map(|(topic, plan)| {
                event_store::spawn(
                    event_store::Source {
                        pool: base_pool.clone(),
                        schema: config.event_store_schema.clone(),
                        topic: topic.clone(),
                        partitions: plan.broker.partitions.len() as i32,
                        ends: plan.ends.clone(),
                    },
                    window,
                    processor.clone(),
                    tx.clone(),
                    stop.clone(),
                )
            })
            .collect();
        let broker: Vec<_> = sources
            .broker
            .into_iter()
            .map(|(_, plan)| {
                reader::spawn(
                    plan.reader,
                    plan.broker,
                    window,
                    processor.clone(),
                    tx.clone(),
                    stop.clone(),
                )
            })
            .collect();
        Self {
            rx,
            stop,
            broker,
            event_store,
        }
    }

    /// Stops every reader and waits for them: readers blocked on a full channel (the
    /// applier stopped early or failed) see it closed and end.
    async fn stop(self) {
        drop(self.rx);
        self.stop.store(true, Ordering::Relaxed);
        for r in self.broker {
            let _ = r.join();
        }
        for r in self.event_store {
            let _ = r.await;
        }
    }
}

/// Applies what the readers send: each partition's events go to one worker (`partition`
/// modulo the workers: per-line order is per partition), each with its own store,
/// flushing every `flush_every` events. Records each topic's end offsets. Returns whether
/// everything was read (not stopped by `max_events`), and the stores.
async fn rebuild(
    rx: &mut mpsc::Receiver<Batch>,
    stores: Vec<MemStore>,
    report: &mut ReplayReport,
    ends: &mut BTreeMap<String, BTreeMap<String, i64>>,
    bar: &ProgressBar,
    options: &ReplayOptions,
) -> anyhow::Result<(bool, Vec<MemStore>)> {
    let mut workers = stores
        .into_iter()
        .map(|store| Worker::new(store, options.flush_every));
    let (routed, workers) = if workers.len() == 1 {
        // One worker applies in the routing task: no hand-over, no batches queued twice.
        let worker = workers.next().expect("one worker");
        let mut appliers = Appliers::One(Box::new(worker));
        let routed = route(rx, &mut appliers, report, ends, bar, options).await;
        let Appliers::One(worker) = appliers else {
            unreachable!("one worker stays one")
        };
        (routed, vec![*worker])
    } else {
        let (txs, tasks): (Vec<_>, Vec<_>) = workers
            .map(|worker| {
                let (tx, rx) = mpsc::channel::<Vec<Item>>(2);
                (tx, tokio::spawn(worker.run(rx)))
            })
            .unzip();
        let mut appliers = Appliers::Many(txs);
        let routed = route(rx, &mut appliers, report, ends, bar, options).await;
        drop(appliers);
        let mut workers = Vec::with_capacity(tasks.len());
        for task in tasks {
            workers.push(task.await??);
        }
        (routed, workers)
    };
    let mut stores = Vec::with_capacity(workers.len());
    for Worker { store, counts, .. } in workers {
        report.applied += counts.applied;
        report.duplicates += counts.duplicates;
        report.parked += counts.parked;
        report.rejected += counts.rejected;
        report.outside_window += counts.outside_window;
        stores.push(store);
    }
    Ok((routed?, stores))
}

/// Where `route` hands events: the one worker itself, or the workers' queues.
enum Appliers {
    One(Box<Worker>),
    Many(Vec<mpsc::Sender<Vec<Item>>>),
}

impl Appliers {
    async fn take(&mut self, items: Vec<Item>) -> anyhow::Result<()> {
        match self {
            Appliers::One(worker) => worker.apply(items).await,
            Appliers::Many(txs) => {
                let mut parts: Vec<Vec<Item>> = txs.iter().map(|_| vec![]).collect();
                for item in items {
                    parts[worker_of(item.msg.partition, txs.len())].push(item);
                }
                for (tx, part) in txs.iter().zip(parts) {
                    if !part.is_empty() {
                        (tx.send(part).await)
                            .map_err(|_| anyhow::anyhow!("a replay worker stopped"))?;
                    }
                }
                Ok(())
            }
        }
    }
}

/// Workers side by side need every topic split alike: a line's facts and its product
/// changes (keyed by the line) then sit in partitions of the same number, which one
/// worker owns.
fn check_workers(partitions: &BTreeMap<String, usize>, workers: usize) -> anyhow::Result<()> {
    if workers <= 1 {
        return Ok(());
    }
    let mut distinct: Vec<usize> = partitions.values().copied().collect();
    distinct.sort_unstable();
    distinct.dedup();
    anyhow::ensure!(
        distinct.len() <= 1,
        "--workers {workers} needs every topic to have as many partitions (they have \
         {partitions:?}): replay with --workers 1"
    );
    Ok(())
}

/// The worker of a partition.
fn worker_of(partition: i32, workers: usize) -> usize {
    partition.rem_euclid(workers as i32) as usize
}

/// Hands each batch's events to their partitions' workers; true when the readers reached
/// their ends, false when stopped by `max_events`.
async fn route(
    rx: &mut mpsc::Receiver<Batch>,
    appliers: &mut Appliers,
    report: &mut ReplayReport,
    ends: &mut BTreeMap<String, BTreeMap<String, i64>>,
    bar: &ProgressBar,
    options: &ReplayOptions,
) -> anyhow::Result<bool> {
    while let Some(batch) = rx.recv().await {
        match batch {
            Batch::Items(items) => {
                bar.inc(items.len() as u64);
                report.messages += items.len() as u64;
                appliers.take(items).await?;
                if options.max_events.is_some_and(|max| report.messages >= max) {
                    return Ok(false);
                }
            }
            Batch::Done(topic, topic_ends) => {
                ends.insert(
                    topic,
                    topic_ends
                        .into_iter()
                        .map(|(p, o)| (p.to_string(), o))
                        .collect(),
                );
            }
            Batch::Failed(reason) => anyhow::bail!("reading the broker: {reason}"),
        }
    }
    Ok(true)
}

/// What a worker did with the events it was handed.
#[derive(Default)]
struct Counts {
    applied: u64,
    duplicates: u64,
    parked: u64,
    rejected: u64,
    outside_window: u64,
}

/// One worker: applies its partitions' events to its store, in the order read, and
/// records how far each partition was read.
struct Worker {
    store: MemStore,
    counts: Counts,
    flush_every: usize,
}

impl Worker {
    fn new(store: MemStore, flush_every: usize) -> Self {
        Self {
            store,
            counts: Counts::default(),
            flush_every,
        }
    }

    /// Applies what arrives on `rx` until the router is done.
    async fn run(mut self, mut rx: mpsc::Receiver<Vec<Item>>) -> anyhow::Result<Self> {
        while let Some(items) = rx.recv().await {
            self.apply(items).await?;
        }
        Ok(self)
    }

    async fn apply(&mut self, items: Vec<Item>) -> anyhow::Result<()> {
        let (store, counts) = (&mut self.store, &mut self.counts);
        for item in items {
            match &item.decoded {
                None => counts.outside_window += 1,
                Some(Err(_)) => counts.rejected += 1,
                Some(Ok(decoded)) => match store.handle(&item.msg, decoded).await? {
                    Outcome::Applied => counts.applied += 1,
                    Outcome::Duplicate => counts.duplicates += 1,
                    Outcome::Parked => counts.parked += 1,
                    Outcome::Rejected { .. } => counts.rejected += 1,
                },
            }
            // Event-store rows have no offset (-1) and add no progress.
            if item.msg.offset >= 0 {
                store
                    .progress
                    .insert((item.msg.topic, item.msg.partition), item.msg.offset + 1);
            }
        }
        if store.unflushed() >= self.flush_every {
            store.flush().await?;
        }
        Ok(())
    }
}

/// Fills Redis with the namespace's views (from memory when the whole replay fitted
/// there, else from its tables, a slice of lines at a time) and waits for the last rows
/// to be written. Returns how many views.
async fn publish_views(
    stores: &mut [MemStore],
    retried: bool,
    pool: &PgPool,
    redis: &RedisConn,
    prefix: &str,
) -> anyhow::Result<u64> {
    let memory = match stores {
        [store] if !retried => store.take_all(),
        _ => None,
    };
    let rows = match memory {
        Some(memory) => Rows::Memory(Box::new(memory)),
        None => {
            for store in stores.iter_mut() {
                store.wait_written().await?;
            }
            Rows::Tables(pool.clone())
        }
    };
    let views = fill_redis(redis, prefix, rows).await?;
    for store in stores.iter_mut() {
        store.wait_written().await?;
    }
    Ok(views)
}

/// Partitions read to their end keep that end as progress (also when nothing was read).
async fn record_ends(
    pool: &PgPool,
    ends: &BTreeMap<String, BTreeMap<String, i64>>,
) -> anyhow::Result<()> {
    for (topic, parts) in ends {
        for (p, end) in parts {
            sqlx::query(
                "INSERT INTO replay_progress (topic, partition, next_offset) VALUES ($1, $2, $3)
                 ON CONFLICT (topic, partition) DO UPDATE SET next_offset = EXCLUDED.next_offset",
            )
            .bind(topic)
            .bind(p.parse::<i32>()?)
            .bind(end)
            .execute(pool)
            .await?;
        }
    }
    Ok(())
}

/// Makes the new namespace the active one; with `drop_old`, drops the one that was
/// after the grace period.
async fn switch_over(
    control: &Control,
    id: &str,
    options: &ReplayOptions,
    redis: &RedisConn,
    report: &mut ReplayReport,
) -> anyhow::Result<()> {
    let previous = control.switch(id).await?;
    tracing::info!(from = %previous.id, to = %id, "switched");
    report.switched_from = Some(previous.id.clone());
    if options.drop_old && previous.id != id {
        // Followers switch within a second or two (notification, else polling);
        // requests already reading the old namespace finish meanwhile.
        tokio::time::sleep(options.drop_grace).await;
        control.drop_namespace(&previous.id, redis).await?;
        report.dropped = Some(previous.id);
    }
    Ok(())
}

/// A topic's partitions as the broker holds them at the replay's start.
struct TopicPlan {
    /// The reader that made the plan, to read it.
    reader: BoundedReader,
    /// Each partition's start (the window's, moved on past what a resumed replay has
    /// applied) and end.
    broker: Plan,
    /// Messages to read (for the progress bar).
    total: u64,
    /// A partition whose log starts after the replay's start offset, and that first
    /// offset (retention removed the messages before it).
    lost: Option<(i32, i64)>,
    /// The high watermark of each partition.
    ends: Vec<(i32, i64)>,
}

/// Start and end offsets of a topic's partitions.
async fn plan_topic(
    client: &ClientConfig,
    topic: &str,
    bounds: Bounds,
    progress: &HashMap<(String, i32), i64>,
) -> anyhow::Result<TopicPlan> {
    let client = client.clone();
    let topic = topic.to_owned();
    let progress = progress.clone();
    tokio::task::spawn_blocking(move || {
        let reader = BoundedReader::new(&client)?;
        let mut broker = reader.plan(&topic, bounds)?;
        let mut total = 0u64;
        let mut lost = None;
        let mut highs = vec![];
        for p in &mut broker.partitions {
            if bounds.since.is_none() && p.low > 0 {
                lost = lost.or(Some((p.partition, p.low)));
            }
            highs.push((p.partition, p.high));
            if let Some(next) = progress.get(&(topic.clone(), p.partition)) {
                p.start = p.start.max(*next);
            }
            total += p.len();
        }
        Ok(TopicPlan {
            reader,
            broker,
            total,
            lost,
            ends: highs,
        })
    })
    .await?
}

fn progress_bar(enabled: bool, estimate: u64) -> ProgressBar {
    if !enabled {
        return ProgressBar::hidden();
    }
    if !std::io::stderr().is_terminal() {
        // Counted all the same: [`ProgressLines`] reports it.
        let bar = ProgressBar::hidden();
        bar.set_length(estimate);
        return bar;
    }
    let bar = ProgressBar::with_draw_target(Some(estimate), ProgressDrawTarget::stderr_with_hz(4));
    bar.set_style(
        ProgressStyle::with_template(
            "replay [{elapsed_precise}] {wide_bar} {human_pos}/~{human_len} events {per_sec} ETA {eta}",
        )
        .expect("valid template"),
    );
    bar
}

/// Progress as JSON lines on stderr every [`ProgressLines::EVERY`] when stderr is not a
/// terminal (a Job's log, a pipe), where the bar is not drawn. Stops when dropped.
struct ProgressLines(Option<tokio::task::JoinHandle<()>>);

impl ProgressLines {
    const EVERY: Duration = Duration::from_secs(10);

    fn start(enabled: bool, bar: &ProgressBar, id: &str) -> Self {
        if !enabled || std::io::stderr().is_terminal() {
            return ProgressLines(None);
        }
        let (bar, id) = (bar.clone(), id.to_owned());
        let started = Instant::now();
        ProgressLines(Some(tokio::spawn(async move {
            loop {
                tokio::time::sleep(Self::EVERY).await;
                let seconds = started.elapsed().as_secs_f64();
                let line = json!({
                    "replay": id,
                    "events": bar.position(),
                    "estimatedEvents": bar.length(),
                    "seconds": (seconds * 10.0).round() / 10.0,
                    "eventsPerSecond": (bar.position() as f64 / seconds).round(),
                    "peakRssMib": peak_rss_mib(),
                });
                eprintln!("{line}");
            }
        })))
    }
}

impl Drop for ProgressLines {
    fn drop(&mut self) {
        if let Some(task) = self.0.take() {
            task.abort();
        }
    }
}

/// Where the views of a finished replay are built from.
enum Rows {
    Memory(Box<store::InMemory>),
    Tables(PgPool),
}

/// Lines whose rows are read and built at once when the views come from the tables.
const SLICE_LINES: i64 = 500;

/// Writes every view of the namespace to Redis (pipelined), as the live projector would
/// have after each event, replacing what the prefix held. The views are built on a
/// blocking thread and written as they come. Returns how many.
async fn fill_redis(redis: &RedisConn, prefix: &str, rows: Rows) -> anyhow::Result<u64> {
    delete_views(redis, prefix).await?;
    let (tx, mut rx) = mpsc::channel::<Vec<(View, Vec<u8>)>>(8);
    let builder = tokio::spawn(build_views(rows, tx));
    let chunks = futures::stream::poll_fn(move |cx| rx.poll_recv(cx));
    // Several pipelines in flight on the multiplexed connection: one at a time waited a
    // round trip per thousand views.
    let written = chunks
        .map(|chunk| {
            let redis = redis.clone();
            async move {
                let items: Vec<_> = chunk
                    .iter()
                    .map(|(view, bytes)| {
                        (
                            view.redis_key(prefix),
                            bytes.as_slice(),
                            view.ttl().as_secs(),
                        )
                    })
                    .collect();
                redis.set_ex_many(&items).await?;
                Ok::<_, redis::RedisError>(chunk.len() as u64)
            }
        })
        .buffer_unordered(4)
        .try_fold(0u64, |sum, n| async move { Ok(sum + n) })
        .await?;
    builder.await??;
    Ok(written)
}

/// Views per chunk written to Redis.
const VIEW_CHUNK: usize = 1000;

/// Builds the views of `rows` on blocking threads and sends them in chunks. From the
/// tables, a slice of lines is read and built at a time.
async fn build_views(rows: Rows, tx: mpsc::Sender<Vec<(View, Vec<u8>)>>) -> anyhow::Result<()> {
    use read_model::keys;
    let pool = match rows {
        Rows::Memory(memory) => {
            tokio::task::spawn_blocking(move || {
                send_views(&tx, |emit| keys::build_all(memory.into_rows(), emit))
            })
            .await?;
            return Ok(());
        }
        Rows::Tables(pool) => pool,
    };
    let products = Arc::new(keys::load_products(&pool).await?);
    let mut after = String::new();
    loop {
        let end = keys::slice_end(&pool, &after, SLICE_LINES).await?;
        let rows = keys::load_slice(&pool, &after, end.as_deref()).await?;
        let (tx, products) = (tx.clone(), products.clone());
        tokio::task::spawn_blocking(move || {
            send_views(&tx, |emit| keys::build_line_views(rows, &products, emit))
        })
        .await?;
        match end {
            Some(end) => after = end,
            None => break,
        }
    }
    let products = Arc::unwrap_or_clone(products);
    tokio::task::spawn_blocking(move || {
        send_views(&tx, |emit| keys::build_product_views(products, emit))
    })
    .await?;
    Ok(())
}

/// Runs `build`, sending what it emits in chunks of [`VIEW_CHUNK`] (blocking while the
/// writers are behind).
fn send_views(
    tx: &mpsc::Sender<Vec<(View, Vec<u8>)>>,
    build: impl FnOnce(&mut dyn FnMut(View, Vec<u8>)),
) {
    let mut chunk = Vec::with_capacity(VIEW_CHUNK);
    build(&mut |view, bytes| {
        chunk.push((view, bytes));
        if chunk.len() == VIEW_CHUNK {
            let full = std::mem::replace(&mut chunk, Vec::with_capacity(VIEW_CHUNK));
            let _ = tx.blocking_send(full);
        }
    });
    let _ = tx.blocking_send(chunk);
}

#[cfg(test)]
mod tests {
    use super::*;

    const PC: &str = "phonebill.product-change";

    fn partitions(counts: &[(&str, usize)]) -> BTreeMap<String, usize> {
        counts.iter().map(|(t, n)| (t.to_string(), *n)).collect()
    }

    #[test]
    fn workers_side_by_side_need_topics_split_alike_and_one_worker_takes_any() {
        let alike = partitions(&[(PC, 12), ("kos.billing", 12), ("inquiries", 12)]);
        let unlike = partitions(&[(PC, 12), ("kos.billing", 6), ("inquiries", 12)]);
        assert!(check_workers(&alike, 4).is_ok());
        assert!(check_workers(&unlike, 1).is_ok());
        let refused = check_workers(&unlike, 2).unwrap_err().to_string();
        assert!(refused.contains("--workers 1"), "{refused}");
    }

    #[test]
    fn partitions_are_dealt_to_workers_by_their_number() {
        assert_eq!(worker_of(5, 1), 0);
        assert_eq!(
            (0..6).map(|p| worker_of(p, 4)).collect::<Vec<_>>(),
            [0, 1, 2, 3, 0, 1]
        );
    }

    #[test]
    fn a_whole_log_is_read_from_the_broker_unless_the_event_store_is_asked_for() {
        assert_eq!(
            choose_read(PC, true, HistorySource::Auto, None).unwrap(),
            Read::Broker
        );
        assert_eq!(
            choose_read(PC, true, HistorySource::Broker, None).unwrap(),
            Read::Broker
        );
        assert_eq!(
            choose_read(PC, true, HistorySource::EventStore, None).unwrap(),
            Read::EventStore
        );
        let kos = "kos.billing";
        assert_eq!(
            choose_read(kos, false, HistorySource::EventStore, None).unwrap(),
            Read::Broker
        );
    }

    #[test]
    fn product_changes_whose_beginning_expired_come_from_the_event_store() {
        let lost = Some((3, 1_200));
        assert_eq!(
            choose_read(PC, true, HistorySource::Auto, lost).unwrap(),
            Read::EventStore
        );
        let refused = choose_read(PC, true, HistorySource::Broker, lost).unwrap_err();
        assert!(refused
            .to_string()
            .contains("partition 3 (first offset 1200)"));
    }

    #[test]
    fn a_kos_topic_whose_beginning_expired_stops_the_replay() {
        let refused =
            choose_read("kos.billing", false, HistorySource::Auto, Some((0, 5))).unwrap_err();
        assert!(refused
            .to_string()
            .contains("event store does not hold this topic"));
    }
}
