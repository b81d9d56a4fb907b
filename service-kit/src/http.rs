//! HTTP pieces every service shares: the `observe` layer and problem documents.

use std::collections::{HashMap, HashSet};
use std::panic::AssertUnwindSafe;
use std::sync::{Mutex, OnceLock, RwLock};
use std::time::{Duration, Instant};

use axum::extract::{FromRequestParts, MatchedPath, Request};
use axum::http::request::Parts;
use axum::http::{HeaderName, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::future::Either;
use futures::FutureExt;
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use uuid::Uuid;

use crate::problem::{Problem, ProblemCode};
use crate::sharded;

pub const CORRELATION_HEADER: HeaderName = HeaderName::from_static("x-correlation-id");

/// The request's correlation id, set by [`observe`] (taken from `X-Correlation-Id` or
/// made up). It travels on into the events the request causes.
#[derive(Debug, Clone, Copy)]
pub struct CorrelationId(pub Uuid);

impl<S: Send + Sync> FromRequestParts<S> for CorrelationId {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(parts
            .extensions
            .get::<CorrelationId>()
            .copied()
            .unwrap_or(CorrelationId(Uuid::new_v4())))
    }
}

/// Gives every request a correlation id, a span carrying it, a deadline (past it the
/// client gets 503 `TIMEOUT`), a 500 `INTERNAL` problem if its handler panics, and its
/// place in `http_server_requests_total`, `http_server_request_duration_seconds` and
/// `http_server_active_requests`.
/// Use as `router.layer(ObserveLayer::new(timeout))`.
///
/// A hand-written layer rather than `middleware::from_fn`: on the bill query path the
/// `from_fn` version (a boxed `Next`, a clone of the inner service per request) cost
/// about a tenth of query-service's throughput.
#[derive(Debug, Clone, Copy)]
pub struct ObserveLayer {
    timeout: Duration,
}

impl ObserveLayer {
    pub fn new(timeout: Duration) -> Self {
        Self { timeout }
    }
}

impl<S> tower::Layer<S> for ObserveLayer {
    type Service = Observe<S>;

    fn layer(&self, inner: S) -> Observe<S> {
        Observe {
            inner,
            timeout: self.timeout,
        }
    }
}

/// The service [`ObserveLayer`] wraps around a router.
#[derive(Debug, Clone)]
pub struct Observe<S> {
    inner: S,
    timeout: Duration,
}

impl<S> tower::Service<Request> for Observe<S>
where
    S: tower::Service<Request, Response = Response, Error = std::convert::Infallible>,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = std::convert::Infallible;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Response, std::convert::Infallible>> + Send>,
    >;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request) -> Self::Future {
        let active = ActiveRequest::start();
        let correlation_id = request
            .headers()
            .get(&CORRELATION_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| Uuid::parse_str(v).ok())
            .unwrap_or_else(Uuid::new_v4);
        request
            .extensions_mut()
            .insert(CorrelationId(correlation_id));
        let route = request
            .extensions()
            .get::<MatchedPath>()
            .map(|p| p.as_str())
            .unwrap_or("unmatched");
        let route = intern(route);
        let method = request.method().clone();
        // The sampling is decided first: a request left out of traces gets a span the
        // trace layer never sees (logs only), and only a traced one pays for the
        // OpenTelemetry span, its attributes formatted from these fields. The status is
        // in the request metrics and the log line, not on the span.
        let header = |name: &str| request.headers().get(name).and_then(|v| v.to_str().ok());
        let kind = if matches!(method, Method::GET | Method::HEAD | Method::OPTIONS) {
            crate::traces::RequestKind::Read
        } else {
            crate::traces::RequestKind::Write
        };
        let head = crate::traces::head(
            kind,
            header(crate::traces::TRACEPARENT),
            header(crate::traces::TRACESTATE),
        );
        let (span, unsampled) = match head {
            crate::traces::Head::Sampled(parent) => {
                let span = tracing::info_span!("http", %route, %correlation_id,
                    otel.name = %format_args!("{method} {route}"), otel.kind = "server");
                if let Some(parent) = parent {
                    let _ = span.set_parent(parent);
                }
                (span, None)
            }
            crate::traces::Head::Unsampled(context) => {
                (untraced_span(route, correlation_id), Some(context))
            }
            crate::traces::Head::Off => (untraced_span(route, correlation_id), None),
        };
        let started = Instant::now();
        // Called here, after our own poll_ready: the inner service is ready now.
        let response = self.inner.call(request).instrument(span.clone());
        let response = match unsampled {
            Some(context) => Either::Left(crate::traces::unsampled(context, response)),
            None => Either::Right(response),
        };
        let timeout = self.timeout;
        Box::pin(async move {
            let _active = active;
            let outcome = tokio::time::timeout(timeout, AssertUnwindSafe(response).catch_unwind());
            let mut response = match outcome.await {
                Ok(Ok(Ok(response))) => response,
                Ok(Ok(Err(never))) => match never {},
                Ok(Err(_)) => {
                    // The panic's message is already in the log (the panic hook).
                    tracing::error!(%route, "handler panicked");
                    Problem::new(ProblemCode::Internal, "something went wrong on our side")
                        .into_response()
                }
                Err(_) => {
                    Problem::new(ProblemCode::Timeout, "the request took too long").into_response()
                }
            };
            let status = response.status();
            let elapsed = started.elapsed();
            let (requests, duration) = request_metrics(route, &method, status);
            requests.increment(1);
            duration.record(elapsed.as_secs_f64());
            span.in_scope(
                || tracing::debug!(%status, elapsed_ms = elapsed.as_millis() as u64, "request"),
            );
            let mut id = Uuid::encode_buffer();
            let id = correlation_id.hyphenated().encode_lower(&mut id);
            if let Ok(value) = HeaderValue::from_str(id) {
                response.headers_mut().insert(CORRELATION_HEADER, value);
            }
            Ok(response)
        })
    }
}

