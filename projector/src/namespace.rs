//! The namespaces of the read model and the pointer to the active one (the projector owns
//! both; `read_model::namespace` is the read side query-service follows).
//!
//! A namespace is a PostgreSQL schema (read tables), a Redis key prefix (views) and the
//! consumer group that feeds it live. The configured schema/prefix/group are the `base`
//! namespace; a replay with id `X` builds `<schema>_X` and `<prefix>X:` (the live group stays).
//! [`Control::switch`] moves the pointer in one transaction that also sends `NOTIFY`;
//! every projector and query-service then follows (see `startup` and
//! `query_service::namespace`).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use read_model::namespace::{control_schema, notify_channel, ActiveNamespace};
use serde_json::Value;
use service_kit::database::is_identifier;
use service_kit::redis_conn::RedisConn;
use sqlx::PgPool;

use crate::configuration::Config;

pub const BASE_ID: &str = "base";

/// A namespace's row in the control table.
#[derive(Debug, Clone)]
pub struct NamespaceRow {
    pub ns: ActiveNamespace,
    /// `base`, `full` or `window`.
    pub kind: String,
    /// `building`, `ready` or `dropped`.
    pub state: String,
    pub active: bool,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    pub end_offsets: Option<Value>,
}

/// The control schema: which namespaces exist and which one is active.
#[derive(Clone)]
pub struct Control {
    /// A pool whose search path does not matter: every name is schema-qualified.
    pub pool: PgPool,
    base: ActiveNamespace,
    base_schema: String,
    control: String,
    query_role: String,
}

