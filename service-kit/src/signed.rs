//! Messages signed by their producer. KOS's results and facts carry an Ed25519 signature
//! made with KOS's private key (mounted in kos-mock alone); their consumers check it
//! against KOS's public keys. Broker credentials let a pod publish on KOS's topics, not
//! speak for KOS: a forged result or fact fails the check and is dead-lettered unapplied.
//!
//! - **What is signed**: [`DOMAIN`], the message key, a zero byte, the payload: the key
//!   too, so a genuine payload cannot be replayed under another line's key.
//! - **Headers**: [`SIGNER`] (the key id) and [`SIGNATURE`] (the 64-byte signature, base64).
//! - **Keys** are `kid:<base64>` entries, comma- or newline-separated. A signing key is
//!   the 32-byte seed or its PKCS#8 DER (`openssl genpkey -algorithm ed25519 -outform DER
//!   | base64 -w0`); a verifying key the 32-byte public key or its SubjectPublicKeyInfo DER
//!   (`openssl pkey -pubout -outform DER`). The signer uses its one key; a verifier takes
//!   every key it is given, so a rotation adds the new public key first, then moves the
//!   signer, then drops the old key.
//! - **Locally** (not in production, where the services refuse it) a fixed development
//!   key pair stands in: [`Signer::local_dev`], [`Verifier::local_dev`].

use std::collections::HashMap;
use std::path::PathBuf;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use clap::Args;
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};

/// Prefixes every signed text: a signature made for anything else never verifies here.
pub const DOMAIN: &[u8] = b"phonebill-message-v1\0";
/// The header naming the key that signed the message.
pub const SIGNER: &str = "phonebill-signer";
/// The header holding the signature (base64).
pub const SIGNATURE: &str = "phonebill-signature";

/// The development key's id and seed (refused in production).
const LOCAL_DEV_KID: &str = "local-dev";
const LOCAL_DEV_SEED: [u8; 32] = *b"phonebill-kos-local-dev-key-0001";

// RFC 8410: an Ed25519 key in PKCS#8 (v1) and in SubjectPublicKeyInfo is this fixed
// prefix followed by the 32 key bytes.
pub const PKCS8_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];
pub(crate) const SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// Signs messages with one key.
#[derive(Clone)]
pub struct Signer {
    kid: String,
    key: SigningKey,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer").field("kid", &self.kid).finish()
    }
}

impl Signer {
    /// One `kid:<base64 seed or PKCS#8 DER>` entry.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut entries = entries(text);
        let (kid, bytes) = entries.next().ok_or("no signing key given")??;
        if entries.next().is_some() {
            return Err("one signing key, not several".into());
        }
        let seed = key_bytes(&bytes, &PKCS8_PREFIX)
            .ok_or_else(|| format!("signing key `{kid}` is not an Ed25519 seed or PKCS#8 key"))?;
        Ok(Self {
            kid,
            key: SigningKey::from_bytes(&seed),
        })
    }

    /// The development key.
    pub fn local_dev() -> Self {
        Self {
            kid: LOCAL_DEV_KID.to_owned(),
            key: SigningKey::from_bytes(&LOCAL_DEV_SEED),
        }
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The signature of a message with `key` and `payload`, base64.
    pub fn sign(&self, key: &[u8], payload: &[u8]) -> String {
        STANDARD.encode(self.key.sign(&signed_text(key, payload)).to_bytes())
    }

    /// The verifier of this key alone.
    pub fn verifier(&self) -> Verifier {
        Verifier {
            keys: HashMap::from([(self.kid.clone(), self.key.verifying_key())]),
        }
    }
}

/// Checks messages against the producer's public keys.
#[derive(Clone)]
pub struct Verifier {
    keys: HashMap<String, VerifyingKey>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut ids: Vec<&String> = self.keys.keys().collect();
        ids.sort();
        f.debug_struct("Verifier").field("kids", &ids).finish()
    }
}

