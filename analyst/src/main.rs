use analyst::configuration::{AsOfArgs, Cli, Command, ExportArgs, ReconcileArgs, ReplayArgs};
use analyst::{compare, export, reconcile, replay};
use clap::Parser;
use projector::configuration::Config;
use projector::startup;
use service_kit::telemetry;

// A replay allocates and frees millions of small views and statement buffers across
// threads: glibc's malloc took a fifth of its CPU (arena locks, consolidation), and
// mimalloc made the replay a fifth faster (RESULTS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    telemetry::init_logging("info,sqlx::postgres::notice=warn");
    let cli = Cli::parse();
    let config = cli.config;
    // With the workload's own broker identity, a refused one is reported before any work.
    service_kit::kafka::identity::ready(&config.kafka, std::time::Duration::from_secs(60)).await?;
    match cli.command {
        Command::Replay(args) => run_replay(&config, args).await,
        Command::Namespaces => {
            let (control, _, _) = startup::active_config(&config).await?;
            for row in control.list().await? {
                println!("{row}");
            }
            Ok(())
        }
        Command::Switch { id, force } => {
            let (control, _, _) = startup::active_config(&config).await?;
            reconcile::gate(&config, &control, &id, force).await?;
            let previous = control.switch(&id).await?;
            println!(
                "{}",
                serde_json::json!({"switchedFrom": previous.id, "active": id})
            );
            Ok(())
        }
        Command::DropNamespace { id } => {
            let (control, _, _) = startup::active_config(&config).await?;
            let redis = service_kit::redis_conn::RedisConn::connect(&config.redis).await?;
            control.drop_namespace(&id, &redis).await?;
            println!("{}", serde_json::json!({"dropped": id}));
            Ok(())
        }
        Command::Compare { id } => run_compare(&config, &id).await,
        Command::AsOf(args) => run_as_of(&config, args).await,
        Command::Export(args) => run_export(&config, args).await,
        Command::Reconcile(args) => run_reconcile(&config, args).await,
    }
}

async fn run_replay(config: &Config, args: ReplayArgs) -> anyhow::Result<()> {
    let options = replay::ReplayOptions {
        id: args.id,
        since: args.since,
        until: args.until,
        switch: args.switch,
        force: args.force,
        drop_old: args.drop_old,
        drop_grace: std::time::Duration::from_secs(args.drop_grace_secs),
        flush_every: args.flush_every,
        memory_bytes: args.memory_mib << 20,
        workers: args.workers,
        progress: !args.quiet,
        source: args.source,
        max_events: args.max_events,
    };
    if args.dry_run {
        let plan = replay::dry_run(config, &options).await?;
        println!("{}", serde_json::to_string(&plan)?);
        return Ok(());
    }
    let report = replay::run(config, options).await?;
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}

/// Exits 1 when the namespaces differ.
async fn run_compare(config: &Config, id: &str) -> anyhow::Result<()> {
    let (control, active, _) = startup::active_config(config).await?;
    let other = control
        .get(id)
        .await?
        .ok_or_else(|| anyhow::anyhow!("no namespace `{id}`"))?
        .ns;
    let redis = service_kit::redis_conn::RedisConn::connect(&config.redis).await?;
    let comparison = compare::compare(&control.pool, &redis, &active, &other).await?;
    println!(
        "{}",
        serde_json::json!({"active": active.id, "other": id, "comparison": comparison})
    );
    if comparison.differing > 0 {
        std::process::exit(1);
    }
    Ok(())
}

async fn run_as_of(config: &Config, args: AsOfArgs) -> anyhow::Result<()> {
    let (state, stats) = projector::time_travel::as_of(config, &args.line, args.at).await?;
    eprintln!("{}", serde_json::to_string(&stats)?);
    println!("{}", serde_json::to_string_pretty(&state)?);
    Ok(())
}

async fn run_export(config: &Config, args: ExportArgs) -> anyhow::Result<()> {
    let options = export::ExportOptions {
        topic: args.topic,
        since: args.since,
        until: args.until,
        event_types: args.event_types,
        line: args.line,
        format: args.format,
        compression: args.compression,
        out: args.out,
    };
    let report = export::run(config, options).await?;
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}

/// Exits 1 when a line is divergent.
async fn run_reconcile(config: &Config, args: ReconcileArgs) -> anyhow::Result<()> {
    let report = reconcile::run(config, &args).await?;
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print!("{}", report.summary());
    }
    if report.divergent > 0 {
        std::process::exit(1);
    }
    Ok(())
}