/// A request's span for the logs alone (traces off, or the request not sampled).
fn untraced_span(route: &'static str, correlation_id: Uuid) -> tracing::Span {
    tracing::info_span!(target: crate::traces::UNTRACED, "http", %route, %correlation_id)
}

/// Counts a request in `http_server_active_requests` (the query-service HPA scales on
/// it) for as long as it lives: also when the client goes away and the future is dropped.
struct ActiveRequest(&'static sharded::Gauge);

impl ActiveRequest {
    fn start() -> Self {
        static GAUGE: OnceLock<&'static sharded::Gauge> = OnceLock::new();
        let gauge = GAUGE.get_or_init(|| {
            sharded::Gauge::register(metrics::gauge!("http_server_active_requests"))
        });
        gauge.increment();
        Self(gauge)
    }
}

impl Drop for ActiveRequest {
    fn drop(&mut self) {
        self.0.decrement();
    }
}

/// The metrics of one (route, method, status) series.
type RequestMetrics = (&'static sharded::Counter, &'static sharded::Histogram);
type SeriesKey = (&'static str, &'static str, u16);

/// The metrics of one (route, method, status) series, made once per process and then
/// found in a map of the thread's own: looking a labelled series up in the recorder
/// allocates its labels and hashes them, which on the bill query path cost more than the
/// rest of this layer.
fn request_metrics(route: &'static str, method: &Method, status: StatusCode) -> RequestMetrics {
    // foldhash, not SipHash: both maps are looked up on every request.
    type Series = HashMap<SeriesKey, RequestMetrics, foldhash::fast::RandomState>;
    thread_local! {
        static SERIES: std::cell::RefCell<Series> = Default::default();
    }
    // Any other method is one series: a client must not be able to grow the registry.
    let method = match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    };
    let key = (route, method, status.as_u16());
    if let Some(found) = SERIES.with_borrow(|series| series.get(&key).copied()) {
        return found;
    }
    let found = request_metrics_shared(key);
    SERIES.with_borrow_mut(|series| series.insert(key, found));
    found
}

fn request_metrics_shared(key: SeriesKey) -> RequestMetrics {
    static ALL: OnceLock<Mutex<HashMap<SeriesKey, RequestMetrics>>> = OnceLock::new();
    let mut all = ALL
        .get_or_init(Default::default)
        .lock()
        .expect("not poisoned");
    *all.entry(key).or_insert_with(|| {
        let (route, method, status) = key;
        let labels = [
            ("route", route.to_owned()),
            ("method", method.to_owned()),
            ("status", status.to_string()),
        ];
        (
            sharded::Counter::register(metrics::counter!("http_server_requests_total", &labels)),
            sharded::Histogram::register(metrics::histogram!(
                "http_server_request_duration_seconds",
                &labels
            )),
        )
    })
}

/// Route templates live as long as the router; keeping one `'static` copy of each lets
/// the metric series be keyed without allocating per request. Bounded by the number of
/// routes (plus `unmatched`).
fn intern(route: &str) -> &'static str {
    thread_local! {
        static SEEN: std::cell::RefCell<HashSet<&'static str, foldhash::fast::RandomState>> =
            Default::default();
    }
    if let Some(found) = SEEN.with_borrow(|seen| seen.get(route).copied()) {
        return found;
    }
    let found = intern_shared(route);
    SEEN.with_borrow_mut(|seen| seen.insert(found));
    found
}

