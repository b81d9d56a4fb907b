//! Namespaces of the read model: the read tables (a PostgreSQL schema) and the Redis views
//! (a key prefix) that query-service serves. A replay builds a fresh namespace beside the
//! live one and then switches the pointer; this module is the pointer's read side, shared
//! by the projector (which owns and writes it) and query-service (which follows it).
//!
//! The pointer is the one row `active` of `<base schema>_control.namespaces`: a control
//! schema beside the namespaces, so dropping a namespace never drops the pointer. The
//! switching transaction also sends `NOTIFY` on [`notify_channel`]; readers listen and
//! also re-read the pointer every few seconds (a notification sent while a listener was
//! reconnecting is not lost for long).

use sqlx::PgPool;

/// Where the read model of one namespace lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActiveNamespace {
    pub id: String,
    pub schema: String,
    pub key_prefix: String,
    pub consumer_group: String,
}

/// The control schema of a base read schema (`read` -> `read_control`).
pub fn control_schema(base_schema: &str) -> String {
    format!("{base_schema}_control")
}

/// The `NOTIFY` channel announcing a switch (PostgreSQL folds it to lower case).
pub fn notify_channel(base_schema: &str) -> String {
    format!("phonebill_ns_{base_schema}").to_ascii_lowercase()
}

/// The active namespace, or `None` when no replay ever ran (then the configured schema
/// and prefix are the namespace) or the control table cannot be read.
pub async fn active(
    pool: &PgPool,
    base_schema: &str,
) -> Result<Option<ActiveNamespace>, sqlx::Error> {
    let control = control_schema(base_schema);
    let exists: Option<String> = sqlx::query_scalar("SELECT to_regclass($1)::text")
        .bind(format!("\"{control}\".namespaces"))
        .fetch_one(pool)
        .await?;
    if exists.is_none() {
        return Ok(None);
    }
    let row: Option<(String, String, String, String)> = sqlx::query_as(&format!(
        "SELECT id, schema_name, key_prefix, consumer_group FROM \"{control}\".namespaces
          WHERE active"
    ))
    .fetch_optional(pool)
    .await?;
    Ok(
        row.map(|(id, schema, key_prefix, consumer_group)| ActiveNamespace {
            id,
            schema,
            key_prefix,
            consumer_group,
        }),
    )
}
