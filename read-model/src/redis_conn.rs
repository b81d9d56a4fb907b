//! One Redis connection type over a single node (connection manager, reconnects by
//! itself) or a cluster (Azure Cache for Redis Premium), chosen by configuration alone.

use clap::Args;
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, Value};
use std::time::Duration;

#[derive(Debug, Clone, Args)]
pub struct RedisConfig {
    /// `redis://host:port` (`rediss://` for TLS); in cluster mode, any node (comma-separate
    /// several).
    #[arg(
        long = "redis-url",
        env = "PHONEBILL_REDIS_URL",
        default_value = "redis://127.0.0.1:6379"
    )]
    pub url: String,

    /// Use the cluster client (Azure Cache for Redis with clustering).
    #[arg(long = "redis-cluster", env = "PHONEBILL_REDIS_CLUSTER", default_value_t = false, action = clap::ArgAction::Set)]
    pub cluster: bool,

    /// Prefix of every key (and of the invalidation channel); tests use a unique one.
    #[arg(
        long = "redis-key-prefix",
        env = "PHONEBILL_REDIS_KEY_PREFIX",
        default_value = "phonebill:"
    )]
    pub key_prefix: String,

    /// A Redis command taking longer than this fails (and is retried or falls back).
    #[arg(
        long = "redis-timeout-ms",
        env = "PHONEBILL_REDIS_TIMEOUT_MS",
        default_value_t = 1_000
    )]
    pub timeout_ms: u64,
}

impl RedisConfig {
    pub fn urls(&self) -> Vec<String> {
        self.url.split(',').map(|s| s.trim().to_owned()).collect()
    }
}

#[derive(Clone)]
pub enum RedisConn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl RedisConn {
    /// Connects (the single-node manager then reconnects by itself after an outage).
    pub async fn connect(config: &RedisConfig) -> redis::RedisResult<Self> {
        let timeout = Duration::from_millis(config.timeout_ms);
        if config.cluster {
            let client = redis::cluster::ClusterClientBuilder::new(config.urls())
                .connection_timeout(timeout)
                .response_timeout(timeout)
                .build()?;
            Ok(RedisConn::Cluster(client.get_async_connection().await?))
        } else {
            let client = redis::Client::open(config.url.as_str())?;
            let manager_config = ConnectionManagerConfig::new()
                .set_connection_timeout(timeout)
                .set_response_timeout(timeout)
                .set_number_of_retries(1)
                .set_max_delay(500);
            let manager = ConnectionManager::new_with_config(client, manager_config).await?;
            Ok(RedisConn::Single(manager))
        }
    }
}

impl ConnectionLike for RedisConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            RedisConn::Single(c) => c.req_packed_command(cmd),
            RedisConn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            RedisConn::Single(c) => c.req_packed_commands(cmd, offset, count),
            RedisConn::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            RedisConn::Single(c) => c.get_db(),
            RedisConn::Cluster(c) => c.get_db(),
        }
    }
}
