//! Logins on the command side: passwords ([`password`], argon2id), the failure count and
//! lock ([`credentials`], in PostgreSQL so every replica shares them), and logout
//! ([`revocation`], this service's table plus Redis for the query side). Token checks,
//! roles and the line-ownership rule are shared with query-service in
//! [`service_kit::auth`].

pub mod credentials;
pub mod password;
pub mod revocation;

pub use credentials::{Credentials, Grant, LoginRefused};
pub use password::Passwords;
pub use revocation::{channel_for, Logout, PgRevocations};

/// Demo only: the password `seed-demo-passwords` gives a demo account.
pub fn demo_password(account: &str) -> String {
    format!("demo-{account}")
}

/// The demo accounts: CUST0001 to the demo data set's last customer (CUST0100 in the
/// demo), `analyst` and `admin`.
pub fn demo_accounts(customers: u32) -> Vec<(String, service_kit::auth::Role)> {
    use service_kit::auth::Role;
    let mut accounts: Vec<(String, Role)> = (1..=customers)
        .map(|n| (format!("CUST{n:04}"), Role::Customer))
        .collect();
    accounts.push(("analyst".into(), Role::Analyst));
    accounts.push(("admin".into(), Role::Admin));
    accounts
}
