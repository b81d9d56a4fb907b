//! One typed configuration, read from `PHONEBILL_*` environment variables (or flags) with
//! defaults that work against the local stack. The same binary runs against Azure Event
//! Hubs, Azure PostgreSQL and Azure Redis by configuration alone.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
pub use service_kit::auth::JwtConfig;
use service_kit::database::DatabaseDefaults;
pub use service_kit::hardening::HardeningConfig;
pub use service_kit::kafka::KafkaConfig;
pub use service_kit::redis_conn::RedisConfig;

#[derive(Debug, Parser)]
#[command(
    name = "command-service",
    about = "phonebill command side: product-change commands, event store, outbox relay"
)]
pub struct Cli {
    #[command(flatten)]
    pub config: Config,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve HTTP and run the outbox relay (the default).
    Serve,
    /// Apply the database migrations and exit.
    Migrate,
    /// Load KOS facts (JSON lines of envelopes, as on `kos.billing`) into the reference tables.
    LoadFacts {
        /// The JSONL file to read.
        file: PathBuf,
    },
    /// Set an account's password (and unlock it); creates the account if needed.
    SetPassword {
        /// The customer (or analyst/admin account) id.
        customer_id: String,
        /// The new password (8 to 128 characters).
        #[arg(long, env = "PHONEBILL_NEW_PASSWORD", hide_env_values = true)]
        password: String,
        /// `customer` (the default for a new account), `analyst` or `admin`.
        #[arg(long)]
        role: Option<String>,
    },
    /// Demo only: give CUST0001..CUST0100 the password `demo-CUST0001` (and so on),
    /// `analyst` the password `demo-analyst` and `admin` the password `demo-admin`.
    SeedDemoPasswords {
        /// Customers in the demo data set (kos-mock's `--demo-customers`).
        #[arg(long, env = "PHONEBILL_DEMO_CUSTOMERS", default_value_t = 100,
            value_parser = clap::value_parser!(u32).range(1..=9_999))]
        customers: u32,
    },
    /// Write the OpenAPI document (as served on `/api-docs/openapi.json`) to stdout and
    /// exit; needs no database, Redis or broker.
    PrintOpenapi,
}

#[derive(Debug, Clone, Args)]
pub struct Config {
    /// `local` or `production`; production refuses to start without TLS/SASL settings.
    #[arg(long, env = "PHONEBILL_ENV", value_enum, default_value_t = Environment::Local)]
    pub environment: Environment,

    /// Address the HTTP API listens on (port 0 picks a free port).
    #[arg(long, env = "PHONEBILL_HTTP_ADDR", default_value = "127.0.0.1:8081")]
    pub http_addr: SocketAddr,

    #[command(flatten)]
    pub database: DatabaseConfig,

    #[command(flatten)]
    pub kafka: KafkaConfig,

    #[command(flatten)]
    pub group_commit: GroupCommitConfig,

    #[command(flatten)]
    pub relay: RelayConfig,

    #[command(flatten)]
    pub kos: KosConfig,

    #[command(flatten)]
    pub auth: AuthConfig,

    #[command(flatten)]
    pub jwt: JwtConfig,

    /// KOS's public keys: results and facts not signed by KOS are dead-lettered.
    #[command(flatten)]
    pub kos_keys: service_kit::signed::VerifyConfig,

    #[command(flatten)]
    pub hardening: HardeningConfig,

    /// Where logouts are published for the query side (`{prefix}revoked:{jti}`).
    #[command(flatten)]
    pub redis: RedisConfig,

    #[command(flatten)]
    pub metrics: service_kit::telemetry::MetricsConfig,

    /// Largest request body accepted, in bytes.
    #[arg(long, env = "PHONEBILL_BODY_LIMIT_BYTES", default_value_t = 16 * 1024)]
    pub body_limit_bytes: usize,

    /// A request taking longer than this is answered 503 and abandoned.
    #[arg(long, env = "PHONEBILL_REQUEST_TIMEOUT_MS", default_value_t = 10_000)]
    pub request_timeout_ms: u64,
}

pub use service_kit::Environment;

/// The command side's tables: event store, outbox cursor, reference data, credentials.
#[derive(Debug, Clone)]
pub struct OwnDatabase;

impl DatabaseDefaults for OwnDatabase {
    const SCHEMA: &'static str = "command";
}

pub type DatabaseConfig = service_kit::database::DatabaseConfig<OwnDatabase>;

