//! Login and passwords. Failed logins are counted per account and client address in
//! `login_failures`, changed only by single SQL statements, so concurrent wrong logins
//! never undercount and every replica sees the same lock.

use std::net::IpAddr;
use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use service_kit::auth::{Clock, Role, Tokens};
use sqlx::PgPool;

use super::Passwords;
use crate::configuration::AuthConfig;
use crate::error::AppError;
use service_kit::problem::ProblemCode;

#[derive(Clone)]
pub struct Credentials {
    pool: PgPool,
    passwords: Passwords,
    tokens: Tokens,
    clock: Arc<dyn Clock>,
    max_failures: i32,
    lockout: TimeDelta,
}

/// A successful login.
#[derive(Debug, Clone)]
pub struct Grant {
    pub access_token: String,
    pub expires_in: i64,
    pub customer_id: String,
    pub role: Role,
    pub lines: Vec<String>,
}

/// Why a login was refused.
#[derive(Debug)]
pub enum LoginRefused {
    InvalidCredentials,
    Locked { until: DateTime<Utc> },
}

impl From<LoginRefused> for AppError {
    fn from(refused: LoginRefused) -> Self {
        match refused {
            LoginRefused::InvalidCredentials => AppError::InvalidCredentials,
            LoginRefused::Locked { until } => AppError::AccountLocked { until },
        }
    }
}

/// Account ids: what `set-password` accepts (and so all a login can match).
pub fn valid_account_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

pub fn check_new_password(password: &str) -> Result<(), AppError> {
    let chars = password.chars().count();
    if !(8..=128).contains(&chars) {
        return Err(AppError::bad_request(
            ProblemCode::InvalidPassword,
            "a password has 8 to 128 characters",
        ));
    }
    Ok(())
}

impl Credentials {
    /// The public keys of the tokens this service issues.
    pub fn jwks(&self) -> jsonwebtoken::jwk::JwkSet {
        self.tokens.keys().jwks()
    }

    pub fn new(pool: PgPool, passwords: Passwords, tokens: Tokens, config: &AuthConfig) -> Self {
        Self {
            clock: tokens.clock().clone(),
            pool,
            passwords,
            tokens,
            max_failures: config.max_failures,
            lockout: TimeDelta::seconds(config.lockout_secs),
        }
    }

    /// Checks the password and issues a token. An account locked for this client address
    /// is refused even with the right password; a wrong password counts a failure for
    /// the account from this address (known id or not, the same answer); a success
    /// clears that count. Other addresses are not affected: a guesser cannot lock the
    /// owner out.
    pub async fn login(
        &self,
        customer_id: &str,
        password: &str,
        from: IpAddr,
    ) -> Result<Grant, AppError> {
        if !valid_account_id(customer_id) || password.len() > 1024 {
            // Costs the same as a real check, so the shape of the id leaks nothing.
            self.passwords
                .verify(None, password.get(..1024).unwrap_or(""))
                .await?;
            return Err(LoginRefused::InvalidCredentials.into());
        }
        let now = self.clock.now();
        let address = from.to_string();
        let (hash, role, locked_until) = self.account(customer_id, &address).await?;
        if let Some(until) = locked_until.filter(|until| *until > now) {
            return Err(LoginRefused::Locked { until }.into());
        }
        if !self.passwords.verify(hash, password).await? {
            return Err(self
                .record_failure(customer_id, &address, now)
                .await?
                .into());
        }
        if let Some(until) = self.clear_failures(customer_id, &address, now).await? {
            return Err(LoginRefused::Locked { until }.into());
        }
        let Some(role) = Role::parse(&role) else {
            return Err(LoginRefused::InvalidCredentials.into());
        };
        self.grant(customer_id, role, now).await
    }

    /// The account's password hash and role, and whether it is locked for `address`.
    /// Unknown ids lock like known ones (no row in `credentials` to join).
    async fn account(
        &self,
        customer_id: &str,
        address: &str,
    ) -> Result<(Option<String>, String, Option<DateTime<Utc>>), AppError> {
        let row: Option<(Option<String>, String, Option<DateTime<Utc>>)> = sqlx::query_as(
            "SELECT c.password_hash, c.role, f.locked_until
               FROM credentials c
               LEFT JOIN login_failures f ON f.customer_id = c.customer_id AND f.address = $2
              WHERE c.customer_id = $1",
        )
        .bind(customer_id)
        .bind(address)
        .fetch_optional(&self.pool)
        .await?;
        Ok(match row {
            Some(row) => row,
            None => (
                None,
                String::new(),
                self.locked_until(customer_id, address).await?,
            ),
        })
    }

    /// Clears the account's failures from `address` after a right password, unless a
    /// failure from there locked it while the hash was being checked: then that lock wins
    /// and is returned.
    async fn clear_failures(
        &self,
        customer_id: &str,
        address: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<DateTime<Utc>>, AppError> {
        let locked: Option<DateTime<Utc>> = sqlx::query_scalar(
            "WITH cleared AS (
                 DELETE FROM login_failures
                  WHERE customer_id = $1 AND address = $2
                    AND (locked_until IS NULL OR locked_until <= $3))
             SELECT locked_until FROM login_failures
              WHERE customer_id = $1 AND address = $2 AND locked_until > $3",
        )
        .bind(customer_id)
        .bind(address)
        .bind(now)
        .fetch_optional(&self.pool)
        .await?
        .flatten();
        Ok(locked)
    }

