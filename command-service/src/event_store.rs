//! The event repository: postgres-es for reads, and one multi-row INSERT for writes.
//!
//! postgres-es writes a command's events with BEGIN, one INSERT per event, COMMIT. A
//! single INSERT of all rows is just as atomic (one statement, one implicit transaction)
//! and takes one round trip instead of four, which is most of the command path's cost.
//! A duplicate (aggregate, sequence) still fails the primary key and surfaces as an
//! optimistic-lock conflict, exactly as before.
//!
//! The same statement keeps `kos_deadlines`, the timeout sweeper's index: a row per
//! change sent to KOS, deleted when the change is completed or failed. Being part of the
//! events' statement, it can never disagree with them. (Migration 0003 did this with a
//! per-row plpgsql trigger; 0005 leaves that trigger to rows written without
//! `deadline_kept`, i.e. by older versions during a rolling update.)

use cqrs_es::persist::{
    PersistedEventRepository, PersistenceError, ReplayStream, SerializedEvent, SerializedSnapshot,
};
use std::collections::HashMap;

use chrono::{DateTime, Utc};
use cqrs_es::Aggregate;
use postgres_es::PostgresEventRepository;
use serde_json::Value;
use sqlx::PgPool;
use uuid::Uuid;

/// Appends the events (`$1` the aggregate type, then one array per column).
const APPEND: &str =
    "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata, deadline_kept)
     SELECT $1, *, true FROM UNNEST($2::text[], $3::bigint[], $4::text[], $5::text[], $6::text[]::json[], $7::text[]::json[])";

/// `APPEND`, opening deadlines (`$8`-`$10`) and closing others (`$11`) in the same
/// statement. The two never name the same request (see `deadline_changes`).
const APPEND_WITH_DEADLINES: &str = "WITH appended AS (
         INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata, deadline_kept)
         SELECT $1, *, true FROM UNNEST($2::text[], $3::bigint[], $4::text[], $5::text[], $6::text[]::json[], $7::text[]::json[])),
     opened AS (
         INSERT INTO kos_deadlines (request_id, line_number, answer_by)
         SELECT * FROM UNNEST($8::uuid[], $9::text[], $10::timestamptz[])
         ON CONFLICT (request_id) DO NOTHING)
     DELETE FROM kos_deadlines WHERE request_id = ANY($11::uuid[])";

/// What an event does to the request's deadline.
#[derive(Debug, Clone, PartialEq)]
enum Deadline<'a> {
    /// `ProductChangeSentToKos`: KOS must answer by then.
    Open {
        line_number: &'a str,
        answer_by: DateTime<Utc>,
    },
    /// `ProductChangeCompleted` / `ProductChangeFailed`: no more waiting.
    Close,
}

/// The deadline changes of a batch of events, one per request: the last event of a
/// request decides, as the trigger's row-by-row execution did.
fn deadline_changes(
    events: &[SerializedEvent],
) -> Result<HashMap<Uuid, Deadline<'_>>, PersistenceError> {
    let mut changes = HashMap::new();
    for event in events {
        let opens = match event.event_type.as_str() {
            "ProductChangeSentToKos" => true,
            "ProductChangeCompleted" | "ProductChangeFailed" => false,
            _ => continue,
        };
        let body = &event.payload[event.event_type.as_str()];
        let field = |name: &str| {
            body[name].as_str().ok_or_else(|| {
                PersistenceError::UnknownError(
                    format!("{} without {name}", event.event_type).into(),
                )
            })
        };
        let request_id = Uuid::parse_str(field("request_id")?)
            .map_err(|e| PersistenceError::UnknownError(Box::new(e)))?;
        let change = if opens {
            let answer_by = DateTime::parse_from_rfc3339(field("answer_by")?)
                .map_err(|e| PersistenceError::UnknownError(Box::new(e)))?
                .with_timezone(&Utc);
            Deadline::Open {
                line_number: &event.aggregate_id,
                answer_by,
            }
        } else {
            Deadline::Close
        };
        changes.insert(request_id, change);
    }
    Ok(changes)
}

pub struct EventRepository {
    pool: PgPool,
    reads: PostgresEventRepository,
}

impl EventRepository {
    pub fn new(pool: PgPool) -> Self {
        Self {
            reads: PostgresEventRepository::new(pool.clone()),
            pool,
        }
    }
}

impl PersistedEventRepository for EventRepository {
    async fn get_events<A: Aggregate>(
        &self,
        aggregate_id: &str,
    ) -> Result<Vec<SerializedEvent>, PersistenceError> {
        self.reads.get_events::<A>(aggregate_id).await
    }

