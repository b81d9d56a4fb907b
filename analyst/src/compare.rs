//! `phonebill-analyst compare`: a namespace's views against the active namespace's. Two
//! namespaces built from the same events dump equal; after `replay --id X`, `compare X`
//! checks that the live views equal a rebuild.

use std::collections::BTreeMap;

use projector::namespace::{dump_tables, view_keys};
use read_model::namespace::ActiveNamespace;
use service_kit::redis_conn::RedisConn;
use sqlx::PgPool;

/// A namespace's read-table rows and Redis views as text, keyed `pg:<table>:<id>` and
/// `redis:<key without the prefix>`: two namespaces built from the same events dump
/// equal. (Bill inquiries are left out: they keep arriving while anything runs.)
pub async fn dump(
    pool: &PgPool,
    schema: &str,
    redis: &RedisConn,
    prefix: &str,
) -> anyhow::Result<BTreeMap<String, String>> {
    let mut out = dump_tables(pool, schema).await?;
    let mut conn = redis.clone();
    for key in view_keys(redis, prefix).await? {
        let value: Option<Vec<u8>> = redis::AsyncCommands::get(&mut conn, &key).await?;
        if let Some(value) = value {
            out.insert(
                format!("redis:{}", &key[prefix.len()..]),
                String::from_utf8_lossy(&value).into_owned(),
            );
        }
    }
    Ok(out)
}

/// How two namespaces' views differ (see [`compare`]).
#[derive(Debug, serde::Serialize)]
pub struct Comparison {
    /// Keys (rows and views) in either namespace.
    pub compared: usize,
    /// Keys whose values differ or that only one namespace holds.
    pub differing: usize,
    /// The first few of them: key, then each side's value (`None`: absent there).
    pub examples: Vec<(String, Option<String>, Option<String>)>,
}

/// Compares two namespaces' read tables and Redis views as [`dump`] renders them (bill
/// inquiries left out): equal when both were built from the same events.
pub async fn compare(
    pool: &PgPool,
    redis: &RedisConn,
    left: &ActiveNamespace,
    right: &ActiveNamespace,
) -> anyhow::Result<Comparison> {
    let a = dump(pool, &left.schema, redis, &left.key_prefix).await?;
    let b = dump(pool, &right.schema, redis, &right.key_prefix).await?;
    let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    let differing: Vec<&String> = keys
        .iter()
        .copied()
        .filter(|k| a.get(*k) != b.get(*k))
        .collect();
    Ok(Comparison {
        compared: keys.len(),
        differing: differing.len(),
        examples: differing
            .iter()
            .take(5)
            .map(|k| ((*k).clone(), a.get(*k).cloned(), b.get(*k).cloned()))
            .collect(),
    })
}
