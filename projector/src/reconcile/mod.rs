//! Reconciliation: proof that every committed product-change event reached the
//! projector's views exactly once and in order, line by line.
//!
//! Three stages are compared for each line. The event store is the truth (what the
//! command side committed; the relay publishes exactly those rows, in order). The
//! projector's ledger is its apply log up to its checkpoint, written in the same
//! statement as the checkpoint and in the same transaction as the views. The views are
//! the read table's change requests, checked against what the live projection code makes
//! of the committed events, and optionally the Redis copies, checked against the read
//! tables. A line is `equal`, `behind` (an in-order prefix; how far and for how long) or
//! `divergent` (an event missed, doubled or reordered, or a view that does not match its
//! events), with the first differing sequence.
//!
//! Events in flight are tolerated: a line that is not equal is checked again until the
//! wait bound passes before it is reported. [`judge`] is the pure decision; [`read`]
//! the queries; [`sampler`] the projector's continuous check behind the metrics.

pub mod broker;
pub mod judge;
pub mod ledger;
pub mod read;
pub mod sampler;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chrono::Utc;
use events::topics::partition_for;
use futures::{StreamExt, TryStreamExt};
use ledger::Ledger;
use serde::Serialize;
use service_kit::redis_conn::RedisConn;
use sqlx::PgPool;

pub use judge::LineReport;

/// Where a reconciliation reads.
#[derive(Clone)]
pub struct Sources {
    /// Bound to the namespace checked (the active one unless told otherwise); reads the
    /// event store by its schema-qualified name.
    pub pool: PgPool,
    /// The command side's schema (its `events` table).
    pub event_store_schema: String,
    /// The namespace's Redis views and key prefix, when they are checked too.
    pub redis: Option<(RedisConn, String)>,
    /// Partitions of the product-change topic, for the per-partition roll-up.
    pub partitions: i32,
    /// KOS's schema (kos-mock's `orders`), when KOS's stage is checked: only where KOS
    /// is ours to read (kos-mock), never the carrier's.
    pub kos_schema: Option<String>,
    /// The broker and the product-change topic, when the broker's stage is checked.
    pub broker: Option<(rdkafka::ClientConfig, String)>,
}

/// What to reconcile.
#[derive(Debug, Clone)]
pub struct Options {
    /// The first line number checked (inclusive); all when unset.
    pub from: Option<String>,
    /// The last line number checked (inclusive).
    pub to: Option<String>,
    /// The event store position the report is as of; its last position when unset.
    pub position: Option<i64>,
    /// How long a line that is not equal is checked again before it is reported.
    pub wait: Duration,
    /// Check the change requests against their events (reads every payload).
    pub views: bool,
    /// Lines per round of reads.
    pub chunk: usize,
    /// Stop after this many lines.
    pub limit: Option<u64>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            from: None,
            to: None,
            position: None,
            wait: Duration::from_secs(10),
            views: true,
            chunk: 2_000,
            limit: None,
        }
    }
}

/// Lines and events of one partition of the product-change topic. The hashes are the
/// XOR of its lines' ledger hashes (the order of lines does not matter; the order of
/// each line's events does).
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PartitionTotals {
    pub partition: i32,
    pub lines: u64,
    #[schema(value_type = LedgerDoc)]
    pub committed: Ledger,
    #[schema(value_type = LedgerDoc)]
    pub projected: Ledger,
    pub behind: u64,
    pub divergent: u64,
}

/// A reconciliation's outcome: counts for people and machines, the totals per partition,
/// and every line that is not equal.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// The event store position the report is as of.
    pub as_of_position: i64,
    pub lines: u64,
    pub equal: u64,
    pub behind: u64,
    pub divergent: u64,
    /// Events committed up to the cut, over the lines checked.
    pub events_committed: u64,
    /// Events the projector applied, over the lines checked.
    pub events_projected: u64,
    /// The age of the oldest committed event a line lacks without being parked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oldest_unexplained_lag_seconds: Option<f64>,
    pub views_checked: bool,
    pub redis_checked: bool,
    pub kos_checked: bool,
    /// The broker's read, when its stage was checked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub broker: Option<BrokerRead>,
    pub elapsed_ms: u64,
    pub partitions: Vec<PartitionTotals>,
    /// The lines that are not equal (the first 1,000), in line order.
    pub differences: Vec<LineReport>,
}

