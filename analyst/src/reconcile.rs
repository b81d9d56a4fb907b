//! `phonebill-analyst reconcile`: the event store against a namespace's views, line by
//! line (see `projector::reconcile`), with a progress spinner on a terminal.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use projector::configuration::Config;
use projector::namespace::Control;
use projector::reconcile::{self, Options, Report, Sources};
use projector::startup;
use service_kit::redis_conn::RedisConn;

use crate::configuration::ReconcileArgs;

/// Reconciles the lines `args` name in the active namespace (or `--namespace`).
pub async fn run(config: &Config, args: &ReconcileArgs) -> anyhow::Result<Report> {
    let (control, active, _) = startup::active_config(config).await?;
    let ns = match &args.namespace {
        None => active,
        Some(id) => {
            control
                .get(id)
                .await?
                .ok_or_else(|| anyhow::anyhow!("no namespace `{id}`"))?
                .ns
        }
    };
    let pool = read_model::connect_read_only(&config.database.url, &ns.schema, 8).await?;
    let redis = if args.redis {
        Some((
            RedisConn::connect(&config.redis).await?,
            ns.key_prefix.clone(),
        ))
    } else {
        None
    };
    let broker = args.broker.then(|| {
        (
            service_kit::kafka::client_config(&config.kafka, "phonebill-reconcile"),
            events::topics::Topics::new(&config.kafka.topic_prefix).product_change(),
        )
    });
    let sources = Sources {
        pool,
        event_store_schema: config.event_store_schema.clone(),
        redis,
        partitions: config.kafka.topic_partitions,
        kos_schema: args.kos_schema.clone(),
        broker,
    };
    let options = Options {
        from: args.from.clone(),
        to: args.to.clone(),
        position: args.position,
        wait: Duration::from_secs(args.wait_secs),
        views: !args.no_views,
        limit: args.limit,
        ..Default::default()
    };
    let bar = spinner(!args.quiet);
    let report = reconcile::run(&sources, &options, |done| bar.set_position(done)).await;
    bar.finish_and_clear();
    report
}

/// The switch's gate: the namespace `id` must reconcile with the event store, its change
/// requests included: no line divergent. Lines behind are events committed after the
/// rebuild read its ends, which the live projectors apply to it after the switch. The
/// event store is the truth the rebuild is held to, not the live namespace: a replay is
/// often run because the live views went wrong. Refuses (with the first differences)
/// unless `force`.
pub async fn gate(config: &Config, control: &Control, id: &str, force: bool) -> anyhow::Result<()> {
    let ns = control
        .get(id)
        .await?
        .ok_or_else(|| anyhow::anyhow!("no namespace `{id}`"))?
        .ns;
    let pool = read_model::connect_read_only(&config.database.url, &ns.schema, 4).await?;
    let sources = Sources {
        pool: pool.clone(),
        event_store_schema: config.event_store_schema.clone(),
        redis: None,
        partitions: config.kafka.topic_partitions,
        kos_schema: None,
        broker: None,
    };
    let options = Options {
        wait: Duration::ZERO,
        ..Default::default()
    };
    let report = reconcile::run(&sources, &options, |_| {}).await?;
    pool.close().await;
    if report.divergent == 0 {
        tracing::info!(namespace = %id, lines = report.lines, behind = report.behind, "the namespace reconciles with the event store");
        return Ok(());
    }
    if force {
        tracing::warn!(namespace = %id, divergent = report.divergent, "switching although the namespace differs from the event store (--force)\n{}", report.summary());
        return Ok(());
    }
    anyhow::bail!(
        "namespace `{id}` differs from the event store; not switching (--force switches anyway):\n{}",
        report.summary()
    )
}

fn spinner(enabled: bool) -> ProgressBar {
    if !enabled || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr_with_hz(4));
    bar.set_style(
        ProgressStyle::with_template(
            "reconcile [{elapsed_precise}] {spinner} {human_pos} lines {per_sec}",
        )
        .expect("valid template"),
    );
    bar.enable_steady_tick(Duration::from_millis(250));
    bar
}
