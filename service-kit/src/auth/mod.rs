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

mod authenticator;
mod caller;
mod claims;
mod clock;
mod error;
mod keys;
mod openapi;
mod redis_revocations;
mod tokens;

pub use authenticator::{Authenticator, Revocations};
pub use caller::Caller;
pub use claims::{Claims, Role};
pub use clock::{Clock, ManualClock, SystemClock};
pub use error::AuthError;
pub use keys::{JwtConfig, KeySet, LOCAL_DEV_KEY};
pub use openapi::BearerScheme;
pub use redis_revocations::{FollowedRevocations, RedisRevocations};
pub use tokens::Tokens;

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeDelta, Utc};
    use std::sync::Arc;

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
