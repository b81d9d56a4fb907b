//! Wiring: configuration in, a running projector out.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use events::topics::Topics;
use rdkafka::consumer::Consumer;
use serde::Serialize;
use serde_json::Value;
use service_kit::auth::Authenticator;
use service_kit::database::login::{self, SchemaRights};
use service_kit::database::Administrator;
use service_kit::hardening::{Hardened, RateLimit, RedisCounts};
use service_kit::health::{Readiness, Up};
use service_kit::http::ObserveLayer;
use service_kit::kafka::{self, Admin};
use service_kit::redis_conn::RedisConn;
use service_kit::telemetry::{self, MetricsListener};
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use utoipa::ToSchema;

use arc_swap::ArcSwap;
use backon::{ExponentialBuilder, Retryable};
use read_model::namespace::ActiveNamespace;

use crate::admin;
use crate::analytics::{self, AnalyticsState};
use crate::configuration::Config;
use crate::consumer::{self, Projection};
use crate::db;
use crate::namespace::{self, Control};
use crate::openapi;
use crate::processor::Processor;
use crate::time_travel::TimeTravel;
use service_kit::group_worker::{GroupConsumer, GroupWorker};

pub const CLIENT_ID: &str = "projector";

pub struct Application {
    listener: TcpListener,
    router: Hardened<Router>,
    worker: GroupWorker,
    pool: PgPool,
    config: Config,
    control: Control,
    active: ActiveNamespace,
    current: Arc<ArcSwap<Processor>>,
    metrics_listener: MetricsListener,
}

#[derive(Clone)]
pub(crate) struct AppState {
    /// The processor of the active namespace (swapped at a switch).
    pub(crate) processor: Arc<ArcSwap<Processor>>,
    redis: RedisConn,
    admin: Arc<Admin>,
    /// The parked endpoints are for admins: since the analytics route, the pod is
    /// reachable from the gateway's subnet.
    auth: Authenticator,
    /// Where the reconciliation endpoint reads the event store, and the topic's
    /// partitions it rolls lines up into.
    pub(crate) event_store_schema: String,
    pub(crate) partitions: i32,
}

impl axum::extract::FromRef<AppState> for Authenticator {
    fn from_ref(state: &AppState) -> Self {
        state.auth.clone()
    }
}

/// Migrates the read schema and grants the query role; returns the pool.
pub async fn prepare_database(config: &Config) -> anyhow::Result<PgPool> {
    config.check()?;
    let pool = db::connect(config).await?;
    db::migrate(&pool).await?;
    db::ensure_query_role(&mut *pool.acquire().await?, config).await?;
    Ok(pool)
}

/// How long the projector's migration step waits for command-service's to create the
/// event store it reads.
const EVENT_STORE_WAIT: Duration = Duration::from_secs(300);

/// The migration step: with the administrator's URL, makes the projector's login (owner
/// of the read schema, allowed to create the replays' schemas) and query-service's, then
/// migrates as the projector. Checks the database settings alone: the step is given no
/// other secret.
pub async fn migrate(config: &Config) -> anyhow::Result<()> {
    let admin = config
        .database
        .prepare_login(config.is_production(), SchemaRights::OwnAndCreate)
        .await?;
    let pool = db::connect(config).await?;
    db::migrate(&pool).await?;
    let Some(Administrator {
        conn: mut admin,
        login,
    }) = admin
    else {
        return db::ensure_query_role(&mut *pool.acquire().await?, config)
            .await
            .map_err(Into::into);
    };
    // The control schema and the replays' schemas, made by the administrator in
    // installations older than the logins, are the projector's too.
    for schema in namespace::schemas_beside(&mut admin, &config.database.schema).await? {
        login::hand_over_schema(&mut admin, &schema, &login.role).await?;
    }
    db::ensure_query_role(&mut admin, config).await?;
    // Time travel and reconciliation read the command side's event store, whose own
    // migration Job may be running alongside this one.
    let granted = login::grant_select_when_present(
        &mut admin,
        &config.event_store_schema,
        "events",
        &login.role,
        EVENT_STORE_WAIT,
    )
    .await?;
    anyhow::ensure!(
        granted,
        "the event store {}.events did not appear within {} s (command-service's migration)",
        config.event_store_schema,
        EVENT_STORE_WAIT.as_secs()
    );
    Ok(())
}

/// The namespace control (created if missing) and the configuration of the active
/// namespace: its schema, key prefix and consumer group in place of the configured ones.
pub async fn active_config(config: &Config) -> anyhow::Result<(Control, ActiveNamespace, Config)> {
    config.check()?;
    let pool =
        read_model::connect_read_only(&config.database.url, &config.database.schema, 2).await?;
    let control = Control::open(config, pool).await?;
    let active = control.active().await?;
    Ok((control, active.clone(), namespace_config(config, &active)))
}

