//! One typed configuration, read from `PHONEBILL_*` environment variables (or flags) with
//! defaults that work against the local stack.

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use service_kit::database::DatabaseDefaults;
pub use service_kit::kafka::KafkaConfig;

use crate::simulation::Simulation;

#[derive(Debug, Parser)]
#[command(
    name = "kos-mock",
    about = "The simulated KOS back office: catalog, lines, bills, product changes"
)]
pub struct Cli {
    #[command(flatten)]
    pub config: Config,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the admin HTTP API, consume change requests, publish facts (the default).
    Serve,
    /// Apply the database migrations and exit.
    Migrate,
    /// Load the deterministic demo data set (idempotent) and exit; its facts are
    /// published by the next `serve`.
    SeedDemo,
    /// Write the OpenAPI document (as served on `/api-docs/openapi.json`) to stdout and
    /// exit; needs no database, Redis or broker.
    PrintOpenapi,
}

#[derive(Debug, Clone, Args)]
pub struct Config {
    /// `local` or `production`; production refuses to start without TLS/SASL settings.
    #[arg(long, env = "PHONEBILL_ENV", value_enum, default_value_t = Environment::Local)]
    pub environment: Environment,

    /// Address the admin HTTP API listens on (port 0 picks a free port).
    #[arg(long, env = "PHONEBILL_HTTP_ADDR", default_value = "127.0.0.1:8083")]
    pub http_addr: SocketAddr,

    #[command(flatten)]
    pub database: DatabaseConfig,

    #[command(flatten)]
    pub kafka: KafkaConfig,

    #[command(flatten)]
    pub kos: KosConfig,

    /// Where logouts are followed: an admin token logged out stops working here too.
    #[command(flatten)]
    pub redis: RedisConfig,

    /// command-service's token keys: the admin API takes admin tokens only.
    #[command(flatten)]
    pub jwt: JwtConfig,

    /// KOS's key, signing every result and fact it publishes.
    #[command(flatten)]
    pub signing: service_kit::signed::SigningConfig,

    #[command(flatten)]
    pub metrics: service_kit::telemetry::MetricsConfig,

    /// Load the demo data set at start-up (idempotent).
    #[arg(long = "seed-demo", env = "PHONEBILL_KOS_SEED_DEMO", default_value_t = false, action = clap::ArgAction::Set)]
    pub seed_demo: bool,

    /// Customers (one line each) in the demo data set: CUST0001 and on. A load test
    /// asks for more than the demo's 100.
    #[arg(long = "demo-customers", env = "PHONEBILL_DEMO_CUSTOMERS", default_value_t = crate::demo::LINES,
        value_parser = clap::value_parser!(u32).range(1..=crate::demo::MAX_CUSTOMERS as i64))]
    pub demo_customers: u32,

    /// Largest request body accepted, in bytes.
    #[arg(long, env = "PHONEBILL_BODY_LIMIT_BYTES", default_value_t = 16 * 1024)]
    pub body_limit_bytes: usize,

    /// A request taking longer than this is answered 503 and abandoned.
    #[arg(long, env = "PHONEBILL_REQUEST_TIMEOUT_MS", default_value_t = 30_000)]
    pub request_timeout_ms: u64,
}

pub use service_kit::auth::JwtConfig;
pub use service_kit::redis_conn::RedisConfig;
pub use service_kit::Environment;

/// KOS's tables.
#[derive(Debug, Clone)]
pub struct OwnDatabase;

impl DatabaseDefaults for OwnDatabase {
    const SCHEMA: &'static str = "kos";
}

pub type DatabaseConfig = service_kit::database::DatabaseConfig<OwnDatabase>;

#[derive(Debug, Clone, Args)]
pub struct KosConfig {
    /// Consumer group reading `phonebill.product-change`.
    #[arg(
        long = "kos-consumer-group",
        env = "PHONEBILL_KOS_CONSUMER_GROUP",
        default_value = "kos"
    )]
    pub consumer_group: String,

    /// Shortest simulated time to carry out a change.
    #[arg(
        long = "kos-latency-min-ms",
        env = "PHONEBILL_KOS_LATENCY_MIN_MS",
        default_value_t = 300
    )]
    pub latency_min_ms: u64,

    /// Longest simulated time to carry out a change.
    #[arg(
        long = "kos-latency-max-ms",
        env = "PHONEBILL_KOS_LATENCY_MAX_MS",
        default_value_t = 800
    )]
    pub latency_max_ms: u64,

    /// Share of changes that succeed when nothing else refuses them (0 to 1).
    #[arg(
        long = "kos-success-rate",
        env = "PHONEBILL_KOS_SUCCESS_RATE",
        default_value_t = 0.998
    )]
    pub success_rate: f64,

    /// Seed of the latency and success draws; unset: drawn at start-up (and logged).
    #[arg(long = "kos-random-seed", env = "PHONEBILL_KOS_RANDOM_SEED")]
    pub random_seed: Option<u64>,

    /// Change requests carried out at once (different lines only; one line's requests
    /// run in order).
    #[arg(
        long = "kos-max-in-flight",
        env = "PHONEBILL_KOS_MAX_IN_FLIGHT",
        default_value_t = 512
    )]
    pub max_in_flight: usize,

    /// How often the outbox publisher looks for rows committed by other instances.
    #[arg(
        long = "kos-publish-poll-ms",
        env = "PHONEBILL_KOS_PUBLISH_POLL_MS",
        default_value_t = 200
    )]
    pub publish_poll_ms: u64,

    /// How long one publish may take before the publisher backs off and starts over.
    #[arg(
        long = "kos-delivery-timeout-ms",
        env = "PHONEBILL_KOS_DELIVERY_TIMEOUT_MS",
        default_value_t = 30_000
    )]
    pub delivery_timeout_ms: u64,
}

