//! HTTP: one `router()` per resource, merged here with the cross-cutting layers
//! (correlation id, timeout, metrics, panic guard, body limit).

mod extract;
mod health;
mod openapi;
mod product_changes;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::middleware;
use axum::response::IntoResponse;
use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;
use service_kit::kafka::Admin;
use sqlx::PgPool;

use crate::error::AppError;
use crate::product_change::ProductChanges;

/// Everything a handler may use, cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub changes: ProductChanges,
    pub pool: PgPool,
    pub admin: Arc<Admin>,
    pub metrics: PrometheusHandle,
    pub request_timeout: Duration,
}

pub fn router(state: AppState, body_limit: usize) -> Router {
    let timeout = state.request_timeout;
    Router::new()
        .merge(product_changes::router())
        .merge(health::router())
        .merge(openapi::router())
        .layer(middleware::from_fn(move |req, next| {
            service_kit::http::observe(timeout, req, next)
        }))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(|_| {
            AppError::Internal(anyhow::anyhow!("handler panicked")).into_response()
        }))
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(state)
}
