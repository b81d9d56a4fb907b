//! The read schema: pool, migrations, and the query role's grants.

use sqlx::PgPool;

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
/// tolerated) and grants it the read tables only.
pub async fn ensure_query_role(pool: &PgPool, config: &Config) -> Result<(), sqlx::Error> {
    let role = &config.query_role;
    let schema = &config.database.schema;
    let login = if config.query_role_login {
        "LOGIN"
    } else {
        "NOLOGIN"
    };
    sqlx::query(&format!(
        "DO $$ BEGIN CREATE ROLE \"{role}\" {login};
         EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$"
    ))
    .execute(pool)
    .await?;
    // Grants on one role from parallel processes can collide ("tuple concurrently
    // updated"); one advisory lock per role serialises them.
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('phonebill-grant-' || $1))")
        .bind(role)
        .execute(&mut *tx)
        .await?;
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
        // ALTER ROLE takes no bind parameters; the password reaches it through a
        // transaction-local setting, so it is never part of a statement's text (or log).
        sqlx::query("SELECT set_config('phonebill.query_role_password', $1, true)")
            .bind(password)
            .execute(&mut *tx)
            .await?;
        sqlx::query(&format!(
            "DO $$ BEGIN EXECUTE format('ALTER ROLE %I PASSWORD %L', '{role}',
                 current_setting('phonebill.query_role_password')); END $$"
        ))
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(())
}
