//! The read schema: pool, migrations, and the query role's grants.

use sqlx::{Connection, PgConnection, PgPool};

use crate::configuration::Config;

/// The tables query-service may read. `applied` is among them because it holds the line
/// positions that read-your-writes waits on; `apply_log` and `parked` are not.
pub const READ_TABLES: &[&str] = &[
    "bills",
    "lines",
    "products",
    "change_requests",
    "bill_inquiries",
    "applied",
];

pub async fn connect(config: &Config) -> Result<PgPool, sqlx::Error> {
    service_kit::database::connect(
        &config.database.url,
        &config.database.schema,
        config.database.max_connections,
    )
    .await
}

pub async fn migrate(pool: &PgPool) -> Result<(), sqlx::migrate::MigrateError> {
    sqlx::migrate!("./migrations").run(pool).await
}

/// Creates the query role if missing (roles are cluster-wide, so a concurrent creator is
/// tolerated) and grants it the read tables only. Creating the role and setting its
/// password take `CREATEROLE`: in production the migration step does both with the
/// administrator's connection, and the running projector, as the schema's owner, only
/// grants.
pub async fn ensure_query_role(
    conn: &mut PgConnection,
    config: &Config,
) -> Result<(), sqlx::Error> {
    let role = &config.query_role;
    let schema = &config.database.schema;
    let login = if config.query_role_login {
        "LOGIN"
    } else {
        "NOLOGIN"
    };
    // The role is looked up first: CREATE ROLE needs CREATEROLE even when it exists.
    sqlx::query(&format!(
        "DO $$ BEGIN
           IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{role}') THEN
             CREATE ROLE \"{role}\" {login};
           END IF;
         EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$"
    ))
    .execute(&mut *conn)
    .await?;
    let mut tx = conn.begin().await?;
    service_kit::database::login::lock_role(&mut tx, role).await?;
    sqlx::query(&format!("GRANT USAGE ON SCHEMA \"{schema}\" TO \"{role}\""))
        .execute(&mut *tx)
        .await?;
    let tables = READ_TABLES
        .iter()
        .map(|t| format!("\"{schema}\".{t}"))
        .collect::<Vec<_>>()
        .join(", ");
    sqlx::query(&format!("GRANT SELECT ON {tables} TO \"{role}\""))
        .execute(&mut *tx)
        .await?;
    if let Some(password) = config
        .query_role_password
        .as_deref()
        .filter(|p| config.query_role_login && !p.is_empty())
    {
        service_kit::database::login::set_password(&mut tx, role, password).await?;
    }
    tx.commit().await?;
    Ok(())
}
