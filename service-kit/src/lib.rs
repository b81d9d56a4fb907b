//! What every phonebill service shares, so each service crate holds only its own role.
//!
//! - [`kafka`]: the Kafka settings (Apache Kafka locally, Azure Event Hubs in production,
//!   by configuration alone), client config, group membership, topic creation, a
//!   reachability probe.
//! - [`group_worker`]: one consumer group member for every consuming service (ordering per
//!   partition or per key, offsets stored after effects, retries, dead letters, lag
//!   metrics); the services bring a handler with their domain logic only.
//! - [`dead_letter`]: the dead-letter publisher (the original message with `dlq-*` headers).
//! - [`signed`]: messages signed by their producer (KOS's results and facts), checked
//!   by their consumers.
//! - [`outbox`]: the outbox publisher (one leader, idempotent producer, delivered rows
//!   recorded after the broker's acknowledgement).
//! - [`bounded_reader`]: a topic read between planned offsets (replay, export, time travel).
//! - [`database`]: a PostgreSQL pool bound to one schema (each service owns a schema).
//! - [`telemetry`]: JSON logs and the Prometheus recorder.
//! - [`traces`]: OpenTelemetry traces over OTLP and the W3C trace context carried through
//!   HTTP, the outbox rows and Kafka headers.
//! - [`http`]: the `observe` layer (correlation id, deadline, request metrics).
//! - [`problem`]: every stable problem code and the `application/problem+json` document.
//! - [`auth`]: access tokens (issue, verify, rotate, revoke), the [`auth::Caller`]
//!   extractor, roles and the one line-ownership rule.
//! - [`health`]: `/health/live`, `/health/ready`, `/metrics` for any service state.
//! - [`hardening`]: rate limits per IP and per customer, CORS, security headers.
//! - [`server`]: HTTP on one single-threaded runtime per core (`SO_REUSEPORT`).
//! - [`pubsub`]: a Redis subscription (invalidation, revocations).
//! - [`redis_conn`]: `PHONEBILL_REDIS_*` and one connection type over a single node or a
//!   cluster.
//! - [`Environment`]: local or production (production refuses development defaults).

pub mod auth;
pub mod bounded_reader;
pub mod database;
pub mod dead_letter;
pub mod group_worker;
pub mod hardening;
pub mod health;
pub mod http;
pub mod kafka;
pub mod outbox;
pub mod problem;
pub mod pubsub;
pub mod redis_conn;
pub mod secret;
pub mod server;
pub mod sharded;
pub mod signed;
pub mod telemetry;
pub mod traces;

/// `PHONEBILL_ENV`: production refuses development defaults (keys, passwords).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Environment {
    Local,
    Production,
}

/// The settings every service shares, checked in one order: Kafka, PostgreSQL, Redis (the
/// transports only in production), then the token keys. Each service's `Config::check`
/// calls this first, then checks its own settings.
pub fn check_shared<D: database::DatabaseDefaults>(
    environment: Environment,
    kafka: &kafka::KafkaConfig,
    database: &database::DatabaseConfig<D>,
    redis: &redis_conn::RedisConfig,
    jwt: &auth::JwtConfig,
) -> Result<(), String> {
    let production = environment == Environment::Production;
    if production {
        kafka.check_production()?;
    }
    database.check(production)?;
    if production {
        redis.check_production()?;
    }
    jwt.check(production)
}
