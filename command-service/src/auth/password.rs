//! argon2id hashing. The cost comes from configuration so tests can use cheap settings;
//! a hash carries its own parameters, so hashes made under other settings still verify.

use std::sync::Arc;

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

use crate::configuration::AuthConfig;

#[derive(Clone)]
pub struct Passwords {
    params: Params,
    /// Verified against when an account has no password, so an unknown id costs the
    /// same time as a known one.
    dummy: Arc<String>,
}

impl Passwords {
    pub fn new(config: &AuthConfig) -> anyhow::Result<Self> {
        let params = Params::new(
            config.argon2_memory_kib,
            config.argon2_iterations,
            config.argon2_parallelism,
            None,
        )
        .map_err(|e| anyhow::anyhow!("argon2 parameters: {e}"))?;
        let mut passwords = Self {
            params,
            dummy: Arc::new(String::new()),
        };
        passwords.dummy = Arc::new(passwords.hash_blocking("no account has this password"));
        Ok(passwords)
    }

    fn argon(&self) -> Argon2<'static> {
        Argon2::new(Algorithm::Argon2id, Version::V0x13, self.params.clone())
    }

    fn hash_blocking(&self, password: &str) -> String {
        let salt = SaltString::generate(&mut OsRng);
        self.argon()
            .hash_password(password.as_bytes(), &salt)
            .expect("argon2id hashes any password")
            .to_string()
    }

    fn verify_blocking(&self, hash: Option<&str>, password: &str) -> bool {
        let stored = hash.unwrap_or(&self.dummy);
        let ok = PasswordHash::new(stored)
            .map(|parsed| {
                self.argon()
                    .verify_password(password.as_bytes(), &parsed)
                    .is_ok()
            })
            .unwrap_or(false);
        ok && hash.is_some()
    }

    /// The PHC string of `password` (on a blocking thread: hashing takes tens of ms).
    pub async fn hash(&self, password: &str) -> String {
        let (this, password) = (self.clone(), password.to_owned());
        tokio::task::spawn_blocking(move || this.hash_blocking(&password))
            .await
            .expect("hashing does not panic")
    }

    /// Whether `password` matches `hash`; `None` (no password set) never matches but
    /// takes as long.
    pub async fn verify(&self, hash: Option<String>, password: &str) -> bool {
        let (this, password) = (self.clone(), password.to_owned());
        tokio::task::spawn_blocking(move || this.verify_blocking(hash.as_deref(), &password))
            .await
            .expect("verifying does not panic")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cheap() -> Passwords {
        Passwords::new(&AuthConfig {
            max_failures: 5,
            lockout_secs: 1800,
            argon2_memory_kib: 64,
            argon2_iterations: 1,
            argon2_parallelism: 1,
        })
        .unwrap()
    }

    #[tokio::test]
    async fn a_hash_is_argon2id_and_verifies_only_its_password() {
        let passwords = cheap();
        let hash = passwords.hash("demo-CUST0001").await;
        assert!(hash.starts_with("$argon2id$"), "{hash}");
        assert!(passwords.verify(Some(hash.clone()), "demo-CUST0001").await);
        assert!(!passwords.verify(Some(hash), "demo-CUST0002").await);
        assert!(!passwords.verify(None, "no account has this password").await);
        assert!(!passwords.verify(Some("garbage".into()), "x").await);
    }
}