impl Verifier {
    /// `kid:<base64 public key or SubjectPublicKeyInfo DER>` entries.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut keys = HashMap::new();
        for entry in entries(text) {
            let (kid, bytes) = entry?;
            let public = key_bytes(&bytes, &SPKI_PREFIX)
                .and_then(|b| VerifyingKey::from_bytes(&b).ok())
                .ok_or_else(|| format!("verifying key `{kid}` is not an Ed25519 public key"))?;
            if keys.insert(kid.clone(), public).is_some() {
                return Err(format!("verifying key id `{kid}` appears twice"));
            }
        }
        if keys.is_empty() {
            return Err("no verifying key given".into());
        }
        Ok(Self { keys })
    }

    /// The development key's public half.
    pub fn local_dev() -> Self {
        Signer::local_dev().verifier()
    }

    /// Whether a message with these headers, `key` and `payload` was signed by one of the
    /// keys; the reason when not.
    pub fn check<'a>(
        &self,
        headers: impl IntoIterator<Item = (&'a str, Option<&'a [u8]>)>,
        key: Option<&[u8]>,
        payload: &[u8],
    ) -> Result<(), String> {
        let (mut kid, mut signature) = (None, None);
        for (name, value) in headers {
            match name {
                SIGNER => kid = value,
                SIGNATURE => signature = value,
                _ => {}
            }
        }
        let (Some(kid), Some(signature)) = (kid, signature) else {
            return Err("the message is not signed".into());
        };
        let kid = String::from_utf8_lossy(kid);
        let public = self
            .keys
            .get(kid.as_ref())
            .ok_or_else(|| format!("the message is signed by an unknown key `{kid}`"))?;
        let signature = STANDARD
            .decode(signature)
            .ok()
            .and_then(|bytes| Signature::from_slice(&bytes).ok())
            .ok_or("the message's signature is malformed")?;
        public
            .verify_strict(&signed_text(key.unwrap_or_default(), payload), &signature)
            .map_err(|_| format!("the message's signature does not match key `{kid}`"))
    }

    /// [`Verifier::check`] of a consumed Kafka message.
    pub fn check_message<M: rdkafka::Message>(&self, message: &M) -> Result<(), String> {
        use rdkafka::message::Headers;
        let headers = message.headers();
        let pairs = headers
            .into_iter()
            .flat_map(|h| h.iter().map(|h| (h.key, h.value)));
        self.check(pairs, message.key(), message.payload().unwrap_or_default())
    }
}

fn signed_text(key: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut text = Vec::with_capacity(DOMAIN.len() + key.len() + 1 + payload.len());
    text.extend_from_slice(DOMAIN);
    text.extend_from_slice(key);
    text.push(0);
    text.extend_from_slice(payload);
    text
}

/// `kid:<base64>` entries, decoded.
pub(crate) fn entries(text: &str) -> impl Iterator<Item = Result<(String, Vec<u8>), String>> + '_ {
    text.split(['\n', ','])
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(|entry| {
            let (kid, encoded) = entry.split_once(':').ok_or("each key is `kid:<base64>`")?;
            let kid = kid.trim();
            if kid.is_empty() {
                return Err("a key needs an id before its `:`".to_owned());
            }
            let bytes = STANDARD
                .decode(encoded.trim())
                .map_err(|_| format!("key `{kid}` is not base64"))?;
            Ok((kid.to_owned(), bytes))
        })
}

/// The 32 key bytes: given as they are, or after the DER `prefix`.
pub(crate) fn key_bytes(bytes: &[u8], prefix: &[u8]) -> Option<[u8; 32]> {
    let raw = match bytes.len() {
        32 => bytes,
        n if n == prefix.len() + 32 && bytes.starts_with(prefix) => &bytes[prefix.len()..],
        _ => return None,
    };
    raw.try_into().ok()
}

