//! Who is calling and what they may touch, the same for every service.
//!
//! - [`Tokens`] issues and checks access tokens: JWT, HS256 pinned (nothing else is
//!   accepted, `alg: none` included), issuer, audience and expiry checked against an
//!   injectable [`Clock`], the key chosen by the `kid` header among the current and
//!   previous keys of a [`KeySet`] (rotation: sign with the new key, keep verifying the
//!   old one until its tokens have expired).
//! - [`Revocations`]: has this token been revoked (logout)? command-service answers from
//!   its own table, query-service from Redis ([`FollowedRevocations`]: the set of
//!   [`RedisRevocations`] held in memory). An unanswerable check fails closed: 503
//!   `AUTH_UNAVAILABLE`, never a pass.
//! - [`Caller`]: the axum extractor for the authenticated caller (401 `UNAUTHENTICATED`
//!   otherwise), with the one ownership rule: [`Caller::may_read_line`] and
//!   [`Caller::may_change_line`] (403 `FORBIDDEN_LINE`).
//!
//! A customer's line numbers travel in the token (`lines`, read at login), so a service
//! checks ownership without reading another service's tables.

use std::cell::RefCell;
use std::collections::HashMap;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use axum::extract::{FromRef, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, TimeDelta, Utc};
use clap::Args;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use thread_local::ThreadLocal;
use uuid::Uuid;

use crate::hardening::{KeyedLimiter, RateLimit};
use crate::problem::{Problem, ProblemCode};

mod redis_revocations;
pub use redis_revocations::{FollowedRevocations, RedisRevocations};

/// Where "now" comes from, so tests move time (lockout, token expiry) without sleeping.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> DateTime<Utc>;
}

/// The wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that only moves when told to (tests).
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<Mutex<DateTime<Utc>>>);

impl ManualClock {
    pub fn new(start: DateTime<Utc>) -> Self {
        Self(Arc::new(Mutex::new(start)))
    }

    pub fn advance(&self, by: TimeDelta) {
        *self.0.lock().expect("clock lock") += by;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().expect("clock lock")
    }
}

/// What a caller may do: `customer` (own lines only), `analyst` (reads every line),
/// `admin` (an analyst who may also act on any line and use the admin endpoints).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Customer,
    Analyst,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Customer => "customer",
            Role::Analyst => "analyst",
            Role::Admin => "admin",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "customer" => Some(Role::Customer),
            "analyst" => Some(Role::Analyst),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
}

/// The access token's claims.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub aud: String,
    /// The customer id (or the analyst's/admin's account id).
    pub sub: String,
    pub role: Role,
    /// The customer's line numbers at login; empty for analysts and admins.
    #[serde(default)]
    pub lines: Vec<String>,
    pub iat: i64,
    pub exp: i64,
    pub jti: String,
}

/// The development key used when none is configured (refused in production).
pub const LOCAL_DEV_KEY: &str =
    "local-dev:phonebill-local-development-signing-key-never-use-in-production";

/// Signing keys by id: the first signs, all verify.
#[derive(Clone)]
pub struct KeySet {
    current: String,
    keys: HashMap<String, Key>,
}

/// One secret, made into both keys once (not per token).
#[derive(Clone)]
struct Key {
    encoding: EncodingKey,
    decoding: DecodingKey,
}

impl std::fmt::Debug for KeySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut ids: Vec<&String> = self.keys.keys().collect();
        ids.sort();
        f.debug_struct("KeySet")
            .field("current", &self.current)
            .field("ids", &ids)
            .finish()
    }
}

impl KeySet {
    /// Parses `kid:secret` entries separated by newlines or commas (a Key Vault secret
    /// holds them as they are). The first entry signs; every entry verifies. Each secret
    /// must be at least 32 bytes.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut current = None;
        let mut keys = HashMap::new();
        for entry in text
            .split(['\n', ','])
            .map(str::trim)
            .filter(|e| !e.is_empty())
        {
            let (kid, secret) = entry
                .split_once(':')
                .ok_or("each signing key is `kid:secret`")?;
            let (kid, secret) = (kid.trim(), secret.trim());
            if kid.is_empty() || secret.len() < 32 {
                return Err(format!(
                    "signing key `{kid}` needs a key id and a secret of at least 32 bytes"
                ));
            }
            let key = Key {
                encoding: EncodingKey::from_secret(secret.as_bytes())
                    .map_err(|e| format!("signing key `{kid}`: {e}"))?,
                decoding: DecodingKey::from_secret(secret.as_bytes())
                    .map_err(|e| format!("signing key `{kid}`: {e}"))?,
            };
            if keys.insert(kid.to_owned(), key).is_some() {
                return Err(format!("signing key id `{kid}` appears twice"));
            }
            current.get_or_insert_with(|| kid.to_owned());
        }
        let current = current.ok_or("no signing key given")?;
        Ok(Self { current, keys })
    }

    pub fn current_kid(&self) -> &str {
        &self.current
    }
}

