//! The tabular formats, written from the JSONL records of an export (read back line by
//! line, so memory holds one row group, not the whole export).
//!
//! - CSV: a header of every column, then one line per record; null is an empty cell. A
//!   text cell that a spreadsheet would run as a formula (it begins with `=`, `+`, `-`,
//!   `@`, a tab or a carriage return) is written with a leading `'`, as OWASP advises for
//!   CSV meant to be opened in one; numbers are written as they are.
//! - Parquet: one flat schema, every column optional; integers, floats, booleans and
//!   timestamps typed when every row agrees ([`Kind`]), the rest UTF-8. Written with
//!   the low-level column writers (no Arrow: it would triple the projector's build).

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter};
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use chrono::{DateTime, Utc};
use parquet::basic::{Compression, LogicalType, Repetition, TimeUnit, Type as Physical, ZstdLevel};
use parquet::data_type::{BoolType, ByteArray, ByteArrayType, DataType, DoubleType, Int64Type};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::{SerializedColumnWriter, SerializedFileWriter};
use parquet::schema::types::Type;

use super::ParquetCompression;
use serde_json::Value;

use super::record::{flatten, text, Column, Kind};

/// `text` as a spreadsheet shows it rather than runs it (CSV injection).
fn inert(text: &str) -> std::borrow::Cow<'_, str> {
    if text.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{text}").into()
    } else {
        text.into()
    }
}

/// A Parquet row group is written once its records reach this size as JSON (they are
/// held in memory until then, a few times larger parsed): groups of a size readers
/// handle well whatever the records' width, and memory bounded by it.
const ROW_GROUP_BYTES: usize = 8 << 20;

pub fn write_csv(records: &Path, columns: &[Column], out: &Path) -> anyhow::Result<()> {
    let file = File::create(out).with_context(|| format!("creating {}", out.display()))?;
    let mut csv = csv::Writer::from_writer(BufWriter::new(file));
    csv.write_record(columns.iter().map(|c| inert(&c.name).into_owned()))?;
    for_each_record(records, |record, _| {
        let flat = flatten(record);
        let cells = columns.iter().map(|c| match flat.get(&c.name) {
            Some(Value::String(s)) => inert(s).into_owned(),
            other => other.and_then(|v| text(v)).unwrap_or_default().into_owned(),
        });
        csv.write_record(cells)?;
        Ok(())
    })?;
    csv.flush()?;
    Ok(())
}

pub fn write_parquet(
    records: &Path,
    columns: &[Column],
    out: &Path,
    compression: ParquetCompression,
) -> anyhow::Result<()> {
    let schema = Arc::new(schema(columns)?);
    let compression = match compression {
        ParquetCompression::Zstd => Compression::ZSTD(ZstdLevel::default()),
        ParquetCompression::Snappy => Compression::SNAPPY,
        ParquetCompression::None => Compression::UNCOMPRESSED,
    };
    let properties = Arc::new(
        WriterProperties::builder()
            .set_compression(compression)
            .set_created_by(format!("phonebill projector {}", env!("CARGO_PKG_VERSION")))
            .build(),
    );
    let file = File::create(out).with_context(|| format!("creating {}", out.display()))?;
    let mut writer = SerializedFileWriter::new(BufWriter::new(file), schema, properties)?;
    let mut batch: Vec<Value> = vec![];
    let mut batch_bytes = 0;
    let mut write_group = |batch: &mut Vec<Value>| -> anyhow::Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let rows: Vec<_> = batch.iter().map(flatten).collect();
        let mut group = writer.next_row_group()?;
        for column in columns {
            let mut out = group
                .next_column()?
                .context("the schema has a writer per column")?;
            let cells = rows.iter().map(|row| row.get(&column.name).copied());
            match column.kind {
                Kind::Text => write_column::<ByteArrayType>(&mut out, cells, |v| {
                    text(v).map(|t| ByteArray::from(t.as_bytes().to_vec()))
                })?,
                Kind::Integer => write_column::<Int64Type>(&mut out, cells, Value::as_i64)?,
                Kind::Float => write_column::<DoubleType>(&mut out, cells, Value::as_f64)?,
                Kind::Boolean => write_column::<BoolType>(&mut out, cells, Value::as_bool)?,
                Kind::Timestamp => write_column::<Int64Type>(&mut out, cells, |v| {
                    v.as_str()
                        .and_then(|s| s.parse::<DateTime<Utc>>().ok())
                        .map(|t| t.timestamp_micros())
                })?,
            }
            out.close()?;
        }
        group.close()?;
        batch.clear();
        Ok(())
    };
    for_each_record(records, |record, bytes| {
        batch.push(record.clone());
        batch_bytes += bytes;
        if batch_bytes >= ROW_GROUP_BYTES {
            write_group(&mut batch)?;
            batch_bytes = 0;
        }
        Ok(())
    })?;
    write_group(&mut batch)?;
    writer.close()?;
    Ok(())
}

