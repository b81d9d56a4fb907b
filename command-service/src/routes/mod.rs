//! HTTP: one `router()` per resource, merged here with the cross-cutting layers
//! (correlation id, timeout, metrics, panic guard, body limit, CORS, security headers).
//! The API routes (auth, product changes) also carry the per-IP rate limit; every
//! handler there except login takes a [`Caller`](service_kit::auth::Caller), so it
//! answers 401 without a valid token. Health, metrics and OpenAPI stay public.

mod auth;
mod extract;
pub mod openapi;
mod product_changes;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, FromRef};
use axum::Router;
use service_kit::auth::Authenticator;
use service_kit::hardening::{Hardened, HardeningConfig, RateLimit, TrustedProxyHops};
use service_kit::kafka::Admin;
use sqlx::PgPool;

use crate::auth::{Credentials, Logout};
use crate::product_change::ProductChanges;

/// Everything a handler may use, cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub changes: ProductChanges,
    pub pool: PgPool,
    pub admin: Arc<Admin>,
    pub request_timeout: Duration,
    pub auth: Authenticator,
    pub credentials: Credentials,
    pub logout: Logout,
    /// Where the client's address comes from (login lockouts count per address).
    pub trusted_proxy_hops: TrustedProxyHops,
}

impl FromRef<AppState> for TrustedProxyHops {
    fn from_ref(state: &AppState) -> Self {
        state.trusted_proxy_hops
    }
}

impl FromRef<AppState> for Authenticator {
    fn from_ref(state: &AppState) -> Self {
        state.auth.clone()
    }
}

/// The API inside CORS and the security headers (`HardeningConfig::around`).
pub fn router(
    state: AppState,
    body_limit: usize,
    hardening: &HardeningConfig,
    ip_limit: Option<RateLimit>,
    metrics_beside_api: bool,
) -> Hardened<Router> {
    let timeout = state.request_timeout;
    let api = Router::new()
        .merge(product_changes::router())
        .merge(auth::router());
    let router = Router::new()
        .merge(RateLimit::apply(ip_limit, api))
        .merge(service_kit::health::router(metrics_beside_api))
        .merge(service_kit::http::openapi_route(openapi::document))
        .layer(service_kit::http::ObserveLayer::new(timeout))
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(state);
    hardening.around(router)
}

impl axum::extract::FromRef<AppState> for service_kit::health::Health {
    fn from_ref(state: &AppState) -> Self {
        Self {
            pool: state.pool.clone(),
            admin: state.admin.clone(),
        }
    }
}
