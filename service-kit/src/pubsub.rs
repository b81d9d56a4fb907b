//! A Redis pub/sub subscription (cache invalidation, revocations).

use std::time::Duration;

/// Subscribes to `channel` on the first node of `url` (comma-separated) that answers. In
/// cluster mode any node will do, as PUBLISH reaches every node: when the node a
/// subscription was on is lost, the next attempt moves on to another, so a follower is
/// down only for as long as it takes to notice and resubscribe, not for the node's outage.
pub async fn subscribe(url: &str, channel: &str) -> redis::RedisResult<redis::aio::PubSub> {
    let mut last_error = None;
    for node in url.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        match subscribe_node(node, channel).await {
            Ok(pubsub) => return Ok(pubsub),
            Err(e) => {
                tracing::debug!(error = %e, "subscription to a Redis node failed; trying the next");
                last_error = Some(e);
            }
        }
    }
    Err(last_error.unwrap_or_else(|| {
        redis::RedisError::from((redis::ErrorKind::InvalidClientConfig, "no Redis URL"))
    }))
}

async fn subscribe_node(url: &str, channel: &str) -> redis::RedisResult<redis::aio::PubSub> {
    let client = redis::Client::open(url)?;
    let mut pubsub = tokio::time::timeout(Duration::from_secs(2), client.get_async_pubsub())
        .await
        .map_err(|_| redis::RedisError::from((redis::ErrorKind::IoError, "connect timed out")))??;
    pubsub.subscribe(channel).await?;
    Ok(pubsub)
}
