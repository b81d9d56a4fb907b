//! A Redis pub/sub subscription (cache invalidation, revocations).

use std::time::Duration;

/// Subscribes to `channel` on `url`. In cluster mode pass any one node: PUBLISH reaches
/// every node.
pub async fn subscribe(url: &str, channel: &str) -> redis::RedisResult<redis::aio::PubSub> {
    let first = url.split(',').next().unwrap_or(url).trim();
    let client = redis::Client::open(first)?;
    let mut pubsub = tokio::time::timeout(Duration::from_secs(2), client.get_async_pubsub())
        .await
        .map_err(|_| redis::RedisError::from((redis::ErrorKind::IoError, "connect timed out")))??;
    pubsub.subscribe(channel).await?;
    Ok(pubsub)
}
