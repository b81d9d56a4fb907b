//! Wiring: configuration in, a running query-service out.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use events::topics::Topics;
use service_kit::auth::Authenticator;
use service_kit::hardening::RedisCounts;
use service_kit::redis_conn::RedisConn;
use service_kit::server::Server;
use service_kit::telemetry::MetricsListener;
use service_kit::{kafka, telemetry};
use tokio_util::sync::CancellationToken;

use crate::configuration::Config;
use crate::inquiries::Inquiries;
use crate::invalidation;
use crate::routes::{self, AppState, Shared};
use crate::views::Views;

pub const CLIENT_ID: &str = "query-service";

pub struct Application {
    server: Server,
    make_router: Box<dyn Fn() -> routes::App + Send + Sync>,
    views: Views,
    inquiries: Inquiries,
    config: Config,
    metrics_listener: MetricsListener,
}

impl Application {
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        config.check()?;
        // First: metric handles taken before the recorder exists count nowhere.
        telemetry::metrics_handle();
        let pool = read_model::connect_read_only(
            &config.database.url,
            &config.database.schema,
            config.database.max_connections,
        )
        .await?;
        let redis = RedisConn::connect(&config.redis).await?;
        let auth = authenticator(&config, redis.clone()).await?;
        let views = Views::new(
            redis,
            config.database.schema.clone(),
            pool,
            config.redis.key_prefix.clone(),
            config.l1_capacity,
            Duration::from_secs(config.l1_ttl_secs),
        );
        crate::namespace::resolve(&config, &views).await?;
        let topics = Topics::new(&config.kafka.topic_prefix);
        let admin = Arc::new(kafka::admin(&config.kafka, CLIENT_ID).await?);
        if config.kafka.create_topics {
            kafka::ensure_topics(
                &admin,
                &[topics.bill_inquiries()],
                config.kafka.topic_partitions,
            )
            .await?;
        }
        let inquiries = Inquiries::new(
            &kafka::client_config(&config.kafka, CLIENT_ID),
            topics.bill_inquiries(),
            config.inquiry_buffer,
        )?;
        if !inquiries.wait_until_ready(Duration::from_secs(5)).await {
            // Not fatal: queries never wait on the broker; records queue until it is up.
            tracing::warn!("the bill-inquiry producer has no broker connection yet");
        }
        let shared = Shared {
            views: views.clone(),
            inquiries: inquiries.clone(),
            admin,
            request_timeout: Duration::from_millis(config.request_timeout_ms),
            max_wait: config.min_position_wait(),
            auth,
        };
        let hardening = config.hardening.clone();
        let counts_conn = views.redis();
        let ip_limit = hardening.ip_rate_limit_with(|| {
            Arc::new(RedisCounts::new(counts_conn, &config.redis.key_prefix))
        });
        let metrics_listener = MetricsListener::bind(&config.metrics).await?;
        let metrics_beside_api = metrics_listener.beside_api();
        // Each worker its own state and router (`service_kit::server`), all over the
        // same views, queue, authenticator's caches and limits.
        let make_router = Box::new(move || {
            let state = AppState::new(Shared {
                auth: shared.auth.for_worker(),
                ..shared.clone()
            });
            routes::router(state, &hardening, ip_limit.clone(), metrics_beside_api)
        });
        let server = Server::bind(config.http_addr, config.http_workers())?;
        Ok(Self {
            server,
            make_router,
            views,
            inquiries,
            config,
            metrics_listener,
        })
    }

    /// The metrics port, when `PHONEBILL_METRICS_ADDR` gives it one.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_listener.local_addr()
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    pub fn port(&self) -> u16 {
        self.local_addr().port()
    }

    pub fn views(&self) -> &Views {
        &self.views
    }

    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let subscriber = tokio::spawn(invalidation::run(
            self.config.redis.url.clone(),
            read_model::invalidation_channel(&self.config.redis.key_prefix),
            self.views.clone(),
            shutdown.clone(),
        ));
        let namespaces = tokio::spawn(crate::namespace::run(
            self.config.clone(),
            self.views.clone(),
            shutdown.clone(),
        ));
        let pool_gauges = tokio::spawn(read_model::report_pool(
            self.views.pool().clone(),
            Duration::from_secs(5),
        ));
        let metrics = self.metrics_listener.serve(shutdown.clone());
        tracing::info!(
            addr = %self.server.local_addr(),
            workers = self.server.workers(),
            "query-service listening"
        );
        let served = self.server.serve(self.make_router, shutdown.clone()).await;
        shutdown.cancel();
        pool_gauges.abort();
        let _ = subscriber.await;
        self.inquiries.flush(Duration::from_secs(5)).await;
        let _ = namespaces.await;
        let _ = metrics.await;
        served
    }
}

/// Tokens are command-service's (same keys); logouts are followed from Redis and held in
/// memory, so checking one costs no round trip.
async fn authenticator(config: &Config, redis: RedisConn) -> anyhow::Result<Authenticator> {
    Authenticator::following_redis(
        &config.jwt,
        config.is_production(),
        redis,
        &config.redis.key_prefix,
        &config.redis.url,
        &config.hardening,
    )
    .await
}
