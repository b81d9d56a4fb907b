use query_service::configuration::{Cli, Command};
use query_service::startup::Application;
use service_kit::telemetry;

// glibc's malloc was an eighth of the bill query path's CPU (arena locks, consolidation);
// mimalloc's thread-local free lists take most of that away.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = <Cli as clap::Parser>::parse();
    if cli.command == Some(Command::PrintOpenapi) {
        return service_kit::http::print_openapi(&query_service::routes::openapi::document());
    }
    let _telemetry = telemetry::init("query-service", "info,sqlx::postgres::notice=warn");
    let config = cli.config;
    let app = Application::build(config).await?;
    let shutdown = service_kit::server::shutdown_on_signal();
    app.run_until_stopped(shutdown).await
}
