//! Liveness, readiness (Redis, PostgreSQL, broker) and Prometheus metrics.

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};
use service_kit::kafka;

use super::AppState;

/// Health, and `/metrics` unless it has a port of its own.
pub fn router(with_metrics: bool) -> Router<AppState> {
    let router = Router::new()
        .route(
            "/health/live",
            get(|| async { Json(json!({"status": "UP"})) }),
        )
        .route("/health/ready", get(ready));
    service_kit::telemetry::with_metrics(router, with_metrics)
}

async fn ready(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let database = sqlx::query("SELECT 1")
        .execute(&state.views.pool())
        .await
        .is_ok();
    let mut redis = state.views.redis();
    let redis_up = tokio::time::timeout(
        Duration::from_secs(1),
        redis::cmd("PING").query_async::<String>(&mut redis),
    )
    .await
    .is_ok_and(|r| r.is_ok());
    let broker = kafka::reachable(&state.admin, Duration::from_secs(2)).await;
    let up = |ok: bool| if ok { "UP" } else { "DOWN" };
    // Redis down is degraded, not unready: queries are answered from PostgreSQL. The
    // broker only carries inquiry records, which may be dropped.
    let status = if database {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(json!({
            "status": up(database),
            "checks": {"postgres": up(database), "redis": up(redis_up), "kafka": up(broker), "l1": up(state.views.l1_live())}
        })),
    )
}