/// How customers' product-change requests are committed in groups (`group_commit`).
#[derive(Debug, Clone, Args)]
pub struct GroupCommitConfig {
    /// Writers committing groups at once. One was fastest on 2 cores (bench/commands.sh):
    /// it makes the largest groups; a database with more cores may take more.
    #[arg(
        long = "group-commit-writers",
        env = "PHONEBILL_GROUP_COMMIT_WRITERS",
        default_value_t = 1,
        value_parser = clap::value_parser!(u16).range(1..=64)
    )]
    pub writers: u16,

    /// Most requests in one group (one statement's worth of lines).
    #[arg(
        long = "group-commit-max",
        env = "PHONEBILL_GROUP_COMMIT_MAX",
        default_value_t = 64,
        value_parser = clap::value_parser!(u16).range(1..=1000)
    )]
    pub max_requests: u16,
}

#[derive(Debug, Clone, Args)]
pub struct RelayConfig {
    /// Run the outbox relay in this process (one instance at a time holds the lead).
    #[arg(long = "relay-enabled", env = "PHONEBILL_RELAY_ENABLED", default_value_t = true, action = clap::ArgAction::Set)]
    pub enabled: bool,

    /// Events read and published per round.
    #[arg(
        long = "relay-batch-size",
        env = "PHONEBILL_RELAY_BATCH_SIZE",
        default_value_t = 500
    )]
    pub batch_size: i64,

    /// How often the relay looks for events committed by other instances.
    #[arg(
        long = "relay-poll-interval-ms",
        env = "PHONEBILL_RELAY_POLL_INTERVAL_MS",
        default_value_t = 50
    )]
    pub poll_interval_ms: u64,

    /// How long one publish may take before the relay gives up, backs off and starts over.
    #[arg(
        long = "relay-delivery-timeout-ms",
        env = "PHONEBILL_RELAY_DELIVERY_TIMEOUT_MS",
        default_value_t = 30_000
    )]
    pub delivery_timeout_ms: u64,
}

#[derive(Debug, Clone, Args)]
pub struct KosConfig {
    /// A change KOS has not answered within this many seconds ends FAILED with TIMEOUT.
    #[arg(
        long = "kos-answer-timeout-secs",
        env = "PHONEBILL_KOS_ANSWER_TIMEOUT_SECS",
        default_value_t = 300
    )]
    pub answer_timeout_secs: u64,

    /// How often the sweeper looks for changes past their deadline.
    #[arg(
        long = "kos-timeout-sweep-ms",
        env = "PHONEBILL_KOS_TIMEOUT_SWEEP_MS",
        default_value_t = 1_000
    )]
    pub timeout_sweep_ms: u64,

    /// Consume KOS's results and facts in this process.
    #[arg(long = "kos-inbox-enabled", env = "PHONEBILL_KOS_INBOX_ENABLED", default_value_t = true, action = clap::ArgAction::Set)]
    pub inbox_enabled: bool,

    /// Consumer group reading `kos.product-change-results` and `kos.billing`.
    #[arg(
        long = "kos-consumer-group",
        env = "PHONEBILL_KOS_CONSUMER_GROUP",
        default_value = "command-service"
    )]
    pub consumer_group: String,
}

#[derive(Debug, Clone, Args)]
pub struct AuthConfig {
    /// Consecutive failed logins that lock an account.
    #[arg(
        long = "login-max-failures",
        env = "PHONEBILL_LOGIN_MAX_FAILURES",
        default_value_t = 5
    )]
    pub max_failures: i32,

    /// How long a locked account stays locked.
    #[arg(
        long = "login-lockout-secs",
        env = "PHONEBILL_LOGIN_LOCKOUT_SECS",
        default_value_t = 1800
    )]
    pub lockout_secs: i64,

    /// argon2id memory cost in KiB (OWASP: 19456 with 2 iterations).
    #[arg(
        long = "argon2-memory-kib",
        env = "PHONEBILL_ARGON2_MEMORY_KIB",
        default_value_t = 19_456
    )]
    pub argon2_memory_kib: u32,

    #[arg(
        long = "argon2-iterations",
        env = "PHONEBILL_ARGON2_ITERATIONS",
        default_value_t = 2
    )]
    pub argon2_iterations: u32,

    #[arg(
        long = "argon2-parallelism",
        env = "PHONEBILL_ARGON2_PARALLELISM",
        default_value_t = 1
    )]
    pub argon2_parallelism: u32,

    /// Hashes computed at once, each holding PHONEBILL_ARGON2_MEMORY_KIB: this bounds
    /// the memory a login flood can take. 0: one per CPU the process may use.
    #[arg(
        long = "argon2-concurrency",
        env = "PHONEBILL_ARGON2_CONCURRENCY",
        default_value_t = 0
    )]
    pub argon2_concurrency: usize,

    /// How long a login waits for a hashing slot before it is refused with 429
    /// `RATE_LIMITED` and `Retry-After`.
    #[arg(
        long = "argon2-queue-ms",
        env = "PHONEBILL_ARGON2_QUEUE_MS",
        default_value_t = 2_000
    )]
    pub argon2_queue_ms: u64,

    /// How often Redis's copy of the logouts is compared with PostgreSQL's and written
    /// again if it lost some (a flush, a shard restarted empty, a failover).
    #[arg(
        long = "revocation-resync-ms",
        env = "PHONEBILL_REVOCATION_RESYNC_MS",
        default_value_t = 5_000
    )]
    pub revocation_resync_ms: u64,
}

