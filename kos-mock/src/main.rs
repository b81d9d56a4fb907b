use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    kos_mock::cli::run(kos_mock::configuration::Cli::parse()).await
}