    async fn get_last_events<A: Aggregate>(
        &self,
        aggregate_id: &str,
        last_sequence: usize,
    ) -> Result<Vec<SerializedEvent>, PersistenceError> {
        self.reads
            .get_last_events::<A>(aggregate_id, last_sequence)
            .await
    }

    async fn get_snapshot<A: Aggregate>(
        &self,
        aggregate_id: &str,
    ) -> Result<Option<SerializedSnapshot>, PersistenceError> {
        self.reads.get_snapshot::<A>(aggregate_id).await
    }

    async fn persist<A: Aggregate>(
        &self,
        events: &[SerializedEvent],
        snapshot_update: Option<(String, Value, usize)>,
    ) -> Result<(), PersistenceError> {
        if snapshot_update.is_some() {
            return self.reads.persist::<A>(events, snapshot_update).await;
        }
        append(&self.pool, A::TYPE, events).await
    }

    async fn stream_events<A: Aggregate>(
        &self,
        aggregate_id: &str,
    ) -> Result<ReplayStream, PersistenceError> {
        self.reads.stream_events::<A>(aggregate_id).await
    }

    async fn stream_all_events<A: Aggregate>(&self) -> Result<ReplayStream, PersistenceError> {
        self.reads.stream_all_events::<A>().await
    }
}

/// The events of one command, numbered on from `last_sequence` and serialized exactly as
/// cqrs-es's `commit` does, for `append`: the request path commits on the connection that
/// loaded its lines, and commits many lines' events in one statement.
pub fn serialize<A: Aggregate>(
    aggregate_id: &str,
    last_sequence: usize,
    events: Vec<A::Event>,
    metadata: &HashMap<String, String>,
) -> Result<Vec<SerializedEvent>, PersistenceError> {
    events
        .into_iter()
        .zip(last_sequence + 1..)
        .map(|(payload, sequence)| {
            SerializedEvent::try_from(&cqrs_es::EventEnvelope::<A> {
                aggregate_id: aggregate_id.to_owned(),
                sequence,
                payload,
                metadata: metadata.clone(),
            })
        })
        .collect()
}

/// One INSERT of all the events (and their deadline changes), of any number of
/// aggregates: all are written or, on any conflict, none.
pub async fn append<'e, E: sqlx::PgExecutor<'e>>(
    executor: E,
    aggregate_type: &str,
    events: &[SerializedEvent],
) -> Result<(), PersistenceError> {
    if events.is_empty() {
        return Ok(());
    }
    let ids: Vec<&str> = events.iter().map(|e| e.aggregate_id.as_str()).collect();
    let sequences: Vec<i64> = events.iter().map(|e| e.sequence as i64).collect();
    let types: Vec<&str> = events.iter().map(|e| e.event_type.as_str()).collect();
    let versions: Vec<&str> = events.iter().map(|e| e.event_version.as_str()).collect();
    // JSON goes as text: the server checks it once on its way into the `json` columns.
    // Bound as `Value`, sqlx would send `jsonb`, which the server parses into a tree
    // and then prints and parses again for the cast to `json`.
    let payloads: Vec<String> = events.iter().map(|e| e.payload.to_string()).collect();
    let metadata: Vec<String> = events.iter().map(|e| e.metadata.to_string()).collect();
    let deadlines = deadline_changes(events)?;
    let query = sqlx::query(if deadlines.is_empty() {
        APPEND
    } else {
        APPEND_WITH_DEADLINES
    })
    .bind(aggregate_type)
    .bind(&ids)
    .bind(&sequences)
    .bind(&types)
    .bind(&versions)
    .bind(&payloads)
    .bind(&metadata);
    let query = if deadlines.is_empty() {
        query
    } else {
        let mut opened = (Vec::new(), Vec::new(), Vec::new());
        let mut closed = Vec::new();
        for (request_id, change) in deadlines {
            match change {
                Deadline::Open {
                    line_number,
                    answer_by,
                } => {
                    opened.0.push(request_id);
                    opened.1.push(line_number);
                    opened.2.push(answer_by);
                }
                Deadline::Close => closed.push(request_id),
            }
        }
        query
            .bind(opened.0)
            .bind(opened.1)
            .bind(opened.2)
            .bind(closed)
    };
    query.execute(executor).await.map_err(|e| match &e {
        // A duplicate (aggregate, sequence); or, between writers committing many lines at
        // once, a deadlock or serialization failure: retried the same way.
        sqlx::Error::Database(db)
            if matches!(db.code().as_deref(), Some("23505" | "40P01" | "40001")) =>
        {
            PersistenceError::OptimisticLockError
        }
        _ => PersistenceError::ConnectionError(Box::new(e)),
    })?;
    Ok(())
}