fn intern_shared(route: &str) -> &'static str {
    static ROUTES: OnceLock<RwLock<HashSet<&'static str>>> = OnceLock::new();
    let routes = ROUTES.get_or_init(Default::default);
    if let Some(found) = routes.read().expect("routes lock").get(route) {
        return found;
    }
    let mut routes = routes.write().expect("routes lock");
    if let Some(found) = routes.get(route) {
        return found;
    }
    let leaked: &'static str = Box::leak(route.to_owned().into_boxed_str());
    routes.insert(leaked);
    leaked
}

/// `GET /api-docs/openapi.json`: a service's OpenAPI document (the route needs no state).
pub fn openapi_route<S: Clone + Send + Sync + 'static>(
    document: fn() -> utoipa::openapi::OpenApi,
) -> axum::Router<S> {
    axum::Router::new().route(
        "/api-docs/openapi.json",
        axum::routing::get(move || async move { axum::Json(document()) }),
    )
}

/// Writes a service's OpenAPI document to stdout (its `print-openapi` subcommand).
/// Written, not `println!`: a closed pipe (`| head`) is an error, not a panic.
pub fn print_openapi(document: &utoipa::openapi::OpenApi) -> anyhow::Result<()> {
    use std::io::Write;
    writeln!(std::io::stdout().lock(), "{}", document.to_pretty_json()?)?;
    Ok(())
}

/// `axum::Json`, but only a JSON object, and every rejection a problem: 400
/// `MALFORMED_JSON` (not JSON) or `INVALID_FIELDS` (not the expected object), 413
/// `PAYLOAD_TOO_LARGE`, 415 `UNSUPPORTED_MEDIA_TYPE`.
///
/// Only an object is accepted: serde would otherwise fill a struct from an array, field
/// by field in order, so `["secret", null]` would pass as `{password, role}` (found by
/// command-service's fuzz test).
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> axum::extract::FromRequest<S> for ApiJson<T> {
    type Rejection = Problem;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, Problem> {
        use axum::extract::rejection::JsonRejection;
        let value = match axum::Json::<serde_json::Value>::from_request(req, state).await {
            Ok(axum::Json(value)) => value,
            Err(rejection) => {
                return Err(match rejection.status() {
                    StatusCode::PAYLOAD_TOO_LARGE => Problem::new(
                        ProblemCode::PayloadTooLarge,
                        "the request body is larger than this endpoint accepts",
                    ),
                    StatusCode::UNSUPPORTED_MEDIA_TYPE => Problem::new(
                        ProblemCode::UnsupportedMediaType,
                        "send the body as application/json",
                    ),
                    _ => match rejection {
                        JsonRejection::JsonDataError(e) => {
                            Problem::new(ProblemCode::InvalidFields, e.body_text())
                        }
                        other => Problem::new(ProblemCode::MalformedJson, other.body_text()),
                    },
                })
            }
        };
        if !value.is_object() {
            return Err(Problem::new(
                ProblemCode::InvalidFields,
                "the body must be a JSON object",
            ));
        }
        serde_json::from_value(value).map(ApiJson).map_err(|e| {
            Problem::new(
                ProblemCode::InvalidFields,
                format!("Failed to deserialize the JSON body into the target type: {e}"),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::routing::get;
    use axum::Router;
    use tower::ServiceExt;

    #[tokio::test]
    async fn a_handler_that_panics_gets_a_500_problem_and_the_next_request_is_served() {
        // Given: a route that panics, under observe
        let app = Router::new()
            .route(
                "/boom",
                get(|| async {
                    if true {
                        panic!("on purpose");
                    }
                    "unreachable"
                }),
            )
            .route("/fine", get(|| async { "fine" }))
            .layer(ObserveLayer::new(Duration::from_secs(5)));
        let request = |path: &str| Request::get(path).body(Body::empty()).unwrap();

        // When it is called
        let response = app.clone().oneshot(request("/boom")).await.unwrap();

        // Then: 500 with the problem document, and the correlation id as on every answer
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert!(response.headers().contains_key(&CORRELATION_HEADER));
        let body = axum::body::to_bytes(response.into_body(), 4096)
            .await
            .unwrap();
        let problem: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(problem["code"], "INTERNAL");
        assert_eq!(problem["status"], 500);
        let response = app.oneshot(request("/fine")).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }
}
