use clap::Parser;
use projector::configuration::{Cli, Command};
use projector::startup::{self, Application};
use service_kit::telemetry;
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    telemetry::init_logging("info,sqlx::postgres::notice=warn");
    let cli = Cli::parse();
    let config = cli.config;
    match cli.command.unwrap_or(Command::Run) {
        Command::Run => {
            let app = Application::build(config).await?;
            let shutdown = CancellationToken::new();
            tokio::spawn(service_kit::server::stop_on_signal(shutdown.clone()));
            app.run_until_stopped(shutdown).await
        }
        Command::Migrate => {
            startup::prepare_database(&config).await?;
            Ok(())
        }
        Command::RetryParked => {
            let pool = startup::prepare_database(&config).await?;
            let report = startup::processor(&config, pool)
                .await?
                .retry_parked()
                .await?;
            println!("{}", serde_json::to_string(&report)?);
            Ok(())
        }
        Command::ApplyFacts { file } => {
            let pool = startup::prepare_database(&config).await?;
            let processor = startup::processor(&config, pool).await?;
            let topic = events::topics::Topics::new(&config.kafka.topic_prefix).kos_billing();
            let text = std::fs::read_to_string(&file)?;
            for (n, line) in text.lines().filter(|l| !l.trim().is_empty()).enumerate() {
                let msg = projector::processor::Incoming {
                    topic: topic.clone(),
                    partition: 0,
                    offset: n as i64,
                    key: None,
                    payload: line.as_bytes().to_vec(),
                    headers: vec![],
                };
                let outcome = processor.handle(&msg).await?;
                tracing::info!(line = n + 1, ?outcome, "fact");
            }
            Ok(())
        }
        Command::Replay(args) => {
            let options = projector::replay::ReplayOptions {
                id: args.id,
                since: args.since,
                until: args.until,
                switch: args.switch,
                drop_old: args.drop_old,
                drop_grace: std::time::Duration::from_secs(args.drop_grace_secs),
                flush_every: args.flush_every,
                progress: !args.quiet,
                source: args.source,
                max_events: args.max_events,
            };
            let report = projector::replay::run(&config, options).await?;
            println!("{}", serde_json::to_string(&report)?);
            Ok(())
        }
        Command::Namespaces => {
            let (control, _, _) = startup::active_config(&config).await?;
            for row in control.list().await? {
                println!("{row}");
            }
            Ok(())
        }
        Command::Switch { id } => {
            let (control, _, _) = startup::active_config(&config).await?;
            let previous = control.switch(&id).await?;
            println!(
                "{}",
                serde_json::json!({"switchedFrom": previous.id, "active": id})
            );
            Ok(())
        }
        Command::DropNamespace { id } => {
            let (control, _, _) = startup::active_config(&config).await?;
            let redis = read_model::redis_conn::RedisConn::connect(&config.redis).await?;
            control.drop_namespace(&id, &redis).await?;
            println!("{}", serde_json::json!({"dropped": id}));
            Ok(())
        }
        Command::Compare { id } => {
            let (control, active, _) = startup::active_config(&config).await?;
            let other = control
                .get(&id)
                .await?
                .ok_or_else(|| anyhow::anyhow!("no namespace `{id}`"))?
                .ns;
            let redis = read_model::redis_conn::RedisConn::connect(&config.redis).await?;
            let comparison =
                projector::namespace::compare(&control.pool, &redis, &active, &other).await?;
            println!(
                "{}",
                serde_json::json!({"active": active.id, "other": id, "comparison": comparison})
            );
            if comparison.differing > 0 {
                std::process::exit(1);
            }
            Ok(())
        }
        Command::AsOf(args) => {
            let (state, stats) =
                projector::time_travel::as_of(&config, &args.line, args.at).await?;
            eprintln!("{}", serde_json::to_string(&stats)?);
            println!("{}", serde_json::to_string_pretty(&state)?);
            Ok(())
        }
        Command::Export(args) => {
            let options = projector::export::ExportOptions {
                topic: args.topic,
                since: args.since,
                until: args.until,
                event_types: args.event_types,
                line: args.line,
                format: args.format,
                out: args.out,
            };
            let report = projector::export::run(&config, options).await?;
            println!("{}", serde_json::to_string(&report)?);
            Ok(())
        }
    }
}
