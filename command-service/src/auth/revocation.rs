//! Logout. A revoked token is written to `revoked_tokens` (which every command-service
//! replica checks) and published to Redis as `{prefix}revoked:{jti}`, with a TTL of the
//! token's remaining life, where query-service checks it. Both until the token expires.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use service_kit::auth::{AuthError, Caller, Clock, RedisRevocations, Revocations};
use service_kit::redis_conn::{RedisConfig, RedisConn};
use sqlx::PgPool;
use tokio::sync::OnceCell;
use tokio_util::sync::CancellationToken;

use crate::error::AppError;

/// This service's revocation check: the revoked token ids, held in memory on every
/// replica so a request costs no round trip (a per-request `SELECT` cost a fifth of the
/// command throughput). Loaded from `revoked_tokens` at start and kept current by
/// `LISTEN`/`NOTIFY`: a logout notifies in its own transaction. The listener listens
/// before it loads, so nothing falls between the two. While the listener is down (it
/// reconnects with backoff) the check fails closed.
pub struct PgRevocations {
    state: Arc<RevokedSet>,
}

#[derive(Default)]
struct RevokedSet {
    ids: std::sync::RwLock<std::collections::HashSet<String>>,
    live: std::sync::atomic::AtomicBool,
}

impl RevokedSet {
    fn add(&self, jti: &str) {
        self.ids
            .write()
            .expect("not poisoned")
            .insert(jti.to_owned());
    }
}

impl PgRevocations {
    /// Loads the current revocations (returns once they are in memory) and keeps
    /// listening until the pool is closed.
    pub async fn start(pool: PgPool, channel: String) -> Result<Self, sqlx::Error> {
        let state = Arc::new(RevokedSet::default());
        let listener = listen_and_load(&pool, &channel, &state).await?;
        tokio::spawn(follow(pool, channel, Arc::clone(&state), listener));
        Ok(Self { state })
    }

    /// A logout on this replica counts at once, before its notification comes back.
    pub fn note(&self, jti: &str) {
        self.state.add(jti);
    }
}

/// The notification channel of a service schema (schema names are plain identifiers).
pub fn channel_for(schema: &str) -> String {
    format!("{schema}_revocations")
}

async fn listen_and_load(
    pool: &PgPool,
    channel: &str,
    state: &RevokedSet,
) -> Result<sqlx::postgres::PgListener, sqlx::Error> {
    let mut listener = sqlx::postgres::PgListener::connect_with(pool).await?;
    listener.listen(channel).await?;
    let ids: Vec<String> =
        sqlx::query_scalar("SELECT jti FROM revoked_tokens WHERE expires_at > now()")
            .fetch_all(pool)
            .await?;
    *state.ids.write().expect("not poisoned") = ids.into_iter().collect();
    state.live.store(true, std::sync::atomic::Ordering::SeqCst);
    Ok(listener)
}

