//! Issuing and verifying access tokens.

use std::cell::RefCell;
use std::sync::Arc;

use chrono::TimeDelta;
use jsonwebtoken::{Algorithm, Header, Validation};
use thread_local::ThreadLocal;
use uuid::Uuid;

use super::{AuthError, Claims, Clock, JwtConfig, KeySet, Role};

/// Tokens whose signature and claims were checked, by token text, per thread. A client
/// sends the same token on every request of its session; checking it again (two base64
/// decodes, two JSON parses, an Ed25519 verification) would cost more than the rest of
/// the bill query path. Expiry is still
/// checked on every use, and the keys never change while the process runs, so an entry
/// stays valid until its token expires. Per thread, as query-service's L1 and for the
/// same reason: a shared cache's hit writes memory both cores use (its access record,
/// the claims' reference count). Bounded: about 1 KiB an entry, per thread.
const VERIFIED_TOKENS: usize = 4096;

type VerifiedTokens = ThreadLocal<RefCell<quick_cache::unsync::Cache<Box<str>, Arc<Claims>>>>;

/// Issues (given a private key) and checks access tokens.
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
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.algorithms = vec![Algorithm::EdDSA];
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

    /// The keys these tokens are checked (and, with a private key, issued) with: the
    /// JWKS document and a verifier's public-only copy come from them.
    pub fn keys(&self) -> &KeySet {
        &self.keys
    }

    /// A signed token for `sub` with the current key, and its claims.
    ///
    /// # Panics
    /// When these tokens were made from public keys only: only command-service issues.
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
        let (kid, key) = self
            .keys
            .signing
            .as_ref()
            .expect("only a service given a private key issues tokens");
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(kid.clone());
        let token =
            jsonwebtoken::encode(&header, &claims, key).expect("a parsed Ed25519 key always signs");
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
        if header.alg != Algorithm::EdDSA {
            return Err(invalid());
        }
        let key = header
            .kid
            .as_deref()
            .and_then(|kid| self.keys.verifying.get(kid))
            .ok_or_else(invalid)?;
        jsonwebtoken::decode::<Claims>(token, &key.decoding, &self.validation)
            .map(|data| data.claims)
            .map_err(|_| invalid())
    }
}
