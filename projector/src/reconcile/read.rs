//! Reading both sides of a reconciliation: the projector's namespace (one snapshot per
//! chunk of lines), then the event store, then Redis.

use std::collections::HashMap;

use events::event_id_for;
use events::product_change::ProductChangeEvent;
use events::stored::{StoredEvent, LINE_AGGREGATE_TYPE};
use read_model::keys::View;
use service_kit::redis_conn::RedisConn;
use sqlx::PgPool;
use uuid::Uuid;

use super::judge::{CommittedEvent, Projected};

/// The event store's last position: the cut a reconciliation is as of by default.
pub async fn last_position(pool: &PgPool, event_store: &str) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(&format!(
        "SELECT coalesce(max(position), 0)::bigint FROM \"{event_store}\".events"
    ))
    .fetch_one(pool)
    .await
}

/// Up to `limit` line numbers from `start` on (after it, unless `inclusive`) and not after
/// `to` that the event store or the projector knows, in order.
pub async fn next_lines(
    pool: &PgPool,
    event_store: &str,
    (start, inclusive): (&str, bool),
    to: Option<&str>,
    limit: i64,
) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar(&format!(
        "SELECT id FROM (
            (SELECT DISTINCT aggregate_id AS id FROM \"{event_store}\".events
              WHERE aggregate_type = $1 AND (aggregate_id > $2 OR ($5 AND aggregate_id = $2))
                AND ($3::text IS NULL OR aggregate_id <= $3)
              ORDER BY 1 LIMIT $4)
            UNION
            (SELECT aggregate_id FROM applied
              WHERE aggregate_type = $1 AND sequence > 0
                AND (aggregate_id > $2 OR ($5 AND aggregate_id = $2))
                AND ($3::text IS NULL OR aggregate_id <= $3)
              ORDER BY 1 LIMIT $4)
         ) known ORDER BY id LIMIT $4"
    ))
    .bind(LINE_AGGREGATE_TYPE)
    .bind(start)
    .bind(to)
    .bind(limit)
    .bind(inclusive)
    .fetch_all(pool)
    .await
}

/// What the namespace holds of `lines`, in one snapshot (the projector commits a
/// checkpoint, its apply log entry and the views together).
pub async fn projected(
    pool: &PgPool,
    lines: &[String],
    views: bool,
) -> Result<HashMap<String, Projected>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *tx)
        .await?;
    let checkpoints: Vec<(String, i64)> = sqlx::query_as(
        "SELECT aggregate_id, sequence FROM applied
          WHERE aggregate_type = $1 AND aggregate_id = ANY($2)",
    )
    .bind(LINE_AGGREGATE_TYPE)
    .bind(lines)
    .fetch_all(&mut *tx)
    .await?;
    let mut out: HashMap<String, Projected> = lines
        .iter()
        .map(|l| (l.clone(), Projected::default()))
        .collect();
    // The apply log is keyed by event id, and ids derive from (line, sequence).
    let mut wanted: HashMap<Uuid, (String, u64)> = HashMap::new();
    for (line, checkpoint) in checkpoints {
        let checkpoint = checkpoint.max(0) as u64;
        for sequence in 1..=checkpoint {
            wanted.insert(
                event_id_for(LINE_AGGREGATE_TYPE, &line, sequence),
                (line.clone(), sequence),
            );
        }
        out.entry(line).or_default().checkpoint = checkpoint;
    }
    let ids: Vec<Uuid> = wanted.keys().copied().collect();
    let logged: Vec<(Uuid, i32)> =
        sqlx::query_as("SELECT event_id, times FROM apply_log WHERE event_id = ANY($1)")
            .bind(&ids)
            .fetch_all(&mut *tx)
            .await?;
    for (id, times) in logged {
        let (line, sequence) = &wanted[&id];
        if let Some(p) = out.get_mut(line) {
            p.applied.insert(*sequence, (id, times));
        }
    }
    let parked: Vec<(String, i64)> = sqlx::query_as(
        "SELECT aggregate_id, min(sequence) FROM parked
          WHERE aggregate_type = $1 AND aggregate_id = ANY($2) GROUP BY aggregate_id",
    )
    .bind(LINE_AGGREGATE_TYPE)
    .bind(lines)
    .fetch_all(&mut *tx)
    .await?;
    for (line, sequence) in parked {
        if let Some(p) = out.get_mut(&line) {
            p.parked = Some(sequence.max(0) as u64);
        }
    }
    if views {
        let requests: Vec<(Uuid, String, serde_json::Value)> = sqlx::query_as(
            "SELECT request_id, line_number, doc FROM change_requests WHERE line_number = ANY($1)",
        )
        .bind(lines)
        .fetch_all(&mut *tx)
        .await?;
        for (id, line, doc) in requests {
            if let Some(p) = out.get_mut(&line) {
                p.requests.insert(id, doc);
            }
        }
    }
    tx.commit().await?;
    Ok(out)
}

