//! The ceiling of an HTTP service on this machine: the body of a file, served from
//! memory for every GET on the same per-core workers as query-service
//! (`service_kit::server`), with no layers, no authentication and no recording.
//! `query-service/bench/bills.sh` runs it beside the real query path so that a run shows
//! how much of the gap to raw Redis GETs is HTTP itself on the machine at hand.

use std::net::SocketAddr;

use axum::http::header;
use axum::routing::get;
use axum::Router;
use clap::Parser;
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:18090")]
    addr: SocketAddr,
    /// The response body (query-service's bill document, say).
    #[arg(long)]
    body: std::path::PathBuf,
    /// HTTP workers (default: one per CPU).
    #[arg(long)]
    workers: Option<usize>,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let body = bytes::Bytes::from(std::fs::read(&args.body)?);
    let workers = args
        .workers
        .unwrap_or_else(service_kit::server::Server::workers_per_cpu);
    // A router (and a copy of the body) per worker, as query-service builds its own.
    let router = move || {
        let body = bytes::Bytes::copy_from_slice(&body);
        Router::new().fallback(get(move || {
            let body = body.clone();
            async move { ([(header::CONTENT_TYPE, "application/json")], body) }
        }))
    };
    let server = service_kit::server::Server::bind(args.addr, workers)?;
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        stop.cancel();
    });
    server.serve(router, shutdown).await
}
