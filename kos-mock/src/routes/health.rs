//! Liveness, readiness (PostgreSQL and the broker answer) and Prometheus metrics.

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

use super::AppState;
use service_kit::kafka;

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/health/live",
            get(|| async { Json(json!({"status": "UP"})) }),
        )
        .route("/health/ready", get(ready))
        .route(
            "/metrics",
            get(|State(state): State<AppState>| async move { state.metrics.render() }),
        )
}

async fn ready(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let database = sqlx::query("SELECT 1").execute(&state.pool).await.is_ok();
    let broker = kafka::reachable(&state.admin, Duration::from_secs(2)).await;
    let up = |ok: bool| if ok { "UP" } else { "DOWN" };
    let status = if database && broker {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(json!({
            "status": up(database && broker),
            "checks": {"postgres": up(database), "kafka": up(broker)}
        })),
    )
}
