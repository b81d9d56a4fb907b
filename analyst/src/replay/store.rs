//! The replay's store: the rows it touches kept in memory and written in bulk (`UNNEST`
//! upserts) every few thousand events, with the replay's progress in the same
//! transaction, in the background while the next events are applied (one flush in
//! flight at a time). Safe because a replay is the only writer of its namespace until the
//! switch.
//!
//! Memory is bounded by a budget of rows ([`Budget`]): the rows live in two
//! [`Generations`], and those the replay has passed leave memory once written. A miss
//! reads PostgreSQL, unless the row was never written: a replay into an empty namespace
//! notes every key it writes in a Bloom filter, so the first sight of a line, bill or
//! request (most misses) costs no query. A resumed replay reads every miss from there.

use std::collections::{HashMap, HashSet};
use std::hash::Hash;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use events::bill_inquiry::BillInquired;
use fastbloom::BloomFilter;
use read_model::keys::Rows;
use read_model::views::{BillView, ChangeRequestView, LineView, ProductView};
use read_model::LINE_AGGREGATE;
use sqlx::types::Json;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use projector::processor::{self, Decoded, Incoming, Outcome};
use projector::projections::{from_doc, to_doc, ApplyError, Store};

use crate::replay::cache::Generations;

type Agg = (String, String);

struct LineRow {
    view: Option<LineView>,
    product_at: Option<DateTime<Utc>>,
}

struct ParkedRow {
    aggregate: Agg,
    sequence: i64,
    msg: Incoming,
    reason: String,
}

/// A row's key as the Bloom filter of written rows knows it.
#[derive(Hash)]
enum Key<'a> {
    Line(&'a str),
    Request(Uuid),
    Bill(&'a str, &'a str),
    Applied(&'a str, &'a str),
    Parked(&'a str, &'a str),
    Inquiry(Uuid),
}

/// The product catalogue, shared by a replay's workers: every partition's lines refer
/// to it. Held whole (a catalogue is small) and never evicted, so in a fresh replay a
/// product not in it was never published.
#[derive(Clone, Default)]
pub struct Catalog(Arc<Mutex<HashMap<String, Option<ProductView>>>>);

impl Catalog {
    fn get(&self, code: &str) -> Option<Option<ProductView>> {
        self.0.lock().expect("catalog lock").get(code).cloned()
    }

    fn insert(&self, code: String, view: Option<ProductView>) {
        self.0.lock().expect("catalog lock").insert(code, view);
    }

    /// What was read for a product unless another worker put it in meanwhile: a
    /// product's publication must never be overwritten by an earlier read of its
    /// absence.
    fn insert_read(&self, code: &str, read: Option<ProductView>) -> Option<ProductView> {
        let mut products = self.0.lock().expect("catalog lock");
        (products.entry(code.to_owned()).or_insert(read)).clone()
    }

    fn snapshot(&self) -> HashMap<String, Option<ProductView>> {
        self.0.lock().expect("catalog lock").clone()
    }
}

/// How much a replay keeps in memory.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    /// Rows (views, checkpoints, inquiry ids) held across flushes, both generations.
    pub rows: usize,
    /// Keys a fresh replay may write, about: sizes the Bloom filter (1 % false
    /// positives at this count; more keys only mean more queries, never a wrong row).
    pub expected_keys: usize,
}

impl Budget {
    /// Memory a held row takes, about (a view's strings and document, the maps'
    /// overhead): measured with `bench/replay.sh`, rounded up.
    pub const BYTES_PER_ROW: usize = 1024;

    /// The rows of `bytes`.
    pub fn of_bytes(bytes: usize, expected_keys: usize) -> Self {
        Self {
            rows: bytes / Self::BYTES_PER_ROW,
            expected_keys: expected_keys.max(1),
        }
    }
}

