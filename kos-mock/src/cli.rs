//! The `kos-mock` command: what each subcommand does. In the library so that the
//! end-to-end tests' copy of the binary (`e2e-kos-mock`, a test sees only its own
//! package's binaries) runs exactly this.

use crate::configuration::{Cli, Command};
use crate::startup::Application;
use crate::{db, demo};
use service_kit::database::login::SchemaRights;

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let command = cli.command.unwrap_or(Command::Serve);
    if let Command::PrintOpenapi = command {
        return service_kit::http::print_openapi(&crate::routes::openapi::document());
    }
    let _telemetry = service_kit::telemetry::init("kos-mock", "info,sqlx::postgres::notice=warn");
    let config = cli.config;
    match command {
        Command::Serve => {
            let app = Application::build(config).await?;
            let shutdown = service_kit::server::shutdown_on_signal();
            app.run_until_stopped(shutdown).await
        }
        Command::Migrate => {
            // The migration step: as this service's own login, made first when the step
            // is given the administrator's URL.
            config
                .database
                .prepare_login(config.is_production(), SchemaRights::Own)
                .await?;
            db::migrate(&db::connect(&config.database).await?).await?;
            Ok(())
        }
        Command::SeedDemo => {
            config.check()?;
            let pool = db::connect(&config.database).await?;
            db::migrate(&pool).await?;
            let report = demo::seed_now(&pool, config.demo_customers).await?;
            println!("{}", serde_json::to_string(&report)?);
            Ok(())
        }
        Command::PrintOpenapi => unreachable!("answered above"),
    }
}
