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

/// `/health/ready` of a service that needs PostgreSQL and the broker.
// Fields in sorted order, as the `json!` body this replaced: the same bytes.
#[derive(Debug, Serialize, ToSchema)]
pub struct Readiness {
    pub checks: ReadinessChecks,
    /// `UP` when every check is (the answer is then 200, else 503).
    pub status: Up,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ReadinessChecks {
    pub kafka: Up,
    pub postgres: Up,
}

async fn ready(State(health): State<Health>) -> (StatusCode, Json<Readiness>) {
    let database = sqlx::query("SELECT 1").execute(&health.pool).await.is_ok();
    let broker = kafka::reachable(&health.admin, Duration::from_secs(2)).await;
    let status = if database && broker {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let answer = Readiness {
        checks: ReadinessChecks {
            kafka: broker.into(),
            postgres: database.into(),
        },
        status: (database && broker).into(),
    };
    (status, Json(answer))
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
