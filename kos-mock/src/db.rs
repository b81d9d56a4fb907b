//! The PostgreSQL pool, bound to KOS's schema, and the migrations.

use sqlx::PgPool;

use crate::configuration::DatabaseConfig;

pub async fn connect(config: &DatabaseConfig) -> Result<PgPool, sqlx::Error> {
    service_kit::database::connect(&config.url, &config.schema, config.max_connections).await
}

pub async fn migrate(pool: &PgPool) -> Result<(), sqlx::migrate::MigrateError> {
    sqlx::migrate!("./migrations").run(pool).await
}