/// Token settings, the same variables for every service.
#[derive(Clone, Args)]
pub struct JwtConfig {
    /// Signing keys as `kid:secret` (comma- or newline-separated; the first signs).
    #[arg(
        long = "jwt-signing-key",
        env = "PHONEBILL_JWT_SIGNING_KEY",
        hide_env_values = true
    )]
    pub signing_key: Option<String>,

    /// A file holding the signing keys (as mounted from Key Vault); wins over the variable.
    #[arg(long = "jwt-signing-key-file", env = "PHONEBILL_JWT_SIGNING_KEY_FILE")]
    pub signing_key_file: Option<PathBuf>,

    #[arg(
        long = "jwt-issuer",
        env = "PHONEBILL_JWT_ISSUER",
        default_value = "phonebill"
    )]
    pub issuer: String,

    #[arg(
        long = "jwt-audience",
        env = "PHONEBILL_JWT_AUDIENCE",
        default_value = "phonebill-api"
    )]
    pub audience: String,

    /// Access token lifetime.
    #[arg(
        long = "jwt-ttl-secs",
        env = "PHONEBILL_JWT_TTL_SECS",
        default_value_t = 1800
    )]
    pub ttl_secs: u64,
}

impl std::fmt::Debug for JwtConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtConfig")
            .field(
                "signing_key",
                &self.signing_key.as_ref().map(|_| "<redacted>"),
            )
            .field("signing_key_file", &self.signing_key_file)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("ttl_secs", &self.ttl_secs)
            .finish()
    }
}

impl JwtConfig {
    /// The keys from the file, else the variable, else (not in production) the
    /// development key.
    pub fn keys(&self, production: bool) -> Result<KeySet, String> {
        let text = match (&self.signing_key_file, &self.signing_key) {
            (Some(path), _) => std::fs::read_to_string(path).map_err(|e| {
                format!(
                    "PHONEBILL_JWT_SIGNING_KEY_FILE {} is not readable: {e}",
                    path.display()
                )
            })?,
            (None, Some(text)) => text.clone(),
            (None, None) if production => return Err(
                "production needs PHONEBILL_JWT_SIGNING_KEY_FILE (or PHONEBILL_JWT_SIGNING_KEY)"
                    .into(),
            ),
            (None, None) => LOCAL_DEV_KEY.to_owned(),
        };
        if production && text.contains(LOCAL_DEV_KEY) {
            return Err("production may not sign with the development key".into());
        }
        KeySet::parse(&text).map_err(|e| format!("PHONEBILL_JWT_SIGNING_KEY: {e}"))
    }

    /// Checks the settings without building anything (for `Config::check`).
    pub fn check(&self, production: bool) -> Result<(), String> {
        self.keys(production)?;
        if self.ttl_secs == 0 || self.ttl_secs > 24 * 3600 {
            return Err("PHONEBILL_JWT_TTL_SECS must be 1 to 86400".into());
        }
        Ok(())
    }
}

/// Tokens whose signature and claims were checked, by token text, per thread. A client
/// sends the same token on every request of its session; checking it again (two base64
/// decodes, two JSON parses, an HMAC) was a tenth of the bill query path. Expiry is still
/// checked on every use, and the keys never change while the process runs, so an entry
/// stays valid until its token expires. Per thread, as query-service's L1 and for the
/// same reason: a shared cache's hit writes memory both cores use (its access record,
/// the claims' reference count). Bounded: about 1 KiB an entry, per thread.
const VERIFIED_TOKENS: usize = 4096;

type VerifiedTokens = ThreadLocal<RefCell<quick_cache::unsync::Cache<Box<str>, Arc<Claims>>>>;

/// Issues and checks access tokens.
#[derive(Clone)]
pub struct Tokens {
    keys: KeySet,
    issuer: String,
    audience: String,
    ttl: TimeDelta,
    clock: Arc<dyn Clock>,
    validation: Arc<Validation>,
    /// Hashed with foldhash (quick_cache's default), not SipHash: every request hashes
    /// its whole token (~400 bytes) here.
    verified: Arc<VerifiedTokens>,
}

