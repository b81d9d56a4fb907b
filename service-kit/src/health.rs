//! Liveness, readiness (PostgreSQL and the broker answer) and Prometheus metrics, for a
//! service whose state can hand out a [`Health`].

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{FromRef, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};
use sqlx::PgPool;

use crate::kafka::{self, Admin};

/// What the health endpoints look at.
#[derive(Clone)]
pub struct Health {
    pub pool: PgPool,
    pub admin: Arc<Admin>,
}

/// `/health/live`, `/health/ready`, and `/metrics` when `with_metrics` (no metrics port
/// of its own: [`crate::telemetry::MetricsListener::beside_api`]).
pub fn router<S>(with_metrics: bool) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    Health: FromRef<S>,
{
    let router = Router::new()
        .route(
            "/health/live",
            get(|| async { Json(json!({"status": "UP"})) }),
        )
        .route("/health/ready", get(ready));
    crate::telemetry::with_metrics(router, with_metrics)
}

async fn ready(State(health): State<Health>) -> (StatusCode, Json<Value>) {
    let database = sqlx::query("SELECT 1").execute(&health.pool).await.is_ok();
    let broker = kafka::reachable(&health.admin, Duration::from_secs(2)).await;
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
