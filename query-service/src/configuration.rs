//! Configuration from `PHONEBILL_*` environment variables (or flags), with local defaults.

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
pub use service_kit::auth::JwtConfig;
use service_kit::database::DatabaseDefaults;
pub use service_kit::hardening::HardeningConfig;
pub use service_kit::kafka::KafkaConfig;
pub use service_kit::redis_conn::RedisConfig;
pub use service_kit::Environment;

/// The read tables, read with the query role.
#[derive(Debug, Clone)]
pub struct ReadDatabase;

impl DatabaseDefaults for ReadDatabase {
    const SCHEMA: &'static str = "read";
    const URL: &'static str = "postgres://phonebill_query@127.0.0.1:5432/phonebill";
}

pub type DatabaseConfig = service_kit::database::DatabaseConfig<ReadDatabase>;

#[derive(Debug, Parser)]
#[command(
    name = "query-service",
    about = "phonebill query side: bills, lines, products and change requests from the projections"
)]
pub struct Cli {
    #[command(flatten)]
    pub config: Config,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Subcommand)]
pub enum Command {
    /// Serve HTTP (the default).
    Serve,
    /// Write the OpenAPI document (as served on `/api-docs/openapi.json`) to stdout and
    /// exit; needs no database, Redis or broker.
    PrintOpenapi,
}

#[derive(educe::Educe, Clone, Args)]
#[educe(Debug)]
pub struct Config {
    /// `production` refuses the development signing key.
    #[arg(long, env = "PHONEBILL_ENV", value_enum, default_value_t = Environment::Local)]
    pub environment: Environment,

    #[arg(long, env = "PHONEBILL_HTTP_ADDR", default_value = "127.0.0.1:8082")]
    pub http_addr: SocketAddr,

    /// HTTP workers, each a single-threaded runtime with its own socket on
    /// `PHONEBILL_HTTP_ADDR` (0: one per CPU the process may use).
    #[arg(long, env = "PHONEBILL_HTTP_WORKERS", default_value_t = 0)]
    pub http_workers: usize,

    /// `PHONEBILL_DATABASE_*`: the query role (SELECT on the read tables only).
    #[command(flatten)]
    pub database: DatabaseConfig,

    #[command(flatten)]
    pub kafka: KafkaConfig,

    /// Also where logouts are followed (`{prefix}revoked`): the same prefix as
    /// command-service's.
    #[command(flatten)]
    pub redis: RedisConfig,

    /// Access tokens: the same keys, issuer and audience as command-service, which
    /// issues them.
    #[command(flatten)]
    pub jwt: JwtConfig,

    #[command(flatten)]
    pub metrics: service_kit::telemetry::MetricsConfig,

    #[command(flatten)]
    pub hardening: HardeningConfig,

    /// Entries of the in-process (L1) view cache each HTTP worker keeps (seed: 2,000).
    #[arg(long, env = "PHONEBILL_L1_CAPACITY", default_value_t = 2_000)]
    pub l1_capacity: usize,

    /// Time an L1 entry lives (seed: 5 min); changes invalidate it sooner.
    #[arg(long, env = "PHONEBILL_L1_TTL_SECS", default_value_t = 300)]
    pub l1_ttl_secs: u64,

    /// Longest wait for `minPosition` before 503 PROJECTION_BEHIND.
    #[arg(long, env = "PHONEBILL_MIN_POSITION_WAIT_MS", default_value_t = 2_000)]
    pub min_position_wait_ms: u64,

    /// Bill inquiries buffered for the broker; beyond it they are dropped and counted.
    #[arg(long, env = "PHONEBILL_INQUIRY_BUFFER", default_value_t = 8_192)]
    pub inquiry_buffer: usize,

    /// A request taking longer than this is answered 503.
    #[arg(long, env = "PHONEBILL_REQUEST_TIMEOUT_MS", default_value_t = 10_000)]
    pub request_timeout_ms: u64,
}

impl Config {
    pub fn from_env() -> Result<Self, clap::Error> {
        Cli::try_parse_from(["query-service"]).map(|cli| cli.config)
    }

    pub fn check(&self) -> anyhow::Result<()> {
        service_kit::check_shared(
            self.environment,
            &self.kafka,
            &self.database,
            &self.redis,
            &self.jwt,
        )
        .map_err(anyhow::Error::msg)?;
        self.hardening.check().map_err(anyhow::Error::msg)?;
        Ok(())
    }

    pub fn is_production(&self) -> bool {
        self.environment == Environment::Production
    }

    /// The HTTP workers to run: `http_workers`, or one per CPU the process may use.
    pub fn http_workers(&self) -> usize {
        match self.http_workers {
            0 => service_kit::server::Server::workers_per_cpu(),
            n => n,
        }
    }

    pub fn min_position_wait(&self) -> Duration {
        Duration::from_millis(self.min_position_wait_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_defaults_pass_the_check() {
        let config = Config::from_env().unwrap();
        assert_eq!(config.http_addr.port(), 8082);
        assert_eq!(config.min_position_wait_ms, 2_000);
        config.check().unwrap();
    }

    #[test]
    fn production_refuses_plain_transports_and_a_missing_signing_key() {
        let mut config = Config::from_env().unwrap();
        config.environment = Environment::Production;
        let refused = config.check().unwrap_err().to_string();
        assert!(
            refused.contains("PHONEBILL_KAFKA_SECURITY_PROTOCOL"),
            "{refused}"
        );
        config.kafka.security_protocol = "sasl_ssl".into();
        config.kafka.sasl_username = Some("$ConnectionString".into());
        config.kafka.sasl_password = Some("Endpoint=sb://ns/;SharedAccessKey=k".into());
        config.database.url = "postgres://u:p@db:5432/phonebill".into();
        let refused = config.check().unwrap_err().to_string();
        assert!(refused.contains("PHONEBILL_DATABASE_URL"), "{refused}");
        config.database.url.push_str("?sslmode=require");
        config.redis.url = "redis://cache:6379".into();
        let refused = config.check().unwrap_err().to_string();
        assert!(refused.contains("PHONEBILL_REDIS_URL"), "{refused}");
        config.redis.url = "rediss://:key@cache:6380".into();
        config.jwt.signing_key = None;
        config.jwt.signing_key_file = None;
        let refused = config.check().unwrap_err().to_string();
        assert!(refused.contains("PHONEBILL_JWT_VERIFY_KEYS"), "{refused}");
        config.jwt.verify_keys = Some(service_kit::secret::check::VERIFY_KEY.into());
        config.check().unwrap();
    }

    #[test]
    fn secrets_are_shown_neither_by_help_nor_in_a_configuration_dump() {
        use clap::CommandFactory;
        use service_kit::secret::check;
        let mut config = Config::from_env().unwrap();
        config.database.url = check::DATABASE_URL.into();
        config.redis.url = check::REDIS_URL.into();
        config.kafka.sasl_password = Some(check::SASL_PASSWORD.into());
        config.jwt.signing_key = Some(check::SIGNING_KEY.into());
        let dump = format!("{config:?}");
        check::assert_hidden(&Cli::command(), &[], &dump, &[]);
    }
}