impl Tokens {
    pub fn new(config: &JwtConfig, keys: KeySet, clock: Arc<dyn Clock>) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.algorithms = vec![Algorithm::HS256];
        validation.set_issuer(&[&config.issuer]);
        validation.set_audience(&[&config.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        // Expiry is checked in `verify` against the injectable clock.
        validation.validate_exp = false;
        validation.leeway = 0;
        Self {
            keys,
            issuer: config.issuer.clone(),
            audience: config.audience.clone(),
            ttl: TimeDelta::seconds(config.ttl_secs as i64),
            clock,
            validation: Arc::new(validation),
            verified: Arc::new(ThreadLocal::new()),
        }
    }

    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    pub fn ttl(&self) -> TimeDelta {
        self.ttl
    }

    /// A signed token for `sub` with the current key, and its claims.
    pub fn issue(&self, sub: &str, role: Role, lines: Vec<String>) -> (String, Claims) {
        let now = self.clock.now().timestamp();
        let claims = Claims {
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            sub: sub.to_owned(),
            role,
            lines,
            iat: now,
            exp: now + self.ttl.num_seconds(),
            jti: Uuid::new_v4().to_string(),
        };
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(self.keys.current.clone());
        let key = &self.keys.keys[&self.keys.current];
        let token = jsonwebtoken::encode(&header, &claims, &key.encoding)
            .expect("HS256 signing cannot fail");
        (token, claims)
    }

    /// The claims of a token this service family signed, still in date.
    pub fn verify(&self, token: &str) -> Result<Arc<Claims>, AuthError> {
        let verified = self
            .verified
            .get_or(|| RefCell::new(quick_cache::unsync::Cache::new(VERIFIED_TOKENS)));
        let known = verified.borrow().get(token).cloned();
        let claims = match known {
            Some(claims) => claims,
            None => {
                let claims = Arc::new(self.check_signature_and_claims(token)?);
                verified.borrow_mut().insert(token.into(), claims.clone());
                claims
            }
        };
        if claims.exp <= self.clock.now().timestamp() {
            return Err(AuthError::InvalidToken("the token has expired"));
        }
        Ok(claims)
    }

    fn check_signature_and_claims(&self, token: &str) -> Result<Claims, AuthError> {
        let invalid = || AuthError::InvalidToken("the token is not valid");
        let header = jsonwebtoken::decode_header(token).map_err(|_| invalid())?;
        if header.alg != Algorithm::HS256 {
            return Err(invalid());
        }
        let key = header
            .kid
            .as_deref()
            .and_then(|kid| self.keys.keys.get(kid))
            .ok_or_else(invalid)?;
        jsonwebtoken::decode::<Claims>(token, &key.decoding, &self.validation)
            .map(|data| data.claims)
            .map_err(|_| invalid())
    }
}

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
        let keys = jwt.keys(production).map_err(anyhow::Error::msg)?;
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

/// The authenticated caller of a request: the verified claims, shared (a clone is one
/// reference count, not four strings).
#[derive(Debug, Clone)]
pub struct Caller {
    claims: Arc<Claims>,
}

impl Caller {
    pub fn new(claims: Arc<Claims>) -> Self {
        Self { claims }
    }

    /// The customer id (or the analyst's/admin's account id).
    pub fn customer_id(&self) -> &str {
        &self.claims.sub
    }

    pub fn role(&self) -> Role {
        self.claims.role
    }

    /// The customer's lines (from the token).
    pub fn lines(&self) -> &[String] {
        &self.claims.lines
    }

    pub fn jti(&self) -> &str {
        &self.claims.jti
    }

    pub fn expires_at(&self) -> DateTime<Utc> {
        DateTime::from_timestamp(self.claims.exp, 0).unwrap_or_default()
    }

    fn owns(&self, line: &str) -> bool {
        self.claims.role == Role::Customer && self.claims.lines.iter().any(|l| l == line)
    }

    /// Reading a line (bills, status, history, validation): its owner, analysts, admins.
    pub fn may_read_line(&self, line: &str) -> Result<(), AuthError> {
        match self.claims.role {
            Role::Analyst | Role::Admin => Ok(()),
            Role::Customer if self.owns(line) => Ok(()),
            Role::Customer => Err(AuthError::ForbiddenLine),
        }
    }

    /// Acting on a line (product change): its owner or an admin; analysts only read.
    pub fn may_change_line(&self, line: &str) -> Result<(), AuthError> {
        match self.claims.role {
            Role::Admin => Ok(()),
            Role::Customer if self.owns(line) => Ok(()),
            Role::Customer | Role::Analyst => Err(AuthError::ForbiddenLine),
        }
    }

