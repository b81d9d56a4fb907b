//! From a request's bearer token to a verified, unrevoked caller, under the rate limits.

use std::num::NonZeroU32;
use std::sync::Arc;

use axum::http::{header, HeaderMap};

use crate::hardening::{KeyedLimiter, RateLimit};

use super::{
    AuthError, Caller, FollowedRevocations, JwtConfig, RedisRevocations, SystemClock, Tokens,
};

/// Has a token been revoked? An error means "cannot tell", which callers treat as no.
#[async_trait::async_trait]
pub trait Revocations: Send + Sync + 'static {
    async fn is_revoked(&self, jti: &str) -> Result<bool, AuthError>;

    /// The answer at once when it needs no waiting (a set held in memory), else `None`
    /// and the caller asks [`Revocations::is_revoked`]: every authenticated request asks,
    /// and an `async_trait` call boxes its future.
    fn is_revoked_now(&self, _jti: &str) -> Option<Result<bool, AuthError>> {
        None
    }
}

/// Turns a bearer token into a [`Caller`]: signature, claims, revocation, and the
/// per-customer rate limit. Put one in the router state (`FromRef`).
#[derive(Clone)]
pub struct Authenticator(Arc<Inner>);

struct Inner {
    tokens: Tokens,
    revocations: Arc<dyn Revocations>,
    per_customer: Option<Arc<KeyedLimiter<String>>>,
    /// The per-customer limit counted for every replica (and its limit a minute); the
    /// local limiter stands in while the counts cannot be reached.
    shared: Option<(Arc<dyn crate::hardening::SharedCounts>, u32)>,
}

impl Authenticator {
    /// `per_customer_per_minute`: requests one customer may make a minute (None: no limit).
    pub fn new(
        tokens: Tokens,
        revocations: Arc<dyn Revocations>,
        per_customer_per_minute: Option<NonZeroU32>,
    ) -> Self {
        Self(Arc::new(Inner {
            tokens,
            revocations,
            per_customer: per_customer_per_minute.map(crate::hardening::per_minute),
            shared: None,
        }))
    }

    /// The same, with the per-customer limit (if any) counted in `counts`, shared by
    /// every replica (`PHONEBILL_RATE_LIMIT_SHARED`).
    pub fn sharing_counts(
        self,
        counts: Arc<dyn crate::hardening::SharedCounts>,
        per_customer_per_minute: Option<NonZeroU32>,
    ) -> Self {
        Self(Arc::new(Inner {
            tokens: self.0.tokens.clone(),
            revocations: self.0.revocations.clone(),
            per_customer: self.0.per_customer.clone(),
            shared: per_customer_per_minute.map(|n| (counts, n.get())),
        }))
    }

    pub fn tokens(&self) -> &Tokens {
        &self.0.tokens
    }

    /// The same tokens, revocations and limits behind a reference count of its own, for
    /// one HTTP worker: every request clones the authenticator out of the state, and a
    /// count both workers change moves between the cores on every request.
    pub fn for_worker(&self) -> Self {
        Self(Arc::new(Inner {
            tokens: self.0.tokens.clone(),
            revocations: self.0.revocations.clone(),
            per_customer: self.0.per_customer.clone(),
            shared: self.0.shared.clone(),
        }))
    }

    /// The read side's authenticator: command-service's keys, logouts followed from
    /// Redis under `key_prefix` and held in memory (no round trip per check); the
    /// per-customer limit of `hardening`, counted in the same Redis when shared.
    pub async fn following_redis<C>(
        jwt: &JwtConfig,
        production: bool,
        redis: C,
        key_prefix: &str,
        redis_url: &str,
        hardening: &crate::hardening::HardeningConfig,
    ) -> anyhow::Result<Self>
    where
        C: redis::aio::ConnectionLike + Clone + Send + Sync + 'static,
    {
        let keys = jwt.verifying_keys(production).map_err(anyhow::Error::msg)?;
        let tokens = Tokens::new(jwt, keys, Arc::new(SystemClock));
        let store = RedisRevocations::new(redis.clone(), key_prefix);
        let revocations = FollowedRevocations::start(store, redis_url).await?;
        let auth = Self::new(tokens, Arc::new(revocations), hardening.per_customer());
        Ok(if hardening.shared {
            let counts = crate::hardening::RedisCounts::new(redis, key_prefix);
            auth.sharing_counts(Arc::new(counts), hardening.per_customer())
        } else {
            auth
        })
    }

    pub async fn authenticate(&self, headers: &HeaderMap) -> Result<Caller, AuthError> {
        let token = bearer(headers).ok_or(AuthError::MissingToken)?;
        let claims = self.0.tokens.verify(token)?;
        let revoked = match self.0.revocations.is_revoked_now(&claims.jti) {
            Some(answer) => answer?,
            None => self.0.revocations.is_revoked(&claims.jti).await?,
        };
        if revoked {
            return Err(AuthError::InvalidToken(
                "the token was revoked (logged out)",
            ));
        }
        if let Some(limiter) = &self.0.per_customer {
            let shared = match &self.0.shared {
                Some((counts, per_minute)) => {
                    match counts.hit(&format!("customer:{}", claims.sub)).await {
                        Ok((count, seconds_left)) => Some((count, seconds_left, *per_minute)),
                        Err(e) => {
                            tracing::warn!(error = %e, "shared rate limit unreachable; counting locally");
                            None
                        }
                    }
                }
                None => None,
            };
            match shared {
                Some((count, seconds_left, per_minute)) if count > u64::from(per_minute) => {
                    return Err(AuthError::RateLimited {
                        retry_after_secs: seconds_left.max(1),
                    })
                }
                Some(_) => {}
                None => RateLimit::check(limiter, &claims.sub)?,
            }
        }
        Ok(Caller::new(claims))
    }
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}