impl Control {
    /// Creates the control schema and tables if missing, records the base namespace (the
    /// configured one) and lets the query role read the pointer.
    pub async fn open(config: &Config, pool: PgPool) -> anyhow::Result<Self> {
        let control = control_schema(&config.database.schema);
        anyhow::ensure!(is_identifier(&control), "schema name too long: {control}");
        let this = Self {
            pool,
            base: ActiveNamespace {
                id: BASE_ID.into(),
                schema: config.database.schema.clone(),
                key_prefix: config.redis.key_prefix.clone(),
                consumer_group: config.consumer_group.clone(),
            },
            base_schema: config.database.schema.clone(),
            control,
            query_role: config.query_role.clone(),
        };
        let c = &this.control;
        let mut tx = this.pool.begin().await?;
        // Parallel starters (replicas, tests) serialise on one lock per control schema.
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext('phonebill-ns-' || $1))")
            .bind(c)
            .execute(&mut *tx)
            .await?;
        sqlx::query(&format!("CREATE SCHEMA IF NOT EXISTS \"{c}\""))
            .execute(&mut *tx)
            .await?;
        sqlx::query(&format!(
            "CREATE TABLE IF NOT EXISTS \"{c}\".namespaces (
                id             text PRIMARY KEY,
                schema_name    text NOT NULL UNIQUE,
                key_prefix     text NOT NULL,
                consumer_group text NOT NULL,
                kind           text NOT NULL,
                state          text NOT NULL,
                active         boolean NOT NULL DEFAULT false,
                since          timestamptz,
                until          timestamptz,
                end_offsets    jsonb,
                events         bigint,
                created_at     timestamptz NOT NULL DEFAULT now(),
                ready_at       timestamptz,
                switched_at    timestamptz,
                dropped_at     timestamptz
            )"
        ))
        .execute(&mut *tx)
        .await?;
        sqlx::query(&format!(
            "CREATE UNIQUE INDEX IF NOT EXISTS namespaces_one_active ON \"{c}\".namespaces (active)
              WHERE active"
        ))
        .execute(&mut *tx)
        .await?;
        sqlx::query(&format!(
            "INSERT INTO \"{c}\".namespaces (id, schema_name, key_prefix, consumer_group, kind,
                                             state, active, ready_at)
             VALUES ($1, $2, $3, $4, 'base', 'ready',
                     NOT EXISTS (SELECT 1 FROM \"{c}\".namespaces WHERE active), now())
             ON CONFLICT (id) DO NOTHING"
        ))
        .bind(BASE_ID)
        .bind(&this.base.schema)
        .bind(&this.base.key_prefix)
        .bind(&this.base.consumer_group)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(this)
    }

    pub fn base(&self) -> &ActiveNamespace {
        &self.base
    }

    pub fn notify_channel(&self) -> String {
        notify_channel(&self.base_schema)
    }

    /// Lets the query role read the pointer (after the role exists).
    pub async fn grant(&self) -> Result<(), sqlx::Error> {
        let (c, role) = (&self.control, &self.query_role);
        let mut tx = self.pool.begin().await?;
        service_kit::database::login::lock_role(&mut tx, role).await?;
        sqlx::query(&format!("GRANT USAGE ON SCHEMA \"{c}\" TO \"{role}\""))
            .execute(&mut *tx)
            .await?;
        sqlx::query(&format!("GRANT SELECT ON \"{c}\".namespaces TO \"{role}\""))
            .execute(&mut *tx)
            .await?;
        tx.commit().await
    }

    pub async fn active(&self) -> Result<ActiveNamespace, sqlx::Error> {
        Ok(read_model::namespace::active(&self.pool, &self.base_schema)
            .await?
            .unwrap_or_else(|| self.base.clone()))
    }

    /// The namespace a replay with this id builds.
    pub fn namespace_for(&self, id: &str) -> anyhow::Result<ActiveNamespace> {
        anyhow::ensure!(
            id.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
                && !id.is_empty()
                && id != BASE_ID,
            "a replay id is lower-case letters, digits and underscores (not `base`)"
        );
        let schema = format!("{}_{id}", self.base.schema);
        anyhow::ensure!(is_identifier(&schema), "schema name too long: {schema}");
        Ok(ActiveNamespace {
            id: id.to_owned(),
            schema,
            key_prefix: format!("{}{id}:", self.base.key_prefix),
            // The live group stays the same across switches (see `startup`).
            consumer_group: self.base.consumer_group.clone(),
        })
    }

    pub async fn get(&self, id: &str) -> Result<Option<NamespaceRow>, sqlx::Error> {
        type Row = (
            String,
            String,
            String,
            String,
            String,
            String,
            bool,
            Option<DateTime<Utc>>,
            Option<DateTime<Utc>>,
            Option<Value>,
        );
        let row: Option<Row> = sqlx::query_as(&format!(
            "SELECT id, schema_name, key_prefix, consumer_group, kind, state, active, since,
                    until, end_offsets
               FROM \"{}\".namespaces WHERE id = $1",
            self.control
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(
            |(id, schema, key_prefix, consumer_group, kind, state, active, since, until, end)| {
                NamespaceRow {
                    ns: ActiveNamespace {
                        id,
                        schema,
                        key_prefix,
                        consumer_group,
                    },
                    kind,
                    state,
                    active,
                    since,
                    until,
                    end_offsets: end,
                }
            },
        ))
    }

    /// Records a namespace being built (nothing when it exists: a resumed replay).
    pub async fn create(
        &self,
        ns: &ActiveNamespace,
        kind: &str,
        since: Option<DateTime<Utc>>,
        until: Option<DateTime<Utc>>,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(&format!(
            "INSERT INTO \"{}\".namespaces (id, schema_name, key_prefix, consumer_group, kind,
                                            state, since, until)
             VALUES ($1, $2, $3, $4, $5, 'building', $6, $7) ON CONFLICT (id) DO NOTHING",
            self.control
        ))
        .bind(&ns.id)
        .bind(&ns.schema)
        .bind(&ns.key_prefix)
        .bind(&ns.consumer_group)
        .bind(kind)
        .bind(since)
        .bind(until)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn mark_ready(
        &self,
        id: &str,
        end_offsets: &Value,
        events: i64,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(&format!(
            "UPDATE \"{}\".namespaces SET state = 'ready', ready_at = now(), end_offsets = $2,
                    events = $3
              WHERE id = $1",
            self.control
        ))
        .bind(id)
        .bind(end_offsets)
        .bind(events)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Makes `id` the active namespace in one transaction that also notifies every
    /// follower; returns the namespace that was active.
    pub async fn switch(&self, id: &str) -> anyhow::Result<ActiveNamespace> {
        let row = self
            .get(id)
            .await?
            .ok_or_else(|| anyhow::anyhow!("no namespace {id}"))?;
        anyhow::ensure!(
            row.state == "ready",
            "namespace {id} is {}, not ready",
            row.state
        );
        anyhow::ensure!(
            row.kind != "window",
            "namespace {id} holds a time window only; it can be inspected, not served"
        );
        let previous = self.active().await?;
        let c = &self.control;
        let mut tx = self.pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext('phonebill-ns-' || $1))")
            .bind(c)
            .execute(&mut *tx)
            .await?;
        sqlx::query(&format!(
            "UPDATE \"{c}\".namespaces SET active = false WHERE active"
        ))
        .execute(&mut *tx)
        .await?;
        sqlx::query(&format!(
            "UPDATE \"{c}\".namespaces SET active = true, switched_at = now() WHERE id = $1"
        ))
        .bind(id)
        .execute(&mut *tx)
        .await?;
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(self.notify_channel())
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(previous)
    }

    /// Drops a namespace that is not active: its schema, its Redis views (by view kind,
    /// so keys of other namespaces or of other features under the same prefix survive).
    pub async fn drop_namespace(&self, id: &str, redis: &RedisConn) -> anyhow::Result<()> {
        let row = self
            .get(id)
            .await?
            .ok_or_else(|| anyhow::anyhow!("no namespace {id}"))?;
        anyhow::ensure!(!row.active, "namespace {id} is active; switch away first");
        sqlx::query(&format!(
            "DROP SCHEMA IF EXISTS \"{}\" CASCADE",
            row.ns.schema
        ))
        .execute(&self.pool)
        .await?;
        delete_views(redis, &row.ns.key_prefix).await?;
        sqlx::query(&format!(
            "UPDATE \"{}\".namespaces SET state = 'dropped', dropped_at = now() WHERE id = $1",
            self.control
        ))
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn list(&self) -> Result<Vec<Value>, sqlx::Error> {
        sqlx::query_scalar(&format!(
            "SELECT to_jsonb(n) - 'end_offsets' FROM \"{}\".namespaces n ORDER BY created_at",
            self.control
        ))
        .fetch_all(&self.pool)
        .await
    }
}

/// The key patterns of every view kind under a prefix (see `read_model::keys::View`).
pub const VIEW_KINDS: &[&str] = &[
    "bill", "months", "line", "history", "request", "products", "pos",
];

/// Every view key under `prefix` (SCAN, never KEYS; every primary of a cluster). Keys of
/// namespaces nested under the prefix (`<prefix><id>:`) are not views of this one and
/// are left out.
/// The projector's schemas beside its base read schema: the control schema and every
/// namespace (replay) schema it lists, as far as they exist.
pub async fn schemas_beside(
    conn: &mut sqlx::PgConnection,
    base_schema: &str,
) -> Result<Vec<String>, sqlx::Error> {
    let control = control_schema(base_schema);
    let listed: Option<String> = sqlx::query_scalar("SELECT to_regclass($1)::text")
        .bind(format!("\"{control}\".namespaces"))
        .fetch_one(&mut *conn)
        .await?;
    let mut schemas = vec![control.clone()];
    if listed.is_some() {
        let names: Vec<String> = sqlx::query_scalar(&format!(
            "SELECT schema_name FROM \"{control}\".namespaces
             WHERE schema_name <> $1
               AND EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = schema_name)"
        ))
        .bind(base_schema)
        .fetch_all(&mut *conn)
        .await?;
        schemas.extend(names.into_iter().filter(|n| is_identifier(n)));
    }
    Ok(schemas)
}

