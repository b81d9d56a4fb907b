//! Roles and what a token says of its holder.

use serde::{Deserialize, Serialize};

/// What a caller may do: `customer` (own lines only), `analyst` (reads every line),
/// `admin` (an analyst who may also act on any line and use the admin endpoints).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Customer,
    Analyst,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Customer => "customer",
            Role::Analyst => "analyst",
            Role::Admin => "admin",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "customer" => Some(Role::Customer),
            "analyst" => Some(Role::Analyst),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
}

/// The access token's claims.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub aud: String,
    /// The customer id (or the analyst's/admin's account id).
    pub sub: String,
    pub role: Role,
    /// The customer's line numbers at login; empty for analysts and admins.
    #[serde(default)]
    pub lines: Vec<String>,
    pub iat: i64,
    pub exp: i64,
    pub jti: String,
}