impl Report {
    /// A few lines for people.
    pub fn summary(&self) -> String {
        let mut out = format!(
            "{} lines as of event store position {}: {} equal, {} behind, {} divergent \
             ({} events committed, {} applied; {:.1} s)\n",
            self.lines,
            self.as_of_position,
            self.equal,
            self.behind,
            self.divergent,
            self.events_committed,
            self.events_projected,
            self.elapsed_ms as f64 / 1000.0
        );
        if let Some(lag) = self.oldest_unexplained_lag_seconds {
            out.push_str(&format!("oldest unexplained lag: {lag:.1} s\n"));
        }
        for d in self.differences.iter().take(20) {
            out.push_str(&format!("  {} {}", d.line, d.standing));
            if let Some(stage) = d.stage {
                out.push_str(&format!(" ({stage})"));
            }
            if let Some(by) = d.behind_by {
                out.push_str(&format!(" by {by}"));
            }
            if let Some(s) = d.first_difference {
                out.push_str(&format!(" at sequence {s}"));
            }
            if let Some(p) = d.parked_at {
                out.push_str(&format!(" (parked at {p})"));
            }
            if let Some(r) = &d.reason {
                out.push_str(&format!(": {r}"));
            }
            out.push('\n');
        }
        if self.differences.len() > 20 {
            out.push_str(&format!(
                "  ... {} more in the JSON report\n",
                self.differences.len() - 20
            ));
        }
        out
    }
}

/// What the broker's stage read.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BrokerRead {
    pub messages: u64,
    /// Messages that were not an event envelope.
    pub unreadable: u64,
    /// Partitions whose beginning retention removed: their lines' broker stage is not
    /// checked.
    pub truncated_partitions: Vec<i32>,
}

/// A ledger as reports show it ([`ledger::Ledger`]).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // the document's shape only
pub struct LedgerDoc {
    /// How many events.
    count: u64,
    /// XXH3 running hash over their ids, in order.
    hash: u64,
}

const MAX_DIFFERENCES: usize = 1_000;

/// Reconciles the lines `options` name; `progress` hears how many lines are done.
pub async fn run(
    sources: &Sources,
    options: &Options,
    mut progress: impl FnMut(u64),
) -> anyhow::Result<Report> {
    let started = Instant::now();
    let cut = match options.position {
        Some(p) => p,
        None => read::last_position(&sources.pool, &sources.event_store_schema).await?,
    };
    // The broker first: the event store, read later, then holds at least what it has.
    let published = match &sources.broker {
        Some((client, topic)) => {
            let (client, topic) = (client.clone(), topic.clone());
            Some(
                tokio::task::spawn_blocking(move || broker::Published::read(&client, &topic))
                    .await??,
            )
        }
        None => None,
    };
    let mut reports: Vec<LineReport> = vec![];
    let (mut start, mut inclusive) = (options.from.clone().unwrap_or_default(), true);
    loop {
        let remaining = options
            .limit
            .map_or(u64::MAX, |l| l.saturating_sub(reports.len() as u64));
        let take = (options.chunk as u64).min(remaining) as i64;
        if take == 0 {
            break;
        }
        let lines = read::next_lines(
            &sources.pool,
            &sources.event_store_schema,
            (&start, inclusive),
            options.to.as_deref(),
            take,
        )
        .await?;
        let Some(last) = lines.last().cloned() else {
            break;
        };
        reports.extend(check(sources, &lines, cut, options.views, published.as_ref()).await?);
        progress(reports.len() as u64);
        (start, inclusive) = (last, false);
    }
    settle(
        sources,
        &mut reports,
        cut,
        options.views,
        options.wait,
        published.as_ref(),
    )
    .await?;
    let mut out = report(sources, options, cut, reports, started.elapsed());
    if let Some(p) = &published {
        out.broker = Some(BrokerRead {
            messages: p.messages,
            unreadable: p.unreadable,
            truncated_partitions: p.truncated(),
        });
    }
    Ok(out)
}