/// An event store row and its position.
#[derive(sqlx::FromRow)]
struct PositionedRow {
    #[sqlx(flatten)]
    stored: StoredEvent,
    position: i64,
}

/// Every committed event of `lines`, in sequence order; with the events themselves when
/// the views are checked (otherwise their payloads are not even read).
pub async fn committed(
    pool: &PgPool,
    event_store: &str,
    lines: &[String],
    views: bool,
) -> Result<HashMap<String, Vec<CommittedEvent>>, sqlx::Error> {
    let rows: Vec<PositionedRow> = sqlx::query_as(&format!(
        "SELECT aggregate_id, sequence, event_type, event_version,
                CASE WHEN $3 THEN payload ELSE 'null'::json END AS payload,
                CASE WHEN $3 THEN metadata ELSE '{{}}'::json END AS metadata,
                recorded_at, position
           FROM \"{event_store}\".events
          WHERE aggregate_type = $1 AND aggregate_id = ANY($2)
          ORDER BY aggregate_id, sequence"
    ))
    .bind(LINE_AGGREGATE_TYPE)
    .bind(lines)
    .bind(views)
    .fetch_all(pool)
    .await?;
    let mut out: HashMap<String, Vec<CommittedEvent>> = HashMap::new();
    for PositionedRow { stored, position } in rows {
        let (line, sequence, recorded_at) = (
            stored.aggregate_id.clone(),
            stored.sequence,
            stored.recorded_at,
        );
        let event = if views {
            let event = serde_json::from_value::<ProductChangeEvent>(stored.payload.clone()).ok();
            match (stored.into_envelope(), event) {
                (Ok(envelope), Some(event)) => Some((envelope, event)),
                _ => None,
            }
        } else {
            None
        };
        out.entry(line).or_default().push(CommittedEvent {
            sequence: sequence.max(0) as u64,
            position,
            recorded_at,
            event,
        });
    }
    Ok(out)
}

/// KOS's orders for `lines` (kos-mock's `orders` in `schema`): line -> request id ->
/// outcome.
pub async fn kos_orders(
    pool: &PgPool,
    schema: &str,
    lines: &[String],
) -> Result<HashMap<String, HashMap<Uuid, String>>, sqlx::Error> {
    let rows: Vec<(Uuid, String, String)> = sqlx::query_as(&format!(
        "SELECT request_id, line_number, outcome FROM \"{schema}\".orders WHERE line_number = ANY($1)"
    ))
    .bind(lines)
    .fetch_all(pool)
    .await?;
    let mut out: HashMap<String, HashMap<Uuid, String>> = HashMap::new();
    for (request, line, outcome) in rows {
        out.entry(line).or_default().insert(request, outcome);
    }
    Ok(out)
}

/// The first of the line's Redis views that differs from the read tables' rendering of
/// it (a view absent from Redis is a cache miss, not a difference).
pub async fn redis_difference(
    pool: &PgPool,
    redis: &RedisConn,
    prefix: &str,
    line: &str,
    requests: impl Iterator<Item = Uuid>,
) -> anyhow::Result<Option<String>> {
    let mut views = vec![
        View::Line { line: line.into() },
        View::History { line: line.into() },
        View::Position { line: line.into() },
    ];
    views.extend(requests.map(|id| View::Request { id }));
    let mut conn = redis.clone();
    for view in views {
        let key = view.redis_key(prefix);
        let cached: Option<Vec<u8>> = redis::AsyncCommands::get(&mut conn, &key).await?;
        let Some(cached) = cached else { continue };
        if view.load(pool).await?.as_deref() != Some(cached.as_slice()) {
            return Ok(Some(format!(
                "Redis view {} differs from the read tables",
                &key[prefix.len()..]
            )));
        }
    }
    Ok(None)
}
