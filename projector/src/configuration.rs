//! Configuration from `PHONEBILL_*` environment variables (or flags), with local defaults.

use std::net::SocketAddr;

use clap::{Args, Parser, Subcommand};
pub use service_kit::auth::JwtConfig;
use service_kit::database::{is_identifier, DatabaseDefaults};
pub use service_kit::hardening::HardeningConfig;
pub use service_kit::kafka::KafkaConfig;
pub use service_kit::redis_conn::RedisConfig;
pub use service_kit::Environment;

/// The read tables (the projector owns them).
#[derive(Debug, Clone)]
pub struct ReadDatabase;

impl DatabaseDefaults for ReadDatabase {
    const SCHEMA: &'static str = "read";
    const MAX_CONNECTIONS: u32 = 8;
}

pub type DatabaseConfig = service_kit::database::DatabaseConfig<ReadDatabase>;

#[derive(Debug, Parser)]
#[command(
    name = "projector",
    about = "phonebill projector: product-change events and KOS facts into Redis views and PostgreSQL read tables"
)]
pub struct Cli {
    #[command(flatten)]
    pub config: Config,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Consume and project (the default); serves health and metrics.
    Run,
    /// Apply the read-schema migrations (and the query role's grants) and exit.
    Migrate,
    /// Retry every parked aggregate once and exit (the same as `POST /admin/parked/retry`).
    RetryParked,
    /// Apply a JSONL file of KOS facts (envelopes as on `kos.billing`) without the broker,
    /// as if consumed but taken on the operator's word (no KOS signature; idempotent;
    /// seeding and benchmarks).
    ApplyFacts {
        /// The JSONL file to read.
        file: std::path::PathBuf,
    },
    /// Write the OpenAPI document (as served on `/api-docs/openapi.json`) to stdout and
    /// exit; needs no database, Redis or broker.
    PrintOpenapi,
}

/// The subcommands that moved to the analyst tools (`phonebill-analyst`, shipped beside
/// the projector in its image).
pub const MOVED_TO_ANALYST: &[&str] = &[
    "replay",
    "namespaces",
    "switch",
    "drop-namespace",
    "compare",
    "as-of",
    "export",
];

/// The subcommand a parse error refused, when it is one that moved to `phonebill-analyst`.
pub fn moved_to_analyst(error: &clap::Error) -> Option<&str> {
    use clap::error::{ContextKind, ContextValue};
    match error.get(ContextKind::InvalidSubcommand)? {
        ContextValue::String(name) if MOVED_TO_ANALYST.contains(&name.as_str()) => Some(name),
        _ => None,
    }
}

#[derive(educe::Educe, Clone, Args)]
#[educe(Debug)]
pub struct Config {
    /// `production` refuses the development signing key.
    #[arg(long, env = "PHONEBILL_ENV", value_enum, default_value_t = Environment::Local)]
    pub environment: Environment,

    /// Address of the health, metrics, admin and analyst endpoints.
    #[arg(long, env = "PHONEBILL_HTTP_ADDR", default_value = "127.0.0.1:8084")]
    pub http_addr: SocketAddr,

    /// `PHONEBILL_DATABASE_*`: a role that may create the read schema and the query role.
    #[command(flatten)]
    pub database: DatabaseConfig,

