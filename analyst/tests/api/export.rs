//! `phonebill-analyst export` against the broker: what is published on a topic is what the file
//! holds, in every format, narrowed by event type, line and time window.

use std::path::{Path, PathBuf};
use std::time::Duration;

use analyst::export::{self, ExportOptions, ExportReport, Format};
use chrono::{DateTime, Utc};
use events::topics::Topics;
use events::{codec, Envelope};
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::record::Field;
use projector::configuration::Config;
use uuid::Uuid;

use crate::helpers::*;

const LINES: u32 = 4;

/// Publishes a mixed history on `kos.billing`: two products, then per line a
/// registration, two bills and a payment; then one message that is not an envelope.
/// Returns the envelopes published.
async fn publish_billing_history(config: &Config) -> Vec<Envelope> {
    create_topics(config).await;
    let topic = Topics::new(&config.kafka.topic_prefix).kos_billing();
    let mut messages = vec![
        (
            "5G-STANDARD-001".to_owned(),
            kos_event(1, &product("5G-STANDARD-001", 69000)),
        ),
        (
            "5G-PREMIUM-001".to_owned(),
            kos_event(1, &product("5G-PREMIUM-001", 89000)),
        ),
    ];
    for n in 1..=LINES {
        let l = line(n);
        for (sequence, fact) in [
            registered(&l),
            bill(&l, "2026-01", 65000),
            bill(&l, "2026-02", 66000),
            payment(&l, "2026-01"),
        ]
        .iter()
        .enumerate()
        {
            messages.push((l.clone(), kos_event(sequence as u64 + 1, fact)));
        }
    }
    let producer = producer();
    for (key, bytes) in &messages {
        publish(&producer, &topic, key, bytes).await;
    }
    publish(&producer, &topic, "garbage", b"{not json").await;
    messages
        .iter()
        .map(|(_, bytes)| codec::decode_envelope(bytes).unwrap())
        .collect()
}

