//! Views: L1 (in-process) -> Redis -> PostgreSQL read tables, refilling the layers above
//! on a miss. Reads projections only.
//!
//! L1 ([`crate::l1`], one per thread) stays correct when the projection changes: the
//! projector publishes every changed key on the invalidation channel and
//! [`crate::invalidation`] drops it here. While that subscription is down, L1 is bypassed
//! and emptied (a missed message would otherwise leave a stale entry). An entry read from
//! Redis is kept only if no invalidation of its key arrived while it was being read, so a
//! late reader never reinstates an old value.

use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::{ArcSwap, Guard};
use bytes::Bytes;
use read_model::keys::View;
use redis::AsyncCommands;
use service_kit::redis_conn::RedisConn;
use service_kit::sharded::Counter;
use sqlx::PgPool;

use crate::error::AppError;
use crate::l1::L1;
use crate::waiters::Waiters;

/// One view's bytes and their entity tag.
#[derive(Debug, Clone)]
pub struct Doc {
    pub bytes: Bytes,
    /// Kept as a header value: sharing it costs no copy per response.
    pub etag: axum::http::HeaderValue,
}

impl Doc {
    pub(crate) fn new(bytes: Bytes) -> Self {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        bytes.hash(&mut h);
        Self {
            etag: axum::http::HeaderValue::from_maybe_shared(Bytes::from(format!(
                "\"{:016x}\"",
                h.finish()
            )))
            .expect("hex digits and quotes are a valid header value"),
            bytes,
        }
    }

    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, AppError> {
        serde_json::from_slice(&self.bytes)
            .map_err(|e| AppError::Internal(anyhow::anyhow!("view does not parse: {e}")))
    }
}

/// Counters resolved once, sharded per thread (the hot path then only increments its own).
struct CacheCounters {
    l1_hit: &'static Counter,
    l1_miss: &'static Counter,
    redis_hit: &'static Counter,
    redis_miss: &'static Counter,
}

fn counters() -> &'static CacheCounters {
    static COUNTERS: std::sync::OnceLock<CacheCounters> = std::sync::OnceLock::new();
    COUNTERS.get_or_init(|| {
        let c = |layer: &'static str, result: &'static str| {
            Counter::register(metrics::counter!("phonebill_cache_requests_total", "layer" => layer, "result" => result))
        };
        CacheCounters {
            l1_hit: c("l1", "hit"),
            l1_miss: c("l1", "miss"),
            redis_hit: c("redis", "hit"),
            redis_miss: c("redis", "miss"),
        }
    })
}

#[derive(Clone)]
pub struct Views {
    inner: Arc<Inner>,
}

/// The namespace served: read tables (the pool's search path) and Redis key prefix.
/// Swapped whole at a replay's switch ([`Views::switch`]), so a read sees one or the
/// other, never a mix.
pub struct Namespace {
    /// The namespace id (`base` or a replay's id; empty until the pointer was read).
    pub id: String,
    pub schema: String,
    pub pool: PgPool,
    pub prefix: String,
}

struct Inner {
    redis: RedisConn,
    ns: ArcSwap<Namespace>,
    l1: L1,
    /// `minPosition` waiters, woken by the invalidation of the key they wait on.
    waiters: Arc<Waiters>,
}

