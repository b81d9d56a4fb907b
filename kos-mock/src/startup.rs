//! Wiring in one place: configuration in, a running service out.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use events::topics::Topics;
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::billing::Billing;
use crate::catalog::Catalog;
use crate::changes::{ChangeConsumer, Changes};
use crate::configuration::Config;
use crate::lines::Lines;
use crate::outbox::{self, Publisher};
use crate::routes::{self, AppState};
use crate::simulation::SimulationHandle;
use crate::{db, demo};
use service_kit::outbox::PublisherSettings;
use service_kit::telemetry::MetricsListener;
use service_kit::{kafka, telemetry};

/// How this service names itself to the broker.
pub const CLIENT_ID: &str = "kos-mock";

pub struct Application {
    listener: TcpListener,
    router: axum::Router,
    consumer: ChangeConsumer,
    publisher: Publisher,
    pool: PgPool,
    metrics_listener: MetricsListener,
}

impl Application {
    /// Checks the configuration, migrates, provisions topics, seeds the demo set if asked,
    /// and binds the listener (port 0 picks a free one; read it back with
    /// [`Application::port`]).
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        config.check()?;
        // First: metric handles taken before the recorder exists count nowhere.
        telemetry::metrics_handle();
        let pool = db::connect(&config.database).await?;
        db::migrate(&pool).await?;
        let topics = Topics::new(&config.kafka.topic_prefix);
        let admin = Arc::new(kafka::admin(&config.kafka, CLIENT_ID).await?);
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
        if config.seed_demo {
            demo::seed_now(&pool, config.demo_customers).await?;
        }
        let auth =
            routes::access::authenticator(&config.jwt, config.is_production(), &config.redis)
                .map_err(anyhow::Error::msg)?;
        let committed = Arc::new(Notify::new());
        let client = kafka::client_config(&config.kafka, CLIENT_ID);
        let simulation = SimulationHandle::new(config.kos.simulation());
        let changes = Changes::new(pool.clone(), committed.clone(), simulation);
        let signer = config
            .signing
            .signer(config.is_production())
            .map_err(anyhow::Error::msg)?;
        let publisher = outbox::publisher(
            pool.clone(),
            &client,
            topics.clone(),
            signer,
            PublisherSettings {
                poll: config.kos.publish_poll(),
                delivery_timeout_ms: config.kos.delivery_timeout_ms,
            },
            committed.clone(),
        );
        let consumer = ChangeConsumer {
            changes: changes.clone(),
            kafka: client,
            member: kafka::group_member(
                &config.kafka,
                CLIENT_ID,
                &config.kos.consumer_group,
                "kos-changes",
            ),
            topics,
            max_in_flight: config.kos.max_in_flight,
        };
        let state = AppState {
            catalog: Catalog::new(pool.clone(), committed.clone()),
            lines: Lines::new(pool.clone(), committed.clone()),
            billing: Billing::new(pool.clone(), committed),
            changes,
            pool: pool.clone(),
            admin,
            request_timeout: Duration::from_millis(config.request_timeout_ms),
        };
        let metrics_listener = MetricsListener::bind(&config.metrics).await?;
        let router = routes::router(
            state,
            auth,
            config.body_limit_bytes,
            metrics_listener.beside_api(),
        );
        let listener = service_kit::server::listen(config.http_addr)?;
        Ok(Self {
            listener,
            router,
            consumer,
            publisher,
            pool,
            metrics_listener,
        })
    }

    /// The metrics port, when `PHONEBILL_METRICS_ADDR` gives it one.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_listener.local_addr()
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

    /// Serves until `shutdown` fires, then drains: in-flight requests and changes finish,
    /// offsets are committed, and the outbox is published one last time.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let publishing = CancellationToken::new();
        let publisher = tokio::spawn(self.publisher.run(publishing.clone()));
        let consumer = tokio::spawn(self.consumer.run(shutdown.clone()));
        let metrics = self.metrics_listener.serve(shutdown.clone());
        tracing::info!(addr = %self.listener.local_addr()?, "kos-mock listening");
        let stop = shutdown.clone();
        let served = axum::serve(self.listener, self.router)
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await;
        shutdown.cancel();
        let consumed = consumer.await;
        // Publish what the last changes wrote before stopping the publisher.
        publishing.cancel();
        publisher.await?;
        metrics.await?;
        self.pool.close().await;
        served?;
        consumed??;
        Ok(())
    }
}