    /// Replay, export and the like: analysts and admins.
    pub fn require_analyst(&self) -> Result<(), AuthError> {
        match self.claims.role {
            Role::Analyst | Role::Admin => Ok(()),
            Role::Customer => Err(AuthError::ForbiddenRole),
        }
    }

    /// The admin endpoints.
    pub fn require_admin(&self) -> Result<(), AuthError> {
        match self.claims.role {
            Role::Admin => Ok(()),
            _ => Err(AuthError::ForbiddenRole),
        }
    }
}

/// Each extraction authenticates (and counts against the per-customer limit): a handler
/// takes one `Caller`. It is not kept in the request's extensions for a second one; on
/// the bill query path that insert (and the map's growth) was measurable.
impl<S> FromRequestParts<S> for Caller
where
    Authenticator: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = AuthError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Authenticator::from_ref(state)
            .authenticate(&parts.headers)
            .await
    }
}

/// The OpenAPI security scheme `bearer` (JWT) the protected paths name.
pub struct BearerScheme;

impl utoipa::Modify for BearerScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        openapi
            .components
            .get_or_insert_with(Default::default)
            .add_security_scheme(
                "bearer",
                SecurityScheme::Http(
                    HttpBuilder::new()
                        .scheme(HttpAuthScheme::Bearer)
                        .bearer_format("JWT")
                        .build(),
                ),
            );
    }
}

/// Why a request was refused before its handler ran.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AuthError {
    #[error("send an access token: Authorization: Bearer <token>")]
    MissingToken,
    #[error("{0}")]
    InvalidToken(&'static str),
    #[error("the token cannot be checked right now; try again")]
    Unavailable,
    #[error("you may not act on this line")]
    ForbiddenLine,
    #[error("your role does not allow this")]
    ForbiddenRole,
    #[error("too many requests; retry after {retry_after_secs} seconds")]
    RateLimited { retry_after_secs: u64 },
}

impl AuthError {
    pub fn code(&self) -> ProblemCode {
        match self {
            AuthError::MissingToken | AuthError::InvalidToken(_) => ProblemCode::Unauthenticated,
            AuthError::Unavailable => ProblemCode::AuthUnavailable,
            AuthError::ForbiddenLine => ProblemCode::ForbiddenLine,
            AuthError::ForbiddenRole => ProblemCode::Forbidden,
            AuthError::RateLimited { .. } => ProblemCode::RateLimited,
        }
    }

    pub fn status(&self) -> StatusCode {
        self.code().status()
    }

    /// The problem, with `WWW-Authenticate` on 401 and `Retry-After` on 429.
    pub fn problem(&self) -> Problem {
        let problem = Problem::new(self.code(), self.to_string());
        match self {
            AuthError::MissingToken | AuthError::InvalidToken(_) => problem.with_header(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"phonebill\""),
            ),
            AuthError::RateLimited { retry_after_secs } => problem.retry_after(*retry_after_secs),
            _ => problem,
        }
    }
}