pub struct MemStore {
    pool: PgPool,
    /// Keys of every row this replay wrote, when it began in an empty namespace (`None`
    /// when resumed: earlier rows are only in PostgreSQL). A key not in it is absent.
    written: Option<BloomFilter>,
    /// Everything the namespace holds is here (fresh, and nothing left memory yet).
    complete: bool,
    budget: Budget,
    lines: Generations<String, LineRow>,
    requests: Generations<Uuid, Option<ChangeRequestView>>,
    products: Catalog,
    bills: Generations<(String, String), Option<BillView>>,
    applied: Generations<Agg, i64>,
    parked_max: Generations<Agg, Option<i64>>,
    seen_inquiries: Generations<Uuid, ()>,
    dirty_lines: HashSet<String>,
    dirty_requests: HashSet<Uuid>,
    dirty_products: HashSet<String>,
    dirty_bills: HashSet<(String, String)>,
    dirty_applied: HashSet<Agg>,
    inquiries: Vec<BillInquired>,
    apply_log: Vec<(Uuid, String, String, i64)>,
    parked: Vec<ParkedRow>,
    /// Next offset per (topic, partition), written with the rows.
    pub progress: HashMap<(String, i32), i64>,
    /// The flush being written in the background.
    writing: Option<tokio::task::JoinHandle<Result<(), sqlx::Error>>>,
    /// Rows that left memory (the report's measure of the budget at work).
    pub evicted: u64,
}

/// Rows per bulk statement.
const CHUNK: usize = 5_000;

impl MemStore {
    /// A store for a namespace that is empty (`fresh`) or holds a replay's earlier
    /// flushes.
    pub fn new(pool: PgPool, fresh: bool, budget: Budget, catalog: Catalog) -> Self {
        Self {
            pool,
            written: fresh
                .then(|| BloomFilter::with_false_pos(0.01).expected_items(budget.expected_keys)),
            complete: fresh,
            budget,
            lines: Generations::default(),
            requests: Generations::default(),
            products: catalog,
            bills: Generations::default(),
            applied: Generations::default(),
            parked_max: Generations::default(),
            seen_inquiries: Generations::default(),
            dirty_lines: HashSet::new(),
            dirty_requests: HashSet::new(),
            dirty_products: HashSet::new(),
            dirty_bills: HashSet::new(),
            dirty_applied: HashSet::new(),
            inquiries: vec![],
            apply_log: vec![],
            parked: vec![],
            progress: Default::default(),
            writing: None,
            evicted: 0,
        }
    }

    /// Notes that the row of `key` is written (with the next flush).
    fn note(&mut self, key: Key<'_>) {
        if let Some(written) = &mut self.written {
            written.insert(&key);
        }
    }

    /// Whether PostgreSQL may hold the row of `key` (a row not in memory).
    fn may_be_stored(&self, key: Key<'_>) -> bool {
        !self.complete && self.written.as_ref().is_none_or(|w| w.contains(&key))
    }

    /// The live projector's rules for one message (see `Processor::handle_decoded`):
    /// checkpoint, parking, apply.
    pub async fn handle(&mut self, msg: &Incoming, decoded: &Decoded) -> anyhow::Result<Outcome> {
        if let Decoded::Inquiries(items) = decoded {
            let mut fresh = false;
            for (_, e) in items {
                fresh |= self.add_inquiry(e).await?;
            }
            return Ok(if fresh {
                Outcome::Applied
            } else {
                Outcome::Duplicate
            });
        }
        let (aggregate_type, aggregate_id) = decoded.aggregate();
        let agg = (aggregate_type.to_owned(), aggregate_id);
        let sequence = decoded.envelope().sequence as i64;
        let applied = self.checkpoint(&agg).await?;
        if sequence <= applied {
            return Ok(Outcome::Duplicate);
        }
        if let Some(parked) = self.parked_of(&agg).await? {
            if sequence > parked {
                let reason = format!("waiting behind parked sequence {parked}");
                self.park(agg, sequence, msg, reason);
            }
            return Ok(Outcome::Parked);
        }
        if sequence > applied + 1 {
            metrics::counter!("phonebill_projector_sequence_gaps_total", "aggregate_type" => aggregate_type)
                .increment(1);
        }
        match processor::apply(self, decoded).await {
            Ok(_) => {
                self.note(Key::Applied(&agg.0, &agg.1));
                self.applied.insert(agg.clone(), sequence);
                self.dirty_applied.insert(agg.clone());
                self.apply_log
                    .push((decoded.envelope().event_id, agg.0, agg.1, sequence));
                Ok(Outcome::Applied)
            }
            Err(ApplyError::Unapplicable(reason)) => {
                self.park(agg, sequence, msg, reason);
                Ok(Outcome::Parked)
            }
            Err(ApplyError::Database(e)) => Err(e.into()),
        }
    }

