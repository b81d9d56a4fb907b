//! The PostgreSQL pool. Every service owns one schema and its pool resolves unqualified
//! table names there, so services sharing one database never see each other's tables
//! by accident (and tests get a fresh schema each).

use std::marker::PhantomData;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, Executor, PgConnection, PgPool};

pub mod login;

use login::{Login, SchemaRights};

/// Each service's own defaults for [`DatabaseConfig`] (its schema, its role).
pub trait DatabaseDefaults: Clone + Send + Sync + 'static {
    /// The schema holding the service's tables.
    const SCHEMA: &'static str;
    const URL: &'static str = "postgres://postgres@127.0.0.1:5432/phonebill";
    const MAX_CONNECTIONS: u32 = 16;
}

/// `PHONEBILL_DATABASE_*`: the same three settings for every service; `D` gives the
/// service's defaults.
#[derive(Clone, educe::Educe, clap::Args)]
#[educe(Debug)]
pub struct DatabaseConfig<D: DatabaseDefaults> {
    /// PostgreSQL URL; add `sslmode=require` for Azure.
    #[arg(
        id = "database_url",
        long = "database-url",
        env = "PHONEBILL_DATABASE_URL",
        default_value = D::URL,
        hide_env_values = true
    )]
    #[educe(Debug(method(crate::secret::urls)))]
    pub url: String,

    /// Schema holding this service's tables.
    #[arg(
        long = "database-schema",
        env = "PHONEBILL_DATABASE_SCHEMA",
        default_value = D::SCHEMA
    )]
    pub schema: String,

    #[arg(
        long = "database-max-connections",
        env = "PHONEBILL_DATABASE_MAX_CONNECTIONS",
        default_value_t = D::MAX_CONNECTIONS
    )]
    pub max_connections: u32,

    /// An administrator's URL, given to the migration step alone (never to a running
    /// service): `migrate` then makes the login PHONEBILL_DATABASE_URL names and hands it
    /// this service's schema ([`login::ensure`]) before migrating as that login.
    #[arg(
        id = "database_admin_url",
        long = "database-admin-url",
        env = "PHONEBILL_DATABASE_ADMIN_URL",
        hide_env_values = true
    )]
    #[educe(Debug(method(crate::secret::option)))]
    pub admin_url: Option<String>,

    #[arg(skip)]
    #[educe(Debug(ignore))]
    pub defaults: PhantomData<D>,
}

impl<D: DatabaseDefaults> DatabaseConfig<D> {
    /// The schema must be safe to splice into SQL; production needs TLS.
    pub fn check(&self, production: bool) -> Result<(), String> {
        if !is_identifier(&self.schema) {
            return Err(format!(
                "PHONEBILL_DATABASE_SCHEMA `{}` must be letters, digits and underscores",
                self.schema
            ));
        }
        if production {
            check_production_url(&self.url)?;
            if let Some(admin) = self.admin_url() {
                check_production_url(admin).map_err(|e| {
                    e.replace("PHONEBILL_DATABASE_URL", "PHONEBILL_DATABASE_ADMIN_URL")
                })?;
            }
        }
        if self.admin_url().is_some() {
            Login::from_url(&self.url)?;
        }
        Ok(())
    }

    fn admin_url(&self) -> Option<&str> {
        self.admin_url.as_deref().filter(|u| !u.is_empty())
    }

    /// The migration step's start: checks these settings (the step is given no other
    /// secret, so nothing else is checked); with an administrator's URL, makes this
    /// service's login and hands it the schema, then returns the administrator's
    /// connection, with the login, for what else only it may do (the projector's other
    /// schemas and query role). Without one (local development, tests) it does nothing
    /// more: the service's URL is trusted to own its schema already.
    pub async fn prepare_login(
        &self,
        production: bool,
        rights: SchemaRights,
    ) -> anyhow::Result<Option<Administrator>> {
        self.check(production).map_err(anyhow::Error::msg)?;
        let Some(admin_url) = self.admin_url() else {
            return Ok(None);
        };
        let login = Login::from_url(&self.url).map_err(anyhow::Error::msg)?;
        let mut conn = PgConnection::connect(admin_url).await?;
        login::ensure(&mut conn, &login, &self.schema, rights).await?;
        Ok(Some(Administrator { conn, login }))
    }

    /// Creates the schema if needed and opens the pool bound to it.
    pub async fn connect(&self) -> Result<PgPool, sqlx::Error> {
        connect(&self.url, &self.schema, self.max_connections).await
    }
}

/// The migration step's administrator: its connection, and the login it made.
pub struct Administrator {
    pub conn: PgConnection,
    pub login: Login,
}

/// Creates `schema` if needed, then opens a pool whose `search_path` is that schema only.
/// `schema` must pass [`is_identifier`] (it is spliced into SQL).
pub async fn connect(url: &str, schema: &str, max_connections: u32) -> Result<PgPool, sqlx::Error> {
    assert!(
        is_identifier(schema),
        "schema names are checked at start-up"
    );
    let base: PgConnectOptions = url.parse()?;
    let base = base.log_statements(tracing::log::LevelFilter::Trace);
    let mut first = base.clone().connect().await?;
    // Looked up first: a service's own login has no CREATE on the database.
    if !login::schema_exists(&mut first, schema).await? {
        first
            .execute(format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\"").as_str())
            .await?;
    }
    drop(first);
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(5))
        .connect_with(base.options([("search_path", schema)]))
        .await
}

/// What production (Azure Database for PostgreSQL, which requires TLS) needs of a
/// database URL: a TLS `sslmode` (`require`, `verify-ca` or `verify-full`).
pub fn check_production_url(url: &str) -> Result<(), String> {
    let tls = url
        .split_once('?')
        .map(|(_, query)| {
            query.split('&').any(|pair| {
                matches!(
                    pair,
                    "sslmode=require" | "sslmode=verify-ca" | "sslmode=verify-full"
                )
            })
        })
        .unwrap_or(false);
    if tls {
        Ok(())
    } else {
        Err("production needs TLS to PostgreSQL: add sslmode=require (or verify-full) to PHONEBILL_DATABASE_URL".into())
    }
}

/// True for names safe to splice into SQL as an identifier.
pub fn is_identifier(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with(|c: char| c.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_that_could_inject_sql_are_refused() {
        assert!(is_identifier("test_1f2e"));
        assert!(!is_identifier("x; drop table events"));
        assert!(!is_identifier("1abc"));
        assert!(!is_identifier(""));
    }

    #[test]
    fn production_takes_only_database_urls_that_ask_for_tls() {
        let base = "postgres://u:p@db.postgres.database.azure.com:5432/phonebill";
        for mode in ["require", "verify-ca", "verify-full"] {
            let url = format!("{base}?sslmode={mode}&sslrootcert=/ca.pem");
            assert_eq!(check_production_url(&url), Ok(()), "{mode}");
        }
        for url in [
            base.to_owned(),
            format!("{base}?sslmode=prefer"),
            format!("{base}?sslmode=disable"),
            format!("{base}?application_name=sslmode=require"),
        ] {
            let refused = check_production_url(&url).unwrap_err();
            assert!(
                refused.contains("PHONEBILL_DATABASE_URL"),
                "{url}: {refused}"
            );
        }
    }
}
