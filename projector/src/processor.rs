//! One message in, its effect stored: decode (or say why not), check the aggregate's
//! checkpoint, apply in one PostgreSQL transaction, then rewrite the touched Redis views.
//!
//! - Idempotence: `applied` holds each aggregate's last applied sequence, advanced in the
//!   same transaction as the read tables. An event at or below it changes nothing (its
//!   views are still rewritten from PostgreSQL, which repairs a Redis write lost to a
//!   crash after the commit).
//! - Parking: an event that cannot be applied parks its aggregate in `parked`; later
//!   events of that aggregate queue behind it until [`Processor::retry_parked`] clears it.
//! - Transient failures (PostgreSQL, Redis) come back as `Err` and the caller retries the
//!   whole message; every step is safe to repeat.

use std::sync::Arc;
use std::time::Instant;

use events::bill_inquiry::{self, BillInquired};
use events::kos::KosFact;
use events::product_change::ProductChangeEvent;
use events::topics::Topics;
use events::{codec, DecodeError, Envelope};
use read_model::keys::View;
use redis::AsyncCommands;
use service_kit::redis_conn::RedisConn;
use service_kit::signed::Verifier;
use sqlx::{PgConnection, PgPool};
use tracing::Instrument;

use crate::projections::{self, ApplyError, Store};
use events::schema::SchemaSet;

/// A message detached from the consumer.
#[derive(Debug, Clone)]
pub struct Incoming {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
    pub headers: Vec<(String, Vec<u8>)>,
}

impl Incoming {
    /// An owned copy of a consumed message (the live loop, the replay and time travel).
    pub fn from_message<M: rdkafka::Message>(m: &M) -> Self {
        use rdkafka::message::Headers;
        Self {
            topic: m.topic().to_owned(),
            partition: m.partition(),
            offset: m.offset(),
            key: m.key().map(<[u8]>::to_vec),
            payload: m.payload().unwrap_or_default().to_vec(),
            headers: m
                .headers()
                .map(|h| {
                    h.iter()
                        .map(|h| (h.key.to_owned(), h.value.unwrap_or_default().to_vec()))
                        .collect()
                })
                .unwrap_or_default(),
        }
    }

    /// The span of applying this message: a child of the trace its headers carry (each
    /// event of a run in its own change's trace; the run's span links them all).
    fn apply_span(&self) -> tracing::Span {
        let span = tracing::info_span!("apply", otel.name = %format_args!("{} apply", self.topic),
            messaging.destination.partition.id = self.partition, messaging.kafka.offset = self.offset);
        if span.is_disabled() {
            return span;
        }
        let (parent, state) = service_kit::traces::in_headers(
            self.headers
                .iter()
                .map(|(key, value)| (key.as_str(), Some(value.as_slice()))),
        );
        service_kit::traces::continue_trace(&span, parent, state);
        span
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Applied,
    Duplicate,
    Parked,
    /// Cannot be decoded or fails its schema: goes to the dead-letter topic.
    Rejected {
        kind: &'static str,
        reason: String,
    },
}

pub enum Decoded {
    ProductChange(Envelope, ProductChangeEvent),
    Kos(Envelope, KosFact),
    /// The inquiries of one message (one, or a batch from query-service; never empty).
    Inquiries(Vec<(Envelope, BillInquired)>),
}

impl Decoded {
    pub fn envelope(&self) -> &Envelope {
        match self {
            Decoded::ProductChange(e, _) | Decoded::Kos(e, _) => e,
            // All of a batch share type, version and sequence (1); the first speaks for it.
            Decoded::Inquiries(items) => &items[0].0,
        }
    }

    pub fn event_type(&self) -> &str {
        &self.envelope().event_type
    }

