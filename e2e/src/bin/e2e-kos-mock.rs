//! kos-mock's binary, built as a target of e2e so that `tests/kos_loop.rs` can run it as a
//! process of its own (`CARGO_BIN_EXE_e2e-kos-mock`; a test sees only its own package's
//! binaries). The same commands as kos-mock's `main`: `serve` (the default) and
//! `seed-demo` (`migrate` as well).

use clap::Parser;
use kos_mock::configuration::{Cli, Command};
use kos_mock::startup::Application;
use kos_mock::{db, demo};
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    service_kit::telemetry::init_logging("info,sqlx::postgres::notice=warn");
    let Cli { config, command } = Cli::parse();
    let command = command.unwrap_or(Command::Serve);
    match command {
        Command::Serve => {
            let shutdown = CancellationToken::new();
            tokio::spawn(service_kit::server::stop_on_signal(shutdown.clone()));
            Application::build(config)
                .await?
                .run_until_stopped(shutdown)
                .await
        }
        Command::Migrate | Command::SeedDemo => {
            config.check()?;
            let pool = db::connect(&config.database).await?;
            db::migrate(&pool).await?;
            if let Command::SeedDemo = command {
                let report = demo::seed_now(&pool, config.demo_customers).await?;
                println!("{}", serde_json::to_string(&report)?);
            }
            Ok(())
        }
    }
}
