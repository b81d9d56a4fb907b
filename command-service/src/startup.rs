//! Wiring in one place: configuration in, a running service out.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use events::topics::Topics;
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::configuration::Config;
use crate::db;
use crate::kos_inbox::KosInbox;
use crate::kos_timeouts::TimeoutSweeper;
use crate::product_change::ProductChanges;
use crate::reference::ReferenceData;
use crate::relay::Relay;
use crate::routes::{self, AppState};
use service_kit::{kafka, telemetry};

/// How this service names itself to the broker.
pub const CLIENT_ID: &str = "command-service";

pub struct Application {
    listener: TcpListener,
    router: axum::Router,
    relay: Option<Relay>,
    inbox: Option<KosInbox>,
    sweeper: TimeoutSweeper,
    pool: PgPool,
}

impl Application {
    /// Checks the configuration, migrates, provisions topics and binds the listener
    /// (port 0 picks a free one; read it back with [`Application::port`]).
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        config.check()?;
        let pool = db::connect(&config.database).await?;
        db::migrate(&pool).await?;
        let topics = Topics::new(&config.kafka.topic_prefix);
        let admin = Arc::new(kafka::admin(&config.kafka, CLIENT_ID)?);
        if config.kafka.create_topics {
            kafka::ensure_topics(
                &admin,
                &[
                    topics.product_change(),
                    topics.kos_results(),
                    topics.kos_billing(),
                    topics.dead_letter(),
                ],
                config.kafka.topic_partitions,
            )
            .await?;
        }
        let committed = Arc::new(Notify::new());
        let relay = config.relay.enabled.then(|| {
            Relay::new(
                pool.clone(),
                kafka::client_config(&config.kafka, CLIENT_ID),
                topics.product_change(),
                config.relay.clone(),
                committed.clone(),
            )
        });
        let changes = ProductChanges::new(pool.clone(), committed, config.kos.answer_timeout());
        let inbox = if config.kos.inbox_enabled {
            Some(KosInbox::new(
                kafka::client_config(&config.kafka, CLIENT_ID),
                &config.kos.consumer_group,
                topics.clone(),
                changes.clone(),
                ReferenceData::new(pool.clone()),
            )?)
        } else {
            None
        };
        let sweeper = TimeoutSweeper::new(
            pool.clone(),
            changes.clone(),
            Duration::from_millis(config.kos.timeout_sweep_ms),
        );
        let state = AppState {
            changes,
            pool: pool.clone(),
            admin,
            metrics: telemetry::metrics_handle(),
            request_timeout: Duration::from_millis(config.request_timeout_ms),
        };
        let router = routes::router(state, config.body_limit_bytes);
        let listener = TcpListener::bind(config.http_addr).await?;
        Ok(Self {
            listener,
            router,
            relay,
            inbox,
            sweeper,
            pool,
        })
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
        tracing::info!(addr = %self.listener.local_addr()?, "command-service listening");
        let stop = shutdown.clone();
        axum::serve(self.listener, self.router)
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await?;
        shutdown.cancel();
        for worker in workers {
            worker.await?;
        }
        self.pool.close().await;
        Ok(())
    }
}
