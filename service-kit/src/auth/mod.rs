//! Who is calling and what they may touch, the same for every service.
//!
//! - [`Tokens`] issues and checks access tokens: JWT, EdDSA (Ed25519) pinned (nothing
//!   else is accepted, `alg: none` and HS256 included), issuer, audience and expiry
//!   checked against an injectable [`Clock`], the key chosen by the `kid` header among the
//!   current and previous public keys of a [`KeySet`] (rotation: publish the new public
//!   key, sign with the new key, keep verifying the old one until its tokens have
//!   expired). Only command-service holds a private key; the others verify with public
//!   keys, so a compromised read-side pod cannot mint a token.
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
pub use keys::{JwtConfig, KeySet, LOCAL_DEV_KID};
pub use openapi::BearerScheme;
pub use redis_revocations::{FollowedRevocations, RedisRevocations};
pub use tokens::Tokens;

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeDelta, Utc};
    use std::sync::Arc;

    fn key(kid: &str, byte: u8) -> String {
        use base64::Engine;
        format!(
            "{kid}:{}",
            base64::engine::general_purpose::STANDARD.encode([byte; 32])
        )
    }

    fn tokens(keys: &str, clock: ManualClock) -> Tokens {
        let keys = KeySet::signing(keys).unwrap();
        Tokens::new(&JwtConfig::default(), keys, Arc::new(clock))
    }

    fn k1() -> String {
        key("k1", 1)
    }

    fn k2() -> String {
        key("k2", 2)
    }

    #[test]
    fn a_token_verifies_until_it_expires() {
        let clock = ManualClock::new(Utc::now());
        let tokens = tokens(&k1(), clock.clone());
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
        let tokens = tokens(&k1(), clock);
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
        let old = tokens(&k1(), clock.clone());
        let (old_token, _) = old.issue("CUST0001", Role::Customer, vec![]);
        let rotated = tokens(&format!("{},{}", k2(), k1()), clock.clone());
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
        let ours = tokens(&k1(), clock.clone());
        let theirs = tokens(&key("k1", 0xff), clock.clone());
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
    fn a_service_holding_public_keys_verifies_tokens_but_cannot_make_one() {
        let clock = ManualClock::new(Utc::now());
        let issuer = tokens(&k1(), clock.clone());
        let verifier = Tokens::new(
            &JwtConfig::default(),
            issuer.keys().public_only(),
            Arc::new(clock),
        );
        let (token, _) = issuer.issue("CUST0001", Role::Customer, vec![]);
        assert_eq!(verifier.verify(&token).unwrap().sub, "CUST0001");
        assert_eq!(verifier.keys().signing_kid(), None);
        let minted = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            verifier.issue("admin", Role::Admin, vec![])
        }));
        assert!(minted.is_err(), "a verifier has no key to sign with");
    }

    #[test]
    fn an_hs256_token_keyed_with_the_public_key_is_refused() {
        // The classic algorithm confusion: the public key, known to all, used as an HMAC
        // secret. Only EdDSA is accepted, whatever the header says.
        let clock = ManualClock::new(Utc::now());
        let ours = tokens(&k1(), clock);
        let public = ours.keys().jwks().keys[0].clone();
        let jsonwebtoken::jwk::AlgorithmParameters::OctetKeyPair(okp) = &public.algorithm else {
            panic!("an Ed25519 key is an OKP: {public:?}");
        };
        let secret = base64url_decode(&okp.x);
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
        header.kid = Some("k1".into());
        let now = Utc::now().timestamp();
        let claims = Claims {
            iss: "phonebill".into(),
            aud: "phonebill-api".into(),
            sub: "admin".into(),
            role: Role::Admin,
            lines: vec![],
            iat: now,
            exp: now + 600,
            jti: "j".into(),
        };
        let forged = jsonwebtoken::encode(
            &header,
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(&secret).unwrap(),
        )
        .unwrap();
        assert!(ours.verify(&forged).is_err());
    }

    #[test]
    fn the_jwks_lists_every_public_key_and_no_private_part() {
        let keys = KeySet::signing(&format!("{},{}", k2(), k1())).unwrap();
        let jwks = serde_json::to_value(keys.jwks()).unwrap();
        let listed: Vec<&str> = jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kid"].as_str().unwrap())
            .collect();
        assert_eq!(listed, ["k1", "k2"]);
        let first = &jwks["keys"][0];
        assert_eq!(first["kty"], "OKP");
        assert_eq!(first["crv"], "Ed25519");
        assert_eq!(first["alg"], "EdDSA");
        assert_eq!(first["use"], "sig");
        assert!(first.get("d").is_none(), "{first}");
        // A verifier made from the published x verifies what the signer issues.
        use base64::Engine;
        let x = base64url_decode(first["x"].as_str().unwrap());
        let published = KeySet::verifying(&format!(
            "k1:{}",
            base64::engine::general_purpose::STANDARD.encode(x)
        ))
        .unwrap();
        let clock = ManualClock::new(Utc::now());
        let issuer = tokens(&k1(), clock.clone());
        let verifier = Tokens::new(&JwtConfig::default(), published, Arc::new(clock));
        let (token, _) = issuer.issue("CUST0001", Role::Customer, vec![]);
        verifier.verify(&token).unwrap();
    }

    #[test]
    fn a_key_pair_made_by_openssl_issues_and_verifies() {
        // openssl genpkey -algorithm ed25519; openssl pkey [-pubout] -outform DER | base64
        let clock = ManualClock::new(Utc::now());
        let issuer = tokens(
            "kid7:MC4CAQAwBQYDK2VwBCIEIAsY3szvfQ1IcxWSeZvS6SXb8Ax8sToSkAOVUSAVIKEx",
            clock.clone(),
        );
        let public =
            KeySet::verifying("kid7:MCowBQYDK2VwAyEAt2z5bwnr5t4vLuOhEEyxPdbt59kjnA6phJxfuWv4L9E=")
                .unwrap();
        let verifier = Tokens::new(&JwtConfig::default(), public, Arc::new(clock));
        let (token, _) = issuer.issue("CUST0001", Role::Customer, vec![]);
        verifier.verify(&token).unwrap();
    }

    #[test]
    fn malformed_keys_are_refused_and_a_key_id_names_one_key() {
        assert!(KeySet::signing("k:short").is_err());
        assert!(KeySet::signing("no-colon-here").is_err());
        assert!(KeySet::signing("").is_err());
        assert!(KeySet::verifying(" , ").is_err());
        let twice = format!("{},{}", key("k1", 1), key("k1", 2));
        assert!(KeySet::signing(&twice).is_err());
        let other = KeySet::signing(&key("k1", 3)).unwrap();
        assert!(KeySet::signing(&k1())
            .unwrap()
            .and_verifying(&other)
            .is_err());
    }

    #[test]
    fn production_refuses_missing_keys_and_the_development_pair() {
        let mut config = JwtConfig::default();
        let err = config.signing_keys(true).unwrap_err();
        assert!(err.contains("PHONEBILL_JWT_SIGNING_KEY_FILE"), "{err}");
        let err = config.verifying_keys(true).unwrap_err();
        assert!(err.contains("PHONEBILL_JWT_VERIFY_KEYS_FILE"), "{err}");
        assert_eq!(
            config.signing_keys(false).unwrap().signing_kid(),
            Some(LOCAL_DEV_KID)
        );
        assert_eq!(config.verifying_keys(false).unwrap().signing_kid(), None);

        let dev_public = serde_json::to_value(KeySet::local_dev().jwks()).unwrap();
        let x = base64url_decode(dev_public["keys"][0]["x"].as_str().unwrap());
        use base64::Engine;
        config.verify_keys = Some(format!(
            "other-id:{}",
            base64::engine::general_purpose::STANDARD.encode(x)
        ));
        assert!(config.verifying_keys(true).is_err());
        assert!(config.verifying_keys(false).is_ok());

        config.verify_keys = None;
        config.signing_key = Some(k1());
        assert_eq!(config.signing_keys(true).unwrap().signing_kid(), Some("k1"));
        assert!(!format!("{config:?}").contains(&k1()[3..]), "{config:?}");
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
            let tokens = tokens(&k1(), ManualClock::new(Utc::now()));
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

    fn base64url_decode(text: &str) -> Vec<u8> {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(text)
            .unwrap()
    }

    fn base64url(bytes: &[u8]) -> String {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    }
}
