//! The signing keys and the token settings (`PHONEBILL_JWT_*`).

use std::collections::HashMap;
use std::path::PathBuf;

use clap::Args;
use jsonwebtoken::{DecodingKey, EncodingKey};

/// The development key used when none is configured (refused in production).
pub const LOCAL_DEV_KEY: &str =
    "local-dev:phonebill-local-development-signing-key-never-use-in-production";

/// Signing keys by id: the first signs, all verify.
#[derive(Clone)]
pub struct KeySet {
    pub(super) current: String,
    pub(super) keys: HashMap<String, Key>,
}

/// One secret, made into both keys once (not per token).
#[derive(Clone)]
pub(super) struct Key {
    pub(super) encoding: EncodingKey,
    pub(super) decoding: DecodingKey,
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
        let given = crate::secret::file_or_value(
            self.signing_key_file.as_deref(),
            self.signing_key.as_deref(),
            "PHONEBILL_JWT_SIGNING_KEY_FILE",
        )?;
        let text = match given {
            Some(text) => text,
            None if production => return Err(
                "production needs PHONEBILL_JWT_SIGNING_KEY_FILE (or PHONEBILL_JWT_SIGNING_KEY)"
                    .into(),
            ),
            None => LOCAL_DEV_KEY.to_owned(),
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
