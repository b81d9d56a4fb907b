//! HTTP served by one single-threaded runtime per worker, each accepting on its own
//! `SO_REUSEPORT` socket bound to the same address; the kernel spreads new connections
//! over the sockets.
//!
//! Why: on the 2-core reference machine, tokio's work-stealing runtime spent much of a
//! small request's cost waking and stealing between its workers. Measured with a bare
//! axum route answering from memory, wrk at 1,000 connections: 96k req/s on the
//! multi-threaded runtime, 141k req/s with one current-thread runtime per core (64
//! connections: 144k and 151k). A connection never moves between workers, so a worker
//! that is busy is not helped by an idle one; with many short requests over many
//! connections, as a query service gets, that costs less than the stealing did.
//!
//! The application's other tasks (subscriptions, pools' drivers) stay on the runtime that
//! calls [`Server::serve`]; handlers reach them through channels as before.
//!
//! Each worker also builds its own router (and so its own copies of the reference-counted
//! state in it): tower clones a route's service stack for every request, and with one
//! router shared by the workers each of those clones counted on memory both cores wrote.

use std::net::{SocketAddr, TcpListener};

use std::convert::Infallible;

use axum::extract::Request;
use axum::response::Response;
use axum::ServiceExt;
use socket2::{Domain, Protocol, Socket, Type};
use tokio_util::sync::CancellationToken;
use tower::Service;

/// Sockets bound to one address, one per worker.
pub struct Server {
    listeners: Vec<TcpListener>,
}

/// Pending connections a socket queues before accepting (capped by `somaxconn`): a load
/// generator opening 1,000 connections at once must not see refusals.
const BACKLOG: i32 = 4096;

impl Server {
    /// Binds `workers` sockets (at least one) to `addr`. Port 0 picks a free port for
    /// the first; the others take the same.
    pub fn bind(addr: SocketAddr, workers: usize) -> std::io::Result<Self> {
        let first = reuse_port_listener(addr)?;
        let addr = first.local_addr()?;
        let mut listeners = vec![first];
        for _ in 1..workers.max(1) {
            listeners.push(reuse_port_listener(addr)?);
        }
        Ok(Self { listeners })
    }

    /// The default worker count: one per CPU the process may use.
    pub fn workers_per_cpu() -> usize {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listeners[0]
            .local_addr()
            .expect("a bound socket has an address")
    }

    pub fn workers(&self) -> usize {
        self.listeners.len()
    }

    /// Serves a router (or a service around one) from `make_router` on each worker until `shutdown`, then lets
    /// requests in flight finish. Returns once every worker has stopped; a worker that
    /// fails stops the others.
    pub async fn serve<F, S>(
        self,
        make_router: F,
        shutdown: CancellationToken,
    ) -> anyhow::Result<()>
    where
        F: Fn() -> S + Send + Sync + 'static,
        S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
        S::Future: Send,
    {
        let make_router = std::sync::Arc::new(make_router);
        let mut done = Vec::with_capacity(self.listeners.len());
        for (i, listener) in self.listeners.into_iter().enumerate() {
            let (tx, rx) = tokio::sync::oneshot::channel();
            let make_router = make_router.clone();
            let shutdown = shutdown.clone();
            std::thread::Builder::new()
                .name(format!("http-{i}"))
                .spawn(move || {
                    // Built here, so its allocations are this worker's too.
                    let result = serve_one(listener, make_router(), shutdown.clone());
                    if result.is_err() {
                        shutdown.cancel();
                    }
                    let _ = tx.send(result);
                })?;
            done.push(rx);
        }
        let mut first_error = None;
        for rx in done {
            let result = rx
                .await
                .unwrap_or_else(|_| Err(anyhow::anyhow!("an HTTP worker panicked")));
            if let (Err(e), None) = (result, &first_error) {
                first_error = Some(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

fn serve_one<S>(
    listener: TcpListener,
    service: S,
    shutdown: CancellationToken,
) -> anyhow::Result<()>
where
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send,
{
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::from_std(listener)?;
        let app = service.into_make_service_with_connect_info::<SocketAddr>();
        axum::serve(listener, app)
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await?;
        Ok(())
    })
}

/// One listening socket with the same backlog as [`Server`]'s, for a service that serves
/// on tokio's single acceptor. `tokio::net::TcpListener::bind` queues 128 pending
/// connections (the standard library's value): 500 logins at once overflowed it, and
/// the kernel answered a few of them with SYN cookies that then failed (connection reset).
pub fn listen(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::from_std(listening_socket(addr, false)?)
}

/// Serves `router` on `listener` (with the peer's address for the rate limits) until
/// `shutdown` fires; requests in flight then finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: crate::hardening::Hardened<axum::Router>,
    shutdown: tokio_util::sync::CancellationToken,
) -> std::io::Result<()> {
    let service = axum::ServiceExt::<axum::extract::Request>::into_make_service_with_connect_info::<
        SocketAddr,
    >(router);
    axum::serve(listener, service)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
}

fn reuse_port_listener(addr: SocketAddr) -> std::io::Result<TcpListener> {
    listening_socket(addr, true)
}

/// A bound, non-blocking socket listening with [`BACKLOG`]; with `reuse_port`, one of
/// several sharing the port (one per worker, the kernel spreading connections).
fn listening_socket(addr: SocketAddr, reuse_port: bool) -> std::io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    if reuse_port {
        socket.set_reuse_port(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    Ok(socket.into())
}

/// A token cancelled on SIGTERM (Kubernetes stopping the pod) or Ctrl-C: what every
/// service's `run_until_stopped` is given, so each drains the same way.
pub fn shutdown_on_signal() -> tokio_util::sync::CancellationToken {
    let shutdown = tokio_util::sync::CancellationToken::new();
    tokio::spawn(stop_on_signal(shutdown.clone()));
    shutdown
}

/// Cancels `shutdown` on SIGTERM (Kubernetes stopping the pod) or Ctrl-C, so every
/// service drains the same way: stop accepting, finish what is in hand, commit offsets.
async fn stop_on_signal(shutdown: tokio_util::sync::CancellationToken) {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler installs");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutting down");
    shutdown.cancel();
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Router;

    #[test]
    fn workers_share_one_port_and_port_zero_picks_one_for_all() {
        let server = Server::bind("127.0.0.1:0".parse().unwrap(), 3).unwrap();
        let port = server.local_addr().port();
        assert_ne!(port, 0);
        assert_eq!(server.workers(), 3);
        for l in &server.listeners {
            assert_eq!(l.local_addr().unwrap().port(), port);
        }
    }

    #[tokio::test]
    async fn every_worker_answers_and_all_stop_on_shutdown() {
        let server = Server::bind("127.0.0.1:0".parse().unwrap(), 2).unwrap();
        let addr = server.local_addr();
        let router = Router::new().route("/", axum::routing::get(|| async { "up" }));
        let shutdown = CancellationToken::new();
        let serving = tokio::spawn(server.serve(move || router.clone(), shutdown.clone()));
        // Many fresh connections: the kernel spreads them over both sockets, and each
        // must be answered whichever worker took it.
        for _ in 0..20 {
            let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            stream
                .write_all(b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
                .await
                .unwrap();
            let mut answer = String::new();
            stream.read_to_string(&mut answer).await.unwrap();
            assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
            assert!(answer.ends_with("up"), "{answer}");
        }
        shutdown.cancel();
        serving.await.unwrap().unwrap();
        assert!(tokio::net::TcpStream::connect(addr).await.is_err());
    }
}