    /// (aggregate type, aggregate id) whose sequence orders this event.
    pub fn aggregate(&self) -> (&'static str, String) {
        match self {
            Decoded::ProductChange(e, _) => (read_model::LINE_AGGREGATE, e.aggregate_id.clone()),
            Decoded::Kos(e, fact) => (fact.aggregate_type(), e.aggregate_id.clone()),
            Decoded::Inquiries(items) => (bill_inquiry::AGGREGATE, items[0].0.aggregate_id.clone()),
        }
    }

    pub fn views(&self) -> Vec<View> {
        match self {
            Decoded::ProductChange(e, event) => {
                projections::product_change::views_of(&e.aggregate_id, event)
            }
            Decoded::Kos(_, fact) => projections::kos::views_of(fact),
            Decoded::Inquiries(..) => vec![],
        }
    }
}

#[derive(Clone)]
pub struct Processor {
    pub pool: PgPool,
    redis: RedisConn,
    prefix: String,
    /// Invalidations go to the base namespace's channel whatever the namespace, so
    /// query-services keep one subscription across switches (keys carry the prefix).
    channel: String,
    decoder: Decoder,
}

/// Turns a message into a decoded event by its topic: the one decoding the live
/// projector, a replay and time travel share (same schema checks, same refusals).
#[derive(Clone)]
pub struct Decoder {
    topics: Topics,
    schemas: Arc<SchemaSet>,
    /// KOS's public keys: a fact on `kos.billing` must be signed by KOS. `None`: the
    /// facts are an operator's own input ([`Processor::vouched_for`]).
    kos: Option<Arc<Verifier>>,
}

impl Decoder {
    pub fn new(topics: Topics, kos: Verifier) -> Self {
        Self {
            topics,
            schemas: Arc::new(SchemaSet::load()),
            kos: Some(Arc::new(kos)),
        }
    }

    /// Whether the message came from its topic's producer: on `kos.billing`, a fact KOS
    /// signed ([`service_kit::signed`]); every other topic passes.
    pub fn check_producer(&self, msg: &Incoming) -> Result<(), String> {
        let Some(kos) = self.kos.as_ref() else {
            return Ok(());
        };
        if msg.topic != self.topics.kos_billing() {
            return Ok(());
        }
        let headers = msg
            .headers
            .iter()
            .map(|(name, value)| (name.as_str(), Some(value.as_slice())));
        kos.check(headers, msg.key.as_deref(), &msg.payload)
    }

    /// [`Decoder::check_producer`], then [`Decoder::decode_checked`].
    pub fn decode(&self, msg: &Incoming) -> Result<Decoded, DecodeError> {
        self.check_producer(msg).map_err(DecodeError::Envelope)?;
        self.decode_checked(msg)
    }

    /// Decodes a message whose producer was checked when it was received (a parked one,
    /// kept without its headers) by topic; the event families of `kos.billing` and
    /// `phonebill.product-change` are also checked against their JSON Schemas.
    pub fn decode_checked(&self, msg: &Incoming) -> Result<Decoded, DecodeError> {
        // Parsed once: checked against the schema, then read into the typed event.
        let checked = |bytes: &[u8]| -> Result<serde_json::Value, DecodeError> {
            let value: serde_json::Value =
                serde_json::from_slice(bytes).map_err(|e| DecodeError::Envelope(e.to_string()))?;
            self.schemas.validate(&value)?;
            Ok(value)
        };
        if msg.topic == self.topics.product_change() {
            let (env, event) = codec::decode_value::<ProductChangeEvent>(checked(&msg.payload)?)?;
            Ok(Decoded::ProductChange(env, event))
        } else if msg.topic == self.topics.kos_billing() {
            let (env, fact) = codec::decode_value::<KosFact>(checked(&msg.payload)?)?;
            if env.aggregate_id != fact.aggregate_id() {
                return Err(DecodeError::Envelope(format!(
                    "aggregate_id `{}` is not the fact's `{}`",
                    env.aggregate_id,
                    fact.aggregate_id()
                )));
            }
            Ok(Decoded::Kos(env, fact))
        } else if msg.topic == self.topics.bill_inquiries() {
            Ok(Decoded::Inquiries(bill_inquiry::decode_message(
                &msg.payload,
            )?))
        } else {
            Err(DecodeError::Envelope(format!(
                "topic {} is not one the projector reads",
                msg.topic
            )))
        }
    }
}

/// id, sequence, topic, partition, offset, key, payload of a parked message.
type ParkedRow = (i64, i64, String, i32, i64, Option<Vec<u8>>, Vec<u8>);

/// What one round of parked retries did.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct RetryReport {
    pub applied: u64,
    pub still_parked: u64,
}

