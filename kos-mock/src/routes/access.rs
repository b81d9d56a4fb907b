//! Who may use the admin API: holders of an admin token command-service signed and has
//! not logged out. The admin API reads customers' names and payment methods, suspends
//! lines, reprices products and sets KOS's success rate, so nothing else gets in.
//!
//! Logouts are checked in Redis on each admin request (rare traffic: one round trip
//! costs nothing here) over a connection made on first use, so KOS starts and processes
//! changes while Redis is away; meanwhile the admin API answers 503 AUTH_UNAVAILABLE.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use service_kit::auth::{
    AuthError, Authenticator, JwtConfig, RedisRevocations, Revocations, SystemClock, Tokens,
};
use service_kit::redis_conn::{RedisConfig, RedisConn};
use tokio::sync::OnceCell;

/// The admin API's authenticator: command-service's keys, its logouts in Redis.
pub fn authenticator(
    jwt: &JwtConfig,
    production: bool,
    redis: &RedisConfig,
) -> Result<Authenticator, String> {
    let tokens = Tokens::new(jwt, jwt.verifying_keys(production)?, Arc::new(SystemClock));
    let logouts = Logouts {
        config: redis.clone(),
        store: OnceCell::new(),
    };
    Ok(Authenticator::new(tokens, Arc::new(logouts), None))
}

/// The `route_layer` in front of every `/admin` route.
pub async fn admins_only(
    State(auth): State<Authenticator>,
    request: Request,
    next: Next,
) -> Result<Response, AuthError> {
    auth.authenticate(request.headers())
        .await?
        .require_admin()?;
    Ok(next.run(request).await)
}

struct Logouts {
    config: RedisConfig,
    store: OnceCell<RedisRevocations<RedisConn>>,
}

#[async_trait::async_trait]
impl Revocations for Logouts {
    async fn is_revoked(&self, jti: &str) -> Result<bool, AuthError> {
        let store = self
            .store
            .get_or_try_init(|| async {
                let conn = RedisConn::connect(&self.config).await?;
                Ok::<_, redis::RedisError>(RedisRevocations::new(conn, &self.config.key_prefix))
            })
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, "Redis unreachable: admin requests refused");
                AuthError::Unavailable
            })?;
        store.is_revoked(jti).await
    }
}
