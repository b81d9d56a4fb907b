//! What a Redis Cluster changes for the projector's whole-namespace work (replay's
//! warm-up, drop, compare): a pipeline must stay in one slot and a SCAN sees one node.

use service_kit::redis_conn::{RedisConfig, RedisConn};
use uuid::Uuid;

/// The three-shard Redis Cluster the test command starts (`infra/local/stack test`).
fn cluster_config(prefix: &str) -> RedisConfig {
    RedisConfig {
        url: std::env::var("PHONEBILL_TEST_REDIS_CLUSTER_URL").unwrap_or_else(|_| {
            "redis://127.0.0.1:17001,redis://127.0.0.1:17002,redis://127.0.0.1:17003".into()
        }),
        cluster: true,
        key_prefix: prefix.to_owned(),
        timeout_ms: 2_000,
    }
}

#[tokio::test]
async fn on_a_redis_cluster_every_view_of_a_namespace_is_written_found_and_deleted() {
    let prefix = format!("test-{}:", Uuid::new_v4().simple());
    let config = cluster_config(&prefix);
    let redis = RedisConn::connect(&config).await.unwrap();
    let mut keys: Vec<String> = (0..300)
        .map(|i| format!("{prefix}bill:0101234{i:04}:2026-11"))
        .collect();
    keys.sort();
    let items: Vec<_> = keys.iter().map(|k| (k.clone(), &b"{}"[..], 60)).collect();

    redis.set_ex_many(&items).await.unwrap();

    // Spread over the shards: every node holds some of them.
    for node in config.urls() {
        let mut one = redis::Client::open(node.as_str())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        let (_, here): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(0)
            .arg("MATCH")
            .arg(format!("{prefix}*"))
            .arg("COUNT")
            .arg(100_000)
            .query_async(&mut one)
            .await
            .unwrap();
        assert!(!here.is_empty(), "no view on {node}");
    }
    let mut found = projector::namespace::view_keys(&redis, &prefix)
        .await
        .unwrap();
    found.sort();
    assert_eq!(found, keys);

    projector::namespace::delete_views(&redis, &prefix)
        .await
        .unwrap();

    assert!(projector::namespace::view_keys(&redis, &prefix)
        .await
        .unwrap()
        .is_empty());
}