pub async fn view_keys(redis: &RedisConn, prefix: &str) -> anyhow::Result<Vec<String>> {
    let patterns: Vec<String> = VIEW_KINDS
        .iter()
        .map(|kind| format!("{}{kind}:*", escape_glob(prefix)))
        .collect();
    Ok(redis.scan_match(&patterns).await?)
}

/// Deletes every view key under `prefix`.
pub async fn delete_views(redis: &RedisConn, prefix: &str) -> anyhow::Result<()> {
    let mut conn = redis.clone();
    for keys in view_keys(redis, prefix).await?.chunks(1000) {
        let _: i64 = redis::cmd("UNLINK")
            .arg(keys)
            .query_async(&mut conn)
            .await?;
    }
    Ok(())
}

/// A namespace's read tables as text, keyed `pg:<table>:<id>` (bill inquiries left out:
/// they keep arriving while anything runs); the analyst's `compare` adds the Redis views.
pub async fn dump_tables(pool: &PgPool, schema: &str) -> anyhow::Result<BTreeMap<String, String>> {
    anyhow::ensure!(
        is_identifier(schema),
        "schema `{schema}` is not an identifier"
    );
    let mut out = BTreeMap::new();
    for (table, key) in [
        ("bills", "line_number || '/' || month"),
        ("lines", "line_number"),
        ("products", "product_code"),
        ("change_requests", "request_id::text"),
        ("applied", "aggregate_type || '/' || aggregate_id"),
    ] {
        let rows: Vec<(String, String)> = sqlx::query_as(&format!(
            "SELECT {key}, to_jsonb(t)::text FROM \"{schema}\".{table} t ORDER BY 1"
        ))
        .fetch_all(pool)
        .await?;
        for (k, v) in rows {
            out.insert(format!("pg:{table}:{k}"), v);
        }
    }
    Ok(out)
}

fn escape_glob(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}