impl KosConfig {
    pub fn answer_timeout(&self) -> Duration {
        Duration::from_secs(self.answer_timeout_secs)
    }
}

impl RelayConfig {
    pub fn poll_interval(&self) -> Duration {
        Duration::from_millis(self.poll_interval_ms)
    }
}

impl Config {
    /// Reads the configuration from the environment alone (no flags).
    pub fn from_env() -> Result<Self, clap::Error> {
        Cli::try_parse_from(["command-service"]).map(|cli| cli.config)
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
        let production = self.environment == Environment::Production;
        self.jwt.signing_keys(production).map_err(ConfigError)?;
        self.kos_keys.verifier(production).map_err(ConfigError)?;
        self.hardening.check().map_err(ConfigError)?;
        if self.auth.max_failures < 1 || self.auth.lockout_secs < 1 {
            return Err(ConfigError(
                "PHONEBILL_LOGIN_MAX_FAILURES and PHONEBILL_LOGIN_LOCKOUT_SECS must be positive"
                    .into(),
            ));
        }
        if production && self.auth.argon2_memory_kib < 19_456 {
            return Err(ConfigError(
                "production needs PHONEBILL_ARGON2_MEMORY_KIB of at least 19456".into(),
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
        Cli::try_parse_from(["command-service"]).unwrap().config
    }

    #[test]
    fn local_defaults_pass_the_check() {
        let config = local();
        assert_eq!(config.http_addr.port(), 8081);
        assert_eq!(config.kafka.topic_partitions, 12);
        config.check().unwrap();
    }

    #[test]
    fn production_without_the_event_hubs_secret_fails_with_its_name() {
        let mut config = local();
        config.environment = Environment::Production;
        config.kafka.security_protocol = "sasl_ssl".into();
        config.kafka.sasl_username = Some("$ConnectionString".into());
        config.database.url = "postgres://u@db:5432/phonebill?sslmode=require".into();
        config.redis.url = "rediss://:key@cache:6380".into();
        config.jwt.signing_key = Some(service_kit::secret::check::SIGNING_KEY.into());
        let err = config.check().unwrap_err();
        assert!(
            err.to_string().contains("PHONEBILL_KAFKA_SASL_PASSWORD"),
            "{err}"
        );

        config.kafka.sasl_password = Some("Endpoint=sb://x/;SharedAccessKey=y".into());
        let refused = config.check().unwrap_err().0;
        assert!(refused.contains("PHONEBILL_KOS_VERIFY_KEYS"), "{refused}");
        config.kos_keys.kos_verify_keys =
            Some("kos1:MCowBQYDK2VwAyEAt2z5bwnr5t4vLuOhEEyxPdbt59kjnA6phJxfuWv4L9E=".into());
        config.check().unwrap();

        config.database.url = "postgres://u@db:5432/phonebill".into();
        assert!(config
            .check()
            .unwrap_err()
            .to_string()
            .contains("sslmode=require"));

        config.database.url.push_str("?sslmode=verify-full");
        config.redis.url = "redis://cache:6379".into();
        assert!(config
            .check()
            .unwrap_err()
            .to_string()
            .contains("PHONEBILL_REDIS_URL"));
    }

    #[test]
    fn production_without_a_signing_key_fails_with_its_name() {
        let mut config = local();
        config.environment = Environment::Production;
        config.kafka.security_protocol = "sasl_ssl".into();
        config.kafka.sasl_username = Some("$ConnectionString".into());
        config.kafka.sasl_password = Some("Endpoint=sb://x/;SharedAccessKey=y".into());
        config.database.url = "postgres://u@db:5432/phonebill?sslmode=require".into();
        config.redis.url = "rediss://:key@cache:6380".into();
        let err = config.check().unwrap_err().to_string();
        assert!(err.contains("PHONEBILL_JWT_SIGNING_KEY_FILE"), "{err}");
    }

    #[test]
    fn schema_names_that_could_inject_sql_are_refused() {
        let mut config = local();
        config.database.schema = "x; drop table events".into();
        assert!(config.check().is_err());
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
        let dump = format!("{config:?}");
        check::assert_hidden(&Cli::command(), &[], &dump, &[]);
    }
}
