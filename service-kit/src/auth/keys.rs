//! The token keys and settings (`PHONEBILL_JWT_*`).
//!
//! Tokens are signed with Ed25519 (JWT `EdDSA`). The private keys live in command-service
//! alone, the service that logs customers in; every other service holds only the public
//! keys, so no other pod can mint a token. Keys are `kid:<base64>` entries, in the format
//! of [`crate::signed`]: a private key is the 32-byte seed or its PKCS#8 DER, a public key
//! the 32 bytes or their SubjectPublicKeyInfo DER, as `openssl` prints them.

use std::collections::HashMap;
use std::path::PathBuf;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use clap::Args;
use ed25519_dalek::{SigningKey, VerifyingKey};
use jsonwebtoken::jwk::{
    AlgorithmParameters, CommonParameters, EllipticCurve, Jwk, JwkSet, KeyAlgorithm,
    OctetKeyPairParameters, OctetKeyPairType, PublicKeyUse,
};
use jsonwebtoken::{DecodingKey, EncodingKey};

use crate::signed::{entries, key_bytes, PKCS8_PREFIX, SPKI_PREFIX};

/// The development key's id (its pair is refused in production).
pub const LOCAL_DEV_KID: &str = "local-dev";
const LOCAL_DEV_SEED: [u8; 32] = *b"phonebill-jwt-local-dev-key-0001";

/// Token keys by id: at most one signs (command-service's current key); all verify.
#[derive(Clone)]
pub struct KeySet {
    pub(super) signing: Option<(String, EncodingKey)>,
    pub(super) verifying: HashMap<String, PublicKey>,
}

/// One public key, made into a decoding key once (not per token).
#[derive(Clone)]
pub(super) struct PublicKey {
    pub(super) decoding: DecodingKey,
    bytes: [u8; 32],
}

impl PublicKey {
    fn new(bytes: [u8; 32]) -> Self {
        Self {
            decoding: DecodingKey::from_ed_der(&bytes),
            bytes,
        }
    }
}

impl std::fmt::Debug for KeySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut ids: Vec<&String> = self.verifying.keys().collect();
        ids.sort();
        f.debug_struct("KeySet")
            .field("signs_with", &self.signing.as_ref().map(|(kid, _)| kid))
            .field("verifies", &ids)
            .finish()
    }
}

impl KeySet {
    /// Private keys, `kid:<base64 seed or PKCS#8 DER>` entries separated by commas or
    /// newlines: the first signs; the public half of every entry verifies.
    pub fn signing(text: &str) -> Result<Self, String> {
        let mut set = Self::empty();
        for entry in entries(text) {
            let (kid, bytes) = entry?;
            let seed = key_bytes(&bytes, &PKCS8_PREFIX).ok_or_else(|| {
                format!("signing key `{kid}` is not an Ed25519 seed or PKCS#8 key")
            })?;
            set.add_seed(&kid, seed)?;
        }
        if set.signing.is_none() {
            return Err("no signing key given".into());
        }
        Ok(set)
    }

    /// Public keys only, `kid:<base64 key or SubjectPublicKeyInfo DER>` entries: these
    /// verify tokens and cannot make one.
    pub fn verifying(text: &str) -> Result<Self, String> {
        let mut set = Self::empty();
        for entry in entries(text) {
            let (kid, bytes) = entry?;
            let public = key_bytes(&bytes, &SPKI_PREFIX)
                .filter(|b| VerifyingKey::from_bytes(b).is_ok())
                .ok_or_else(|| format!("verifying key `{kid}` is not an Ed25519 public key"))?;
            set.add_public(&kid, public)?;
        }
        if set.verifying.is_empty() {
            return Err("no verifying key given".into());
        }
        Ok(set)
    }

    /// A signing set of one key, from its seed.
    pub fn from_seed(kid: &str, seed: [u8; 32]) -> Self {
        let mut set = Self::empty();
        set.add_seed(kid, seed).expect("one key has no duplicate");
        set
    }

