//! What the projector writes and the query-service reads, defined once.
//!
//! - [`views`]: the view documents (the JSON the query API returns), camelCase.
//! - [`keys`]: [`keys::View`], one variant per view instance, with its Redis key (hash
//!   tags keep a line's keys in one cluster slot), its TTL, and [`keys::View::load`],
//!   which builds it from the PostgreSQL read tables. The projector writes Redis with
//!   `load` after each commit; the query-service refills Redis with the same `load` on a
//!   miss, so both always agree on a view's shape.
//! - [`namespace`]: which namespace (schema + key prefix) is active, after a replay.
//!
//! Architecture invariant: nothing here writes PostgreSQL; loaders only SELECT the read
//! tables the query role may read.

pub mod keys;
pub mod namespace;
pub mod views;

/// Redis pub/sub channel (under the key prefix) on which the projector announces each
/// changed view key, so query-services drop it from their in-process cache.
pub fn invalidation_channel(prefix: &str) -> String {
    format!("{prefix}views:changed")
}

/// Aggregate type of the command side's line stream (read-your-writes positions).
pub const LINE_AGGREGATE: &str = "Line";

/// A pool for a role that may only read: `search_path` is the read schema, and unlike
/// `service_kit::database::connect` it creates nothing (that needs CREATE on the database).
pub async fn connect_read_only(
    url: &str,
    schema: &str,
    max_connections: u32,
) -> Result<sqlx::PgPool, sqlx::Error> {
    assert!(
        schema
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_'),
        "schema names are checked at start-up"
    );
    let options: sqlx::postgres::PgConnectOptions = url.parse()?;
    sqlx::postgres::PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(std::time::Duration::from_secs(5))
        .connect_with(options.options([("search_path", schema)]))
        .await
}

/// Publishes `phonebill_db_pool_connections{state}` and `phonebill_db_pool_max_connections`
/// every few seconds (the dashboard's DB pool panel).
pub async fn report_pool(pool: sqlx::PgPool, every: std::time::Duration) {
    loop {
        let size = pool.size() as f64;
        let idle = pool.num_idle() as f64;
        metrics::gauge!("phonebill_db_pool_connections", "state" => "active").set(size - idle);
        metrics::gauge!("phonebill_db_pool_connections", "state" => "idle").set(idle);
        metrics::gauge!("phonebill_db_pool_max_connections")
            .set(pool.options().get_max_connections() as f64);
        tokio::time::sleep(every).await;
    }
}
