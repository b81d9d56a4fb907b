//! One Redis connection type over a single node (connection manager, reconnects by
//! itself) or a cluster (Azure Cache for Redis Premium), chosen by configuration alone.

use clap::Args;
use futures::{StreamExt, TryStreamExt};
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use redis::{Cmd, Pipeline, RedisFuture, RedisResult, Value};
use std::time::Duration;

#[derive(educe::Educe, Clone, Args)]
#[educe(Debug)]
pub struct RedisConfig {
    /// `redis://host:port` (`rediss://` for TLS); in cluster mode, any node (comma-separate
    /// several).
    #[arg(
        id = "redis_url",
        long = "redis-url",
        env = "PHONEBILL_REDIS_URL",
        default_value = "redis://127.0.0.1:6379",
        hide_env_values = true
    )]
    #[educe(Debug(method(crate::secret::urls)))]
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

    /// What production (Azure Cache for Redis: TLS only, on 6380) needs: `rediss://`
    /// for every node.
    pub fn check_production(&self) -> Result<(), String> {
        match self.urls().iter().find(|url| !url.starts_with("rediss://")) {
            None => Ok(()),
            Some(_) => Err(
                "production needs TLS to Redis: PHONEBILL_REDIS_URL must be rediss:// (every node)"
                    .into(),
            ),
        }
    }
}

#[derive(Clone)]
pub enum RedisConn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl RedisConn {
    /// Whether Redis answers a PING within `timeout` (the readiness checks).
    pub async fn answers(&self, timeout: Duration) -> bool {
        let mut conn = self.clone();
        tokio::time::timeout(timeout, redis::cmd("PING").query_async::<String>(&mut conn))
            .await
            .is_ok_and(|r| r.is_ok())
    }

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

/// Commands for many keys at once. A cluster client sends a pipeline to one slot's node
/// and refuses one whose keys hash to several slots, and a SCAN reaches one node only;
/// these spread the work over the cluster instead.
impl RedisConn {
    /// `SET key value EX ttl` for every item: one pipeline on a single node; on a
    /// cluster one command per key (each to its slot's node), many in flight.
    pub async fn set_ex_many(&self, items: &[(String, &[u8], u64)]) -> RedisResult<()> {
        match self {
            RedisConn::Single(c) => {
                let mut pipe = redis::pipe();
                for (key, value, ttl) in items {
                    pipe.set_ex(key, *value, *ttl).ignore();
                }
                pipe.query_async::<()>(&mut c.clone()).await
            }
            RedisConn::Cluster(c) => {
                futures::stream::iter(items)
                    .map(|(key, value, ttl)| {
                        let mut conn = c.clone();
                        async move {
                            redis::cmd("SET")
                                .arg(key)
                                .arg(*value)
                                .arg("EX")
                                .arg(*ttl)
                                .query_async::<()>(&mut conn)
                                .await
                        }
                    })
                    .buffer_unordered(64)
                    .try_collect()
                    .await
            }
        }
    }

    /// Every key matching any of `patterns` (SCAN, never KEYS), from every primary of a
    /// cluster (its nodes are asked for once).
    pub async fn scan_match(&self, patterns: &[String]) -> RedisResult<Vec<String>> {
        let mut keys = vec![];
        match self {
            RedisConn::Single(c) => {
                for pattern in patterns {
                    keys.extend(
                        scan_node(pattern, |cmd| {
                            let mut conn = c.clone();
                            async move { cmd.query_async::<Value>(&mut conn).await }
                        })
                        .await?,
                    );
                }
            }
            RedisConn::Cluster(c) => {
                let mut conn = c.clone();
                let nodes: String = redis::cmd("CLUSTER")
                    .arg("NODES")
                    .query_async(&mut conn)
                    .await?;
                for (host, port) in primaries(&nodes) {
                    let route =
                        RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress { host, port });
                    for pattern in patterns {
                        keys.extend(
                            scan_node(pattern, |cmd| {
                                let mut conn = conn.clone();
                                let route = route.clone();
                                async move { conn.route_command(&cmd, route).await }
                            })
                            .await?,
                        );
                    }
                }
            }
        }
        Ok(keys)
    }
}

/// One node's keys matching `pattern`, by SCAN cursor; `send` runs a command on it.
async fn scan_node<F, Fut>(pattern: &str, send: F) -> RedisResult<Vec<String>>
where
    F: Fn(Cmd) -> Fut,
    Fut: std::future::Future<Output = RedisResult<Value>>,
{
    let mut keys = vec![];
    let mut cursor: u64 = 0;
    loop {
        let mut cmd = redis::cmd("SCAN");
        cmd.arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(1000);
        let (next, batch): (u64, Vec<String>) = redis::from_owned_redis_value(send(cmd).await?)?;
        keys.extend(batch);
        if next == 0 {
            return Ok(keys);
        }
        cursor = next;
    }
}

/// The primaries' addresses in `CLUSTER NODES` output (`<id> <ip:port@bus[,host]> <flags> ...`).
fn primaries(nodes: &str) -> Vec<(String, u16)> {
    nodes
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let address = fields.nth(1)?;
            let flags = fields.next()?;
            let is_primary = flags.split(',').any(|f| f == "master")
                && !flags.split(',').any(|f| f == "fail" || f == "noaddr");
            if !is_primary {
                return None;
            }
            let (host, port) = address.split('@').next()?.rsplit_once(':')?;
            Some((host.to_owned(), port.parse().ok()?))
        })
        .collect()
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

#[cfg(test)]
mod tests {
    use super::{primaries, RedisConfig};

    #[test]
    fn production_takes_redis_only_over_tls_on_every_node() {
        let config = |url: &str| RedisConfig {
            url: url.into(),
            cluster: true,
            key_prefix: "phonebill:".into(),
            timeout_ms: 1_000,
        };
        let tls = "rediss://:key@a.redis.cache.windows.net:6380,rediss://:key@b:6380";
        assert_eq!(config(tls).check_production(), Ok(()));
        let mixed = "rediss://:key@a.redis.cache.windows.net:6380, redis://b:6379";
        let refused = config(mixed).check_production().unwrap_err();
        assert!(refused.contains("PHONEBILL_REDIS_URL"), "{refused}");
    }

    #[test]
    fn the_primaries_are_read_from_cluster_nodes_leaving_out_replicas_and_failed_nodes() {
        let nodes = "\
07c3 127.0.0.1:17001@27001 myself,master - 0 0 1 connected 0-5460
67ed 127.0.0.1:17002@27002,redis-b master - 0 1 2 connected 5461-10922
292f 127.0.0.1:17003@27003 master,fail - 0 1 3 connected
6ec2 127.0.0.1:17004@27004 slave 07c3 0 1 1 connected
e7d1 ::1:17005@27005 master - 0 1 5 connected 10923-16383
";
        assert_eq!(
            primaries(nodes),
            vec![
                ("127.0.0.1".to_owned(), 17001),
                ("127.0.0.1".to_owned(), 17002),
                ("::1".to_owned(), 17005),
            ]
        );
    }
}