    fn park(&mut self, agg: Agg, sequence: i64, msg: &Incoming, reason: String) {
        self.note(Key::Parked(&agg.0, &agg.1));
        // The parked maximum was looked up before any park (`parked_of`).
        let max = self.parked_max.get(&agg).copied().flatten();
        self.parked_max
            .insert(agg.clone(), Some(max.map_or(sequence, |m| m.max(sequence))));
        self.parked.push(ParkedRow {
            aggregate: agg,
            sequence,
            msg: msg.clone(),
            reason,
        });
    }

    async fn checkpoint(&mut self, agg: &Agg) -> Result<i64, sqlx::Error> {
        if let Some(s) = self.applied.get(agg) {
            return Ok(*s);
        }
        let s = if !self.may_be_stored(Key::Applied(&agg.0, &agg.1)) {
            0
        } else {
            sqlx::query_scalar(
                "SELECT sequence FROM applied WHERE aggregate_type = $1 AND aggregate_id = $2",
            )
            .bind(&agg.0)
            .bind(&agg.1)
            .fetch_optional(&self.pool)
            .await?
            .unwrap_or(0)
        };
        self.applied.insert(agg.clone(), s);
        Ok(s)
    }

    async fn parked_of(&mut self, agg: &Agg) -> Result<Option<i64>, sqlx::Error> {
        if let Some(p) = self.parked_max.get(agg) {
            return Ok(*p);
        }
        let p = if !self.may_be_stored(Key::Parked(&agg.0, &agg.1)) {
            None
        } else {
            sqlx::query_scalar(
                "SELECT max(sequence) FROM parked WHERE aggregate_type = $1 AND aggregate_id = $2",
            )
            .bind(&agg.0)
            .bind(&agg.1)
            .fetch_one(&self.pool)
            .await?
        };
        self.parked_max.insert(agg.clone(), p);
        Ok(p)
    }

    async fn load_line(&mut self, line: &str) -> Result<&mut LineRow, ApplyError> {
        if !self.lines.contains(line) {
            let row = if !self.may_be_stored(Key::Line(line)) {
                LineRow {
                    view: None,
                    product_at: None,
                }
            } else {
                let row: Option<(serde_json::Value, Option<DateTime<Utc>>)> =
                    sqlx::query_as("SELECT doc, product_at FROM lines WHERE line_number = $1")
                        .bind(line)
                        .fetch_optional(&self.pool)
                        .await?;
                match row {
                    Some((doc, product_at)) => LineRow {
                        view: Some(from_doc(doc)?),
                        product_at,
                    },
                    None => LineRow {
                        view: None,
                        product_at: None,
                    },
                }
            };
            self.lines.insert(line.to_owned(), row);
        }
        Ok(self.lines.get(line).expect("just inserted"))
    }

    async fn doc<T: serde::de::DeserializeOwned>(
        &self,
        key: Key<'_>,
        sql: &str,
        binds: &[&str],
    ) -> Result<Option<T>, ApplyError> {
        if !self.may_be_stored(key) {
            return Ok(None);
        }
        let mut q = sqlx::query_scalar::<_, serde_json::Value>(sql);
        for b in binds {
            q = q.bind(*b);
        }
        q.fetch_optional(&self.pool)
            .await?
            .map(from_doc)
            .transpose()
    }

    /// A product not in the catalogue: absent in a fresh replay, else as stored.
    async fn read_product(&self, code: &str) -> Result<Option<ProductView>, ApplyError> {
        if self.written.is_some() {
            return Ok(None);
        }
        let doc: Option<serde_json::Value> =
            sqlx::query_scalar("SELECT doc FROM products WHERE product_code = $1")
                .bind(code)
                .fetch_optional(&self.pool)
                .await?;
        doc.map(from_doc).transpose()
    }

    /// Events held in memory since the last flush.
    pub fn unflushed(&self) -> usize {
        self.apply_log.len() + self.inquiries.len() + self.parked.len()
    }