/// Checks the lines of `reports` that are not equal (nor parked) again until they are or
/// `wait` has passed: events in flight are not differences.
pub async fn settle(
    sources: &Sources,
    reports: &mut [LineReport],
    cut: i64,
    views: bool,
    wait: Duration,
    published: Option<&broker::Published>,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + wait;
    loop {
        // The broker is read once per run: what a line's copy there lacks or holds wrong
        // cannot change by waiting.
        let pending: Vec<String> = reports
            .iter()
            .filter(|r| !r.is_equal() && r.parked_at.is_none())
            .filter(|r| r.stage != Some("broker"))
            .map(|r| r.line.clone())
            .collect();
        if pending.is_empty() || Instant::now() >= deadline {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
        let again: BTreeMap<String, LineReport> = check(sources, &pending, cut, views, published)
            .await?
            .into_iter()
            .map(|r| (r.line.clone(), r))
            .collect();
        for r in reports.iter_mut() {
            if let Some(new) = again.get(&r.line) {
                *r = new.clone();
            }
        }
    }
}

/// Judges `lines` once, as of `cut`.
pub async fn check(
    sources: &Sources,
    lines: &[String],
    cut: i64,
    views: bool,
    published: Option<&broker::Published>,
) -> anyhow::Result<Vec<LineReport>> {
    // Every stage first: the event store then holds at least what any of them has.
    let projected = read::projected(&sources.pool, lines, views).await?;
    let orders = match &sources.kos_schema {
        Some(schema) => Some(read::kos_orders(&sources.pool, schema, lines).await?),
        None => None,
    };
    let committed =
        read::committed(&sources.pool, &sources.event_store_schema, lines, views).await?;
    let now = Utc::now();
    let mut out = Vec::with_capacity(lines.len());
    for line in lines {
        let events = committed.get(line).map(Vec::as_slice).unwrap_or_default();
        let held = projected.get(line);
        let stages = judge::Stages {
            published: published.and_then(|p| p.of(line)),
            kos: orders
                .as_ref()
                .map(|o| o.get(line).cloned().unwrap_or_default()),
        };
        let empty = judge::Projected::default();
        out.push(judge::judge(
            line,
            events,
            held.unwrap_or(&empty),
            &stages,
            cut,
            now,
        ));
    }
    if let Some((redis, prefix)) = &sources.redis {
        // Each line's views are a few round trips: many lines at once.
        let todo: Vec<(usize, String, Vec<uuid::Uuid>)> = out
            .iter()
            .enumerate()
            .filter(|(_, r)| !r.is_divergent())
            .map(|(i, r)| {
                let requests = projected
                    .get(&r.line)
                    .map(|p| p.requests.keys().copied().collect())
                    .unwrap_or_default();
                (i, r.line.clone(), requests)
            })
            .collect();
        let pool = &sources.pool;
        let differences: Vec<(usize, Option<String>)> = futures::stream::iter(todo)
            .map(|(i, line, requests)| async move {
                let found =
                    read::redis_difference(pool, redis, prefix, &line, requests.into_iter())
                        .await?;
                anyhow::Ok((i, found))
            })
            .buffer_unordered(REDIS_CONCURRENCY)
            .try_collect()
            .await?;
        for (i, found) in differences {
            if let Some(reason) = found {
                out[i].divergent("redis", None, reason);
            }
        }
    }
    Ok(out)
}

/// Lines whose Redis views are checked at once.
const REDIS_CONCURRENCY: usize = 32;

fn report(
    sources: &Sources,
    options: &Options,
    cut: i64,
    reports: Vec<LineReport>,
    elapsed: Duration,
) -> Report {
    let mut partitions: BTreeMap<i32, PartitionTotals> = BTreeMap::new();
    let mut out = Report {
        as_of_position: cut,
        lines: reports.len() as u64,
        equal: 0,
        behind: 0,
        divergent: 0,
        events_committed: 0,
        events_projected: 0,
        oldest_unexplained_lag_seconds: None,
        views_checked: options.views,
        redis_checked: sources.redis.is_some(),
        kos_checked: sources.kos_schema.is_some(),
        broker: None,
        elapsed_ms: elapsed.as_millis() as u64,
        partitions: vec![],
        differences: vec![],
    };
    for r in reports {
        let partition = partition_for(&r.line, sources.partitions.max(1));
        let totals = partitions
            .entry(partition)
            .or_insert_with(|| PartitionTotals {
                partition,
                ..Default::default()
            });
        totals.lines += 1;
        totals.committed.count += r.committed.count;
        totals.committed.hash ^= r.committed.hash;
        totals.projected.count += r.projected.count;
        totals.projected.hash ^= r.projected.hash;
        out.events_committed += r.committed.count;
        out.events_projected += r.projected.count;
        match r.standing {
            "equal" => out.equal += 1,
            "behind" => {
                out.behind += 1;
                totals.behind += 1;
            }
            _ => {
                out.divergent += 1;
                totals.divergent += 1;
            }
        }
        if let Some(lag) = r.unexplained_lag() {
            out.oldest_unexplained_lag_seconds = Some(
                out.oldest_unexplained_lag_seconds
                    .map_or(lag, |o: f64| o.max(lag)),
            );
        }
        if !r.is_equal() && out.differences.len() < MAX_DIFFERENCES {
            out.differences.push(r);
        }
    }
    out.partitions = partitions.into_values().collect();
    out
}
