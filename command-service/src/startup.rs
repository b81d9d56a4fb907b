//! Wiring in one place: configuration in, a running service out.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use events::topics::Topics;
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::auth::{channel_for, Credentials, Logout, Passwords, PgRevocations};
use crate::configuration::{Config, Environment};
use crate::db;
use crate::kos_inbox::KosInbox;
use crate::kos_timeouts::TimeoutSweeper;
use crate::product_change::ProductChanges;
use crate::reference::ReferenceData;
use crate::relay::{self, Relay};
use crate::routes::{self, AppState};
use service_kit::auth::{Authenticator, Clock, SystemClock, Tokens};
use service_kit::hardening::{RedisCounts, SharedCounts, TrustedProxyHops};
use service_kit::redis_conn::RedisConn;
use service_kit::telemetry::MetricsListener;
use service_kit::{kafka, telemetry};

/// How this service names itself to the broker.
pub const CLIENT_ID: &str = "command-service";

pub struct Application {
    listener: TcpListener,
    router: service_kit::hardening::Hardened<axum::Router>,
    relay: Option<Relay>,
    inbox: Option<KosInbox>,
    sweeper: TimeoutSweeper,
    pool: PgPool,
    auth: Authenticator,
    logout: Logout,
    revocation_resync: Duration,
    metrics_listener: MetricsListener,
}

/// The topics the command side writes and reads, created when missing (local runs; in
/// production they are provisioned with the namespace).
async fn provision_topics(
    admin: &kafka::Admin,
    topics: &Topics,
    settings: &kafka::KafkaConfig,
) -> anyhow::Result<()> {
    kafka::ensure_topics(
        admin,
        &[
            topics.product_change(),
            topics.kos_results(),
            topics.kos_billing(),
            topics.dead_letter(),
        ],
        settings.topic_partitions,
    )
    .await?;
    Ok(())
}

/// The consumer of KOS's results and facts.
fn kos_inbox(
    config: &Config,
    topics: &Topics,
    changes: &ProductChanges,
    pool: &PgPool,
) -> anyhow::Result<KosInbox> {
    Ok(KosInbox::new(
        kafka::client_config(&config.kafka, CLIENT_ID),
        kafka::group_member(
            &config.kafka,
            CLIENT_ID,
            &config.kos.consumer_group,
            "kos-inbox",
        ),
        topics.clone(),
        changes.clone(),
        ReferenceData::new(pool.clone()),
        config
            .kos_keys
            .verifier(config.environment == Environment::Production)
            .map_err(anyhow::Error::msg)?,
    )?)
}

/// Who may call: tokens, revocations, the rate limits' counts, logins and logouts.
struct Access {
    auth: Authenticator,
    credentials: Credentials,
    logout: Logout,
    shared_counts: Option<Arc<dyn SharedCounts>>,
}

impl Access {
    async fn build(config: &Config, pool: &PgPool, clock: Arc<dyn Clock>) -> anyhow::Result<Self> {
        let keys = config
            .jwt
            .signing_keys(config.environment == Environment::Production)
            .map_err(anyhow::Error::msg)?;
        let tokens = Tokens::new(&config.jwt, keys, clock.clone());
        let channel = channel_for(&config.database.schema);
        let revocations = Arc::new(PgRevocations::start(pool.clone(), channel.clone()).await?);
        // Redis only when the limits are shared: commands never wait on Redis otherwise.
        let shared_counts: Option<Arc<dyn SharedCounts>> = if config.hardening.shared {
            let conn = RedisConn::connect(&config.redis).await?;
            Some(Arc::new(RedisCounts::new(conn, &config.redis.key_prefix)))
        } else {
            None
        };
        let mut auth = Authenticator::new(
            tokens.clone(),
            revocations.clone(),
            config.hardening.per_customer(),
        );
        if let Some(counts) = &shared_counts {
            auth = auth.sharing_counts(counts.clone(), config.hardening.per_customer());
        }
        let credentials = Credentials::new(
            pool.clone(),
            Passwords::new(&config.auth)?,
            tokens,
            &config.auth,
        );
        let logout = Logout::new(
            pool.clone(),
            revocations,
            channel,
            clock,
            config.redis.clone(),
        );
        Ok(Access {
            auth,
            credentials,
            logout,
            shared_counts,
        })
    }
}