/// `config` pointed at a namespace.
pub fn namespace_config(config: &Config, ns: &ActiveNamespace) -> Config {
    let mut c = config.clone();
    c.database.schema = ns.schema.clone();
    c.redis.key_prefix = ns.key_prefix.clone();
    c.consumer_group = ns.consumer_group.clone();
    c
}

/// The processor (without a consumer), for the CLI and tests.
pub async fn processor(config: &Config, pool: PgPool) -> anyhow::Result<Processor> {
    let redis = RedisConn::connect(&config.redis).await?;
    Ok(Processor::new(
        pool,
        redis,
        config.redis.key_prefix.clone(),
        Topics::new(&config.kafka.topic_prefix),
        config.kos_verifier()?,
    ))
}

/// The live consumer of a namespace's group.
fn build_worker(config: &Config) -> anyhow::Result<GroupWorker> {
    let topics = Topics::new(&config.kafka.topic_prefix);
    let mut member = kafka::group_member(
        &config.kafka,
        CLIENT_ID,
        &config.consumer_group,
        "projector",
    );
    // librdkafka prefetches up to 64 MiB per consumer by default; runs of queued messages
    // need far less, and the process stays small.
    member
        .set("queued.max.messages.kbytes", "2048")
        .set("queued.min.messages", "1000")
        .set("fetch.max.bytes", "1048576")
        .set("max.partition.fetch.bytes", "262144")
        .set("receive.message.max.bytes", "2097152");
    Ok(GroupWorker::new(
        &member,
        &kafka::client_config(&config.kafka, CLIENT_ID),
        consumer::settings(&topics, &config.consumer_group),
    )?)
}

impl Application {
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        // First: metric handles taken before the recorder exists count nowhere.
        telemetry::metrics_handle();
        let (control, active, ns_config) = active_config(&config).await?;
        let pool = prepare_database(&ns_config).await?;
        control.grant().await?;
        let redis = RedisConn::connect(&config.redis).await?;
        let topics = Topics::new(&config.kafka.topic_prefix);
        let admin = Arc::new(kafka::admin(&config.kafka, CLIENT_ID).await?);
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
        // Announces on the base namespace's channel (query-services subscribe to it).
        let processor = Processor::new(
            pool.clone(),
            redis.clone(),
            config.redis.key_prefix.clone(),
            topics.clone(),
            config.kos_verifier()?,
        )
        .for_namespace(pool.clone(), ns_config.redis.key_prefix.clone());
        processor.update_parked_gauge().await;
        let worker = build_worker(&ns_config)?;
        let auth = authenticator(&config, redis.clone()).await?;
        let analytics = AnalyticsState::new(
            auth.clone(),
            TimeTravel::new(&config, processor.decoder(), pool.clone()),
        );
        let current = Arc::new(ArcSwap::from_pointee(processor));
        let counts_conn = redis.clone();
        let ip_limit = config.hardening.ip_rate_limit_with(|| {
            Arc::new(RedisCounts::new(counts_conn, &config.redis.key_prefix))
        });
        let state = AppState {
            processor: current.clone(),
            redis,
            admin,
            auth,
            event_store_schema: config.event_store_schema.clone(),
            partitions: config.kafka.topic_partitions,
        };
        // The admin and analyst endpoints behind the per-IP limit; everything inside the
        // timeout, the body limit, CORS and the security headers, as on the other services.
        let api = admin::router()
            .with_state(state.clone())
            .merge(analytics::router(analytics));
        let metrics_listener = MetricsListener::bind(&config.metrics).await?;
        let health = Router::new()
            .route("/health/live", get(service_kit::health::live))
            .route("/health/ready", get(ready))
            .merge(service_kit::http::openapi_route(openapi::document));
        let router = telemetry::with_metrics(health, metrics_listener.beside_api())
            .with_state(state)
            .merge(RateLimit::apply(ip_limit, api))
            .layer(ObserveLayer::new(Duration::from_millis(
                config.request_timeout_ms,
            )))
            .layer(DefaultBodyLimit::max(config.body_limit_bytes));
        let router = config.hardening.around(router);
        let listener = service_kit::server::listen(config.http_addr)?;
        tracing::info!(namespace = %active.id, schema = %active.schema, "projecting");
        Ok(Self {
            listener,
            router,
            worker,
            pool,
            config,
            control,
            active,
            current,
            metrics_listener,
        })
    }

    /// The metrics port, when `PHONEBILL_METRICS_ADDR` gives it one.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_listener.local_addr()
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("bound")
    }

    pub fn port(&self) -> u16 {
        self.local_addr().port()
    }

    /// The pool of the namespace active when the projector started.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Runs until `shutdown`; then the consumer finishes its message and commits.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let consumer = tokio::spawn(follow_namespaces(
            self.worker,
            Processor::clone(&self.current.load()),
            self.config.clone(),
            self.control.clone(),
            self.active.clone(),
            self.current.clone(),
            shutdown.clone(),
        ));
        let reconciliation = tokio::spawn(crate::reconcile::sampler::run(
            self.config.clone(),
            self.current.clone(),
            shutdown.clone(),
        ));
        let pool_gauges = tokio::spawn(read_model::report_pool(
            self.pool.clone(),
            Duration::from_secs(5),
        ));
        let metrics = self.metrics_listener.serve(shutdown.clone());
        tracing::info!(addr = %self.listener.local_addr()?, "projector listening");
        service_kit::server::serve(self.listener, self.router, shutdown.clone()).await?;
        shutdown.cancel();
        consumer.await?;
        reconciliation.await?;
        metrics.await?;
        pool_gauges.abort();
        self.pool.close().await;
        Ok(())
    }
}

