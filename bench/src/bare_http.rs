//! The ceiling of an HTTP service on this machine: the body of a file, served from
//! memory for every GET on the same per-core workers as query-service
//! (`service_kit::server`), with no layers, no authentication and no recording.
//! `query-service/bench/bills.sh` runs it beside the real query path so that a run shows
//! how much of the gap to raw Redis GETs is HTTP itself on the machine at hand.

use std::net::SocketAddr;

use axum::http::{header, HeaderName, HeaderValue};
use axum::response::IntoResponse;
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
                let mut response =
                    ([(header::CONTENT_TYPE, "application/json")], body).into_response();
                if bill_headers {
                    response.headers_mut().extend(BILL_HEADERS.iter().cloned());
                }
                response
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

/// What query-service's bill answer carries besides the type, the length and the date.
const BILL_HEADERS: [(HeaderName, HeaderValue); 9] = [
    (
        header::ETAG,
        HeaderValue::from_static("\"a1b2c3d4e5f60718\""),
    ),
    (
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-cache"),
    ),
    (
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    ),
    (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
    (
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    ),
    (
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'"),
    ),
    (
        header::STRICT_TRANSPORT_SECURITY,
        HeaderValue::from_static("max-age=31536000; includeSubDomains"),
    ),
    (header::VARY, HeaderValue::from_static("origin")),
    (
        HeaderName::from_static("x-correlation-id"),
        HeaderValue::from_static("0b9e5a4c-3f1d-4e2a-9c8b-7d6e5f4a3b2c"),
    ),
];
