//! The analyst's command line: one subcommand per tool, over the projector's own
//! configuration (the same `PHONEBILL_*` variables and flags, parsed by the projector's
//! [`Config`]), so deployments and scripts set them once for both binaries.

use clap::{Args, Parser, Subcommand};
pub use projector::configuration::Config;

#[derive(Debug, Parser)]
#[command(
    name = "phonebill-analyst",
    about = "phonebill analyst tools: replays into namespaces, switches, comparisons, a line as of a moment, topic exports"
)]
pub struct Cli {
    #[command(flatten)]
    pub config: Config,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Rebuild every view from the event streams into a fresh namespace (schema
    /// `<schema>_<id>`, key prefix `<prefix><id>:`) while the live one keeps serving;
    /// `--switch` then makes it the one query-service serves. Run again with the same
    /// `--id` to resume an interrupted replay.
    Replay(ReplayArgs),
    /// List the namespaces (JSON lines).
    Namespaces,
    /// Make a built namespace the active one (query-service and projectors follow),
    /// once it reconciles with the event store: no line divergent (`--force` switches
    /// anyway).
    Switch {
        id: String,
        /// Switch even when lines of the namespace differ from the event store.
        #[arg(long)]
        force: bool,
    },
    /// Drop a namespace that is not active (its schema and its Redis views).
    DropNamespace { id: String },
    /// Compare a namespace's views with the active namespace's (read tables and Redis
    /// views; bill inquiries left out): prints a JSON report, exits 1 when they differ.
    /// After `replay --id X`, `compare X` checks that the live views equal a rebuild.
    Compare { id: String },
    /// Print a line's state (product, pending change, status) as of a moment, computed
    /// from its events on the broker (JSON).
    AsOf(AsOfArgs),
    /// Write one topic's events, as the broker holds them, to a JSONL, CSV or Parquet
    /// file (analysts); prints a JSON report. Needs the broker only.
    Export(ExportArgs),
    /// Prove that nothing was lost: compare every line's committed events (the event
    /// store) with what the projector applied and what its views show. Prints a summary,
    /// or the JSON report with `--json`; exits 1 when a line is divergent.
    Reconcile(ReconcileArgs),
}

#[derive(Debug, Clone, Args)]
pub struct ReconcileArgs {
    /// The first line number checked (inclusive); from the first line when absent.
    #[arg(long)]
    pub from: Option<String>,
    /// The last line number checked (inclusive).
    #[arg(long)]
    pub to: Option<String>,
    /// At most this many lines.
    #[arg(long)]
    pub limit: Option<u64>,
    /// The event store position the report is as of (default: its last position when the
    /// run starts). Events committed after it do not make a line behind.
    #[arg(long)]
    pub position: Option<i64>,
    /// Seconds a line that is not equal may take to catch up before it is reported.
    #[arg(long, default_value_t = 10)]
    pub wait_secs: u64,
    /// Check the ledgers only, not the change requests against their events.
    #[arg(long)]
    pub no_views: bool,
    /// Also check every Redis view present against the read tables.
    #[arg(long)]
    pub redis: bool,
    /// Also read the product-change topic to its end and check each line's messages
    /// (what the relay published) against the event store.
    #[arg(long)]
    pub broker: bool,
    /// Also check KOS's orders (kos-mock's schema in the same database) against the
    /// changes sent to KOS.
    #[arg(long)]
    pub kos_schema: Option<String>,
    /// A namespace other than the active one.
    #[arg(long)]
    pub namespace: Option<String>,
    /// Print the JSON report instead of the summary.
    #[arg(long)]
    pub json: bool,
    /// No progress spinner.
    #[arg(long)]
    pub quiet: bool,
}

#[derive(Debug, Clone, Args)]
pub struct AsOfArgs {
    /// The line number (010-1234-5678).
    #[arg(long)]
    pub line: String,
    /// The moment (RFC 3339, e.g. 2026-03-01T00:00:00Z).
    #[arg(long)]
    pub at: chrono::DateTime<chrono::Utc>,
}

#[derive(Debug, Clone, Args)]
pub struct ExportArgs {
    /// Topic name without the prefix (`phonebill.product-change`); the configured
    /// `PHONEBILL_TOPIC_PREFIX` is put in front.
    #[arg(long)]
    pub topic: String,
    /// Only events the broker stamped at or after this time (RFC 3339).
    #[arg(long)]
    pub since: Option<chrono::DateTime<chrono::Utc>>,
    /// Only events the broker stamped before this time (RFC 3339).
    #[arg(long)]
    pub until: Option<chrono::DateTime<chrono::Utc>>,
    /// Only this event type (repeat for several).
    #[arg(long = "event-type")]
    pub event_types: Vec<String>,
    /// Only this line's events (envelope aggregate id or message key), e.g. 010-1234-5678.
    #[arg(long)]
    pub line: Option<String>,
    #[arg(long, value_enum)]
    pub format: crate::export::Format,
    /// Parquet's page compression.
    #[arg(long, value_enum, default_value_t = crate::export::ParquetCompression::Zstd)]
    pub compression: crate::export::ParquetCompression,
    /// The file to write (replaced when the export completes).
    #[arg(long)]
    pub out: std::path::PathBuf,
}

#[derive(Debug, Clone, Args)]
pub struct ReplayArgs {
    /// Namespace id (lower-case letters, digits, `_`); default `r<yyyymmddhhmmss>`.
    #[arg(long)]
    pub id: Option<String>,
    /// Only events the broker stamped at or after this time (RFC 3339).
    #[arg(long)]
    pub since: Option<chrono::DateTime<chrono::Utc>>,
    /// Only events the broker stamped before this time (RFC 3339).
    #[arg(long)]
    pub until: Option<chrono::DateTime<chrono::Utc>>,
    /// Switch to the new namespace when it is built (full replays only).
    #[arg(long)]
    pub switch: bool,
    /// Switch even when lines of the new namespace differ from the event store.
    #[arg(long, requires = "switch")]
    pub force: bool,
    /// After the switch, drop the namespace that was active.
    #[arg(long, requires = "switch")]
    pub drop_old: bool,
    /// Seconds between the switch and dropping the old namespace (followers move over).
    #[arg(long, default_value_t = 10)]
    pub drop_grace_secs: u64,
    /// Events held in memory between bulk writes.
    #[arg(long, default_value_t = 5_000)]
    pub flush_every: usize,
    /// Memory for the rows (views, checkpoints) kept between flushes, MiB; rows the
    /// replay has passed leave it and are read back from PostgreSQL when needed. The
    /// process needs about 200 MiB more (the readers' queues, the Bloom filter of written
    /// keys, a flush in flight per worker, the allocator's reserve).
    #[arg(long, default_value_t = 32)]
    pub memory_mib: usize,
    /// Appliers side by side, each owning the partitions numbered alike modulo this
    /// (per-line order is per partition).
    #[arg(long, default_value_t = 1)]
    pub workers: usize,
    /// No progress bar (nor, off a terminal, progress lines).
    #[arg(long)]
    pub quiet: bool,
    /// Print what would be read (each topic's source, partitions and offsets, the events
    /// to read) as JSON and stop: nothing is created or written.
    #[arg(long)]
    pub dry_run: bool,
    /// Where product-change events come from: `auto` reads the broker, or the event store
    /// when the broker no longer holds the topic's beginning.
    #[arg(long, value_enum, default_value_t = crate::replay::HistorySource::Auto)]
    pub source: crate::replay::HistorySource,
    /// Stop after about this many events, everything so far kept (a replay in slices):
    /// the same `--id` goes on from there.
    #[arg(long)]
    pub max_events: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn export_takes_repeated_event_types_and_a_format() {
        let cli = Cli::try_parse_from([
            "phonebill-analyst",
            "export",
            "--topic",
            "kos.billing",
            "--event-type",
            "BillIssued",
            "--event-type",
            "PaymentRecorded",
            "--since",
            "2026-03-01T00:00:00Z",
            "--format",
            "parquet",
            "--out",
            "bills.parquet",
        ])
        .unwrap();

        let Command::Export(args) = cli.command else {
            panic!("not an export: {:?}", cli.command);
        };
        assert_eq!(args.event_types, ["BillIssued", "PaymentRecorded"]);
        assert_eq!(args.format, crate::export::Format::Parquet);
        assert!(args.since.is_some() && args.until.is_none());
    }

    #[test]
    fn the_configuration_is_the_projectors() {
        let cli = Cli::try_parse_from(["phonebill-analyst", "namespaces"]).unwrap();
        assert_eq!(cli.config.database.schema, "read");
        assert_eq!(cli.config.consumer_group, "projector");
        assert!(matches!(cli.command, Command::Namespaces));
    }
}
