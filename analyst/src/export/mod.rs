//! `phonebill-analyst export`: the events of one topic, as the broker holds them, into a file for
//! analysts (JSONL, CSV or Parquet), optionally narrowed to a time window, event types
//! and one line.
//!
//! - Topic: named bare (`phonebill.product-change`); the configured topic prefix is put
//!   in front, as for every topic the projector reads.
//! - Reading: [`reader`], the shared bounded reader with manual assignment (the live
//!   `projector` group is never joined and its offsets never touched).
//! - Window: on the broker's timestamps (the times offsets-for-times finds), `since`
//!   inclusive, `until` exclusive; a message without one is judged by its envelope's
//!   `occurred_at`.
//! - Rows: [`record::Record`], the envelope's fields, the message's topic, partition,
//!   offset and timestamp, and the payload. Messages whose envelope does not decode are
//!   counted and skipped, with a few examples in the report.
//! - Files: the JSONL records are written first (next to the output); CSV and Parquet
//!   are made from them in a second pass, once the union of columns is known
//!   ([`formats`]). The output appears under its name only when complete.

pub mod formats;
pub mod reader;
pub mod record;

use std::collections::{BTreeMap, HashSet};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use chrono::{DateTime, Utc};
use events::{codec, Envelope};
use rdkafka::message::BorrowedMessage;
use rdkafka::{ClientConfig, Message};
use serde::Serialize;

use projector::configuration::Config;
use record::{Columns, Position, Record};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// One JSON object per line, the payload nested.
    Jsonl,
    /// The payload flattened into dotted columns.
    Csv,
    /// The same columns as CSV, typed where every row agrees.
    Parquet,
}

/// How a Parquet file's pages are compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ParquetCompression {
    /// Smaller files; what analysts' tools read by default.
    #[default]
    Zstd,
    /// Faster to write, larger.
    Snappy,
    None,
}

#[derive(Debug, Clone)]
pub struct ExportOptions {
    /// The topic's name without the configured prefix.
    pub topic: String,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    /// Keep only these event types (all when empty).
    pub event_types: Vec<String>,
    /// Keep only this line's events (aggregate id or message key).
    pub line: Option<String>,
    pub format: Format,
    /// Parquet only.
    pub compression: ParquetCompression,
    pub out: PathBuf,
}

/// What an export did, printed as JSON at its end.
#[derive(Debug, Default, Clone, Serialize)]
pub struct ExportReport {
    pub topic: String,
    pub out: String,
    /// Messages read from the broker (in and out of the window).
    pub messages: u64,
    pub rows: u64,
    pub rows_by_type: BTreeMap<String, u64>,
    pub outside_window: u64,
    /// In the window, left out by `--event-type` or `--line`.
    pub filtered_out: u64,
    /// Not an envelope: skipped.
    pub undecodable: u64,
    /// The first few undecodable messages: where, and why.
    pub undecodable_examples: Vec<String>,
    pub columns: usize,
    pub seconds: f64,
}

const EXAMPLES: usize = 10;

pub async fn run(config: &Config, options: ExportOptions) -> anyhow::Result<ExportReport> {
    if let (Some(since), Some(until)) = (options.since, options.until) {
        anyhow::ensure!(since < until, "--since must be before --until");
    }
    let client = service_kit::kafka::client_config(&config.kafka, "projector-export");
    let topic = format!("{}{}", config.kafka.topic_prefix, options.topic);
    tokio::task::spawn_blocking(move || export(&client, &topic, &options)).await?
}

