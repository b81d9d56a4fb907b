//! argon2id hashing. The cost comes from configuration so tests can use cheap settings;
//! a hash carries its own parameters, so hashes made under other settings still verify.
//!
//! Each hash holds its memory cost (19 MiB in production) while it runs, so at most
//! `argon2_concurrency` run at once (one per CPU by default: more would only share the
//! CPUs); the rest wait their turn up to `argon2_queue_ms`, then are refused ([`Busy`]).
//! Without the bound, 100 concurrent logins took the process from 22 MiB to 424 MiB.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;

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
    slots: Arc<Semaphore>,
    queue: Duration,
    running: Arc<AtomicUsize>,
    peak: Arc<AtomicUsize>,
}

/// No hashing slot came free within the queue bound: the caller should retry shortly.
#[derive(Debug, PartialEq, Eq)]
pub struct Busy;

impl From<Busy> for crate::error::AppError {
    fn from(_: Busy) -> Self {
        crate::error::AppError::Auth(service_kit::auth::AuthError::RateLimited {
            retry_after_secs: 1,
        })
    }
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
        let slots = match config.argon2_concurrency {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        let mut passwords = Self {
            params,
            dummy: Arc::new(String::new()),
            slots: Arc::new(Semaphore::new(slots)),
            queue: Duration::from_millis(config.argon2_queue_ms),
            running: Arc::new(AtomicUsize::new(0)),
            peak: Arc::new(AtomicUsize::new(0)),
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
    pub async fn hash(&self, password: &str) -> Result<String, Busy> {
        let password = password.to_owned();
        self.in_slot(move |this| this.hash_blocking(&password))
            .await
    }

    /// Whether `password` matches `hash`; `None` (no password set) never matches but
    /// takes as long.
    pub async fn verify(&self, hash: Option<String>, password: &str) -> Result<bool, Busy> {
        let password = password.to_owned();
        self.in_slot(move |this| this.verify_blocking(hash.as_deref(), &password))
            .await
    }

    /// The most hashes that ran at once since the last call.
    pub fn take_peak(&self) -> usize {
        self.peak.swap(0, Ordering::SeqCst)
    }

    /// Runs `work` on a blocking thread once a slot is free (waiting `queue` at most).
    async fn in_slot<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Passwords) -> T + Send + 'static,
    ) -> Result<T, Busy> {
        let permit = tokio::time::timeout(self.queue, Arc::clone(&self.slots).acquire_owned())
            .await
            .map_err(|_| Busy)?
            .expect("the semaphore is never closed");
        let this = self.clone();
        Ok(tokio::task::spawn_blocking(move || {
            let now = this.running.fetch_add(1, Ordering::SeqCst) + 1;
            this.peak.fetch_max(now, Ordering::SeqCst);
            let out = work(&this);
            this.running.fetch_sub(1, Ordering::SeqCst);
            drop(permit);
            out
        })
        .await
        .expect("hashing does not panic"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn passwords(memory_kib: u32, concurrency: usize, queue_ms: u64) -> Passwords {
        Passwords::new(&AuthConfig {
            max_failures: 5,
            lockout_secs: 1800,
            argon2_memory_kib: memory_kib,
            argon2_iterations: 1,
            argon2_parallelism: 1,
            argon2_concurrency: concurrency,
            argon2_queue_ms: queue_ms,
            revocation_resync_ms: 5_000,
        })
        .unwrap()
    }

    #[tokio::test]
    async fn a_hash_is_argon2id_and_verifies_only_its_password() {
        let passwords = passwords(64, 0, 2_000);
        let hash = passwords.hash("demo-CUST0001").await.unwrap();
        assert!(hash.starts_with("$argon2id$"), "{hash}");
        assert_eq!(
            passwords.verify(Some(hash.clone()), "demo-CUST0001").await,
            Ok(true)
        );
        assert_eq!(
            passwords.verify(Some(hash), "demo-CUST0002").await,
            Ok(false)
        );
        assert_eq!(
            passwords.verify(None, "no account has this password").await,
            Ok(false)
        );
        assert_eq!(
            passwords.verify(Some("garbage".into()), "x").await,
            Ok(false)
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn given_a_flood_of_logins_at_most_the_configured_hashes_run_at_once() {
        let passwords = passwords(4_096, 2, 60_000);
        let hash = passwords.hash("pw").await.unwrap();
        passwords.take_peak();
        let flood: Vec<_> = (0..40)
            .map(|_| {
                let (p, h) = (passwords.clone(), hash.clone());
                tokio::spawn(async move { p.verify(Some(h), "pw").await })
            })
            .collect();
        for login in flood {
            assert_eq!(login.await.unwrap(), Ok(true));
        }
        let peak = passwords.take_peak();
        assert!((1..=2).contains(&peak), "{peak} hashes ran at once");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn given_every_slot_taken_past_the_queue_bound_a_login_is_refused_as_busy() {
        let passwords = passwords(16_384, 1, 0);
        let hash = passwords.hash("pw").await.unwrap();
        let flood: Vec<_> = (0..20)
            .map(|_| {
                let (p, h) = (passwords.clone(), hash.clone());
                tokio::spawn(async move { p.verify(Some(h), "pw").await })
            })
            .collect();
        let mut answers = vec![];
        for login in flood {
            answers.push(login.await.unwrap());
        }
        assert!(answers.contains(&Ok(true)), "{answers:?}");
        assert!(answers.contains(&Err(Busy)), "{answers:?}");
        assert!(answers.iter().all(|a| *a == Ok(true) || *a == Err(Busy)));
    }
}
