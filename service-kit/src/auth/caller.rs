//! The authenticated caller as an axum extractor, with the one ownership rule.

use std::sync::Arc;

use axum::extract::{FromRef, FromRequestParts};
use axum::http::request::Parts;
use chrono::{DateTime, Utc};

use super::{AuthError, Authenticator, Claims, Role};

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