/// The analyst endpoints' tokens: command-service's keys; logouts followed from Redis
/// under the base key prefix (as query-service does).
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

/// Runs the consumer of the active namespace. When another namespace becomes active (a
/// replay's switch), it finishes the run in hand (the worker leaves each partition
/// positioned at its first message not done), swaps the processor for one writing the
/// new namespace and rewinds each assigned partition to min(its position, the replay's
/// end offset): events it applied to the old namespace after the replay had
/// read its end are applied to the new one too (the checkpoints skip what the replay
/// already applied). The group and its members stay the same.
async fn follow_namespaces(
    worker: GroupWorker,
    mut processor: Processor,
    config: Config,
    control: Control,
    mut active: ActiveNamespace,
    current: Arc<ArcSwap<Processor>>,
    shutdown: CancellationToken,
) {
    loop {
        let this_namespace = shutdown.child_token();
        let watcher = tokio::spawn(watch_switch(
            control.clone(),
            active.id.clone(),
            this_namespace.clone(),
        ));
        worker
            .run(
                Arc::new(Projection::new(processor.clone())),
                this_namespace.clone(),
            )
            .await;
        this_namespace.cancel();
        let next = watcher.await.ok().flatten();
        if shutdown.is_cancelled() {
            return;
        }
        let Some(next) = next else {
            tracing::error!("projector consumer stopped on its own");
            return;
        };
        // The new namespace's pool and its end offsets; retried until they exist.
        let ns_config = namespace_config(&config, &next);
        let built = (|| async {
            let pool = prepare_database(&ns_config).await?;
            let ends = control
                .get(&next.id)
                .await?
                .and_then(|row| row.end_offsets)
                .unwrap_or_default();
            anyhow::Ok((pool, ends))
        })
        .retry(
            ExponentialBuilder::default()
                .with_max_delay(Duration::from_secs(5))
                .without_max_times(),
        )
        .when(|_| !shutdown.is_cancelled())
        .notify(|e, _| tracing::warn!(error = %e, "switching namespace; retrying"))
        .await;
        let Ok((pool, ends)) = built else {
            return;
        };
        processor = current.load().for_namespace(pool, next.key_prefix.clone());
        let rewound = rewind_to_ends(worker.consumer(), &ends).await;
        // The old pool is only dropped (idle connections time out): the admin endpoints or
        // a caller of `Application::pool` may still hold it.
        current.swap(Arc::new(processor.clone()));
        tracing::info!(from = %active.id, to = %next.id, rewound, "switched namespace");
        active = next;
    }
}

/// Seeks each assigned partition to min(position, end offset of the replay); returns
/// how many partitions it moved.
async fn rewind_to_ends(consumer: &Arc<GroupConsumer>, ends: &Value) -> usize {
    let consumer = Arc::clone(consumer);
    let ends = ends.clone();
    tokio::task::spawn_blocking(move || {
        let mut rewound = 0;
        let Ok(assignment) = consumer.assignment() else {
            return rewound;
        };
        let positions = consumer.position().unwrap_or(assignment);
        for e in positions.elements() {
            let Some(end) = ends[e.topic()][e.partition().to_string()].as_i64() else {
                continue;
            };
            let target = match e.offset() {
                rdkafka::Offset::Offset(p) => p.min(end),
                _ => end,
            };
            match consumer.seek(
                e.topic(),
                e.partition(),
                rdkafka::Offset::Offset(target),
                Duration::from_secs(5),
            ) {
                Ok(()) => rewound += 1,
                Err(err) => tracing::warn!(error = %err, topic = e.topic(), "rewind failed"),
            }
        }
        rewound
    })
    .await
    .unwrap_or_default()
}

