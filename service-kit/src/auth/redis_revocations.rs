//! Logouts shared through Redis, for services that do not own the credentials table.
//!
//! A revocation is a member of one sorted set, `{prefix}revoked` (member = token id,
//! score = the token's expiry, so expired entries are pruned by score), and a message on
//! `{prefix}revocations` (`"{jti} {exp}"`). One key rather than a key per token: a
//! replica loads them all with one `ZRANGEBYSCORE`, also on a Redis cluster.
//!
//! [`RedisRevocations`] writes and checks the set directly (a round trip per check).
//! [`FollowedRevocations`] holds the set in memory on every replica and follows the
//! channel, so a request costs no round trip; it subscribes before it loads, so a logout
//! cannot fall between the two, and while the subscription is down it fails closed.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use chrono::{DateTime, Utc};
use futures::StreamExt;

use super::{AuthError, Revocations};

/// Reads and writes the shared revocation set.
#[derive(Clone)]
pub struct RedisRevocations<C> {
    conn: C,
    prefix: String,
}

impl<C> RedisRevocations<C>
where
    C: redis::aio::ConnectionLike + Clone + Send + Sync + 'static,
{
    pub fn new(conn: C, prefix: &str) -> Self {
        Self {
            conn,
            prefix: prefix.to_owned(),
        }
    }

    /// The sorted set of revoked token ids.
    pub fn key(&self) -> String {
        format!("{}revoked", self.prefix)
    }

    /// Where each new revocation is announced.
    pub fn channel(&self) -> String {
        channel(&self.prefix)
    }

    /// Revokes a token until it would have expired, and tells every follower.
    ///
    /// Two round trips, not one transaction: a cluster client sends a transaction to
    /// one slot's node, and the channel hashes to another slot than the set (a cluster
    /// routes PUBLISH by its channel, then carries it to every node). The set is
    /// written first, so a follower that misses the message (the second step failed and
    /// the caller answers 503) still finds it when it next loads; the caller's retry
    /// writes again and announces again, both harmless twice.
    pub async fn revoke(
        &self,
        jti: &str,
        expires_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> redis::RedisResult<()> {
        let exp = expires_at.timestamp();
        let mut conn = self.conn.clone();
        redis::pipe()
            .atomic()
            .cmd("ZADD")
            .arg(self.key())
            .arg(exp)
            .arg(jti)
            .ignore()
            .cmd("ZREMRANGEBYSCORE")
            .arg(self.key())
            .arg("-inf")
            .arg(now.timestamp())
            .ignore()
            .query_async::<()>(&mut conn)
            .await?;
        redis::cmd("PUBLISH")
            .arg(self.channel())
            .arg(format!("{jti} {exp}"))
            .query_async::<()>(&mut conn)
            .await
    }

    /// How many revocations are still in force at `now`.
    pub async fn count(&self, now: DateTime<Utc>) -> redis::RedisResult<u64> {
        let mut conn = self.conn.clone();
        redis::cmd("ZCOUNT")
            .arg(self.key())
            .arg(format!("({}", now.timestamp()))
            .arg("+inf")
            .query_async(&mut conn)
            .await
    }

    /// The revocations still in force at `now`: token id and expiry.
    pub async fn current(&self, now: DateTime<Utc>) -> redis::RedisResult<Vec<(String, i64)>> {
        let mut conn = self.conn.clone();
        redis::cmd("ZRANGEBYSCORE")
            .arg(self.key())
            .arg(format!("({}", now.timestamp()))
            .arg("+inf")
            .arg("WITHSCORES")
            .query_async::<Vec<(String, i64)>>(&mut conn)
            .await
    }
}

#[async_trait::async_trait]
impl<C> Revocations for RedisRevocations<C>
where
    C: redis::aio::ConnectionLike + Clone + Send + Sync + 'static,
{
    async fn is_revoked(&self, jti: &str) -> Result<bool, AuthError> {
        let mut conn = self.conn.clone();
        let expiry: Option<i64> = redis::cmd("ZSCORE")
            .arg(self.key())
            .arg(jti)
            .query_async(&mut conn)
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, "revocation check failed; refusing the token");
                AuthError::Unavailable
            })?;
        Ok(expiry.is_some_and(|exp| exp > Utc::now().timestamp()))
    }
}

fn channel(prefix: &str) -> String {
    format!("{prefix}revocations")
}

/// The revocation set held in memory, kept current from Redis (see the module docs).
pub struct FollowedRevocations {
    state: Arc<Followed>,
    follower: tokio::task::JoinHandle<()>,
}

