//! Logout. A revoked token is written to `revoked_tokens` (which every command-service
//! replica checks) and published to Redis as `{prefix}revoked:{jti}`, with a TTL of the
//! token's remaining life, where query-service checks it. Both until the token expires.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use read_model::redis_conn::{RedisConfig, RedisConn};
use service_kit::auth::{AuthError, Caller, Clock, RedisRevocations, Revocations};
use sqlx::PgPool;
use tokio::sync::OnceCell;

use crate::error::AppError;

/// This service's revocation check: its own table (authoritative on the command side,
/// and it survives a Redis flush). A database error fails closed.
pub struct PgRevocations {
    pool: PgPool,
}

impl PgRevocations {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }
}

#[async_trait::async_trait]
impl Revocations for PgRevocations {
    async fn is_revoked(&self, jti: &str) -> Result<bool, AuthError> {
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM revoked_tokens WHERE jti = $1)")
            .bind(jti)
            .fetch_one(&self.pool)
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, "revocation check failed; refusing the token");
                AuthError::Unavailable
            })
    }
}

#[derive(Clone)]
pub struct Logout {
    pool: PgPool,
    clock: Arc<dyn Clock>,
    redis_config: RedisConfig,
    /// Connected on first use, so a Redis outage never stops commands.
    redis: Arc<OnceCell<RedisRevocations<RedisConn>>>,
}

impl Logout {
    pub fn new(pool: PgPool, clock: Arc<dyn Clock>, redis_config: RedisConfig) -> Self {
        Self {
            pool,
            clock,
            redis_config,
            redis: Arc::new(OnceCell::new()),
        }
    }

    async fn redis(&self) -> redis::RedisResult<&RedisRevocations<RedisConn>> {
        self.redis
            .get_or_try_init(|| async {
                let conn = RedisConn::connect(&self.redis_config).await?;
                Ok(RedisRevocations::new(conn, &self.redis_config.key_prefix))
            })
            .await
    }

    async fn publish(&self, jti: &str, expires_at: DateTime<Utc>) -> redis::RedisResult<()> {
        self.redis()
            .await?
            .revoke(jti, expires_at, self.clock.now())
            .await
    }

    /// Revokes the caller's token everywhere. If Redis cannot be told, the answer is 503
    /// `AUTH_UNAVAILABLE` (the command side has already revoked it; retrying is safe).
    pub async fn revoke(&self, caller: &Caller) -> Result<(), AppError> {
        sqlx::query(
            "INSERT INTO revoked_tokens (jti, expires_at) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        )
        .bind(&caller.jti)
        .bind(caller.expires_at)
        .execute(&self.pool)
        .await?;
        self.publish(&caller.jti, caller.expires_at)
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, "could not publish a logout to Redis");
                AppError::Auth(AuthError::Unavailable)
            })
    }

    /// At start: forgets expired revocations and publishes the others again (Redis may
    /// have lost them). A Redis outage is logged, not fatal.
    pub async fn republish(&self) -> Result<usize, AppError> {
        let now = self.clock.now();
        sqlx::query("DELETE FROM revoked_tokens WHERE expires_at <= $1")
            .bind(now)
            .execute(&self.pool)
            .await?;
        let live: Vec<(String, DateTime<Utc>)> =
            sqlx::query_as("SELECT jti, expires_at FROM revoked_tokens")
                .fetch_all(&self.pool)
                .await?;
        for (jti, expires_at) in &live {
            if let Err(e) = self.publish(jti, *expires_at).await {
                tracing::warn!(error = %e, "could not republish logouts to Redis");
                break;
            }
        }
        Ok(live.len())
    }
}