    /// The development pair (refused in production).
    pub fn local_dev() -> Self {
        Self::from_seed(LOCAL_DEV_KID, LOCAL_DEV_SEED)
    }

    /// The same public keys, without the power to sign.
    pub fn public_only(&self) -> Self {
        Self {
            verifying: self.verifying.clone(),
            ..Self::empty()
        }
    }

    fn empty() -> Self {
        Self {
            signing: None,
            verifying: HashMap::new(),
        }
    }

    /// These keys and `other`'s public keys (a rotation's previous keys); a key id may
    /// appear in both only for the same key.
    pub fn and_verifying(mut self, other: &KeySet) -> Result<Self, String> {
        for (kid, public) in &other.verifying {
            self.add_public(kid, public.bytes)?;
        }
        Ok(self)
    }

    /// The id of the key that signs, if this set may sign.
    pub fn signing_kid(&self) -> Option<&str> {
        self.signing.as_ref().map(|(kid, _)| kid.as_str())
    }

    /// Whether any key is the development pair's.
    pub fn holds_local_dev(&self) -> bool {
        let dev = SigningKey::from_bytes(&LOCAL_DEV_SEED)
            .verifying_key()
            .to_bytes();
        self.verifying.values().any(|p| p.bytes == dev)
    }

    /// The public keys as a JSON Web Key Set (RFC 8037 `OKP`/`Ed25519`), sorted by id.
    pub fn jwks(&self) -> JwkSet {
        let mut keys: Vec<Jwk> = self
            .verifying
            .iter()
            .map(|(kid, public)| Jwk {
                common: CommonParameters {
                    public_key_use: Some(PublicKeyUse::Signature),
                    key_algorithm: Some(KeyAlgorithm::EdDSA),
                    key_id: Some(kid.clone()),
                    ..Default::default()
                },
                algorithm: AlgorithmParameters::OctetKeyPair(OctetKeyPairParameters {
                    key_type: OctetKeyPairType::OctetKeyPair,
                    curve: EllipticCurve::Ed25519,
                    x: URL_SAFE_NO_PAD.encode(public.bytes),
                }),
            })
            .collect();
        keys.sort_by(|a, b| a.common.key_id.cmp(&b.common.key_id));
        JwkSet { keys }
    }

    fn add_seed(&mut self, kid: &str, seed: [u8; 32]) -> Result<(), String> {
        let public = SigningKey::from_bytes(&seed).verifying_key().to_bytes();
        self.add_public(kid, public)?;
        if self.signing.is_none() {
            let der: Vec<u8> = PKCS8_PREFIX.iter().chain(&seed).copied().collect();
            self.signing = Some((kid.to_owned(), EncodingKey::from_ed_der(&der)));
        }
        Ok(())
    }

    fn add_public(&mut self, kid: &str, bytes: [u8; 32]) -> Result<(), String> {
        match self.verifying.get(kid) {
            Some(known) if known.bytes != bytes => {
                Err(format!("key id `{kid}` names two different keys"))
            }
            Some(_) => Ok(()),
            None => {
                self.verifying.insert(kid.to_owned(), PublicKey::new(bytes));
                Ok(())
            }
        }
    }
}

/// Token settings, the same variables for every service. Only command-service is given
/// `PHONEBILL_JWT_SIGNING_KEY`; the others are given `PHONEBILL_JWT_VERIFY_KEYS`.
#[derive(Clone, Args, educe::Educe)]
#[educe(Debug)]
pub struct JwtConfig {
    /// command-service's private keys, `kid:<base64 Ed25519 seed or PKCS#8 DER>` (comma-
    /// or newline-separated; the first signs, all verify).
    #[arg(
        long = "jwt-signing-key",
        env = "PHONEBILL_JWT_SIGNING_KEY",
        hide_env_values = true
    )]
    #[educe(Debug(method(crate::secret::option)))]
    pub signing_key: Option<String>,

    /// A file holding the private keys (as mounted from Key Vault); wins over the variable.
    #[arg(long = "jwt-signing-key-file", env = "PHONEBILL_JWT_SIGNING_KEY_FILE")]
    pub signing_key_file: Option<PathBuf>,

    /// The public keys that verify tokens, `kid:<base64 Ed25519 public key or
    /// SubjectPublicKeyInfo DER>`: the current key's and, during a rotation, the previous.
    #[arg(long = "jwt-verify-keys", env = "PHONEBILL_JWT_VERIFY_KEYS")]
    pub verify_keys: Option<String>,

    /// A file holding the public keys; wins over the variable.
    #[arg(long = "jwt-verify-keys-file", env = "PHONEBILL_JWT_VERIFY_KEYS_FILE")]
    pub verify_keys_file: Option<PathBuf>,

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