/// A fresh folder for one test's files.
fn scratch() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("phonebill-export-{}", Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn options(format: Format, out: &Path) -> ExportOptions {
    ExportOptions {
        topic: events::topics::KOS_BILLING.into(),
        since: None,
        until: None,
        event_types: vec![],
        line: None,
        format,
        compression: Default::default(),
        out: out.to_owned(),
    }
}

/// Runs an export; fails the test instead of hanging if the broker never answers.
async fn run_export(config: &Config, options: ExportOptions) -> ExportReport {
    tokio::time::timeout(Duration::from_secs(60), export::run(config, options))
        .await
        .expect("the export ends")
        .expect("the export succeeds")
}

fn ids(envelopes: impl IntoIterator<Item = Envelope>) -> Vec<Uuid> {
    let mut ids: Vec<Uuid> = envelopes.into_iter().map(|e| e.event_id).collect();
    ids.sort();
    ids
}

/// The event ids in an exported file, in file order.
fn ids_in(format: Format, path: &Path) -> Vec<Uuid> {
    match format {
        Format::Jsonl => std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(|line| {
                let row: serde_json::Value = serde_json::from_str(line).unwrap();
                row["event_id"].as_str().unwrap().parse().unwrap()
            })
            .collect(),
        Format::Csv => {
            let mut csv = csv::Reader::from_path(path).unwrap();
            let column = csv_column(&mut csv, "event_id");
            csv.records()
                .map(|r| r.unwrap()[column].parse().unwrap())
                .collect()
        }
        Format::Parquet => parquet_rows(path)
            .iter()
            .map(|row| match &row["event_id"] {
                Field::Str(id) => id.parse().unwrap(),
                other => panic!("event_id is {other:?}"),
            })
            .collect(),
    }
}

fn csv_column(csv: &mut csv::Reader<std::fs::File>, name: &str) -> usize {
    csv.headers()
        .unwrap()
        .iter()
        .position(|h| h == name)
        .unwrap_or_else(|| panic!("no column {name}"))
}

/// Every row of a Parquet file as column name → value, read with the crate's reader.
fn parquet_rows(path: &Path) -> Vec<std::collections::HashMap<String, Field>> {
    let reader = SerializedFileReader::new(std::fs::File::open(path).unwrap()).unwrap();
    reader
        .get_row_iter(None)
        .unwrap()
        .map(|row| {
            row.unwrap()
                .get_column_iter()
                .map(|(name, field)| (name.clone(), field.clone()))
                .collect()
        })
        .collect()
}

fn sorted(mut ids: Vec<Uuid>) -> Vec<Uuid> {
    ids.sort();
    ids
}

#[tokio::test]
async fn given_mixed_events_on_a_topic_when_exported_as_jsonl_csv_and_parquet_then_each_file_holds_every_event_once_and_nothing_else(
) {
    // Given: 18 events of four types and one undecodable message.
    let config = test_config();
    let published = publish_billing_history(&config).await;
    let dir = scratch();

    for format in [Format::Jsonl, Format::Csv, Format::Parquet] {
        // When
        let out = dir.join(format!("billing.{format:?}"));
        let report = run_export(&config, options(format, &out)).await;

        // Then
        assert_eq!(
            report.rows,
            published.len() as u64,
            "{format:?}: {report:?}"
        );
        assert_eq!(report.undecodable, 1, "{format:?}: {report:?}");
        assert_eq!(report.rows_by_type["BillIssued"], 2 * LINES as u64);
        assert_eq!(
            sorted(ids_in(format, &out)),
            ids(published.clone()),
            "{format:?}: the exported ids are the published ones, each once"
        );
        assert!(
            std::fs::read_dir(&dir).unwrap().all(|e| !e
                .unwrap()
                .path()
                .to_string_lossy()
                .ends_with(".partial")),
            "no partial file is left behind"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn given_events_of_several_shapes_when_exported_as_csv_then_columns_are_the_union_of_the_dotted_payload_fields(
) {
    let config = test_config();
    publish_billing_history(&config).await;
    let dir = scratch();
    let out = dir.join("billing.csv");

    run_export(&config, options(Format::Csv, &out)).await;

    let mut csv = csv::Reader::from_path(&out).unwrap();
    let (event_type, ends_on, discounts, product_name, topic) = (
        csv_column(&mut csv, "event_type"),
        csv_column(&mut csv, "payload.contract.ends_on"),
        csv_column(&mut csv, "payload.discounts"),
        csv_column(&mut csv, "payload.name"),
        csv_column(&mut csv, "kafka_topic"),
    );
    for record in csv.records() {
        let record = record.unwrap();
        assert_eq!(
            &record[topic],
            Topics::new(&config.kafka.topic_prefix).kos_billing()
        );
        match &record[event_type] {
            "BillIssued" => {
                assert_eq!(&record[ends_on], "2026-12-31");
                assert_eq!(&record[discounts], r#"[{"amount":5000,"name":"family"}]"#);
                assert_eq!(&record[product_name], "", "a bill has no product name");
            }
            "ProductPublished" => {
                assert_eq!(&record[ends_on], "", "a product has no contract");
                assert!(record[product_name].starts_with("name of "));
            }
            _ => {}
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn given_events_exported_as_parquet_then_numbers_and_times_are_typed_and_the_rest_is_text() {
    let config = test_config();
    let published = publish_billing_history(&config).await;
    let dir = scratch();
    let out = dir.join("billing.parquet");

    run_export(&config, options(Format::Parquet, &out)).await;

    let rows = parquet_rows(&out);
    let bill = rows
        .iter()
        .find(|r| r["event_type"] == Field::Str("BillIssued".into()))
        .unwrap();
    assert_eq!(bill["payload.total_amount"], Field::Long(65000));
    assert_eq!(bill["payload.month"], Field::Str("2026-01".into()));
    let id: Uuid = match &bill["event_id"] {
        Field::Str(id) => id.parse().unwrap(),
        other => panic!("{other:?}"),
    };
    let envelope = published.iter().find(|e| e.event_id == id).unwrap();
    assert_eq!(
        bill["occurred_at"],
        Field::TimestampMicros(envelope.occurred_at.timestamp_micros())
    );
    let product = rows
        .iter()
        .find(|r| r["event_type"] == Field::Str("ProductPublished".into()))
        .unwrap();
    assert_eq!(product["payload.total_amount"], Field::Null);
    assert_eq!(product["payload.on_sale"], Field::Bool(true));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn given_mixed_events_when_exported_with_event_types_and_a_line_then_exactly_the_matching_ones_are_written(
) {
    let config = test_config();
    let published = publish_billing_history(&config).await;
    let dir = scratch();
    let wanted = line(2);
    let money = |e: &Envelope| ["BillIssued", "PaymentRecorded"].contains(&e.event_type.as_str());

    for (event_types, line, expected) in [
        (
            vec!["BillIssued", "PaymentRecorded"],
            None,
            ids(published.iter().filter(|e| money(e)).cloned()),
        ),
        (
            vec![],
            Some(wanted.clone()),
            ids(published
                .iter()
                .filter(|e| e.aggregate_id == wanted)
                .cloned()),
        ),
        (
            vec!["BillIssued", "PaymentRecorded"],
            Some(wanted.clone()),
            ids(published
                .iter()
                .filter(|e| money(e) && e.aggregate_id == wanted)
                .cloned()),
        ),
    ] {
        let out = dir.join(format!("{}.jsonl", Uuid::new_v4().simple()));
        let mut options = options(Format::Jsonl, &out);
        options.event_types = event_types.iter().map(|t| (*t).to_owned()).collect();
        options.line = line.clone();

        let report = run_export(&config, options).await;

        assert!(!expected.is_empty());
        assert_eq!(
            sorted(ids_in(Format::Jsonl, &out)),
            expected,
            "types {event_types:?}, line {line:?}"
        );
        assert_eq!(
            report.filtered_out,
            (published.len() - expected.len()) as u64
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The time `minutes` after `base`.
fn plus(base: DateTime<Utc>, minutes: i64) -> DateTime<Utc> {
    base + chrono::Duration::minutes(minutes)
}

#[tokio::test]
async fn given_events_stamped_before_inside_and_after_a_window_when_exported_with_since_and_until_then_only_those_inside_are_written(
) {
    // Given: three phases of bills, stamped 20 minutes apart; each phase is published
    // at once, so the producer packs records into multi-record batches.
    let config = test_config();
    create_topics(&config).await;
    let topic = Topics::new(&config.kafka.topic_prefix).kos_billing();
    let producer = producer();
    let base = Utc::now() - chrono::Duration::hours(2);
    let mut inside = vec![];
    for (phase, month) in ["2026-01", "2026-02", "2026-03"].iter().enumerate() {
        let at = plus(base, 20 * phase as i64);
        let sends = (1..=12).map(|n| {
            let l = line(n);
            let bytes = kos_event(phase as u64 + 1, &bill(&l, month, 60000));
            if phase == 1 {
                inside.push(codec::decode_envelope(&bytes).unwrap());
            }
            let (producer, topic) = (producer.clone(), topic.clone());
            async move { publish_at(&producer, &topic, &l, &bytes, at).await }
        });
        futures::future::join_all(sends.collect::<Vec<_>>()).await;
    }
    let dir = scratch();
    let out = dir.join("window.jsonl");
    let mut options = options(Format::Jsonl, &out);
    options.since = Some(plus(base, 10));
    options.until = Some(plus(base, 30));

    // When
    let report = run_export(&config, options).await;

    // Then
    assert_eq!(
        sorted(ids_in(Format::Jsonl, &out)),
        ids(inside),
        "{report:?}"
    );
    assert_eq!(report.rows, 12);
    assert_eq!(report.messages, report.rows + report.outside_window);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn given_a_topic_that_does_not_exist_then_the_export_says_so_and_leaves_no_file() {
    let config = test_config();
    let dir = scratch();
    let out = dir.join("none.jsonl");
    let mut options = options(Format::Jsonl, &out);
    options.topic = "no-such-topic".into();

    let error = export::run(&config, options).await.unwrap_err();

    assert!(
        error.to_string().contains("is not on the broker"),
        "{error:#}"
    );
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn given_each_parquet_compression_then_the_file_uses_it_and_holds_the_same_rows() {
    use analyst::export::ParquetCompression;
    use parquet::basic::Compression;
    let config = test_config();
    publish_billing_history(&config).await;
    let dir = scratch();
    let mut rows_by_compression = vec![];
    for (choice, expected) in [
        (ParquetCompression::Zstd, "ZSTD"),
        (ParquetCompression::Snappy, "SNAPPY"),
        (ParquetCompression::None, "UNCOMPRESSED"),
    ] {
        // When: exported with this compression
        let out = dir.join(format!("billing-{expected}.parquet"));
        let mut export = options(Format::Parquet, &out);
        export.compression = choice;
        run_export(&config, export).await;

        // Then: every column chunk is compressed so
        let reader = SerializedFileReader::new(std::fs::File::open(&out).unwrap()).unwrap();
        let meta = reader.metadata();
        assert!(meta.num_row_groups() > 0);
        for group in meta.row_groups() {
            for column in group.columns() {
                let name = match column.compression() {
                    Compression::ZSTD(_) => "ZSTD",
                    Compression::SNAPPY => "SNAPPY",
                    Compression::UNCOMPRESSED => "UNCOMPRESSED",
                    other => panic!("{other:?}"),
                };
                assert_eq!(name, expected);
            }
        }
        let mut ids = ids_in(Format::Parquet, &out);
        ids.sort();
        rows_by_compression.push(ids);
    }
    // and the rows are the same whichever it was
    assert!(!rows_by_compression[0].is_empty());
    assert!(rows_by_compression.windows(2).all(|w| w[0] == w[1]));
    std::fs::remove_dir_all(&dir).unwrap();
}