/// Takes views' locks until `tx` ends. A view (a line's summary, say) changes by events
/// of two topics, whose partitions this projector's workers and other replicas handle
/// side by side: each commits its events, then loads the view and writes it to Redis.
/// With the load and the write under one lock for all of them, the last write is of a
/// load made after every commit before it, so no writer leaves an older document over a
/// newer one. PostgreSQL advisory locks, not locks in memory: replicas share them. Taken
/// in one statement, in the order of their ids, so that two writers with overlapping
/// views never wait on each other crosswise.
pub async fn lock_views(tx: &mut PgConnection, keys: &[String]) -> Result<(), sqlx::Error> {
    sqlx::query(
        "SELECT pg_advisory_xact_lock(id) FROM (
             SELECT DISTINCT hashtextextended('phonebill.view/' || key, 0) AS id
               FROM unnest($1::text[]) AS key ORDER BY id
         ) AS ids",
    )
    .bind(keys)
    .execute(tx)
    .await?;
    Ok(())
}

impl Processor {
    pub fn new(
        pool: PgPool,
        redis: RedisConn,
        prefix: String,
        topics: Topics,
        kos: Verifier,
    ) -> Self {
        Self {
            pool,
            redis,
            channel: read_model::invalidation_channel(&prefix),
            prefix,
            decoder: Decoder::new(topics, kos),
        }
    }

    /// This processor for facts an operator vouches for (`projector apply-facts FILE`:
    /// whoever may run it holds the database's credentials already): KOS's signature is
    /// not asked for. Never for what comes from the broker.
    pub fn vouched_for(mut self) -> Self {
        self.decoder.kos = None;
        self
    }

    /// This processor's decoder (its compiled schemas are shared, not copied).
    pub fn decoder(&self) -> Decoder {
        self.decoder.clone()
    }

    /// The same processor writing another namespace (pool and key prefix), still
    /// announcing on this processor's invalidation channel.
    pub fn for_namespace(&self, pool: PgPool, prefix: String) -> Self {
        Self {
            pool,
            prefix,
            ..self.clone()
        }
    }

    /// Where a reconciliation of this processor's namespace reads, Redis views included.
    pub fn reconcile_sources(
        &self,
        event_store_schema: &str,
        partitions: i32,
    ) -> crate::reconcile::Sources {
        crate::reconcile::Sources {
            pool: self.pool.clone(),
            event_store_schema: event_store_schema.to_owned(),
            redis: Some((self.redis.clone(), self.prefix.clone())),
            partitions,
            kos_schema: None,
            broker: None,
        }
    }

    /// Decodes by topic (see [`Decoder::decode`]).
    pub fn decode(&self, msg: &Incoming) -> Result<Decoded, DecodeError> {
        self.decoder.decode(msg)
    }

    /// Handles one message; `Err` is transient (retry the same message).
    pub async fn handle(&self, msg: &Incoming) -> anyhow::Result<Outcome> {
        let mut outcomes = self.handle_events(std::slice::from_ref(msg)).await?;
        Ok(outcomes.pop().expect("one outcome per message"))
    }