async fn follow(
    pool: PgPool,
    channel: String,
    state: Arc<RevokedSet>,
    mut listener: sqlx::postgres::PgListener,
) {
    loop {
        match listener.try_recv().await {
            Ok(Some(notification)) => state.add(notification.payload()),
            // `None`: the connection was lost (notifications may have been missed).
            Ok(None) | Err(_) => {
                state.live.store(false, std::sync::atomic::Ordering::SeqCst);
                loop {
                    if pool.is_closed() {
                        return;
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                    match listen_and_load(&pool, &channel, &state).await {
                        Ok(fresh) => {
                            listener = fresh;
                            break;
                        }
                        Err(e) => tracing::warn!(error = %e, "revocation listener down"),
                    }
                }
            }
        }
    }
}

#[async_trait::async_trait]
impl Revocations for PgRevocations {
    async fn is_revoked(&self, jti: &str) -> Result<bool, AuthError> {
        if !self.state.live.load(std::sync::atomic::Ordering::SeqCst) {
            tracing::warn!("revocation listener down; refusing the token");
            return Err(AuthError::Unavailable);
        }
        Ok(self.state.ids.read().expect("not poisoned").contains(jti))
    }
}

#[derive(Clone)]
pub struct Logout {
    pool: PgPool,
    revocations: Arc<PgRevocations>,
    channel: String,
    clock: Arc<dyn Clock>,
    redis_config: RedisConfig,
    /// Connected on first use, so a Redis outage never stops commands.
    redis: Arc<OnceCell<RedisRevocations<RedisConn>>>,
}

impl Logout {
    pub fn new(
        pool: PgPool,
        revocations: Arc<PgRevocations>,
        channel: String,
        clock: Arc<dyn Clock>,
        redis_config: RedisConfig,
    ) -> Self {
        Self {
            pool,
            revocations,
            channel,
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
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO revoked_tokens (jti, expires_at) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        )
        .bind(caller.jti())
        .bind(caller.expires_at())
        .execute(&mut *tx)
        .await?;
        // Delivered to every replica's listener when the transaction commits.
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(&self.channel)
            .bind(caller.jti())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        self.revocations.note(caller.jti());
        self.publish(caller.jti(), caller.expires_at())
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, "could not publish a logout to Redis");
                AppError::Auth(AuthError::Unavailable)
            })
    }

    /// Revokes every live token issued to `customer_id` (a password reset, a role
    /// change, "log out everywhere"), as [`Logout::revoke`] does one. Safe to repeat: a
    /// repeat announces them all again.
    pub async fn revoke_all(&self, customer_id: &str) -> Result<usize, AppError> {
        let now = self.clock.now();
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO revoked_tokens (jti, expires_at)
             SELECT jti, expires_at FROM issued_tokens WHERE customer_id = $1 AND expires_at > $2
             ON CONFLICT DO NOTHING",
        )
        .bind(customer_id)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let live: Vec<(String, DateTime<Utc>)> = sqlx::query_as(
            "SELECT jti, expires_at FROM issued_tokens WHERE customer_id = $1 AND expires_at > $2",
        )
        .bind(customer_id)
        .bind(now)
        .fetch_all(&mut *tx)
        .await?;
        sqlx::query("SELECT pg_notify($1, jti) FROM unnest($2::text[]) AS jti")
            .bind(&self.channel)
            .bind(live.iter().map(|(jti, _)| jti.as_str()).collect::<Vec<_>>())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        for (jti, _) in &live {
            self.revocations.note(jti);
        }
        for (jti, expires_at) in &live {
            self.publish(jti, *expires_at).await.map_err(|e| {
                tracing::warn!(error = %e, "could not publish a revocation to Redis");
                AppError::Auth(AuthError::Unavailable)
            })?;
        }
        Ok(live.len())
    }

    /// Keeps Redis's copy of the logouts whole, for as long as the service runs: at
    /// start, and then whenever Redis holds fewer than PostgreSQL (a flush, a shard or
    /// a replica that came back empty), writes them all again. Followers hear each one,
    /// so a token logged out before Redis lost its copy is not taken again for longer
    /// than one `every`. A Redis outage is logged and retried at the next turn.
    pub async fn keep_redis_whole(self, every: Duration, shutdown: CancellationToken) {
        let mut first = true;
        loop {
            if let Err(e) = self.forget_expired().await {
                tracing::debug!(error = %e, "could not forget expired tokens");
            }
            match self.redis_lost_some(first).await {
                Ok(false) => {}
                Ok(true) => match self.republish().await {
                    Ok(n) => tracing::info!(revoked = n, "logouts written to Redis again"),
                    Err(e) => tracing::warn!(error = %e, "could not republish logouts"),
                },
                Err(e) => tracing::debug!(error = %e, "could not compare Redis's logouts"),
            }
            first = false;
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(every) => {}
            }
        }
    }

    /// Whether Redis holds fewer live logouts than PostgreSQL (always, the first time).
    async fn redis_lost_some(&self, first: bool) -> Result<bool, AppError> {
        if first {
            return Ok(true);
        }
        let now = self.clock.now();
        // Redis scores a logout by its expiry's whole second and counts those after
        // `now`'s; counting the same in PostgreSQL keeps a logout in its last second
        // from looking lost.
        let next_second = DateTime::from_timestamp(now.timestamp() + 1, 0).unwrap_or(now);
        let live: i64 =
            sqlx::query_scalar("SELECT count(*) FROM revoked_tokens WHERE expires_at >= $1")
                .bind(next_second)
                .fetch_one(&self.pool)
                .await?;
        if live == 0 {
            return Ok(false);
        }
        let redis_error = |e: redis::RedisError| AppError::Internal(anyhow::anyhow!(e));
        let held = self
            .redis()
            .await
            .map_err(redis_error)?
            .count(now)
            .await
            .map_err(redis_error)?;
        Ok(held < live as u64)
    }

    /// Expired tokens need no revocation and no record of their issue.
    async fn forget_expired(&self) -> Result<(), AppError> {
        let now = self.clock.now();
        sqlx::query("DELETE FROM revoked_tokens WHERE expires_at <= $1")
            .bind(now)
            .execute(&self.pool)
            .await?;
        sqlx::query("DELETE FROM issued_tokens WHERE expires_at <= $1")
            .bind(now)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Publishes the live revocations again. A Redis outage is logged, not fatal.
    pub async fn republish(&self) -> Result<usize, AppError> {
        let live: Vec<(String, DateTime<Utc>)> =
            sqlx::query_as("SELECT jti, expires_at FROM revoked_tokens WHERE expires_at > $1")
                .bind(self.clock.now())
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