    /// Hands everything dirty and the progress to a background transaction and goes on;
    /// the previous one must have committed first, so flushes commit in order and each
    /// commits its progress with its rows (a resumed replay starts after the last one).
    pub async fn flush(&mut self) -> Result<(), sqlx::Error> {
        self.wait_written().await?;
        self.flush_behind();
        if self.recent_rows() > self.budget.rows / 2 {
            // The rows of the generation dropped now are in PostgreSQL once this flush
            // commits: misses read them from there.
            self.wait_written().await?;
            let dropped = self.lines.rotate()
                + self.requests.rotate()
                + self.bills.rotate()
                + self.applied.rotate()
                + self.parked_max.rotate()
                + self.seen_inquiries.rotate();
            if dropped > 0 {
                self.complete = false;
                self.evicted += dropped as u64;
            }
        }
        Ok(())
    }

    /// Rows of the current generation.
    fn recent_rows(&self) -> usize {
        self.lines.recent()
            + self.requests.recent()
            + self.bills.recent()
            + self.applied.recent()
            + self.parked_max.recent()
            + self.seen_inquiries.recent()
    }

    /// Everything the namespace holds, taken out of the store, when it holds nothing
    /// that is not in memory (a fresh replay whose cache was never emptied): Redis can
    /// then be filled from memory while the last flush is still being written. The
    /// store is empty afterwards.
    pub fn take_all(&mut self) -> Option<InMemory> {
        if !self.complete {
            return None;
        }
        self.complete = false;
        self.written = None;
        Some(InMemory {
            lines: self.lines.take_all(),
            requests: self.requests.take_all(),
            products: self.products.snapshot(),
            bills: self.bills.take_all(),
            applied: self.applied.take_all(),
        })
    }

    /// The last flush: handed over behind the one in flight without waiting for it
    /// (its transaction starts when that one committed), so the views can be built
    /// meanwhile. [`MemStore::wait_written`] then waits for both.
    pub fn flush_behind(&mut self) {
        let previous = self.writing.take();
        let rows = self.take_dirty();
        let pool = self.pool.clone();
        self.writing = Some(tokio::spawn(async move {
            if let Some(previous) = previous {
                previous
                    .await
                    .map_err(|e| sqlx::Error::Io(std::io::Error::other(e.to_string())))??;
            }
            rows.write(pool).await
        }));
    }

    /// Waits until the flushes handed over so far have committed.
    pub async fn wait_written(&mut self) -> Result<(), sqlx::Error> {
        match self.writing.take() {
            Some(task) => task
                .await
                .map_err(|e| sqlx::Error::Io(std::io::Error::other(e.to_string())))?,
            None => Ok(()),
        }
    }

    /// The dirty rows, copied for the flush; the dirty sets are emptied. The documents
    /// are serialized by the flush, off the applier's thread.
    fn take_dirty(&mut self) -> DirtyRows {
        let mut rows = DirtyRows::default();
        for id in self.dirty_lines.drain() {
            let row = self.lines.get(&id).expect("a dirty row is held");
            if let Some(view) = &row.view {
                rows.lines.push((view.clone(), row.product_at));
            }
        }
        for id in self.dirty_requests.drain() {
            if let Some(r) = self.requests.get(&id).expect("a dirty row is held") {
                rows.requests.push(r.clone());
            }
        }
        for code in self.dirty_products.drain() {
            if let Some(p) = self.products.get(&code).expect("a dirty row is held") {
                rows.products.push(p);
            }
        }
        for key in self.dirty_bills.drain() {
            if let Some(b) = self.bills.get(&key).expect("a dirty row is held") {
                rows.bills.push(b.clone());
            }
        }
        for agg in self.dirty_applied.drain() {
            let sequence = *self.applied.get(&agg).expect("a dirty row is held");
            rows.applied.push((agg, sequence));
        }
        rows.inquiries = std::mem::take(&mut self.inquiries);
        rows.apply_log = std::mem::take(&mut self.apply_log);
        rows.parked = std::mem::take(&mut self.parked);
        rows.progress = self
            .progress
            .iter()
            .map(|((t, p), o)| (t.clone(), *p, *o))
            .collect();
        rows
    }
}

/// A namespace's rows taken out of the replay's store ([`MemStore::take_all`]).
pub struct InMemory {
    lines: HashMap<String, LineRow>,
    requests: HashMap<Uuid, Option<ChangeRequestView>>,
    products: HashMap<String, Option<ProductView>>,
    bills: HashMap<(String, String), Option<BillView>>,
    applied: HashMap<Agg, i64>,
}