    /// Handles a partition's run of messages in offset order: each applied in turn
    /// ([`Processor::apply_message`]), then the views of all of them refreshed once. One
    /// outcome per message; `Err` is transient (retry the run: the applied ones then come
    /// out as duplicates, which refresh their views).
    pub async fn handle_events(&self, msgs: &[Incoming]) -> anyhow::Result<Vec<Outcome>> {
        let mut outcomes = Vec::with_capacity(msgs.len());
        let mut views = vec![];
        for msg in msgs {
            let (outcome, touched) = self.apply_message(msg).instrument(msg.apply_span()).await?;
            outcomes.push(outcome);
            views.extend(touched);
        }
        self.refresh(&views)
            .instrument(tracing::info_span!("refresh views", views = views.len()))
            .await?;
        Ok(outcomes)
    }

    /// Handles one message up to its effect on the read tables, and returns the views
    /// still to be refreshed ([`Processor::refresh`]). A consumer applying a run of
    /// queued messages refreshes their views once, after the last: a line's views are
    /// then loaded and written once for the events of one change instead of once per
    /// event. Until its views are refreshed, a message's offset must not be stored: a
    /// message applied but not refreshed comes again as a duplicate, and a duplicate
    /// refreshes its views. `Err` is transient (retry the same message).
    pub async fn apply_message(&self, msg: &Incoming) -> anyhow::Result<(Outcome, Vec<View>)> {
        if let Err(reason) = self.decoder.check_producer(msg) {
            tracing::warn!(topic = %msg.topic, %reason, "a fact on KOS's topic that KOS did not sign");
            let outcome = Outcome::Rejected {
                kind: "unsigned",
                reason,
            };
            return Ok((outcome, vec![]));
        }
        let decoded = match self.decoder.decode_checked(msg) {
            Ok(d) => d,
            Err(e) => {
                let outcome = Outcome::Rejected {
                    kind: e.kind(),
                    reason: e.to_string(),
                };
                return Ok((outcome, vec![]));
            }
        };
        let started = Instant::now();
        let (outcome, views) = self.handle_decoded(msg, &decoded).await?;
        metrics::histogram!("phonebill_projector_apply_duration_seconds")
            .record(started.elapsed().as_secs_f64());
        let events = match &decoded {
            Decoded::Inquiries(items) => items.len(),
            _ => 1,
        };
        count(decoded.event_type(), &outcome, events as u64);
        Ok((outcome, views))
    }

    /// Whether a topic's messages are bill inquiries (see [`Processor::handle_inquiries`]).
    pub fn is_inquiry_topic(&self, topic: &str) -> bool {
        topic == self.decoder.topics.bill_inquiries()
    }

    /// Records inquiry messages in one statement: one outcome per message, in order (a
    /// batch message is applied when any of its inquiries was new).
    /// Each inquiry is its own one-event aggregate, so no order or checkpoint is at stake
    /// and one transaction instead of one per inquiry is safe. `Err` is transient (retry
    /// the batch: the recorded ones then come out as duplicates).
    pub async fn handle_inquiries(&self, msgs: &[Incoming]) -> anyhow::Result<Vec<Outcome>> {
        let started = Instant::now();
        let mut outcomes = Vec::with_capacity(msgs.len());
        let mut inquiries = vec![];
        for msg in msgs {
            match self.decode(msg) {
                Ok(Decoded::Inquiries(items)) => {
                    outcomes.push(Outcome::Duplicate);
                    let at = outcomes.len() - 1;
                    inquiries.extend(items.into_iter().map(|(_, e)| (at, e)));
                }
                Ok(other) => outcomes.push(Outcome::Rejected {
                    kind: "unknown_type",
                    reason: format!("{} is not a bill inquiry", other.event_type()),
                }),
                Err(e) => outcomes.push(Outcome::Rejected {
                    kind: e.kind(),
                    reason: e.to_string(),
                }),
            }
        }
        if !inquiries.is_empty() {
            let mut conn = self.pool.acquire().await?;
            let all: Vec<&BillInquired> = inquiries.iter().map(|(_, e)| e).collect();
            let mut fresh = projections::inquiries::record_all(&mut conn, &all).await?;
            let mut applied = 0;
            for (i, e) in &inquiries {
                // The first of two messages carrying one inquiry recorded it.
                if fresh.remove(&e.inquiry_id) {
                    outcomes[*i] = Outcome::Applied;
                    applied += 1;
                }
            }
            count("BillInquired", &Outcome::Applied, applied);
            count(
                "BillInquired",
                &Outcome::Duplicate,
                inquiries.len() as u64 - applied,
            );
            metrics::histogram!("phonebill_projector_apply_duration_seconds")
                .record(started.elapsed().as_secs_f64());
        }
        Ok(outcomes)
    }

