//! HTTP: the admin API (`/admin/...`, admin tokens only), health, metrics and the OpenAPI document, with
//! the cross-cutting layers (correlation id, timeout, metrics, panic guard, body limit).

pub mod access;
mod admin;
pub mod openapi;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::middleware;
use axum::Router;
use service_kit::auth::Authenticator;
use service_kit::kafka::Admin;
use sqlx::PgPool;

use crate::billing::Billing;
use crate::catalog::Catalog;
use crate::changes::Changes;
use crate::lines::Lines;

/// Everything a handler may use, cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub catalog: Catalog,
    pub lines: Lines,
    pub billing: Billing,
    pub changes: Changes,
    pub pool: PgPool,
    pub admin: Arc<Admin>,
    pub request_timeout: Duration,
}

/// Every `/admin` route takes an admin token (command-service signs them); health,
/// metrics and the OpenAPI document take none.
pub fn router(
    state: AppState,
    auth: Authenticator,
    body_limit: usize,
    metrics_beside_api: bool,
) -> Router {
    let timeout = state.request_timeout;
    Router::new()
        .merge(
            admin::router().route_layer(middleware::from_fn_with_state(auth, access::admins_only)),
        )
        .merge(service_kit::health::router(metrics_beside_api))
        .merge(service_kit::http::openapi_route(openapi::document))
        .layer(service_kit::http::ObserveLayer::new(timeout))
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(state)
}

impl axum::extract::FromRef<AppState> for service_kit::health::Health {
    fn from_ref(state: &AppState) -> Self {
        Self {
            pool: state.pool.clone(),
            admin: state.admin.clone(),
        }
    }
}
