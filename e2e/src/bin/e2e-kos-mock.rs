//! kos-mock's binary, built as a target of e2e so that `tests/kos_loop.rs` can run it as a
//! process of its own (`CARGO_BIN_EXE_e2e-kos-mock`; a test sees only its own package's
//! binaries): the same `kos_mock::cli::run` as kos-mock's `main`.

use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    kos_mock::cli::run(kos_mock::configuration::Cli::parse()).await
}
