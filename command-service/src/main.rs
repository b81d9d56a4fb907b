use clap::Parser;
use std::sync::Arc;

use command_service::auth::{Credentials, Passwords};
use command_service::configuration::{Cli, Command, Config, Environment};
use command_service::db;
use command_service::reference::ReferenceData;
use command_service::startup::Application;
use service_kit::auth::{Role, SystemClock, Tokens};
use service_kit::database::login::SchemaRights;
use service_kit::telemetry;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Some(Command::PrintOpenapi) = cli.command {
        return service_kit::http::print_openapi(&command_service::routes::openapi::document());
    }
    let _telemetry = telemetry::init("command-service", "info,sqlx::postgres::notice=warn");
    let config = cli.config;
    match cli.command.unwrap_or(Command::Serve) {
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
                .prepare_login(
                    config.environment == Environment::Production,
                    SchemaRights::Own,
                )
                .await?;
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
        Command::SetPassword {
            customer_id,
            password,
            role,
        } => {
            let role =
                match role.as_deref() {
                    None => None,
                    Some(r) => Some(Role::parse(r).ok_or_else(|| {
                        anyhow::anyhow!("--role must be customer, analyst or admin")
                    })?),
                };
            credentials(&config)
                .await?
                .set_password(&customer_id, &password, role)
                .await?;
            tracing::info!(account = %customer_id, "password set");
            Ok(())
        }
        Command::PrintOpenapi => unreachable!("answered above"),
        Command::SeedDemoPasswords { customers } => {
            let seeded = credentials(&config)
                .await?
                .seed_demo_passwords(customers)
                .await?;
            tracing::info!(seeded, "demo passwords set (demo only: demo-<account id>)");
            Ok(())
        }
    }
}

async fn credentials(config: &Config) -> anyhow::Result<Credentials> {
    config.check()?;
    let pool = db::connect(&config.database).await?;
    db::migrate(&pool).await?;
    let keys = config
        .jwt
        .signing_keys(config.environment == Environment::Production)
        .map_err(anyhow::Error::msg)?;
    let tokens = Tokens::new(&config.jwt, keys, Arc::new(SystemClock));
    Ok(Credentials::new(
        pool,
        Passwords::new(&config.auth)?,
        tokens,
        &config.auth,
    ))
}