    /// The outcome, and the views to refresh after it.
    async fn handle_decoded(
        &self,
        msg: &Incoming,
        decoded: &Decoded,
    ) -> anyhow::Result<(Outcome, Vec<View>)> {
        if let Decoded::Inquiries(items) = decoded {
            let mut conn = self.pool.acquire().await?;
            let all: Vec<&BillInquired> = items.iter().map(|(_, e)| e).collect();
            let fresh = projections::inquiries::record_all(&mut conn, &all).await?;
            let outcome = if fresh.is_empty() {
                Outcome::Duplicate
            } else {
                Outcome::Applied
            };
            return Ok((outcome, vec![]));
        }
        #[cfg(feature = "fault-injection")]
        if crate::faults::is_lost(decoded.envelope().event_id) {
            return Ok((Outcome::Duplicate, vec![]));
        }
        let (aggregate_type, aggregate_id) = decoded.aggregate();
        let sequence = decoded.envelope().sequence as i64;
        let mut tx = self.pool.begin().await?;
        let Checkpoint { applied, parked } =
            lock_checkpoint(&mut tx, aggregate_type, &aggregate_id).await?;
        if sequence <= applied {
            tx.commit().await?;
            let mut views = decoded.views();
            views.extend(self.lines_showing(decoded).await?);
            return Ok((Outcome::Duplicate, views));
        }
        if let Some(parked) = parked {
            if sequence > parked {
                let reason = format!("waiting behind parked sequence {parked}");
                park(
                    &mut tx,
                    msg,
                    aggregate_type,
                    &aggregate_id,
                    sequence,
                    &reason,
                )
                .await?;
            }
            tx.commit().await?;
            self.update_parked_gauge().await;
            return Ok((Outcome::Parked, vec![]));
        }
        if sequence > applied + 1 {
            metrics::counter!("phonebill_projector_sequence_gaps_total", "aggregate_type" => aggregate_type)
                .increment(1);
            tracing::warn!(aggregate_type, %aggregate_id, applied, sequence, "sequence gap; applying");
        }
        match apply(&mut *tx, decoded).await {
            Ok(extra) => {
                advance(&mut tx, decoded, aggregate_type, &aggregate_id, sequence).await?;
                tx.commit().await?;
                let mut views = extra;
                views.extend(decoded.views());
                views.extend(self.lines_showing(decoded).await?);
                Ok((Outcome::Applied, views))
            }
            Err(ApplyError::Unapplicable(reason)) => {
                tx.rollback().await?;
                let mut tx = self.pool.begin().await?;
                park(
                    &mut tx,
                    msg,
                    aggregate_type,
                    &aggregate_id,
                    sequence,
                    &reason,
                )
                .await?;
                tx.commit().await?;
                tracing::warn!(aggregate_type, %aggregate_id, sequence, %reason, "parked");
                self.update_parked_gauge().await;
                Ok((Outcome::Parked, vec![]))
            }
            Err(ApplyError::Database(e)) => Err(e.into()),
        }
    }