/// Where KOS's signing key comes from (kos-mock).
#[derive(Clone, Default, Args, educe::Educe)]
#[educe(Debug)]
pub struct SigningConfig {
    /// KOS's message signing key, `kid:<base64 Ed25519 seed or PKCS#8 DER>`.
    #[arg(
        long = "kos-signing-key",
        env = "PHONEBILL_KOS_SIGNING_KEY",
        hide_env_values = true
    )]
    #[educe(Debug(method(crate::secret::option)))]
    pub kos_signing_key: Option<String>,

    /// A file holding it (as mounted from Key Vault); wins over the variable.
    #[arg(long = "kos-signing-key-file", env = "PHONEBILL_KOS_SIGNING_KEY_FILE")]
    pub kos_signing_key_file: Option<PathBuf>,
}

impl SigningConfig {
    /// The key from the file, else the variable, else (not in production) the
    /// development key.
    pub fn signer(&self, production: bool) -> Result<Signer, String> {
        let given = crate::secret::file_or_value(
            self.kos_signing_key_file.as_deref(),
            self.kos_signing_key.as_deref(),
            "PHONEBILL_KOS_SIGNING_KEY_FILE",
        )?;
        match given {
            Some(text) => Signer::parse(&text),
            None if production => Err(
                "PHONEBILL_KOS_SIGNING_KEY(_FILE) is required in production (the development key is refused)"
                    .into(),
            ),
            None => Ok(Signer::local_dev()),
        }
    }
}

/// KOS's public keys (the services that consume KOS's topics).
#[derive(Debug, Clone, Default, Args)]
pub struct VerifyConfig {
    /// KOS's public keys, `kid:<base64 Ed25519 public key or SubjectPublicKeyInfo DER>`,
    /// comma- or newline-separated.
    #[arg(long = "kos-verify-keys", env = "PHONEBILL_KOS_VERIFY_KEYS")]
    pub kos_verify_keys: Option<String>,
}

