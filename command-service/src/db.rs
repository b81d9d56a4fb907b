//! The PostgreSQL pool, bound to this service's schema, and the migrations.

use sqlx::PgPool;

use crate::configuration::DatabaseConfig;

/// The pool, bound to this service's schema (created if needed), where postgres-es's
/// unqualified `events` resolves.
///
/// Unlike the shared default, the pool does not ping a connection each time it hands one
/// out: on the command path that ping was a round trip of its own before every statement,
/// doubling the database round trips of a product change. A connection that died while
/// idle (a database restart) now fails the statement that uses it and is dropped by the
/// pool; the read-only line load retries once on such a failure (`product_change`).
pub async fn connect(config: &DatabaseConfig) -> Result<PgPool, sqlx::Error> {
    let checked = config.connect().await?;
    let pool = checked
        .options()
        .clone()
        .test_before_acquire(false)
        .connect_with((*checked.connect_options()).clone())
        .await;
    checked.close().await;
    pool
}

pub async fn migrate(pool: &PgPool) -> Result<(), sqlx::migrate::MigrateError> {
    sqlx::migrate!("./migrations").run(pool).await
}