impl InMemory {
    /// The rows as the read tables hold them (the documents as written there).
    pub fn into_rows(self) -> Rows {
        let mut rows = Rows::default();
        for (line, row) in self.lines {
            if let Some(view) = &row.view {
                rows.lines.push((line, to_doc(view)));
            }
        }
        for b in self.bills.into_values().flatten() {
            let doc = to_doc(&b);
            rows.bills.push((b.line_number, b.month, doc));
        }
        for r in self.requests.into_values().flatten() {
            let doc = to_doc(&r);
            rows.requests
                .push((r.request_id, r.line_number, r.requested_at, doc));
        }
        for p in self.products.into_values().flatten() {
            let doc = to_doc(&p);
            rows.products
                .push((p.product_code, p.operator, p.on_sale, doc));
        }
        // Sequence 0 is a checkpoint looked up, never a row written.
        for ((kind, line), sequence) in self.applied {
            if kind == LINE_AGGREGATE && sequence > 0 {
                rows.positions.push((line, sequence));
            }
        }
        rows
    }
}

/// One flush's rows, owned, so the transaction can run while the replay goes on.
#[derive(Default)]
struct DirtyRows {
    lines: Vec<(LineView, Option<DateTime<Utc>>)>,
    requests: Vec<ChangeRequestView>,
    products: Vec<ProductView>,
    bills: Vec<BillView>,
    applied: Vec<(Agg, i64)>,
    inquiries: Vec<BillInquired>,
    apply_log: Vec<(Uuid, String, String, i64)>,
    parked: Vec<ParkedRow>,
    progress: Vec<(String, i32, i64)>,
}

/// `UNNEST` binds of one column of a chunk. Documents are bound as [`Json`] of the
/// views: serialized straight into the statement, with no `serde_json::Value` between.
fn column<'a, T, U>(chunk: &'a [T], f: impl Fn(&'a T) -> U) -> Vec<U> {
    chunk.iter().map(f).collect()
}

impl DirtyRows {
    /// Writes the rows and the progress in one transaction.
    async fn write(self, pool: PgPool) -> Result<(), sqlx::Error> {
        let mut tx = pool.begin().await?;
        self.write_tables(&mut tx).await?;
        self.write_bookkeeping(&mut tx).await?;
        tx.commit().await
    }