    /// The summaries of the lines on a product just published: they show its name, and a
    /// line may have moved onto it before it was published (facts of other partitions
    /// come in any order) or it may have been renamed. Read after the commit, so a line
    /// registered side by side on another partition is either found here or loads the
    /// name itself (its load comes after this commit).
    async fn lines_showing(&self, decoded: &Decoded) -> Result<Vec<View>, sqlx::Error> {
        let Decoded::Kos(_, KosFact::ProductPublished(f)) = decoded else {
            return Ok(vec![]);
        };
        let lines: Vec<String> = sqlx::query_scalar(
            "SELECT line_number FROM lines WHERE doc->'currentProduct'->>'productCode' = $1",
        )
        .bind(&f.product_code)
        .fetch_all(&self.pool)
        .await?;
        Ok(lines.into_iter().map(|line| View::Line { line }).collect())
    }

    /// Rewrites views in Redis from the read tables (full documents, so repeating it is
    /// harmless) and announces each changed key for the query-services' L1 caches and
    /// `minPosition` waiters. The positions are loaded first and written last, so a
    /// reader that saw one sees the views it covers.
    ///
    /// One transaction holds the views' locks ([`lock_views`]) from before the loads
    /// until the writes are done, on one connection. A lock and a transaction per view
    /// took a pooled connection each, and changes waited for them: freshness p99 was
    /// 67-79 ms that way, 59-69 ms this way, 50-64 ms with no lock shared by replicas.
    pub async fn refresh(&self, views: &[View]) -> anyhow::Result<()> {
        let mut views = views.to_vec();
        views.sort();
        views.dedup();
        if views.is_empty() {
            return Ok(());
        }
        // Positions loaded first (and written last): an event committed between two loads
        // can then only make the other views newer than the position, never older.
        views.sort_by_key(|view| !matches!(view, View::Position { .. }));
        let keys: Vec<String> = views.iter().map(|v| v.redis_key(&self.prefix)).collect();
        let mut tx = self.pool.begin().await?;
        lock_views(&mut tx, &keys).await?;
        let mut loaded = Vec::with_capacity(views.len());
        for view in &views {
            loaded.push(view.load(&mut *tx).await?);
        }
        let (positions, others): (Vec<_>, Vec<_>) = views
            .iter()
            .zip(&keys)
            .zip(loaded)
            .partition(|((view, _), _)| matches!(view, View::Position { .. }));
        // Side by side (one round trip's wait instead of one per view), the positions
        // after everything else.
        for batch in [others, positions] {
            futures::future::try_join_all(
                batch
                    .into_iter()
                    .map(|((view, key), doc)| self.write(view, key, doc)),
            )
            .await?;
        }
        tx.commit().await?;
        // The positions too: they are what `minPosition` waiters in query-service wait
        // for (without them they woke on the views, found the old position, and slept
        // until their next recheck: about 50 ms of every read-your-writes query).
        futures::future::try_join_all(keys.iter().map(|key| {
            let mut redis = self.redis.clone();
            async move { redis.publish::<_, _, i64>(&self.channel, key).await }
        }))
        .await?;
        Ok(())
    }

    /// Sets a loaded view in Redis, or deletes it when it no longer exists.
    async fn write(&self, view: &View, key: &str, doc: Option<Vec<u8>>) -> redis::RedisResult<()> {
        let mut redis = self.redis.clone();
        match doc {
            Some(bytes) => redis.set_ex(key, bytes, view.ttl().as_secs()).await,
            None => redis.del(key).await,
        }
    }