fn export(
    client: &ClientConfig,
    topic: &str,
    options: &ExportOptions,
) -> anyhow::Result<ExportReport> {
    let started = Instant::now();
    let out = &options.out;
    let partial = with_suffix(out, ".partial");
    // JSONL is the records file itself; the other formats are made from it.
    let records = match options.format {
        Format::Jsonl => partial.clone(),
        Format::Csv | Format::Parquet => with_suffix(out, ".records.partial"),
    };
    let result = (|| {
        let (mut report, columns) = write_records(client, topic, options, &records)?;
        let columns = columns.list();
        report.columns = columns.len();
        match options.format {
            Format::Jsonl => {}
            Format::Csv => formats::write_csv(&records, &columns, &partial)?,
            Format::Parquet => {
                formats::write_parquet(&records, &columns, &partial, options.compression)?
            }
        }
        std::fs::rename(&partial, out)
            .with_context(|| format!("renaming {} to {}", partial.display(), out.display()))?;
        report.seconds = started.elapsed().as_secs_f64();
        Ok(report)
    })();
    if records != partial {
        let _ = std::fs::remove_file(&records);
    }
    if result.is_err() {
        let _ = std::fs::remove_file(&partial);
    }
    result
}

/// The first pass: each envelope of the topic inside the window that the filter keeps, as
/// one JSONL record in `records` (synced); the report so far and the payload columns seen.
fn write_records(
    client: &ClientConfig,
    topic: &str,
    options: &ExportOptions,
    records: &Path,
) -> anyhow::Result<(ExportReport, Columns)> {
    let mut report = ExportReport {
        topic: topic.to_owned(),
        out: options.out.display().to_string(),
        ..Default::default()
    };
    let file = File::create(records).with_context(|| format!("creating {}", records.display()))?;
    let mut writer = BufWriter::new(file);
    let mut columns = Columns::default();
    let filter = Filter::new(options);
    reader::read(client, topic, options.since, options.until, |m| {
        report.messages += 1;
        let timestamp = m
            .timestamp()
            .to_millis()
            .and_then(DateTime::<Utc>::from_timestamp_millis);
        if timestamp.is_some_and(|t| !filter.in_window(t)) {
            report.outside_window += 1;
            return Ok(());
        }
        // A batch (query-service's inquiries) is one row per envelope.
        let envelopes = match codec::decode_envelopes(m.payload().unwrap_or_default()) {
            Ok(envelopes) => envelopes,
            Err(e) => {
                report.undecodable += 1;
                if report.undecodable_examples.len() < EXAMPLES {
                    report.undecodable_examples.push(format!(
                        "partition {} offset {}: {e}",
                        m.partition(),
                        m.offset()
                    ));
                }
                return Ok(());
            }
        };
        for envelope in &envelopes {
            if timestamp.is_none() && !filter.in_window(envelope.occurred_at) {
                report.outside_window += 1;
                continue;
            }
            if !filter.keeps(envelope, m) {
                report.filtered_out += 1;
                continue;
            }
            let at = Position {
                topic,
                partition: m.partition(),
                offset: m.offset(),
                timestamp,
            };
            serde_json::to_writer(&mut writer, &Record::new(envelope, &at))?;
            writer.write_all(b"\n")?;
            columns.observe(&envelope.payload);
            report.rows += 1;
            *report
                .rows_by_type
                .entry(envelope.event_type.clone())
                .or_default() += 1;
        }
        Ok(())
    })?;
    writer
        .into_inner()
        .map_err(|e| e.into_error())?
        .sync_all()?;
    Ok((report, columns))
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// Which messages become rows.
struct Filter {
    since: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
    event_types: HashSet<String>,
    line: Option<String>,
}

impl Filter {
    fn new(options: &ExportOptions) -> Self {
        Self {
            since: options.since,
            until: options.until,
            event_types: options.event_types.iter().cloned().collect(),
            line: options.line.clone(),
        }
    }

    fn in_window(&self, t: DateTime<Utc>) -> bool {
        self.since.is_none_or(|s| t >= s) && self.until.is_none_or(|u| t < u)
    }

    /// By event type, and by line: the envelope's aggregate id, the message key (the key
    /// is the line for every event about a line, whatever its aggregate) or the payload's
    /// `line_number` (a batch of inquiries has no key).
    fn keeps(&self, envelope: &Envelope, m: &BorrowedMessage<'_>) -> bool {
        self.keeps_parts(envelope, m.key())
    }

    fn keeps_parts(&self, envelope: &Envelope, key: Option<&[u8]>) -> bool {
        let type_ok =
            self.event_types.is_empty() || self.event_types.contains(&envelope.event_type);
        let line_ok = self.line.as_deref().is_none_or(|line| {
            envelope.aggregate_id == line
                || key.is_some_and(|k| k == line.as_bytes())
                || envelope.payload.get("line_number").and_then(|l| l.as_str()) == Some(line)
        });
        type_ok && line_ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use uuid::Uuid;

    fn options(event_types: &[&str], line: Option<&str>) -> ExportOptions {
        ExportOptions {
            topic: "phonebill.product-change".into(),
            since: Some(Utc.with_ymd_and_hms(2026, 3, 1, 0, 0, 0).unwrap()),
            until: Some(Utc.with_ymd_and_hms(2026, 4, 1, 0, 0, 0).unwrap()),
            event_types: event_types.iter().map(|t| (*t).to_owned()).collect(),
            line: line.map(str::to_owned),
            format: Format::Jsonl,
            compression: ParquetCompression::default(),
            out: "out.jsonl".into(),
        }
    }

    fn envelope(event_type: &str, aggregate_id: &str) -> Envelope {
        Envelope {
            event_id: Uuid::nil(),
            event_type: event_type.into(),
            event_version: 1,
            aggregate_id: aggregate_id.into(),
            sequence: 1,
            occurred_at: Utc::now(),
            correlation_id: Uuid::nil(),
            causation_id: Uuid::nil(),
            payload: serde_json::json!({}),
        }
    }

    #[test]
    fn the_window_includes_since_and_excludes_until() {
        let filter = Filter::new(&options(&[], None));

        assert!(filter.in_window(Utc.with_ymd_and_hms(2026, 3, 1, 0, 0, 0).unwrap()));
        assert!(filter.in_window(Utc.with_ymd_and_hms(2026, 3, 31, 23, 59, 59).unwrap()));
        assert!(!filter.in_window(Utc.with_ymd_and_hms(2026, 4, 1, 0, 0, 0).unwrap()));
        assert!(!filter.in_window(Utc.with_ymd_and_hms(2026, 2, 28, 23, 59, 59).unwrap()));
    }

    #[test]
    fn event_types_keep_any_of_those_named() {
        let filter = Filter::new(&options(&["BillIssued", "PaymentRecorded"], None));

        assert!(filter.keeps_parts(&envelope("BillIssued", "010-0000-0001"), None));
        assert!(filter.keeps_parts(&envelope("PaymentRecorded", "010-0000-0001"), None));
        assert!(!filter.keeps_parts(&envelope("LineRegistered", "010-0000-0001"), None));
    }

    #[test]
    fn a_line_matches_the_aggregate_id_or_the_message_key() {
        let filter = Filter::new(&options(&[], Some("010-0000-0001")));

        assert!(filter.keeps_parts(&envelope("BillIssued", "010-0000-0001"), None));
        assert!(filter.keeps_parts(
            &envelope("BillInquired", "some-inquiry"),
            Some(b"010-0000-0001")
        ));
        assert!(!filter.keeps_parts(
            &envelope("BillIssued", "010-0000-0002"),
            Some(b"010-0000-0002")
        ));
    }

    #[test]
    fn an_inquiry_of_a_batch_has_no_key_and_matches_by_its_payload_s_line() {
        let filter = Filter::new(&options(&[], Some("010-0000-0001")));
        let inquiry = |line: &str| Envelope {
            payload: serde_json::json!({"line_number": line, "month": "2026-03"}),
            ..envelope("BillInquired", "some-inquiry")
        };

        assert!(filter.keeps_parts(&inquiry("010-0000-0001"), None));
        assert!(!filter.keeps_parts(&inquiry("010-0000-0002"), None));
    }
}