impl Application {
    /// Checks the configuration, migrates, provisions topics and binds the listener
    /// (port 0 picks a free one; read it back with [`Application::port`]).
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        Self::build_with_clock(config, Arc::new(SystemClock)).await
    }

    /// [`Application::build`] with the clock that logins, lockouts and token expiry read
    /// (tests pass a manual one).
    pub async fn build_with_clock(config: Config, clock: Arc<dyn Clock>) -> anyhow::Result<Self> {
        config.check()?;
        // First: metric handles taken before the recorder exists count nowhere.
        telemetry::metrics_handle();
        let pool = db::connect(&config.database).await?;
        db::migrate(&pool).await?;
        let topics = Topics::new(&config.kafka.topic_prefix);
        let admin = Arc::new(kafka::admin(&config.kafka, CLIENT_ID).await?);
        if config.kafka.create_topics {
            provision_topics(&admin, &topics, &config.kafka).await?;
        }
        let committed = Arc::new(Notify::new());
        let relay = config.relay.enabled.then(|| {
            relay::relay(
                pool.clone(),
                kafka::client_config(&config.kafka, CLIENT_ID),
                topics.product_change(),
                &config.relay,
                committed.clone(),
            )
        });
        let changes = ProductChanges::new(
            pool.clone(),
            committed,
            config.kos.answer_timeout(),
            &config.group_commit,
        );
        let inbox = config
            .kos
            .inbox_enabled
            .then(|| kos_inbox(&config, &topics, &changes, &pool))
            .transpose()?;
        let sweeper = TimeoutSweeper::new(
            pool.clone(),
            changes.clone(),
            Duration::from_millis(config.kos.timeout_sweep_ms),
        );
        let Access {
            auth,
            credentials,
            logout,
            shared_counts,
        } = Access::build(&config, &pool, clock).await?;
        let state = AppState {
            changes,
            pool: pool.clone(),
            admin,
            request_timeout: Duration::from_millis(config.request_timeout_ms),
            auth: auth.clone(),
            credentials,
            logout: logout.clone(),
            trusted_proxy_hops: TrustedProxyHops(config.hardening.trusted_proxy_hops),
        };
        let metrics_listener = MetricsListener::bind(&config.metrics).await?;
        let ip_limit = config
            .hardening
            .ip_rate_limit_with(|| shared_counts.expect("connected when shared"));
        let router = routes::router(
            state,
            config.body_limit_bytes,
            &config.hardening,
            ip_limit,
            metrics_listener.beside_api(),
        );
        let listener = service_kit::server::listen(config.http_addr)?;
        Ok(Self {
            listener,
            router,
            relay,
            inbox,
            sweeper,
            pool,
            auth,
            logout,
            revocation_resync: Duration::from_millis(config.auth.revocation_resync_ms),
            metrics_listener,
        })
    }

    /// The metrics port, when `PHONEBILL_METRICS_ADDR` gives it one.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_listener.local_addr()
    }

    /// What checks tokens here (tests mint tokens with its [`Tokens`]).
    pub fn authenticator(&self) -> &Authenticator {
        &self.auth
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    pub fn port(&self) -> u16 {
        self.local_addr().port()
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Serves until `shutdown` fires, then drains: in-flight requests finish, the relay
    /// finishes its batch and records its cursor, the KOS inbox finishes its message and
    /// commits its offsets.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let mut workers = Vec::new();
        if let Some(relay) = self.relay {
            workers.push(tokio::spawn(relay.run(shutdown.clone())));
        }
        if let Some(inbox) = self.inbox {
            workers.push(tokio::spawn(inbox.run(shutdown.clone())));
        }
        workers.push(tokio::spawn(self.sweeper.run(shutdown.clone())));
        let metrics = self.metrics_listener.serve(shutdown.clone());
        tokio::spawn(
            self.logout
                .clone()
                .keep_redis_whole(self.revocation_resync, shutdown.clone()),
        );
        tracing::info!(addr = %self.listener.local_addr()?, "command-service listening");
        service_kit::server::serve(self.listener, self.router, shutdown.clone()).await?;
        shutdown.cancel();
        for worker in workers {
            worker.await?;
        }
        metrics.await?;
        self.pool.close().await;
        Ok(())
    }
}