impl IntoResponse for AuthError {
    fn into_response(self) -> Response {
        self.problem().into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> JwtConfig {
        JwtConfig {
            signing_key: None,
            signing_key_file: None,
            issuer: "phonebill".into(),
            audience: "phonebill-api".into(),
            ttl_secs: 1800,
        }
    }

    fn tokens(keys: &str, clock: ManualClock) -> Tokens {
        Tokens::new(&config(), KeySet::parse(keys).unwrap(), Arc::new(clock))
    }

    const K1: &str = "k1:0123456789abcdef0123456789abcdef";
    const K2: &str = "k2:fedcba9876543210fedcba9876543210";

    #[test]
    fn a_token_verifies_until_it_expires() {
        let clock = ManualClock::new(Utc::now());
        let tokens = tokens(K1, clock.clone());
        let (token, _) = tokens.issue("CUST0001", Role::Customer, vec!["010-0000-0001".into()]);
        let claims = tokens.verify(&token).unwrap();
        assert_eq!(claims.sub, "CUST0001");
        assert_eq!(claims.lines, ["010-0000-0001"]);
        clock.advance(TimeDelta::minutes(30));
        assert!(matches!(
            tokens.verify(&token),
            Err(AuthError::InvalidToken(_))
        ));
    }

    #[test]
    fn a_verified_token_does_not_vouch_for_one_with_another_signature() {
        let clock = ManualClock::new(Utc::now());
        let tokens = tokens(K1, clock);
        let (token, _) = tokens.issue("CUST0001", Role::Customer, vec![]);
        tokens.verify(&token).unwrap();
        let (unsigned, signature) = token.rsplit_once('.').unwrap();
        let flipped = if signature.starts_with('A') { 'B' } else { 'A' };
        let forged = format!("{unsigned}.{flipped}{}", &signature[1..]);
        assert!(matches!(
            tokens.verify(&forged),
            Err(AuthError::InvalidToken(_))
        ));
        tokens.verify(&token).unwrap();
    }

    #[test]
    fn after_rotation_old_tokens_verify_and_new_ones_use_the_new_key() {
        let clock = ManualClock::new(Utc::now());
        let old = tokens(K1, clock.clone());
        let (old_token, _) = old.issue("CUST0001", Role::Customer, vec![]);
        let rotated = tokens(&format!("{K2},{K1}"), clock.clone());
        rotated.verify(&old_token).unwrap();
        let (new_token, _) = rotated.issue("CUST0001", Role::Customer, vec![]);
        assert!(
            old.verify(&new_token).is_err(),
            "k1-only verifier knows no k2"
        );
    }

    #[test]
    fn tokens_of_another_key_issuer_or_alg_none_are_refused() {
        let clock = ManualClock::new(Utc::now());
        let ours = tokens(K1, clock.clone());
        let theirs = tokens("k1:ffffffffffffffffffffffffffffffff", clock.clone());
        let (forged, _) = theirs.issue("CUST0001", Role::Admin, vec![]);
        assert!(ours.verify(&forged).is_err());
        let none = format!(
            "{}.{}.",
            base64url(br#"{"alg":"none","typ":"JWT","kid":"k1"}"#),
            base64url(
                format!(
                    r#"{{"iss":"phonebill","aud":"phonebill-api","sub":"x","role":"admin","iat":0,"exp":{},"jti":"j"}}"#,
                    Utc::now().timestamp() + 600
                )
                .as_bytes()
            )
        );
        assert!(ours.verify(&none).is_err());
    }

    #[test]
    fn keys_must_be_long_enough_and_production_refuses_the_dev_key() {
        assert!(KeySet::parse("k:short").is_err());
        assert!(KeySet::parse("no-colon-here-0123456789abcdef0123456789").is_err());
        let mut config = config();
        assert!(config.keys(true).is_err());
        config.signing_key = Some(LOCAL_DEV_KEY.into());
        assert!(config.keys(true).is_err());
        assert!(config.keys(false).is_ok());
    }

    #[test]
    fn customers_read_and_change_only_their_lines() {
        let caller = |role| {
            Caller::new(Arc::new(Claims {
                iss: "phonebill".into(),
                aud: "phonebill-api".into(),
                sub: "CUST0001".into(),
                role,
                lines: vec!["010-0000-0001".into()],
                iat: 0,
                exp: 1,
                jti: "j".into(),
            }))
        };
        let customer = caller(Role::Customer);
        assert!(customer.may_read_line("010-0000-0001").is_ok());
        assert!(customer.may_change_line("010-0000-0001").is_ok());
        assert!(matches!(
            customer.may_read_line("010-0000-0002"),
            Err(AuthError::ForbiddenLine)
        ));
        assert!(caller(Role::Analyst).may_read_line("010-0000-0002").is_ok());
        assert!(caller(Role::Analyst)
            .may_change_line("010-0000-0002")
            .is_err());
        assert!(caller(Role::Admin).may_change_line("010-0000-0002").is_ok());
        assert!(caller(Role::Analyst).require_admin().is_err());
    }

    proptest::proptest! {
        #[test]
        fn random_text_or_a_mangled_token_never_verifies_and_never_panics(
            text in ".{0,400}",
            flip in 0usize..400,
        ) {
            let tokens = tokens(K1, ManualClock::new(Utc::now()));
            proptest::prop_assert!(tokens.verify(&text).is_err());
            let (token, _) = tokens.issue("CUST0001", Role::Customer, vec![]);
            let mut bytes = token.into_bytes();
            let i = flip % bytes.len();
            bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
            if let Ok(mangled) = String::from_utf8(bytes) {
                // A changed signature, header or claim never verifies (a flip in the
                // last base64 character's padding bits may leave the bytes the same).
                if let Ok(claims) = tokens.verify(&mangled) {
                    proptest::prop_assert_eq!(&claims.sub, "CUST0001");
                }
            }
        }
    }

    fn base64url(bytes: &[u8]) -> String {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    }
}
