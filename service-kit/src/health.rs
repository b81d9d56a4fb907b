//! Liveness, readiness (PostgreSQL and the broker answer) and Prometheus metrics, for a
//! service whose state can hand out a [`Health`].

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{FromRef, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use sqlx::PgPool;
use utoipa::ToSchema;

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
        .route("/health/live", get(live))
        .route("/health/ready", get(ready));
    crate::telemetry::with_metrics(router, with_metrics)
}

/// `UP` or `DOWN`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum Up {
    Up,
    Down,
}

impl From<bool> for Up {
    fn from(ok: bool) -> Self {
        if ok {
            Up::Up
        } else {
            Up::Down
        }
    }
}

/// `/health/live`: the process answers.
#[derive(Debug, Serialize, ToSchema)]
pub struct Liveness {
    pub status: Up,
}

/// Every service's `/health/live`.
pub async fn live() -> Json<Liveness> {
    Json(Liveness { status: Up::Up })
}

/// `/health/ready`'s answer: each dependency's state (`C`, the service's checks) and
/// whether the service can answer.
// Fields in sorted order, as the `json!` bodies this replaced: the same bytes.
#[derive(Debug, Serialize, ToSchema)]
pub struct Readiness<C> {
    pub checks: C,
    /// `UP` when the service can answer (the answer is then 200, else 503).
    pub status: Up,
}

impl<C> Readiness<C> {
    /// 200 when `ready`, else 503, with the checks.
    pub fn answer(checks: C, ready: bool) -> (StatusCode, Json<Self>) {
        let status = if ready {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        };
        let status_up = ready.into();
        (
            status,
            Json(Readiness {
                checks,
                status: status_up,
            }),
        )
    }
}

/// The checks of a service that needs PostgreSQL and the broker.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReadinessChecks {
    pub kafka: Up,
    pub postgres: Up,
}

async fn ready(State(health): State<Health>) -> (StatusCode, Json<Readiness<ReadinessChecks>>) {
    let database = sqlx::query("SELECT 1").execute(&health.pool).await.is_ok();
    let broker = kafka::reachable(&health.admin, Duration::from_secs(2)).await;
    let checks = ReadinessChecks {
        kafka: broker.into(),
        postgres: database.into(),
    };
    Readiness::answer(checks, database && broker)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_keeps_the_bytes_of_the_untyped_answer() {
        let typed = Readiness {
            checks: ReadinessChecks {
                kafka: Up::Down,
                postgres: Up::Up,
            },
            status: Up::Down,
        };
        let untyped = serde_json::json!({
            "status": "DOWN",
            "checks": {"postgres": "UP", "kafka": "DOWN"}
        });
        assert_eq!(
            serde_json::to_string(&typed).unwrap(),
            serde_json::to_string(&untyped).unwrap()
        );
    }
}