    /// The command side's schema holding the event store (`events`), in the same
    /// database. Read (SELECT on `events`) by reconciliation, which holds every view to
    /// it, and by a replay or time travel when the broker no longer holds the beginning
    /// of `phonebill.product-change`.
    #[arg(
        long = "event-store-schema",
        env = "PHONEBILL_EVENT_STORE_SCHEMA",
        default_value = "command"
    )]
    pub event_store_schema: String,

    /// The role query-service connects as: USAGE on the read schema, SELECT on the read
    /// tables, nothing else.
    #[arg(long, env = "PHONEBILL_QUERY_ROLE", default_value = "phonebill_query")]
    pub query_role: String,

    /// Create the query role with LOGIN (its password, if any, is set by the operator).
    #[arg(long, env = "PHONEBILL_QUERY_ROLE_LOGIN", default_value_t = false, action = clap::ArgAction::Set)]
    pub query_role_login: bool,

    /// The login query role's password, set at every start (a server that requires
    /// passwords, as Azure's does, refuses a login role without one). Unset: left as is.
    #[arg(long, env = "PHONEBILL_QUERY_ROLE_PASSWORD", hide_env_values = true)]
    #[educe(Debug(method(service_kit::secret::option)))]
    pub query_role_password: Option<String>,

    #[command(flatten)]
    pub kafka: KafkaConfig,

    #[command(flatten)]
    pub redis: RedisConfig,

    /// Consumer group.
    #[arg(long, env = "PHONEBILL_CONSUMER_GROUP", default_value = "projector")]
    pub consumer_group: String,

    /// KOS's public keys: facts on `kos.billing` not signed by KOS are dead-lettered
    /// (live), and left out of a replay or time travel.
    #[command(flatten)]
    pub kos_keys: service_kit::signed::VerifyConfig,

    /// Access tokens of the analyst endpoints: the same keys, issuer and audience as
    /// command-service, which issues them (logouts followed from Redis, like
    /// query-service).
    #[command(flatten)]
    pub jwt: JwtConfig,

    /// Rate limits, trusted proxies and CORS of the admin and analyst endpoints (the
    /// Ingress routes analysts here), as on the other services.
    #[command(flatten)]
    pub hardening: HardeningConfig,

    #[command(flatten)]
    pub metrics: service_kit::telemetry::MetricsConfig,

    /// A request taking longer than this is answered 503 and abandoned (a time travel
    /// reads two partitions from their beginning).
    #[arg(long, env = "PHONEBILL_REQUEST_TIMEOUT_MS", default_value_t = 30_000)]
    pub request_timeout_ms: u64,

    /// How often the continuous reconciliation checks its next sample of lines, in
    /// seconds (0: never). See `reconcile::sampler`.
    #[arg(long, env = "PHONEBILL_RECONCILE_EVERY_SECS", default_value_t = 30)]
    pub reconcile_every_secs: u64,

    /// Lines per sample of the continuous reconciliation.
    #[arg(long, env = "PHONEBILL_RECONCILE_SAMPLE_LINES", default_value_t = 200)]
    pub reconcile_sample_lines: usize,

    /// How long the continuous reconciliation waits for a line that is not equal to
    /// catch up before it counts it, in seconds.
    #[arg(long, env = "PHONEBILL_RECONCILE_WAIT_SECS", default_value_t = 10)]
    pub reconcile_wait_secs: u64,

    /// Largest request body accepted, in bytes.
    #[arg(long, env = "PHONEBILL_BODY_LIMIT_BYTES", default_value_t = 16 * 1024)]
    pub body_limit_bytes: usize,
}

impl Config {
    pub fn from_env() -> Result<Self, clap::Error> {
        Cli::try_parse_from(["projector"]).map(|cli| cli.config)
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
        self.kos_verifier()?;
        if !is_identifier(&self.event_store_schema) {
            anyhow::bail!("PHONEBILL_EVENT_STORE_SCHEMA must be letters, digits and underscores");
        }
        if !is_identifier(&self.query_role) {
            anyhow::bail!("PHONEBILL_QUERY_ROLE must be letters, digits and underscores");
        }
        Ok(())
    }

    pub fn is_production(&self) -> bool {
        self.environment == Environment::Production
    }

    /// What KOS's facts are checked against.
    pub fn kos_verifier(&self) -> anyhow::Result<service_kit::signed::Verifier> {
        self.kos_keys
            .verifier(self.is_production())
            .map_err(anyhow::Error::msg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_defaults_pass_the_check() {
        let config = Cli::try_parse_from(["projector"]).unwrap().config;
        assert_eq!(config.database.schema, "read");
        assert_eq!(config.consumer_group, "projector");
        assert_eq!(config.redis.url, "redis://127.0.0.1:6379");
        config.check().unwrap();
    }

    #[test]
    fn production_refuses_plain_transports_and_missing_keys() {
        let mut config = Cli::try_parse_from(["projector"]).unwrap().config;
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
        let refused = config.check().unwrap_err().to_string();
        assert!(refused.contains("PHONEBILL_KOS_VERIFY_KEYS"), "{refused}");
        config.kos_keys.kos_verify_keys =
            Some("kos1:MCowBQYDK2VwAyEAt2z5bwnr5t4vLuOhEEyxPdbt59kjnA6phJxfuWv4L9E=".into());
        config.check().unwrap();
    }

    #[test]
    fn the_analyst_subcommands_are_refused_with_where_they_went() {
        for name in MOVED_TO_ANALYST {
            let error = Cli::try_parse_from(["projector", name]).unwrap_err();
            assert_eq!(moved_to_analyst(&error), Some(*name));
        }
        let error = Cli::try_parse_from(["projector", "no-such-command"]).unwrap_err();
        assert_eq!(moved_to_analyst(&error), None);
    }

    #[test]
    fn secrets_are_shown_neither_by_help_nor_in_a_configuration_dump() {
        use clap::CommandFactory;
        use service_kit::secret::check;
        let mut config = Cli::try_parse_from(["projector"]).unwrap().config;
        config.database.url = check::DATABASE_URL.into();
        config.redis.url = check::REDIS_URL.into();
        config.kafka.sasl_password = Some(check::SASL_PASSWORD.into());
        config.jwt.signing_key = Some(check::SIGNING_KEY.into());
        config.query_role_password = Some("role-secret".into());
        let dump = format!("{config:?}");
        check::assert_hidden(
            &Cli::command(),
            &["query_role_password"],
            &dump,
            &["role-secret"],
        );
    }
}
