//! Wiring: configuration in, a running projector out.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use events::topics::Topics;
use metrics_exporter_prometheus::PrometheusHandle;
use rdkafka::consumer::Consumer;
use read_model::redis_conn::RedisConn;
use serde_json::{json, Value};
use service_kit::kafka::{self, Admin};
use service_kit::telemetry;
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::configuration::Config;
use crate::consumer::{ConsumerLoop, ProjectorConsumer};
use crate::db;
use crate::dead_letter::DeadLetters;
use crate::processor::Processor;
use service_kit::consumer::GroupContext;

pub const CLIENT_ID: &str = "projector";

pub struct Application {
    listener: TcpListener,
    router: Router,
    consumer_loop: ConsumerLoop,
    pool: PgPool,
}

#[derive(Clone)]
struct AppState {
    processor: Processor,
    redis: RedisConn,
    admin: Arc<Admin>,
    metrics: PrometheusHandle,
}

/// Migrates the read schema and grants the query role; returns the pool.
pub async fn prepare_database(config: &Config) -> anyhow::Result<PgPool> {
    config.check()?;
    let pool = db::connect(config).await?;
    db::migrate(&pool).await?;
    db::ensure_query_role(&pool, config).await?;
    Ok(pool)
}

/// The processor (without a consumer), for the CLI and tests.
pub async fn processor(config: &Config, pool: PgPool) -> anyhow::Result<Processor> {
    let redis = RedisConn::connect(&config.redis).await?;
    Ok(Processor::new(
        pool,
        redis,
        config.redis.key_prefix.clone(),
        Topics::new(&config.kafka.topic_prefix),
    ))
}

impl Application {
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let pool = prepare_database(&config).await?;
        let redis = RedisConn::connect(&config.redis).await?;
        let topics = Topics::new(&config.kafka.topic_prefix);
        let admin = Arc::new(kafka::admin(&config.kafka, CLIENT_ID)?);
        if config.kafka.create_topics {
            kafka::ensure_topics(
                &admin,
                &[
                    topics.product_change(),
                    topics.kos_billing(),
                    topics.bill_inquiries(),
                    topics.dead_letter(),
                ],
                config.kafka.topic_partitions,
            )
            .await?;
        }
        let processor = Processor::new(
            pool.clone(),
            redis.clone(),
            config.redis.key_prefix.clone(),
            topics.clone(),
        );
        processor.update_parked_gauge().await;
        let kafka_config = kafka::client_config(&config.kafka, CLIENT_ID);
        let consumer: ProjectorConsumer = kafka_config
            .clone()
            .set("group.id", &config.consumer_group)
            .set("fetch.wait.max.ms", service_kit::kafka::FETCH_WAIT_MAX_MS)
            .set("enable.auto.commit", "true")
            .set("auto.commit.interval.ms", "500")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("statistics.interval.ms", "5000")
            // librdkafka prefetches up to 64 MiB per consumer by default; one message at a
            // time needs far less, and the process stays small.
            .set("queued.max.messages.kbytes", "2048")
            .set("queued.min.messages", "1000")
            .set("fetch.max.bytes", "1048576")
            .set("max.partition.fetch.bytes", "262144")
            .set("receive.message.max.bytes", "2097152")
            .create_with_context(GroupContext::new(config.consumer_group.clone()))?;
        consumer.subscribe(&[
            &topics.product_change(),
            &topics.kos_billing(),
            &topics.bill_inquiries(),
        ])?;
        let dead_letters = DeadLetters::new(
            &kafka_config,
            topics.dead_letter(),
            config.consumer_group.clone(),
        )?;
        let state = AppState {
            processor: processor.clone(),
            redis,
            admin,
            metrics: telemetry::metrics_handle(),
        };
        let router = Router::new()
            .route(
                "/health/live",
                get(|| async { Json(json!({"status": "UP"})) }),
            )
            .route("/health/ready", get(ready))
            .route(
                "/metrics",
                get(|State(s): State<AppState>| async move { s.metrics.render() }),
            )
            .route("/admin/parked", get(list_parked))
            .route("/admin/parked/retry", post(retry_parked))
            .with_state(state);
        let listener = TcpListener::bind(config.http_addr).await?;
        Ok(Self {
            listener,
            router,
            consumer_loop: ConsumerLoop {
                consumer: Arc::new(consumer),
                processor,
                dead_letters,
            },
            pool,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("bound")
    }

    pub fn port(&self) -> u16 {
        self.local_addr().port()
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Runs until `shutdown`; then the consumer finishes its message and commits.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let consumer = tokio::spawn(self.consumer_loop.run(shutdown.clone()));
        let pool_gauges = tokio::spawn(read_model::report_pool(
            self.pool.clone(),
            Duration::from_secs(5),
        ));
        tracing::info!(addr = %self.listener.local_addr()?, "projector listening");
        let stop = shutdown.clone();
        axum::serve(self.listener, self.router)
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await?;
        shutdown.cancel();
        consumer.await?;
        pool_gauges.abort();
        self.pool.close().await;
        Ok(())
    }
}

async fn ready(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let database = sqlx::query("SELECT 1")
        .execute(&state.processor.pool)
        .await
        .is_ok();
    let mut redis = state.redis.clone();
    let redis_up = tokio::time::timeout(
        Duration::from_secs(1),
        redis::cmd("PING").query_async::<String>(&mut redis),
    )
    .await
    .is_ok_and(|r| r.is_ok());
    let broker = kafka::reachable(&state.admin, Duration::from_secs(2)).await;
    let up = |ok: bool| if ok { "UP" } else { "DOWN" };
    let all = database && redis_up && broker;
    (
        if all {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        },
        Json(json!({
            "status": up(all),
            "checks": {"postgres": up(database), "redis": up(redis_up), "kafka": up(broker)}
        })),
    )
}

async fn list_parked(State(state): State<AppState>) -> Result<Json<Value>, StatusCode> {
    let rows: Vec<(String, String, i64, String)> = sqlx::query_as(
        "SELECT aggregate_type, aggregate_id, sequence, reason FROM parked
          ORDER BY aggregate_type, aggregate_id, sequence LIMIT 1000",
    )
    .fetch_all(&state.processor.pool)
    .await
    .map_err(|_| StatusCode::SERVICE_UNAVAILABLE)?;
    let items: Vec<Value> = rows
        .into_iter()
        .map(|(t, id, seq, reason)| json!({"aggregateType": t, "aggregateId": id, "sequence": seq, "reason": reason}))
        .collect();
    Ok(Json(json!({ "items": items })))
}

async fn retry_parked(State(state): State<AppState>) -> Result<Json<Value>, StatusCode> {
    let report = state.processor.retry_parked().await.map_err(|e| {
        tracing::warn!(error = %e, "parked retry failed");
        StatusCode::SERVICE_UNAVAILABLE
    })?;
    Ok(Json(
        json!({"applied": report.applied, "stillParked": report.still_parked}),
    ))
}