    /// Tries every parked aggregate once, in sequence order, stopping an aggregate at its
    /// first event that still cannot be applied.
    pub async fn retry_parked(&self) -> anyhow::Result<RetryReport> {
        let aggregates: Vec<(String, String)> =
            sqlx::query_as("SELECT DISTINCT aggregate_type, aggregate_id FROM parked")
                .fetch_all(&self.pool)
                .await?;
        let mut report = RetryReport::default();
        for (aggregate_type, aggregate_id) in aggregates {
            let rows: Vec<ParkedRow> = sqlx::query_as(
                "SELECT id, sequence, topic, partition, \"offset\", key, payload FROM parked
                      WHERE aggregate_type = $1 AND aggregate_id = $2 ORDER BY sequence, id",
            )
            .bind(&aggregate_type)
            .bind(&aggregate_id)
            .fetch_all(&self.pool)
            .await?;
            let mut blocked = false;
            for (id, sequence, topic, partition, offset, key, payload) in rows {
                if blocked {
                    report.still_parked += 1;
                    continue;
                }
                let msg = Incoming {
                    topic,
                    partition,
                    offset,
                    key,
                    payload,
                    headers: vec![],
                };
                let Ok(decoded) = self.decoder.decode_checked(&msg) else {
                    // Decoded once, so only a changed contract gets here: keep it parked.
                    blocked = true;
                    report.still_parked += 1;
                    continue;
                };
                let mut tx = self.pool.begin().await?;
                let applied = lock_checkpoint(&mut tx, &aggregate_type, &aggregate_id)
                    .await?
                    .applied;
                let mut views = vec![];
                if sequence > applied {
                    match apply(&mut *tx, &decoded).await {
                        Ok(extra) => {
                            advance(&mut tx, &decoded, &aggregate_type, &aggregate_id, sequence)
                                .await?;
                            views = extra;
                            views.extend(decoded.views());
                            report.applied += 1;
                        }
                        Err(ApplyError::Unapplicable(reason)) => {
                            tx.rollback().await?;
                            sqlx::query("UPDATE parked SET reason = $2 WHERE id = $1")
                                .bind(id)
                                .bind(&reason)
                                .execute(&self.pool)
                                .await?;
                            blocked = true;
                            report.still_parked += 1;
                            continue;
                        }
                        Err(ApplyError::Database(e)) => return Err(e.into()),
                    }
                }
                sqlx::query("DELETE FROM parked WHERE id = $1")
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                views.extend(self.lines_showing(&decoded).await?);
                self.refresh(&views).await?;
            }
        }
        self.update_parked_gauge().await;
        Ok(report)
    }

    pub async fn update_parked_gauge(&self) {
        if let Ok(n) = sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM (SELECT DISTINCT aggregate_type, aggregate_id FROM parked) p",
        )
        .fetch_one(&self.pool)
        .await
        {
            metrics::gauge!("phonebill_parked_lines", "projection" => "views").set(n as f64);
        }
    }
}

/// Where an aggregate stands, read under its checkpoint's row lock.
struct Checkpoint {
    /// The last applied sequence.
    applied: i64,
    /// The highest parked sequence, if any is parked.
    parked: Option<i64>,
}

/// The aggregate's last applied sequence, row-locked for this transaction (so two
/// consumers after a rebalance never apply the same event side by side), and its highest
/// parked sequence. One statement on the usual path: the row is inserted only for an
/// aggregate's first event (then read again, locked). Each statement on this path is a
/// round trip on a busy machine, where the projector's share of PostgreSQL's CPU sets
/// how fresh the views are under load.
async fn lock_checkpoint(
    tx: &mut PgConnection,
    aggregate_type: &str,
    aggregate_id: &str,
) -> Result<Checkpoint, sqlx::Error> {
    async fn read(
        tx: &mut PgConnection,
        aggregate_type: &str,
        aggregate_id: &str,
    ) -> Result<Option<(i64, Option<i64>)>, sqlx::Error> {
        sqlx::query_as(
            "SELECT a.sequence,
                    (SELECT max(p.sequence) FROM parked p
                      WHERE p.aggregate_type = $1 AND p.aggregate_id = $2)
               FROM applied a WHERE a.aggregate_type = $1 AND a.aggregate_id = $2 FOR UPDATE",
        )
        .bind(aggregate_type)
        .bind(aggregate_id)
        .fetch_optional(tx)
        .await
    }
    let found = match read(tx, aggregate_type, aggregate_id).await? {
        Some(found) => found,
        None => {
            sqlx::query(
                "INSERT INTO applied (aggregate_type, aggregate_id, sequence) VALUES ($1, $2, 0)
                 ON CONFLICT DO NOTHING",
            )
            .bind(aggregate_type)
            .bind(aggregate_id)
            .execute(&mut *tx)
            .await?;
            read(tx, aggregate_type, aggregate_id)
                .await?
                .ok_or(sqlx::Error::RowNotFound)?
        }
    };
    Ok(Checkpoint {
        applied: found.0,
        parked: found.1,
    })
}