/// One optional column: a definition level per row (1 present, 0 null) and the present
/// values.
fn write_column<'v, T: DataType>(
    out: &mut SerializedColumnWriter<'_>,
    cells: impl Iterator<Item = Option<&'v Value>>,
    convert: impl Fn(&Value) -> Option<T::T>,
) -> anyhow::Result<()> {
    let mut values = vec![];
    let mut levels = vec![];
    for cell in cells {
        match cell.and_then(&convert) {
            Some(v) => {
                values.push(v);
                levels.push(1);
            }
            None => levels.push(0),
        }
    }
    out.typed::<T>().write_batch(&values, Some(&levels), None)?;
    Ok(())
}

fn schema(columns: &[Column]) -> anyhow::Result<Type> {
    let fields = columns
        .iter()
        .map(|c| {
            let (physical, logical) = match c.kind {
                Kind::Text => (Physical::BYTE_ARRAY, Some(LogicalType::String)),
                Kind::Integer => (Physical::INT64, None),
                Kind::Float => (Physical::DOUBLE, None),
                Kind::Boolean => (Physical::BOOLEAN, None),
                Kind::Timestamp => (
                    Physical::INT64,
                    Some(LogicalType::Timestamp {
                        is_adjusted_to_u_t_c: true,
                        unit: TimeUnit::MICROS,
                    }),
                ),
            };
            Type::primitive_type_builder(&c.name, physical)
                .with_repetition(Repetition::OPTIONAL)
                .with_logical_type(logical)
                .build()
                .map(Arc::new)
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Type::group_type_builder("event")
        .with_fields(fields)
        .build()?)
}

/// Each record of the spool, with its size there (bytes of JSON).
fn for_each_record(
    records: &Path,
    mut each: impl FnMut(&Value, usize) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let file = File::open(records).with_context(|| format!("opening {}", records.display()))?;
    for line in BufReader::new(file).lines() {
        let line = line?;
        let record: Value = serde_json::from_str(&line)?;
        each(&record, line.len())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_a_spreadsheet_would_run_as_a_formula_is_written_inert_and_numbers_are_not_touched() {
        let dir = std::env::temp_dir().join(format!("csv-inert-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let records = dir.join("records.jsonl");
        std::fs::write(
            &records,
            concat!(
                r#"{"name":"=HYPERLINK(\"http://x\")","amount":-12.5,"note":"+1","by":"@sum"}"#,
                "\n",
                r#"{"name":"Kim","amount":3,"note":"-","by":"\tx"}"#,
                "\n"
            ),
        )
        .unwrap();
        let columns: Vec<Column> = ["name", "amount", "note", "by"]
            .iter()
            .map(|n| Column {
                name: n.to_string(),
                kind: Kind::Text,
            })
            .collect();
        let out = dir.join("out.csv");
        write_csv(&records, &columns, &out).unwrap();
        let written = std::fs::read_to_string(&out).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(
            written,
            "name,amount,note,by\n\"'=HYPERLINK(\"\"http://x\"\")\",-12.5,'+1,'@sum\nKim,3,'-,'\tx\n"
        );
    }
}