    /// Issues the token (a customer's lines in it) and remembers it, so a password reset
    /// or "log out everywhere" can end it at once.
    async fn grant(
        &self,
        customer_id: &str,
        role: Role,
        now: DateTime<Utc>,
    ) -> Result<Grant, AppError> {
        let lines: Vec<String> = if role == Role::Customer {
            sqlx::query_scalar(
                "SELECT line_number FROM ref_lines WHERE customer_id = $1 ORDER BY line_number",
            )
            .bind(customer_id)
            .fetch_all(&self.pool)
            .await?
        } else {
            Vec::new()
        };
        let (access_token, claims) = self.tokens.issue(customer_id, role, lines.clone());
        sqlx::query("INSERT INTO issued_tokens (jti, customer_id, expires_at) VALUES ($1, $2, $3)")
            .bind(&claims.jti)
            .bind(customer_id)
            .bind(DateTime::from_timestamp(claims.exp, 0).unwrap_or(now))
            .execute(&self.pool)
            .await?;
        Ok(Grant {
            access_token,
            expires_in: claims.exp - claims.iat,
            customer_id: customer_id.to_owned(),
            role,
            lines,
        })
    }

    async fn locked_until(
        &self,
        customer_id: &str,
        address: &str,
    ) -> Result<Option<DateTime<Utc>>, sqlx::Error> {
        Ok(sqlx::query_scalar(
            "SELECT locked_until FROM login_failures WHERE customer_id = $1 AND address = $2",
        )
        .bind(customer_id)
        .bind(address)
        .fetch_optional(&self.pool)
        .await?
        .flatten())
    }

    /// Counts one failure of the account from `address` in one statement. The count
    /// starts over once a lock has passed or a lockout window went by without a failure
    /// (decay); reaching the maximum locks until `now + lockout`. Rows idle for longer
    /// than a lockout window are deleted on the way.
    async fn record_failure(
        &self,
        customer_id: &str,
        address: &str,
        now: DateTime<Utc>,
    ) -> Result<LoginRefused, sqlx::Error> {
        let (count, locked_until): (i32, Option<DateTime<Utc>>) = sqlx::query_as(
            "INSERT INTO login_failures AS f
                    (customer_id, address, failed_count, locked_until, updated_at)
             VALUES ($1, $5, 1, CASE WHEN 1 >= $3 THEN $4 END, $2)
             ON CONFLICT (customer_id, address) DO UPDATE SET
               failed_count = CASE WHEN f.locked_until <= $2 OR f.updated_at <= $6 THEN 1
                                   ELSE f.failed_count + 1 END,
               locked_until = CASE
                   WHEN (CASE WHEN f.locked_until <= $2 OR f.updated_at <= $6 THEN 1
                              ELSE f.failed_count + 1 END) >= $3
                   THEN $4 END,
               updated_at = $2
             RETURNING failed_count, locked_until",
        )
        .bind(customer_id)
        .bind(now)
        .bind(self.max_failures)
        .bind(now + self.lockout)
        .bind(address)
        .bind(now - self.lockout)
        .fetch_one(&self.pool)
        .await?;
        sqlx::query(
            "DELETE FROM login_failures
              WHERE updated_at <= $2 AND (locked_until IS NULL OR locked_until <= $1)",
        )
        .bind(now)
        .bind(now - self.lockout)
        .execute(&self.pool)
        .await?;
        tracing::info!(
            failed_count = count,
            locked = locked_until.is_some(),
            "login failed"
        );
        metrics::counter!("phonebill_login_failures_total").increment(1);
        Ok(match locked_until {
            Some(until) => LoginRefused::Locked { until },
            None => LoginRefused::InvalidCredentials,
        })
    }

    /// Sets an account's password and unlocks it; `role` changes the role (a new account
    /// is a customer unless told otherwise).
    pub async fn set_password(
        &self,
        customer_id: &str,
        password: &str,
        role: Option<Role>,
    ) -> Result<(), AppError> {
        if !valid_account_id(customer_id) {
            return Err(AppError::bad_request(
                ProblemCode::InvalidCustomerId,
                "an account id has 1 to 64 letters, digits, '-', '_' or '.'",
            ));
        }
        check_new_password(password)?;
        let hash = self.passwords.hash(password).await?;
        sqlx::query(
            "INSERT INTO credentials AS c (customer_id, password_hash, role, updated_at)
             VALUES ($1, $2, COALESCE($3, 'customer'), $4)
             ON CONFLICT (customer_id) DO UPDATE SET
               password_hash = EXCLUDED.password_hash,
               role = COALESCE($3, c.role),
               failed_count = 0, locked_until = NULL, updated_at = $4",
        )
        .bind(customer_id)
        .bind(hash)
        .bind(role.map(Role::as_str))
        .bind(self.clock.now())
        .execute(&self.pool)
        .await?;
        // Unlocked from every address.
        sqlx::query("DELETE FROM login_failures WHERE customer_id = $1")
            .bind(customer_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Demo only: every demo account (`customers` customers) gets its documented
    /// password. Hashes run on every core at once: a load test's thousands of accounts
    /// take a minute, not several.
    pub async fn seed_demo_passwords(&self, customers: u32) -> Result<usize, AppError> {
        use futures::{StreamExt, TryStreamExt};
        let accounts = super::demo_accounts(customers);
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        futures::stream::iter(&accounts)
            .map(|(account, role)| async move {
                let password = super::demo_password(account);
                self.set_password(account, &password, Some(*role)).await
            })
            .buffer_unordered(cores)
            .try_collect::<()>()
            .await?;
        Ok(accounts.len())
    }
}
