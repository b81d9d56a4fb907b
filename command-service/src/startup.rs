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
use crate::product_change::ProductChanges;
use crate::relay::Relay;
use crate::routes::{self, AppState};
use service_kit::{kafka, telemetry};

/// How this service names itself to the broker.
pub const CLIENT_ID: &str = "command-service";

pub struct Application {
    listener: TcpListener,
    router: axum::Router,
    relay: Option<Relay>,
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
                &[topics.product_change()],
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
        let state = AppState {
            changes: ProductChanges::new(pool.clone(), committed, config.kos.answer_timeout()),
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
    /// finishes its batch and records its cursor.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let relay_task = self
            .relay
            .map(|relay| tokio::spawn(relay.run(shutdown.clone())));
        tracing::info!(addr = %self.listener.local_addr()?, "command-service listening");
        let stop = shutdown.clone();
        axum::serve(self.listener, self.router)
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await?;
        shutdown.cancel();
        if let Some(task) = relay_task {
            task.await?;
        }
        self.pool.close().await;
        Ok(())
    }
}