impl KosConfig {
    /// The simulation settings this configuration starts with.
    pub fn simulation(&self) -> Simulation {
        Simulation {
            latency_min_ms: self.latency_min_ms,
            latency_max_ms: self.latency_max_ms,
            success_rate: self.success_rate,
            random_seed: self.random_seed.unwrap_or_else(|| {
                let seed = uuid::Uuid::new_v4().as_u64_pair().0;
                tracing::info!(seed, "no PHONEBILL_KOS_RANDOM_SEED: drew one");
                seed
            }),
        }
    }

    pub fn publish_poll(&self) -> Duration {
        Duration::from_millis(self.publish_poll_ms)
    }
}

impl Config {
    /// Reads the configuration from the environment alone (no flags).
    pub fn from_env() -> Result<Self, clap::Error> {
        Cli::try_parse_from(["kos-mock"]).map(|cli| cli.config)
    }

    pub fn is_production(&self) -> bool {
        self.environment == Environment::Production
    }

    /// Refuses settings that cannot work, with a message naming the variable to set.
    pub fn check(&self) -> Result<(), ConfigError> {
        service_kit::check_shared(
            self.environment,
            &self.kafka,
            &self.database,
            &self.redis,
            &self.jwt,
        )
        .map_err(ConfigError)?;
        self.signing
            .signer(self.is_production())
            .map_err(ConfigError)?;
        let k = &self.kos;
        let sim = Simulation {
            latency_min_ms: k.latency_min_ms,
            latency_max_ms: k.latency_max_ms,
            success_rate: k.success_rate,
            random_seed: 0,
        };
        sim.check()
            .map_err(|e| ConfigError(format!("PHONEBILL_KOS_*: {e}")))?;
        if k.max_in_flight == 0 {
            return Err(ConfigError(
                "PHONEBILL_KOS_MAX_IN_FLIGHT must be at least 1".into(),
            ));
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
#[error("configuration: {0}")]
pub struct ConfigError(pub String);

#[cfg(test)]
mod tests {
    use super::*;

    fn local() -> Config {
        Cli::try_parse_from(["kos-mock"]).unwrap().config
    }

    #[test]
    fn local_defaults_pass_the_check() {
        let config = local();
        assert_eq!(config.http_addr.port(), 8083);
        assert_eq!(config.database.schema, "kos");
        assert_eq!(config.kos.consumer_group, "kos");
        assert_eq!(config.kos.latency_min_ms, 300);
        assert_eq!(config.kos.latency_max_ms, 800);
        assert_eq!(config.kos.success_rate, 0.998);
        config.check().unwrap();
    }

    #[test]
    fn impossible_simulation_settings_are_refused() {
        let mut config = local();
        config.kos.success_rate = 1.5;
        assert!(config.check().is_err());
        let mut config = local();
        config.kos.latency_min_ms = 900;
        assert!(config.check().is_err());
    }

    #[test]
    fn production_refuses_the_development_keys_and_a_plain_redis() {
        let mut config = local();
        config.environment = Environment::Production;
        config.kafka.security_protocol = "sasl_ssl".into();
        config.kafka.sasl_username = Some("$ConnectionString".into());
        config.kafka.sasl_password = Some("Endpoint=sb://x/;SharedAccessKey=y".into());
        config.database.url = "postgres://u:p@db:5432/phonebill?sslmode=require".into();
        config.redis.url = "rediss://:key@cache:6380".into();
        config.jwt.signing_key = None;
        config.jwt.signing_key_file = None;
        let refused = config.check().unwrap_err().0;
        assert!(refused.contains("PHONEBILL_JWT_VERIFY_KEYS"), "{refused}");

        config.jwt.verify_keys = Some(service_kit::secret::check::VERIFY_KEY.into());
        let refused = config.check().unwrap_err().0;
        assert!(refused.contains("PHONEBILL_KOS_SIGNING_KEY"), "{refused}");
        config.signing.kos_signing_key =
            Some("kos1:MC4CAQAwBQYDK2VwBCIEIAsY3szvfQ1IcxWSeZvS6SXb8Ax8sToSkAOVUSAVIKEx".into());
        config.check().unwrap();

        config.redis.url = "redis://cache:6379".into();
        let refused = config.check().unwrap_err().0;
        assert!(refused.contains("PHONEBILL_REDIS_URL"), "{refused}");
    }

    #[test]
    fn secrets_are_shown_neither_by_help_nor_in_a_configuration_dump() {
        use clap::CommandFactory;
        use service_kit::secret::check;
        let mut config = local();
        config.database.url = check::DATABASE_URL.into();
        config.redis.url = check::REDIS_URL.into();
        config.kafka.sasl_password = Some(check::SASL_PASSWORD.into());
        config.jwt.signing_key = Some(check::SIGNING_KEY.into());
        config.signing.kos_signing_key =
            Some("kos1:MC4CAQAwBQYDK2VwBCIEIAsY3szvfQ1IcxWSeZvS6SXb8Ax8sToSkAOVUSAVIKEx".into());
        let dump = format!("{config:?}");
        check::assert_hidden(
            &Cli::command(),
            &["kos_signing_key"],
            &dump,
            &["MC4CAQAwBQYDK2VwBCIEIAsY3szvfQ1IcxWSeZvS6SXb8Ax8sToSkAOVUSAVIKEx"],
        );
    }
}