#[derive(Default)]
struct Followed {
    /// Token id -> expiry (unix seconds). Copied on write: logouts are rare, and a check
    /// (every request) then takes no lock, whose word both cores would write.
    ids: ArcSwap<HashMap<String, i64>>,
    live: AtomicBool,
}

impl Followed {
    fn add(&self, message: &str) {
        let Some((jti, exp)) = message.split_once(' ') else {
            return;
        };
        let Ok(exp) = exp.parse::<i64>() else { return };
        // One writer (the follower task), so no update is lost between load and store.
        let mut ids = HashMap::clone(&self.ids.load());
        ids.insert(jti.to_owned(), exp);
        // The copy is the moment to drop what has expired.
        let now = Utc::now().timestamp();
        ids.retain(|_, exp| *exp > now);
        self.ids.store(Arc::new(ids));
    }
}

impl FollowedRevocations {
    /// Subscribes to `url` (in cluster mode, the first of its nodes that answers: PUBLISH
    /// reaches every node), loads the current set and returns once it is in memory; then
    /// follows until dropped, reconnecting with backoff (to another node if its own is
    /// lost). While not subscribed, every token is refused: a logout could be missed.
    pub async fn start<C>(store: RedisRevocations<C>, url: &str) -> redis::RedisResult<Self>
    where
        C: redis::aio::ConnectionLike + Clone + Send + Sync + 'static,
    {
        let state = Arc::new(Followed::default());
        let url = url.to_owned();
        let pubsub = subscribe_and_load(&url, &store, &state).await?;
        let follower = tokio::spawn(follow(url, store, Arc::clone(&state), pubsub));
        Ok(Self { state, follower })
    }

    /// Whether the set is known to be current.
    pub fn is_live(&self) -> bool {
        self.state.live.load(Ordering::SeqCst)
    }
}

impl Drop for FollowedRevocations {
    fn drop(&mut self) {
        self.follower.abort();
    }
}

async fn subscribe_and_load<C>(
    url: &str,
    store: &RedisRevocations<C>,
    state: &Followed,
) -> redis::RedisResult<redis::aio::PubSub>
where
    C: redis::aio::ConnectionLike + Clone + Send + Sync + 'static,
{
    let pubsub = crate::pubsub::subscribe(url, &store.channel()).await?;
    let current = store.current(Utc::now()).await?;
    state.ids.store(Arc::new(current.into_iter().collect()));
    state.live.store(true, Ordering::SeqCst);
    Ok(pubsub)
}

async fn follow<C>(
    url: String,
    store: RedisRevocations<C>,
    state: Arc<Followed>,
    mut pubsub: redis::aio::PubSub,
) where
    C: redis::aio::ConnectionLike + Clone + Send + Sync + 'static,
{
    loop {
        {
            let mut messages = pubsub.on_message();
            while let Some(message) = messages.next().await {
                if let Ok(text) = message.get_payload::<String>() {
                    state.add(&text);
                }
            }
        }
        // The subscription is gone: messages may have been missed.
        state.live.store(false, Ordering::SeqCst);
        tracing::warn!("revocation subscription lost; refusing tokens until it is back");
        let mut pause = Duration::from_millis(100);
        pubsub = loop {
            tokio::time::sleep(pause).await;
            match subscribe_and_load(&url, &store, &state).await {
                Ok(fresh) => break fresh,
                Err(e) => tracing::debug!(error = %e, "revocation subscription failed"),
            }
            pause = (pause * 2).min(Duration::from_secs(5));
        };
        tracing::info!("revocation subscription back");
    }
}

#[async_trait::async_trait]
impl Revocations for FollowedRevocations {
    async fn is_revoked(&self, jti: &str) -> Result<bool, AuthError> {
        self.is_revoked_now(jti)
            .expect("a followed set always answers at once")
    }

    fn is_revoked_now(&self, jti: &str) -> Option<Result<bool, AuthError>> {
        if !self.is_live() {
            return Some(Err(AuthError::Unavailable));
        }
        Some(Ok(self
            .state
            .ids
            .load()
            .get(jti)
            .is_some_and(|exp| *exp > Utc::now().timestamp())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_revocation_message_adds_the_token_until_its_expiry() {
        let state = Followed::default();
        state.add("jti-1 4102444800");
        state.add("malformed");
        state.add("jti-2 not-a-number");
        let ids = state.ids.load();
        assert_eq!(ids.get("jti-1"), Some(&4102444800));
        assert_eq!(ids.len(), 1);
    }
}
