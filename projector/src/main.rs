use clap::Parser;
use projector::configuration::{Cli, Command};
use projector::startup::{self, Application};
use service_kit::telemetry;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _telemetry = telemetry::init("projector", "info,sqlx::postgres::notice=warn");
    let cli = Cli::try_parse().unwrap_or_else(|e| {
        if let Some(name) = projector::configuration::moved_to_analyst(&e) {
            eprintln!("`projector {name}` is now `phonebill-analyst {name}` (the analyst tools)");
            std::process::exit(2);
        }
        e.exit()
    });
    let config = cli.config;
    match cli.command.unwrap_or(Command::Run) {
        Command::PrintOpenapi => service_kit::http::print_openapi(&projector::openapi::document()),
        Command::Run => {
            let app = Application::build(config).await?;
            let shutdown = service_kit::server::shutdown_on_signal();
            app.run_until_stopped(shutdown).await
        }
        Command::Migrate => startup::migrate(&config).await,
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
            let processor = startup::processor(&config, pool).await?.vouched_for();
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
    }
}
