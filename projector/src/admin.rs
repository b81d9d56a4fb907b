//! The operators' endpoints on the projector: the parked events and retrying them, and a
//! reconciliation of a range of lines. Admins only (the pod is reachable from the
//! gateway's subnet since the analytics route).

use axum::extract::{Query, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Serialize;
use service_kit::auth::Caller;
use service_kit::problem::{Problem, ProblemCode, TokenProblems};
use sqlx::PgPool;
use utoipa::ToSchema;

use crate::reconcile::{self, Report};
use crate::startup::AppState;

pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/admin/parked", get(list_parked))
        .route("/admin/parked/retry", post(retry_parked))
        .route("/admin/reconciliation", get(reconciliation))
}

/// `GET /admin/parked`: the parked events (at most 1,000), by aggregate and sequence.
#[derive(Debug, Serialize, ToSchema)]
pub struct ParkedList {
    pub items: Vec<Parked>,
}

/// One parked event: the aggregate it belongs to (whose later events queue behind it)
/// and why it could not be applied.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Parked {
    pub aggregate_id: String,
    pub aggregate_type: String,
    pub reason: String,
    pub sequence: i64,
}

/// `POST /admin/parked/retry`: how many parked events applied now and how many stay.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RetryAnswer {
    pub applied: u64,
    pub still_parked: u64,
}

/// The parked events, at most `limit`, by aggregate and sequence.
pub async fn parked(pool: &PgPool, limit: i64) -> Result<Vec<Parked>, sqlx::Error> {
    let rows: Vec<(String, String, i64, String)> = sqlx::query_as(
        "SELECT aggregate_type, aggregate_id, sequence, reason FROM parked
          ORDER BY aggregate_type, aggregate_id, sequence LIMIT $1",
    )
    .bind(limit)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(aggregate_type, aggregate_id, sequence, reason)| Parked {
            aggregate_id,
            aggregate_type,
            reason,
            sequence,
        })
        .collect())
}

/// The parked events (at most 1,000).
#[utoipa::path(get, path = "/admin/parked", tag = "admin",
    responses(
        (status = 200, description = "The parked events", body = ParkedList),
        (status = 403, description = "FORBIDDEN: not an admin", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "READ_MODEL_UNAVAILABLE, AUTH_UNAVAILABLE, TIMEOUT", body = Problem, content_type = "application/problem+json"),
        TokenProblems),
    security(("bearer" = [])))]
pub(crate) async fn list_parked(
    caller: Caller,
    State(state): State<AppState>,
) -> Result<Json<ParkedList>, Problem> {
    caller.require_admin().map_err(|e| e.problem())?;
    let items = parked(&state.processor.load().pool, 1000)
        .await
        .map_err(|e| {
            tracing::warn!(error = %e, "listing the parked events failed");
            unavailable()
        })?;
    Ok(Json(ParkedList { items }))
}

/// Retries every parked aggregate once (the same as `projector retry-parked`).
#[utoipa::path(post, path = "/admin/parked/retry", tag = "admin",
    responses(
        (status = 200, description = "How many applied now and how many stay parked", body = RetryAnswer),
        (status = 403, description = "FORBIDDEN: not an admin", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "READ_MODEL_UNAVAILABLE, AUTH_UNAVAILABLE, TIMEOUT", body = Problem, content_type = "application/problem+json"),
        TokenProblems),
    security(("bearer" = [])))]
pub(crate) async fn retry_parked(
    caller: Caller,
    State(state): State<AppState>,
) -> Result<Json<RetryAnswer>, Problem> {
    caller.require_admin().map_err(|e| e.problem())?;
    let report = state.processor.load().retry_parked().await.map_err(|e| {
        tracing::warn!(error = %e, "parked retry failed");
        unavailable()
    })?;
    Ok(Json(RetryAnswer {
        applied: report.applied,
        still_parked: report.still_parked,
    }))
}

/// `GET /admin/reconciliation`: which lines to reconcile.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct ReconcileParams {
    /// The first line number (inclusive); from the first line when absent.
    pub from: Option<String>,
    /// The last line number (inclusive).
    pub to: Option<String>,
    /// At most this many lines (default 1,000, at most 10,000; the command
    /// `phonebill-analyst reconcile` has no limit).
    pub limit: Option<u64>,
    /// Seconds a line that is not equal may take to catch up before it is reported
    /// (default 5, at most 20).
    pub wait_secs: Option<u64>,
}

/// Reconciles a range of lines of the active namespace: the event store against the
/// projector's apply log, the change requests and the Redis views.
#[utoipa::path(get, path = "/admin/reconciliation", tag = "admin", params(ReconcileParams),
    responses(
        (status = 200, description = "Each line equal, behind or divergent, with the totals per partition", body = Report),
        (status = 403, description = "FORBIDDEN: not an admin", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "READ_MODEL_UNAVAILABLE, AUTH_UNAVAILABLE, TIMEOUT", body = Problem, content_type = "application/problem+json"),
        TokenProblems),
    security(("bearer" = [])))]
pub(crate) async fn reconciliation(
    caller: Caller,
    State(state): State<AppState>,
    Query(params): Query<ReconcileParams>,
) -> Result<Json<Report>, Problem> {
    caller.require_admin().map_err(|e| e.problem())?;
    let options = reconcile::Options {
        from: params.from,
        to: params.to,
        limit: Some(params.limit.unwrap_or(1_000).clamp(1, 10_000)),
        wait: std::time::Duration::from_secs(params.wait_secs.unwrap_or(5).min(20)),
        ..Default::default()
    };
    let sources = state
        .processor
        .load()
        .reconcile_sources(&state.event_store_schema, state.partitions);
    let report = reconcile::run(&sources, &options, |_| {})
        .await
        .map_err(|e| {
            tracing::warn!(error = %e, "reconciliation failed");
            unavailable()
        })?;
    Ok(Json(report))
}

fn unavailable() -> Problem {
    Problem::new(
        ProblemCode::ReadModelUnavailable,
        "the read tables cannot be reached; retry shortly",
    )
}