/// Resolves with the new active namespace when it changes (NOTIFY, or the pointer read
/// every second in case a notification was missed), cancelling `token`; with `None`
/// when `token` is cancelled first.
async fn watch_switch(
    control: Control,
    current: String,
    token: CancellationToken,
) -> Option<ActiveNamespace> {
    let mut listener = sqlx::postgres::PgListener::connect_with(&control.pool)
        .await
        .ok();
    if let Some(l) = listener.as_mut() {
        if l.listen(&control.notify_channel()).await.is_err() {
            listener = None;
        }
    }
    loop {
        if let Ok(active) = control.active().await {
            if active.id != current {
                token.cancel();
                return Some(active);
            }
        }
        let wait = async {
            match listener.as_mut() {
                Some(l) => {
                    let _ = tokio::time::timeout(Duration::from_secs(1), l.recv()).await;
                }
                None => tokio::time::sleep(Duration::from_secs(1)).await,
            }
        };
        tokio::select! {
            _ = token.cancelled() => return None,
            _ = wait => {}
        }
    }
}

/// The projector's readiness checks.
// In sorted order, as the `json!` body they replaced: the same bytes.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReadinessChecks {
    pub kafka: Up,
    pub postgres: Up,
    pub redis: Up,
}

/// `/health/ready`: 200 when PostgreSQL, Redis and the broker all answer, else 503.
#[utoipa::path(get, path = "/health/ready", tag = "health",
    responses(
        (status = 200, description = "PostgreSQL, Redis and the broker answer", body = Readiness<ReadinessChecks>),
        (status = 503, description = "One of them does not", body = Readiness<ReadinessChecks>)))]
pub(crate) async fn ready(
    State(state): State<AppState>,
) -> (StatusCode, Json<Readiness<ReadinessChecks>>) {
    let database = sqlx::query("SELECT 1")
        .execute(&state.processor.load().pool)
        .await
        .is_ok();
    let redis_up = state.redis.answers(Duration::from_secs(1)).await;
    let broker = kafka::reachable(&state.admin, Duration::from_secs(2)).await;
    let checks = ReadinessChecks {
        kafka: broker.into(),
        postgres: database.into(),
        redis: redis_up.into(),
    };
    Readiness::answer(checks, database && redis_up && broker)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin::{Parked, ParkedList, RetryAnswer};
    use serde_json::json;

    /// The bodies these routes had, built with `json!`, against the typed ones.
    #[test]
    fn the_typed_answers_are_the_bytes_the_json_bodies_were() {
        fn same<T: Serialize>(before: Value, after: &T) {
            assert_eq!(
                serde_json::to_string(&before).unwrap(),
                serde_json::to_string(after).unwrap()
            );
        }
        let up = |ok: bool| if ok { "UP" } else { "DOWN" };
        for (database, redis, kafka) in [
            (true, true, true),
            (true, false, true),
            (false, true, false),
        ] {
            let all = database && redis && kafka;
            same(
                json!({
                    "status": up(all),
                    "checks": {"postgres": up(database), "redis": up(redis), "kafka": up(kafka)}
                }),
                &Readiness {
                    checks: ReadinessChecks {
                        kafka: kafka.into(),
                        postgres: database.into(),
                        redis: redis.into(),
                    },
                    status: all.into(),
                },
            );
        }
        same(
            json!({"status": "UP"}),
            &service_kit::health::Liveness { status: Up::Up },
        );
        let rows = [
            ("ProductChange", "r-1", 3_i64, "no line"),
            ("Line", "010-1234-5678", 12, "out of order"),
        ];
        same(
            json!({ "items": rows
                .iter()
                .map(|(t, id, seq, reason)| json!({"aggregateType": t, "aggregateId": id, "sequence": seq, "reason": reason}))
                .collect::<Vec<Value>>() }),
            &ParkedList {
                items: rows
                    .iter()
                    .map(|(t, id, seq, reason)| Parked {
                        aggregate_id: id.to_string(),
                        aggregate_type: t.to_string(),
                        reason: reason.to_string(),
                        sequence: *seq,
                    })
                    .collect(),
            },
        );
        same(
            json!({ "items": Vec::<Value>::new() }),
            &ParkedList { items: vec![] },
        );
        same(
            json!({"applied": 2_u64, "stillParked": 1_u64}),
            &RetryAnswer {
                applied: 2,
                still_parked: 1,
            },
        );
    }
}
