//! HTTP: one `router()` per resource, merged here with the cross-cutting layers
//! (correlation id, timeout, metrics, panic guard, body limit).

mod extract;
mod health;
mod openapi;
mod product_changes;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{HeaderName, HeaderValue};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;
use sqlx::PgPool;
use tracing::Instrument;
use uuid::Uuid;

use crate::error::AppError;
use crate::kafka::Admin;
use crate::product_change::ProductChanges;

pub use extract::CorrelationId;

pub const CORRELATION_HEADER: HeaderName = HeaderName::from_static("x-correlation-id");

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
    Router::new()
        .merge(product_changes::router())
        .merge(health::router())
        .merge(openapi::router())
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(|_| {
            AppError::Internal(anyhow::anyhow!("handler panicked")).into_response()
        }))
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(state)
}

/// Gives every request a correlation id (taken from `X-Correlation-Id` or made up), a
/// span carrying it, a deadline and its place in the request metrics.
async fn observe(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let correlation_id = request
        .headers()
        .get(&CORRELATION_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| Uuid::parse_str(v).ok())
        .unwrap_or_else(Uuid::new_v4);
    request
        .extensions_mut()
        .insert(CorrelationId(correlation_id));
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = request.method().clone();
    let span = tracing::info_span!("http", %method, %route, %correlation_id);
    let started = Instant::now();
    let mut response = match tokio::time::timeout(
        state.request_timeout,
        next.run(request).instrument(span.clone()),
    )
    .await
    {
        Ok(response) => response,
        Err(_) => AppError::Timeout.into_response(),
    };
    let status = response.status().as_u16().to_string();
    let elapsed = started.elapsed();
    metrics::counter!("http_server_requests_total", "route" => route.clone(), "method" => method.to_string(), "status" => status.clone())
        .increment(1);
    metrics::histogram!("http_server_request_duration_seconds", "route" => route, "method" => method.to_string(), "status" => status.clone())
        .record(elapsed.as_secs_f64());
    span.in_scope(|| tracing::debug!(%status, elapsed_ms = elapsed.as_millis() as u64, "request"));
    if let Ok(value) = HeaderValue::from_str(&correlation_id.to_string()) {
        response.headers_mut().insert(CORRELATION_HEADER, value);
    }
    response
}