    /// The read tables: lines, change requests, products, bills and bill inquiries.
    async fn write_tables(&self, conn: &mut PgConnection) -> Result<(), sqlx::Error> {
        for chunk in self.lines.chunks(CHUNK) {
            sqlx::query(
                "INSERT INTO lines (line_number, doc, product_at)
                 SELECT * FROM UNNEST($1::text[], $2::jsonb[], $3::timestamptz[])
                 ON CONFLICT (line_number) DO UPDATE
                    SET doc = EXCLUDED.doc, product_at = EXCLUDED.product_at",
            )
            .bind(column(chunk, |(v, _)| v.line_number.clone()))
            .bind(column(chunk, |(v, _)| Json(v)))
            .bind(column(chunk, |(_, at)| *at))
            .execute(&mut *conn)
            .await?;
        }
        for chunk in self.requests.chunks(CHUNK) {
            sqlx::query(
                "INSERT INTO change_requests (request_id, line_number, status, requested_at, doc)
                 SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::timestamptz[],
                                      $5::jsonb[])
                 ON CONFLICT (request_id) DO UPDATE
                    SET status = EXCLUDED.status, doc = EXCLUDED.doc",
            )
            .bind(column(chunk, |r| r.request_id))
            .bind(column(chunk, |r| r.line_number.clone()))
            .bind(column(chunk, |r| r.status.clone()))
            .bind(column(chunk, |r| r.requested_at))
            .bind(column(chunk, Json))
            .execute(&mut *conn)
            .await?;
        }
        for chunk in self.products.chunks(CHUNK) {
            sqlx::query(
                "INSERT INTO products (product_code, operator, on_sale, doc)
                 SELECT * FROM UNNEST($1::text[], $2::text[], $3::bool[], $4::jsonb[])
                 ON CONFLICT (product_code) DO UPDATE
                    SET operator = EXCLUDED.operator, on_sale = EXCLUDED.on_sale,
                        doc = EXCLUDED.doc",
            )
            .bind(column(chunk, |p| p.product_code.clone()))
            .bind(column(chunk, |p| p.operator.clone()))
            .bind(column(chunk, |p| p.on_sale))
            .bind(column(chunk, Json))
            .execute(&mut *conn)
            .await?;
        }
        for chunk in self.bills.chunks(CHUNK) {
            sqlx::query(
                "INSERT INTO bills (line_number, month, doc)
                 SELECT * FROM UNNEST($1::text[], $2::text[], $3::jsonb[])
                 ON CONFLICT (line_number, month) DO UPDATE SET doc = EXCLUDED.doc",
            )
            .bind(column(chunk, |b| b.line_number.clone()))
            .bind(column(chunk, |b| b.month.clone()))
            .bind(column(chunk, Json))
            .execute(&mut *conn)
            .await?;
        }
        for chunk in self.inquiries.chunks(CHUNK) {
            let chunk: Vec<&BillInquired> = chunk.iter().collect();
            projector::projections::inquiries::record_all(conn, &chunk).await?;
        }
        Ok(())
    }

    /// What was applied (sequences and the apply log), parked, and read (the progress).
    async fn write_bookkeeping(&self, conn: &mut PgConnection) -> Result<(), sqlx::Error> {
        for chunk in self.applied.chunks(CHUNK) {
            sqlx::query(
                "INSERT INTO applied (aggregate_type, aggregate_id, sequence)
                 SELECT * FROM UNNEST($1::text[], $2::text[], $3::bigint[])
                 ON CONFLICT (aggregate_type, aggregate_id) DO UPDATE
                    SET sequence = EXCLUDED.sequence",
            )
            .bind(column(chunk, |(a, _)| a.0.clone()))
            .bind(column(chunk, |(a, _)| a.1.clone()))
            .bind(column(chunk, |(_, s)| *s))
            .execute(&mut *conn)
            .await?;
        }
        for chunk in self.apply_log.chunks(CHUNK) {
            sqlx::query(
                "INSERT INTO apply_log (event_id, aggregate_type, aggregate_id, sequence)
                 SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::bigint[])
                 ON CONFLICT (event_id) DO UPDATE SET times = apply_log.times + 1",
            )
            .bind(column(chunk, |r| r.0))
            .bind(column(chunk, |r| r.1.clone()))
            .bind(column(chunk, |r| r.2.clone()))
            .bind(column(chunk, |r| r.3))
            .execute(&mut *conn)
            .await?;
        }
        for p in &self.parked {
            sqlx::query(
                "INSERT INTO parked (aggregate_type, aggregate_id, sequence, topic, partition,
                                     \"offset\", key, payload, reason)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            )
            .bind(&p.aggregate.0)
            .bind(&p.aggregate.1)
            .bind(p.sequence)
            .bind(&p.msg.topic)
            .bind(p.msg.partition)
            .bind(p.msg.offset)
            .bind(&p.msg.key)
            .bind(&p.msg.payload)
            .bind(&p.reason)
            .execute(&mut *conn)
            .await?;
        }
        sqlx::query(
            "INSERT INTO replay_progress (topic, partition, next_offset)
             SELECT * FROM UNNEST($1::text[], $2::int[], $3::bigint[])
             ON CONFLICT (topic, partition) DO UPDATE SET next_offset = EXCLUDED.next_offset",
        )
        .bind(column(&self.progress, |p| p.0.clone()))
        .bind(column(&self.progress, |p| p.1))
        .bind(column(&self.progress, |p| p.2))
        .execute(&mut *conn)
        .await?;
        Ok(())
    }
}

impl Store for MemStore {
    async fn line(&mut self, line: &str) -> Result<Option<LineView>, ApplyError> {
        Ok(self.load_line(line).await?.view.clone())
    }

    async fn put_line(&mut self, view: &LineView) -> Result<(), ApplyError> {
        let row = self.load_line(&view.line_number).await?;
        row.view = Some(view.clone());
        self.dirty_lines.insert(view.line_number.clone());
        self.note(Key::Line(&view.line_number));
        Ok(())
    }

    async fn product_at(&mut self, line: &str) -> Result<Option<DateTime<Utc>>, ApplyError> {
        Ok(self.load_line(line).await?.product_at)
    }

