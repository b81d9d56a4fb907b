//! The PostgreSQL pool, bound to this service's schema, and the migrations.

use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Executor, PgPool};

use crate::configuration::DatabaseConfig;

/// Creates the schema if needed, then opens a pool whose connections resolve unqualified
/// names (postgres-es's `events`) in that schema only.
pub async fn connect(config: &DatabaseConfig) -> Result<PgPool, sqlx::Error> {
    let base: PgConnectOptions = config.url.parse()?;
    let base = base.log_statements(tracing::log::LevelFilter::Trace);
    // The schema name was checked to be a plain identifier (Config::check).
    let mut admin = base.clone().connect().await?;
    admin
        .execute(format!("CREATE SCHEMA IF NOT EXISTS \"{}\"", config.schema).as_str())
        .await?;
    drop(admin);
    PgPoolOptions::new()
        .max_connections(config.max_connections)
        .acquire_timeout(Duration::from_secs(5))
        .connect_with(base.options([("search_path", config.schema.as_str())]))
        .await
}

pub async fn migrate(pool: &PgPool) -> Result<(), sqlx::migrate::MigrateError> {
    sqlx::migrate!("./migrations").run(pool).await
}