/// Applies a decoded event to a store (PostgreSQL live, memory in a replay); returns the
/// views touched beyond [`Decoded::views`].
pub async fn apply<S: Store>(tx: &mut S, decoded: &Decoded) -> Result<Vec<View>, ApplyError> {
    let result = match decoded {
        Decoded::ProductChange(env, event) => projections::product_change::apply(tx, env, event)
            .await
            .map(|()| vec![]),
        Decoded::Kos(env, fact) => projections::kos::apply(tx, env, fact).await,
        Decoded::Inquiries(items) => {
            for (_, e) in items {
                projections::inquiries::apply(tx, e).await?;
            }
            Ok(vec![])
        }
    };
    // Bad data the database refuses (class 22 data exception, 23 integrity) will not get
    // better by retrying: park it like any other event that cannot be applied.
    match result {
        Err(ApplyError::Database(sqlx::Error::Database(e)))
            if e.code()
                .is_some_and(|c| c.starts_with("22") || c.starts_with("23")) =>
        {
            Err(ApplyError::Unapplicable(e.to_string()))
        }
        other => other,
    }
}

async fn advance(
    tx: &mut PgConnection,
    decoded: &Decoded,
    aggregate_type: &str,
    aggregate_id: &str,
    sequence: i64,
) -> Result<(), sqlx::Error> {
    // One statement: the checkpoint and the log entry.
    sqlx::query(
        "WITH advanced AS (
             UPDATE applied SET sequence = $4 WHERE aggregate_type = $2 AND aggregate_id = $3
         )
         INSERT INTO apply_log (event_id, aggregate_type, aggregate_id, sequence)
         VALUES ($1, $2, $3, $4)
         ON CONFLICT (event_id) DO UPDATE SET times = apply_log.times + 1",
    )
    .bind(decoded.envelope().event_id)
    .bind(aggregate_type)
    .bind(aggregate_id)
    .bind(sequence)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

async fn park(
    tx: &mut PgConnection,
    msg: &Incoming,
    aggregate_type: &str,
    aggregate_id: &str,
    sequence: i64,
    reason: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO parked (aggregate_type, aggregate_id, sequence, topic, partition, \"offset\",
                             key, payload, reason)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(aggregate_type)
    .bind(aggregate_id)
    .bind(sequence)
    .bind(&msg.topic)
    .bind(msg.partition)
    .bind(msg.offset)
    .bind(&msg.key)
    .bind(&msg.payload)
    .bind(reason)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Counts `n` handled events of a type with one outcome.
fn count(event_type: &str, outcome: &Outcome, n: u64) {
    if n == 0 {
        return;
    }
    let label = match outcome {
        Outcome::Applied => "applied",
        Outcome::Duplicate => "duplicate",
        Outcome::Parked => "parked",
        Outcome::Rejected { .. } => "rejected",
    };
    metrics::counter!("phonebill_projector_events_total", "event_type" => event_type.to_owned(), "outcome" => label)
        .increment(n);
    if *outcome == Outcome::Applied {
        metrics::counter!("phonebill_projector_events_applied_total", "event_type" => event_type.to_owned())
            .increment(n);
    }
}
