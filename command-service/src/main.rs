use clap::Parser;
use command_service::configuration::{Cli, Command};
use command_service::db;
use command_service::reference::ReferenceData;
use command_service::startup::Application;
use service_kit::telemetry;
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    telemetry::init_logging("info,sqlx::postgres::notice=warn");
    let cli = Cli::parse();
    let config = cli.config;
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => {
            let app = Application::build(config).await?;
            let shutdown = CancellationToken::new();
            tokio::spawn(stop_on_signal(shutdown.clone()));
            app.run_until_stopped(shutdown).await
        }
        Command::Migrate => {
            config.check()?;
            db::migrate(&db::connect(&config.database).await?).await?;
            Ok(())
        }
        Command::LoadFacts { file } => {
            config.check()?;
            let pool = db::connect(&config.database).await?;
            db::migrate(&pool).await?;
            let applied = ReferenceData::new(pool).load_file(&file).await?;
            tracing::info!(applied, file = %file.display(), "KOS facts loaded");
            Ok(())
        }
    }
}

async fn stop_on_signal(shutdown: CancellationToken) {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler installs");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutting down");
    shutdown.cancel();
}
