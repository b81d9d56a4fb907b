//! Liveness, readiness (Redis, PostgreSQL, broker) and Prometheus metrics.

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
pub use service_kit::health::{Liveness, Readiness, Up};
use service_kit::kafka;
use utoipa::ToSchema;

use super::AppState;

/// Health, and `/metrics` unless it has a port of its own.
pub fn router(with_metrics: bool) -> Router<AppState> {
    let router = Router::new()
        .route("/health/live", get(live))
        .route("/health/ready", get(ready));
    service_kit::telemetry::with_metrics(router, with_metrics)
}

/// query-service's readiness checks: ready when PostgreSQL answers.
// In sorted order, as the `json!` body they replaced: the same bytes.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReadinessChecks {
    /// Only carries bill-inquiry records, which may be dropped.
    pub kafka: Up,
    /// The in-process cache (its invalidation subscription is up).
    pub l1: Up,
    pub postgres: Up,
    /// Down is degraded, not unready: queries are answered from PostgreSQL.
    pub redis: Up,
}

#[utoipa::path(get, path = "/health/live", tag = "health",
    responses((status = 200, description = "The process is up", body = Liveness)))]
pub async fn live() -> Json<Liveness> {
    Json(Liveness { status: Up::Up })
}

#[utoipa::path(get, path = "/health/ready", tag = "health",
    responses(
        (status = 200, description = "Ready: PostgreSQL answers (Redis or the broker may be down)", body = Readiness<ReadinessChecks>),
        (status = 503, description = "Not ready: PostgreSQL does not answer", body = Readiness<ReadinessChecks>)))]
pub async fn ready(
    State(state): State<AppState>,
) -> (StatusCode, Json<Readiness<ReadinessChecks>>) {
    let database = state.views.database_reachable().await;
    let redis_up = state.views.redis().answers(Duration::from_secs(1)).await;
    let broker = kafka::reachable(&state.admin, Duration::from_secs(2)).await;
    let checks = ReadinessChecks {
        kafka: broker.into(),
        l1: state.views.l1_live().into(),
        postgres: database.into(),
        redis: redis_up.into(),
    };
    // Redis down is degraded, not unready: queries are answered from PostgreSQL. The
    // broker only carries inquiry records, which may be dropped.
    Readiness::answer(checks, database)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The bodies these routes had, built with `json!`, against the typed ones.
    #[test]
    fn the_typed_health_answers_are_the_bytes_the_json_bodies_were() {
        let up = |ok: bool| if ok { "UP" } else { "DOWN" };
        for (database, redis, kafka, l1) in [
            (true, true, true, true),
            (false, true, false, true),
            (true, false, true, false),
        ] {
            let before = json!({
                "status": up(database),
                "checks": {"postgres": up(database), "redis": up(redis), "kafka": up(kafka), "l1": up(l1)}
            });
            let after = Readiness {
                checks: ReadinessChecks {
                    kafka: kafka.into(),
                    l1: l1.into(),
                    postgres: database.into(),
                    redis: redis.into(),
                },
                status: database.into(),
            };
            assert_eq!(
                serde_json::to_string(&before).unwrap(),
                serde_json::to_string(&after).unwrap()
            );
        }
        assert_eq!(
            serde_json::to_string(&json!({"status": "UP"})).unwrap(),
            serde_json::to_string(&Liveness { status: Up::Up }).unwrap()
        );
    }
}