impl VerifyConfig {
    /// The keys given, else (not in production) the development key's public half.
    pub fn verifier(&self, production: bool) -> Result<Verifier, String> {
        match &self.kos_verify_keys {
            Some(text) => Verifier::parse(text),
            None if production => Err(
                "PHONEBILL_KOS_VERIFY_KEYS is required in production (the development key is refused)"
                    .into(),
            ),
            None => Ok(Verifier::local_dev()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers<'a>(kid: &'a str, signature: &'a str) -> Vec<(&'a str, Option<&'a [u8]>)> {
        vec![
            ("traceparent", Some(b"x".as_slice())),
            (SIGNER, Some(kid.as_bytes())),
            (SIGNATURE, Some(signature.as_bytes())),
        ]
    }

    #[test]
    fn a_signed_message_verifies_and_any_change_to_key_payload_or_signer_does_not() {
        let signer = Signer::local_dev();
        let verifier = Verifier::local_dev();
        let signature = signer.sign(b"010-0000-0001", b"{\"a\":1}");
        let ok = verifier.check(
            headers("local-dev", &signature),
            Some(b"010-0000-0001"),
            b"{\"a\":1}",
        );
        assert_eq!(ok, Ok(()));
        for (kid, key, payload) in [
            (
                "local-dev",
                b"010-0000-0002".as_slice(),
                b"{\"a\":1}".as_slice(),
            ),
            ("local-dev", b"010-0000-0001", b"{\"a\":2}"),
            ("other", b"010-0000-0001", b"{\"a\":1}"),
        ] {
            let refused = verifier.check(headers(kid, &signature), Some(key), payload);
            assert!(refused.is_err(), "{kid} {key:?} {payload:?}");
        }
        let unsigned = verifier.check(vec![], Some(b"k"), b"p");
        assert_eq!(unsigned, Err("the message is not signed".into()));
        let garbage = verifier.check(headers("local-dev", "!!"), Some(b"k"), b"p");
        assert_eq!(garbage, Err("the message's signature is malformed".into()));
    }

    #[test]
    fn another_key_of_the_same_id_does_not_verify() {
        let forger = Signer::parse(&format!("local-dev:{}", STANDARD.encode([7u8; 32]))).unwrap();
        let signature = forger.sign(b"k", b"p");
        let refused =
            Verifier::local_dev().check(headers("local-dev", &signature), Some(b"k"), b"p");
        assert_eq!(
            refused,
            Err("the message's signature does not match key `local-dev`".into())
        );
    }

    #[test]
    fn keys_are_read_raw_or_as_der_and_every_verifying_key_is_accepted() {
        let seed = [9u8; 32];
        let der: Vec<u8> = PKCS8_PREFIX.iter().chain(&seed).copied().collect();
        let raw = Signer::parse(&format!("k2:{}", STANDARD.encode(seed))).unwrap();
        let from_der = Signer::parse(&format!("k2:{}", STANDARD.encode(&der))).unwrap();
        assert_eq!(raw.sign(b"k", b"p"), from_der.sign(b"k", b"p"));

        let public = SigningKey::from_bytes(&seed).verifying_key().to_bytes();
        let spki: Vec<u8> = SPKI_PREFIX.iter().chain(&public).copied().collect();
        let old = Signer::local_dev().verifier().keys["local-dev"].to_bytes();
        let both = Verifier::parse(&format!(
            "local-dev:{}, k2:{}",
            STANDARD.encode(old),
            STANDARD.encode(&spki)
        ))
        .unwrap();
        for signer in [Signer::local_dev(), raw] {
            let signature = signer.sign(b"k", b"p");
            assert_eq!(
                both.check(headers(signer.kid(), &signature), Some(b"k"), b"p"),
                Ok(())
            );
        }
    }

    #[test]
    fn a_key_pair_made_by_openssl_signs_and_verifies() {
        // openssl genpkey -algorithm ed25519; openssl pkey [-pubout] -outform DER | base64
        let signer =
            Signer::parse("kos1:MC4CAQAwBQYDK2VwBCIEIAsY3szvfQ1IcxWSeZvS6SXb8Ax8sToSkAOVUSAVIKEx")
                .unwrap();
        let verifier =
            Verifier::parse("kos1:MCowBQYDK2VwAyEAt2z5bwnr5t4vLuOhEEyxPdbt59kjnA6phJxfuWv4L9E=")
                .unwrap();
        let signature = signer.sign(b"010-0000-0001", b"{}");
        let checked = verifier.check(headers("kos1", &signature), Some(b"010-0000-0001"), b"{}");
        assert_eq!(checked, Ok(()));
    }

    #[test]
    fn malformed_keys_are_refused_with_the_reason() {
        assert!(Signer::parse("").is_err());
        assert!(Signer::parse("nokid").is_err());
        assert!(Signer::parse("k:not base64!").is_err());
        assert!(Signer::parse(&format!("k:{}", STANDARD.encode([1u8; 31]))).is_err());
        assert!(Signer::parse(&format!("a:{0},b:{0}", STANDARD.encode([1u8; 32]))).is_err());
        assert!(Verifier::parse(&format!("a:{0},a:{0}", STANDARD.encode([1u8; 32]))).is_err());
        assert!(Verifier::parse(" , ").is_err());
    }

    #[test]
    fn production_refuses_the_development_keys_and_debug_shows_no_secret() {
        assert!(SigningConfig::default().signer(true).is_err());
        assert!(VerifyConfig::default().verifier(true).is_err());
        assert_eq!(
            SigningConfig::default().signer(false).unwrap().kid(),
            "local-dev"
        );
        let config = SigningConfig {
            kos_signing_key: Some(format!("k:{}", STANDARD.encode([1u8; 32]))),
            kos_signing_key_file: None,
        };
        assert!(!format!("{config:?}").contains(&STANDARD.encode([1u8; 32])));
        assert!(!format!("{:?}", config.signer(true).unwrap()).contains("AQEB"));
    }
}
