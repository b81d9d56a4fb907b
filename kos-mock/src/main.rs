use clap::Parser;
use kos_mock::configuration::{Cli, Command};
use kos_mock::startup::Application;
use kos_mock::{db, demo};
use service_kit::telemetry;
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Some(Command::PrintOpenapi) = cli.command {
        return service_kit::http::print_openapi(&kos_mock::routes::openapi::document());
    }
    telemetry::init_logging("info,sqlx::postgres::notice=warn");
    let config = cli.config;
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => {
            let app = Application::build(config).await?;
            let shutdown = CancellationToken::new();
            tokio::spawn(service_kit::server::stop_on_signal(shutdown.clone()));
            app.run_until_stopped(shutdown).await
        }
        Command::Migrate => {
            config.check()?;
            db::migrate(&db::connect(&config.database).await?).await?;
            Ok(())
        }
        Command::PrintOpenapi => unreachable!("answered before logging starts"),
        Command::SeedDemo => {
            config.check()?;
            let pool = db::connect(&config.database).await?;
            db::migrate(&pool).await?;
            let report = demo::seed_now(&pool, config.demo_customers).await?;
            println!("{}", serde_json::to_string(&report)?);
            Ok(())
        }
    }
}
