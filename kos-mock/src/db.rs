//! The PostgreSQL pool, bound to KOS's schema, and the migrations.

use sqlx::PgPool;

use crate::configuration::DatabaseConfig;

pub async fn connect(config: &DatabaseConfig) -> Result<PgPool, sqlx::Error> {
    config.connect().await
}

pub async fn migrate(pool: &PgPool) -> Result<(), sqlx::migrate::MigrateError> {
    sqlx::migrate!("./migrations").run(pool).await
}
