//! The ceiling of an HTTP service on this machine: the body of a file, served from
//! memory for every GET on the same per-core workers as query-service
//! (`service_kit::server`), with no layers, no authentication and no recording.
//! `query-service/bench/bills.sh` runs it beside the real query path so that a run shows
//! how much of the gap to raw Redis GETs is HTTP itself on the machine at hand.

use std::net::SocketAddr;

use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use clap::Parser;
use service_kit::hardening::{add_security_headers, CORS_VARY};
use service_kit::http::CORRELATION_HEADER;
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
    /// Send the headers a bill answer carries (ETag, caching, security, `Vary`, a
    /// correlation id), same names and lengths, to tell their cost from the code's.
    #[arg(long)]
    bill_headers: bool,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let body = bytes::Bytes::from(std::fs::read(&args.body)?);
    let workers = args
        .workers
        .unwrap_or_else(service_kit::server::Server::workers_per_cpu);
    // A router (and a copy of the body) per worker, as query-service builds its own.
    let bill_headers = args.bill_headers;
    let router = move || {
        let body = bytes::Bytes::copy_from_slice(&body);
        Router::new().fallback(get(move || {
            let body = body.clone();
            async move {
                let response = ([(header::CONTENT_TYPE, "application/json")], body).into_response();
                if bill_headers {
                    with_bill_headers(response)
                } else {
                    response
                }
            }
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

/// Adds what query-service's bill answer carries besides the type, the length and the
/// date: its own headers, CORS' `Vary`, the correlation id and the security headers, set
/// by the same function the services use.
fn with_bill_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::ETAG,
        HeaderValue::from_static("\"a1b2c3d4e5f60718\""),
    );
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-cache"),
    );
    headers.insert(header::VARY, HeaderValue::from_static(CORS_VARY));
    headers.insert(
        CORRELATION_HEADER,
        HeaderValue::from_static("0b9e5a4c-3f1d-4e2a-9c8b-7d6e5f4a3b2c"),
    );
    add_security_headers(response)
}