    async fn set_product_at(&mut self, line: &str, at: DateTime<Utc>) -> Result<(), ApplyError> {
        let row = self.load_line(line).await?;
        if row.view.is_some() {
            row.product_at = Some(at);
            self.dirty_lines.insert(line.to_owned());
        }
        Ok(())
    }

    async fn request(&mut self, id: Uuid) -> Result<Option<ChangeRequestView>, ApplyError> {
        if let Some(r) = self.requests.get(&id) {
            return Ok(r.clone());
        }
        let id_text = id.to_string();
        let r: Option<ChangeRequestView> = self
            .doc(
                Key::Request(id),
                "SELECT doc FROM change_requests WHERE request_id = $1::uuid",
                &[&id_text],
            )
            .await?;
        self.requests.insert(id, r.clone());
        Ok(r)
    }

    async fn put_request(&mut self, view: &ChangeRequestView) -> Result<(), ApplyError> {
        self.requests.insert(view.request_id, Some(view.clone()));
        self.dirty_requests.insert(view.request_id);
        self.note(Key::Request(view.request_id));
        Ok(())
    }

    async fn product(&mut self, code: &str) -> Result<Option<ProductView>, ApplyError> {
        if let Some(p) = self.products.get(code) {
            return Ok(p);
        }
        let read = self.read_product(code).await?;
        Ok(self.products.insert_read(code, read))
    }

    async fn put_product(&mut self, view: &ProductView) -> Result<(), ApplyError> {
        self.products
            .insert(view.product_code.clone(), Some(view.clone()));
        self.dirty_products.insert(view.product_code.clone());
        Ok(())
    }

    async fn bill(&mut self, line: &str, month: &str) -> Result<Option<BillView>, ApplyError> {
        let key = (line.to_owned(), month.to_owned());
        if let Some(b) = self.bills.get(&key) {
            return Ok(b.clone());
        }
        let b: Option<BillView> = self
            .doc(
                Key::Bill(line, month),
                "SELECT doc FROM bills WHERE line_number = $1 AND month = $2",
                &[line, month],
            )
            .await?;
        self.bills.insert(key, b.clone());
        Ok(b)
    }

    async fn put_bill(&mut self, view: &BillView) -> Result<(), ApplyError> {
        let key = (view.line_number.clone(), view.month.clone());
        self.bills.insert(key.clone(), Some(view.clone()));
        self.dirty_bills.insert(key);
        self.note(Key::Bill(&view.line_number, &view.month));
        Ok(())
    }

    async fn add_inquiry(&mut self, e: &BillInquired) -> Result<bool, ApplyError> {
        if self.seen_inquiries.get(&e.inquiry_id).is_some() {
            return Ok(false);
        }
        self.seen_inquiries.insert(e.inquiry_id, ());
        if self.may_be_stored(Key::Inquiry(e.inquiry_id)) {
            let known: Option<i32> =
                sqlx::query_scalar("SELECT 1 FROM bill_inquiries WHERE inquiry_id = $1")
                    .bind(e.inquiry_id)
                    .fetch_optional(&self.pool)
                    .await?;
            if known.is_some() {
                return Ok(false);
            }
        }
        self.note(Key::Inquiry(e.inquiry_id));
        self.inquiries.push(e.clone());
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn product(code: &str) -> ProductView {
        ProductView {
            product_code: code.to_owned(),
            name: "Plan".to_owned(),
            operator: "MVNO-A".to_owned(),
            monthly_fee: 33_000,
            data_mb: None,
            voice_minutes: None,
            sms_count: None,
            on_sale: true,
        }
    }

    #[test]
    fn a_workers_read_of_a_missing_product_never_hides_its_publication_by_another() {
        // Given: one worker read P1 as absent while another published it.
        let catalog = Catalog::default();
        catalog.insert("P1".to_owned(), Some(product("P1")));

        // When: the first worker records what it read.
        let seen = catalog.insert_read("P1", None);

        // Then: the publication stands, and is what the first worker goes on with.
        assert_eq!(seen, Some(product("P1")));
        assert_eq!(catalog.get("P1"), Some(Some(product("P1"))));
        // A product nobody published is recorded as absent.
        assert_eq!(catalog.insert_read("P2", None), None);
        assert_eq!(catalog.get("P2"), Some(None));
    }
}