impl Views {
    pub fn new(
        redis: RedisConn,
        schema: String,
        pool: PgPool,
        prefix: String,
        capacity: usize,
        ttl: Duration,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                redis,
                ns: ArcSwap::from_pointee(Namespace {
                    id: String::new(),
                    schema,
                    pool,
                    prefix,
                }),
                l1: L1::new(capacity, ttl),
                waiters: Arc::default(),
            }),
        }
    }

    pub fn prefix(&self) -> String {
        self.inner.ns.load().prefix.clone()
    }

    /// The pool of the namespace served now.
    pub fn pool(&self) -> PgPool {
        self.inner.ns.load().pool.clone()
    }

    /// Whether the served namespace's database answers (readiness).
    pub async fn database_reachable(&self) -> bool {
        sqlx::query("SELECT 1").execute(&self.pool()).await.is_ok()
    }

    pub fn namespace(&self) -> Arc<Namespace> {
        self.inner.ns.load_full()
    }

    /// Records the id of the namespace served (same schema and prefix).
    pub fn set_namespace_id(&self, id: &str) {
        let ns = self.inner.ns.load();
        if ns.id != id {
            self.inner.ns.store(Arc::new(Namespace {
                id: id.to_owned(),
                schema: ns.schema.clone(),
                pool: ns.pool.clone(),
                prefix: ns.prefix.clone(),
            }));
        }
    }

    /// Serves another namespace from now on (L1 emptied: its keys are the old
    /// namespace's); returns the one served before.
    pub fn switch(&self, ns: Namespace) -> Arc<Namespace> {
        let old = self.inner.ns.swap(Arc::new(ns));
        self.inner.l1.clear();
        self.inner.waiters.wake_all();
        old
    }

    pub fn redis(&self) -> RedisConn {
        self.inner.redis.clone()
    }

    /// Drops one key from L1 (an invalidation message).
    pub fn invalidate(&self, key: &str) {
        self.inner.l1.invalidate(key);
        self.inner.waiters.wake(key);
    }

    /// Turns L1 on (subscription up) or off and empty (subscription lost).
    pub fn set_l1_live(&self, live: bool) {
        self.inner.l1.set_live(live);
    }

    pub fn l1_live(&self) -> bool {
        self.inner.l1.is_live()
    }

    /// The view, from the nearest layer that has it.
    pub async fn get(&self, view: &View) -> Result<Option<Doc>, AppError> {
        self.get_with(view, true).await
    }

    /// The view from Redis or PostgreSQL, never L1 (read-your-writes after a wait).
    pub async fn get_fresh(&self, view: &View) -> Result<Option<Doc>, AppError> {
        self.get_with(view, false).await
    }

    async fn get_with(&self, view: &View, use_l1: bool) -> Result<Option<Doc>, AppError> {
        // A guard, not a reference count: a hit then writes no memory the other
        // workers read.
        let ns = self.inner.ns.load();
        let key = view.redis_key(&ns.prefix);
        let use_l1 = use_l1 && self.l1_live();
        if use_l1 {
            if let Some(doc) = self.inner.l1.get(&key) {
                counters().l1_hit.increment(1);
                return Ok(Some(doc));
            }
            counters().l1_miss.increment(1);
        }
        let ns = Guard::into_inner(ns);
        let stamp = self.inner.l1.stamp(&key);
        let mut redis = self.inner.redis.clone();
        let cached: Result<Option<Vec<u8>>, _> = redis.get(&key).await;
        let doc = match cached {
            Ok(Some(bytes)) => {
                counters().redis_hit.increment(1);
                Some(Doc::new(Bytes::from(bytes)))
            }
            other => {
                let redis_up = other.is_ok();
                counters().redis_miss.increment(1);
                if !redis_up {
                    tracing::warn!(%key, "Redis unavailable; reading the read tables");
                }
                let loaded = view.load(&ns.pool).await?;
                if let (Some(bytes), true) = (&loaded, redis_up) {
                    let _ = refill(&mut redis, &key, bytes, view.ttl()).await;
                }
                if !redis_up {
                    return Ok(loaded.map(|b| Doc::new(Bytes::from(b))));
                }
                loaded.map(|b| Doc::new(Bytes::from(b)))
            }
        };
        if let (true, Some(doc)) = (use_l1, &doc) {
            self.inner.l1.insert(key, doc.clone(), stamp);
        }
        Ok(doc)
    }

    /// The line stream's applied sequence (Redis, else the read tables).
    pub async fn position(&self, line: &str) -> Result<i64, AppError> {
        let view = View::Position {
            line: line.to_owned(),
        };
        let ns = self.inner.ns.load_full();
        let mut redis = self.inner.redis.clone();
        let cached: Result<Option<i64>, _> = redis.get(view.redis_key(&ns.prefix)).await;
        match cached {
            Ok(Some(p)) => Ok(p),
            _ => Ok(read_model::keys::position(&ns.pool, line).await?),
        }
    }

    /// Waits (bounded) until the line's projection has reached `min`.
    pub async fn wait_for(&self, line: &str, min: i64, max_wait: Duration) -> Result<(), AppError> {
        let deadline = Instant::now() + max_wait;
        let position = View::Position {
            line: line.to_owned(),
        };
        let reached = self
            .wait_until(&position, deadline, || async {
                Ok(self.position(line).await? >= min)
            })
            .await?;
        if reached {
            Ok(())
        } else {
            Err(AppError::ProjectionBehind(min))
        }
    }

    /// Rechecks `ready` whenever the projector announces a change of `view` (an
    /// invalidation of its key), and at least every [`RECHECK`] in case an announcement
    /// is lost; false at `deadline`.
    pub async fn wait_until<F, Fut>(
        &self,
        view: &View,
        deadline: Instant,
        mut ready: F,
    ) -> Result<bool, AppError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<bool, AppError>>,
    {
        let key = view.redis_key(&self.inner.ns.load().prefix);
        let registration = self.inner.waiters.register(&key);
        loop {
            // Enabled before the check, so a change landing during it still wakes us.
            let changed = registration.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if ready().await? {
                return Ok(true);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(false);
            }
            let _ = tokio::time::timeout(left.min(RECHECK), changed).await;
        }
    }
}

/// The longest a waiter goes without rechecking.
const RECHECK: Duration = Duration::from_millis(50);

/// Puts a view read from the read tables back into Redis, unless the key is there
/// already (true if it was put). Only if absent: the projector may have written a newer
/// document since this one was loaded, and a plain SET would lay the older one over it
/// until the view next changed.
pub async fn refill(
    redis: &mut RedisConn,
    key: &str,
    bytes: &[u8],
    ttl: Duration,
) -> redis::RedisResult<bool> {
    let options = redis::SetOptions::default()
        .conditional_set(redis::ExistenceCheck::NX)
        .with_expiration(redis::SetExpiry::EX(ttl.as_secs()));
    let put: Option<String> = redis.set_options(key, bytes, options).await?;
    Ok(put.is_some())
}