impl Default for JwtConfig {
    fn default() -> Self {
        Self {
            signing_key: None,
            signing_key_file: None,
            verify_keys: None,
            verify_keys_file: None,
            issuer: "phonebill".into(),
            audience: "phonebill-api".into(),
            ttl_secs: 1800,
        }
    }
}

impl JwtConfig {
    /// command-service's keys: the private keys from the file, else the variable, else
    /// (not in production) the development pair; and the verifying keys, if given.
    pub fn signing_keys(&self, production: bool) -> Result<KeySet, String> {
        let given = crate::secret::file_or_value(
            self.signing_key_file.as_deref(),
            self.signing_key.as_deref(),
            "PHONEBILL_JWT_SIGNING_KEY_FILE",
        )?;
        let keys = match given {
            Some(text) => {
                KeySet::signing(&text).map_err(|e| format!("PHONEBILL_JWT_SIGNING_KEY: {e}"))?
            }
            None if production => return Err(
                "production needs PHONEBILL_JWT_SIGNING_KEY_FILE (or PHONEBILL_JWT_SIGNING_KEY)"
                    .into(),
            ),
            None => KeySet::local_dev(),
        };
        let keys = match self.given_verify_keys()? {
            Some(verifying) => keys
                .and_verifying(&verifying)
                .map_err(|e| format!("PHONEBILL_JWT_VERIFY_KEYS: {e}"))?,
            None => keys,
        };
        refuse_dev_in_production(keys, production)
    }

    /// The keys of a service that only verifies: the public keys given, else the public
    /// halves of the private keys given, else (not in production) the development pair's.
    pub fn verifying_keys(&self, production: bool) -> Result<KeySet, String> {
        if let Some(keys) = self.given_verify_keys()? {
            return refuse_dev_in_production(keys, production);
        }
        let private_given = self.signing_key.is_some() || self.signing_key_file.is_some();
        if production && !private_given {
            return Err(
                "production needs PHONEBILL_JWT_VERIFY_KEYS_FILE (or PHONEBILL_JWT_VERIFY_KEYS); \
                 command-service, which issues tokens, PHONEBILL_JWT_SIGNING_KEY_FILE"
                    .into(),
            );
        }
        Ok(self.signing_keys(production)?.public_only())
    }

    fn given_verify_keys(&self) -> Result<Option<KeySet>, String> {
        let given = crate::secret::file_or_value(
            self.verify_keys_file.as_deref(),
            self.verify_keys.as_deref(),
            "PHONEBILL_JWT_VERIFY_KEYS_FILE",
        )?;
        given
            .map(|text| {
                KeySet::verifying(&text).map_err(|e| format!("PHONEBILL_JWT_VERIFY_KEYS: {e}"))
            })
            .transpose()
    }

    /// Checks the settings of a service that verifies tokens (for `Config::check`).
    pub fn check(&self, production: bool) -> Result<(), String> {
        self.verifying_keys(production)?;
        if self.ttl_secs == 0 || self.ttl_secs > 24 * 3600 {
            return Err("PHONEBILL_JWT_TTL_SECS must be 1 to 86400".into());
        }
        Ok(())
    }
}

fn refuse_dev_in_production(keys: KeySet, production: bool) -> Result<KeySet, String> {
    if production && keys.holds_local_dev() {
        return Err("production may not use the development token key".into());
    }
    Ok(keys)
}
