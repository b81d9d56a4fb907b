//! The HTTP hardening every public service applies: rate limits per client IP (here, as a
//! middleware) and per customer (in [`crate::auth::Authenticator`]), both on governor's
//! GCRA and answered 429 `RATE_LIMITED` with `Retry-After`; CORS from configuration; and
//! security headers on every answer.

use std::hash::Hash;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use clap::Args;
use governor::clock::Clock as _;
use governor::{Quota, RateLimiter};
use tower::util::MapResponse;
use tower::Layer as _;
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::auth::AuthError;

pub type KeyedLimiter<K> = governor::DefaultKeyedRateLimiter<K>;

/// A limiter allowing `n` requests a minute per key (bursts up to `n`).
pub fn per_minute<K: Hash + Eq + Clone>(n: NonZeroU32) -> Arc<KeyedLimiter<K>> {
    Arc::new(RateLimiter::keyed(Quota::per_minute(n)))
}

#[derive(Debug, Clone, Args)]
pub struct HardeningConfig {
    /// Requests a minute one client IP may make (0: no limit).
    #[arg(
        long = "rate-limit-per-ip-per-minute",
        env = "PHONEBILL_RATE_LIMIT_PER_IP_PER_MINUTE",
        default_value_t = 100
    )]
    pub per_ip_per_minute: u32,

    /// Requests a minute one customer (token subject) may make (0: no limit).
    #[arg(
        long = "rate-limit-per-customer-per-minute",
        env = "PHONEBILL_RATE_LIMIT_PER_CUSTOMER_PER_MINUTE",
        default_value_t = 100
    )]
    pub per_customer_per_minute: u32,

    /// Proxies in front of the service that append to `X-Forwarded-For` (the ingress: 1).
    /// 0 uses the peer address and ignores the header, which a client could forge.
    #[arg(
        long = "trusted-proxy-hops",
        env = "PHONEBILL_TRUSTED_PROXY_HOPS",
        default_value_t = 0
    )]
    pub trusted_proxy_hops: usize,

    /// Origins a browser may call from, comma-separated (`*` for any; empty: none).
    /// Count the per-IP limit in Redis, shared by every replica (one round trip a
    /// request); off, each replica counts alone (N replicas allow N times the limit).
    #[arg(
        long = "rate-limit-shared",
        env = "PHONEBILL_RATE_LIMIT_SHARED",
        default_value_t = false,
        action = clap::ArgAction::Set
    )]
    pub shared: bool,

    #[arg(
        long = "cors-allowed-origins",
        env = "PHONEBILL_CORS_ALLOWED_ORIGINS",
        default_value = ""
    )]
    pub cors_allowed_origins: String,
}

impl HardeningConfig {
    pub fn check(&self) -> Result<(), String> {
        for origin in self.origins() {
            if origin != "*" && HeaderValue::from_str(&origin).is_err() {
                return Err(format!(
                    "PHONEBILL_CORS_ALLOWED_ORIGINS: `{origin}` is not an origin"
                ));
            }
        }
        Ok(())
    }

    fn origins(&self) -> Vec<String> {
        self.cors_allowed_origins
            .split(',')
            .map(|o| o.trim().to_owned())
            .filter(|o| !o.is_empty())
            .collect()
    }

    pub fn per_customer(&self) -> Option<NonZeroU32> {
        NonZeroU32::new(self.per_customer_per_minute)
    }

    /// CORS for the API: bearer tokens, no cookies. Only requests with an `Origin` (the
    /// browser's cross-origin calls and preflights) go through tower-http's CORS; the
    /// rest (same-origin pages behind the Ingress, services, load generators) get only
    /// the `Vary` it would have added: on the bill query path the full CORS handling of
    /// every request cost a few per cent of the throughput.
    pub fn cors(&self) -> CorsIfOrigin {
        let origins = self.origins();
        let allow = if origins.iter().any(|o| o == "*") {
            AllowOrigin::any()
        } else {
            AllowOrigin::list(origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()))
        };
        CorsIfOrigin(
            CorsLayer::new()
                .allow_origin(allow)
                .allow_methods([Method::GET, Method::POST, Method::PUT, Method::OPTIONS])
                .allow_headers([
                    header::AUTHORIZATION,
                    header::CONTENT_TYPE,
                    HeaderName::from_static("idempotency-key"),
                    crate::http::CORRELATION_HEADER,
                ])
                .expose_headers([
                    header::LOCATION,
                    header::RETRY_AFTER,
                    crate::http::CORRELATION_HEADER,
                ])
                .vary([header::ORIGIN]),
        )
    }

    /// The per-IP limit as middleware state (None: no limit), counted by this replica.
    pub fn ip_rate_limit(&self) -> Option<RateLimit> {
        NonZeroU32::new(self.per_ip_per_minute).map(|n| RateLimit {
            limiter: per_minute(n),
            trusted_proxy_hops: self.trusted_proxy_hops,
            seen: Arc::new(AtomicU64::new(0)),
            shared: None,
        })
    }

    /// The per-IP limit, counted in `counts` when `PHONEBILL_RATE_LIMIT_SHARED` is on.
    pub fn ip_rate_limit_with(
        &self,
        counts: impl FnOnce() -> Arc<dyn SharedCounts>,
    ) -> Option<RateLimit> {
        let limit = self.ip_rate_limit()?;
        Some(if self.shared {
            limit.shared_in(counts(), self.per_ip_per_minute)
        } else {
            limit
        })
    }

    /// Puts CORS and the security headers around `service` once. Not `Router::layer`:
    /// that wraps every route, and each request then cloned and boxed each wrapping.
    pub fn around<S: Clone>(&self, service: S) -> Hardened<S> {
        let security_headers: fn(Response) -> Response = add_security_headers;
        MapResponse::new(self.cors().layer(service), security_headers)
    }
}

/// A service (a router) inside the layers that go around it whole: the security headers
/// outermost, then CORS.
pub type Hardened<S> = MapResponse<CorsIfOriginService<S>, fn(Response) -> Response>;

/// The headers every answer carries (an API: nothing to frame, sniff or cache), one
/// response map for all six. A header the handler set (`Cache-Control`) stays.
pub fn add_security_headers(mut response: Response) -> Response {
    // Values made at compile time: `from_static` at run time checks every byte.
    const HEADERS: [(HeaderName, HeaderValue); 6] = [
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
        (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
    ];
    let headers = response.headers_mut();
    for (name, value) in HEADERS {
        if let header::Entry::Vacant(slot) = headers.entry(name) {
            slot.insert(value);
        }
    }
    response
}

/// A keyed limit and where the client's IP comes from.
#[derive(Clone)]
pub struct RateLimit {
    limiter: Arc<KeyedLimiter<IpAddr>>,
    trusted_proxy_hops: usize,
    seen: Arc<AtomicU64>,
    /// Counts every replica shares, and the limit a minute; the local limiter stands in
    /// while they cannot be reached.
    shared: Option<(Arc<dyn SharedCounts>, u32)>,
}

/// Request counts shared by every replica: one counter per key and minute.
#[async_trait::async_trait]
pub trait SharedCounts: Send + Sync {
    /// Counts one request of `key` in the current minute: the count so far and the
    /// seconds left in the minute.
    async fn hit(&self, key: &str) -> redis::RedisResult<(u64, u64)>;
}

/// [`SharedCounts`] in Redis: `{prefix}ratelimit:{key}:{minute}`, expiring after its
/// minute. A fixed window: a client may send up to twice the limit across a minute's
/// edge, which a per-minute limit tolerates.
pub struct RedisCounts<C> {
    conn: C,
    prefix: String,
}

impl<C> RedisCounts<C> {
    pub fn new(conn: C, prefix: &str) -> Self {
        Self {
            conn,
            prefix: prefix.to_owned(),
        }
    }
}

#[async_trait::async_trait]
impl<C> SharedCounts for RedisCounts<C>
where
    C: redis::aio::ConnectionLike + Clone + Send + Sync + 'static,
{
    async fn hit(&self, key: &str) -> redis::RedisResult<(u64, u64)> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let counter = format!("{}ratelimit:{key}:{}", self.prefix, now / 60);
        let mut conn = self.conn.clone();
        let (count,): (u64,) = redis::pipe()
            .cmd("INCR")
            .arg(&counter)
            .cmd("EXPIRE")
            .arg(&counter)
            .arg(61)
            .ignore()
            .query_async(&mut conn)
            .await?;
        Ok((count, 60 - now % 60))
    }
}

impl RateLimit {
    /// The same limit counted in `counts`, shared by every replica.
    pub fn shared_in(mut self, counts: Arc<dyn SharedCounts>, per_minute: u32) -> Self {
        self.shared = Some((counts, per_minute));
        self
    }

    /// Puts `limit` (if any) on `router`'s routes. One limit may go on several routers
    /// (one per HTTP worker): they then count together.
    pub fn apply<S: Clone + Send + Sync + 'static>(
        limit: Option<RateLimit>,
        router: Router<S>,
    ) -> Router<S> {
        match limit {
            Some(limit) => router.layer(axum::middleware::from_fn_with_state(limit, limit_by_ip)),
            None => router,
        }
    }

    /// Ok, or 429 with how long to wait.
    pub fn check<K: Hash + Eq + Clone>(
        limiter: &KeyedLimiter<K>,
        key: &K,
    ) -> Result<(), AuthError> {
        limiter.check_key(key).map_err(|not_until| {
            let wait = not_until.wait_time_from(limiter.clock().now());
            AuthError::RateLimited {
                retry_after_secs: wait.as_secs() + u64::from(wait.subsec_nanos() > 0),
            }
        })
    }

    fn client_ip(&self, request: &Request) -> IpAddr {
        let peer = request
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip());
        client_address(request.headers(), peer, self.trusted_proxy_hops)
    }
}

/// The client's address: the peer's, or with `trusted_proxy_hops` proxies in front, the
/// `X-Forwarded-For` entry the outermost trusted proxy appended.
pub fn client_address(
    headers: &HeaderMap,
    peer: Option<IpAddr>,
    trusted_proxy_hops: usize,
) -> IpAddr {
    let peer = peer.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    if trusted_proxy_hops == 0 {
        return peer;
    }
    // Each trusted proxy appended the address it saw; the entry the outermost trusted
    // proxy appended is the client, anything left of it may be forged. Every entry
    // keeps its position, readable or not: dropping one (AGIC writes `ip:port`) would
    // shift the count onto an address the client wrote itself.
    let forwarded: Vec<Option<IpAddr>> = headers
        .get_all("x-forwarded-for")
        .iter()
        .flat_map(|v| v.to_str().unwrap_or("").split(','))
        .map(forwarded_address)
        .collect();
    let client = match forwarded.len().checked_sub(trusted_proxy_hops) {
        Some(i) => forwarded[i],
        // Fewer entries than trusted proxies: all were written by trusted proxies.
        None => forwarded.first().copied().flatten(),
    };
    client.unwrap_or(peer)
}

/// How many `X-Forwarded-For` hops to trust, as router state for [`ClientAddress`].
#[derive(Clone, Copy, Debug)]
pub struct TrustedProxyHops(pub usize);

/// Extractor: the client's address as [`client_address`] reads it, by its
/// [`address_key`] (IPv6 by its /64).
pub struct ClientAddress(pub IpAddr);

impl<S> axum::extract::FromRequestParts<S> for ClientAddress
where
    TrustedProxyHops: axum::extract::FromRef<S>,
    S: Send + Sync,
{
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        let hops = <TrustedProxyHops as axum::extract::FromRef<S>>::from_ref(state).0;
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip());
        Ok(Self(address_key(client_address(
            &parts.headers,
            peer,
            hops,
        ))))
    }
}

/// One `X-Forwarded-For` entry's address: `ip`, `ip:port` (Azure Application Gateway),
/// `[v6]` or `[v6]:port`; IPv4-mapped IPv6 as IPv4. `None` for anything else
/// (`unknown`, an obfuscated node name, garbage).
fn forwarded_address(entry: &str) -> Option<IpAddr> {
    let entry = entry.trim().trim_matches('"');
    let ip = entry
        .parse::<IpAddr>()
        .or_else(|_| entry.parse::<SocketAddr>().map(|a| a.ip()))
        .or_else(|_| {
            entry
                .strip_prefix('[')
                .and_then(|rest| rest.strip_suffix(']'))
                .unwrap_or("")
                .parse::<IpAddr>()
        })
        .ok()?;
    Some(ip.to_canonical())
}

/// The key limits and lockouts count an address under: IPv4 as is; IPv6 by its /64, the
/// block one subscriber is given (per address, a client would have 2^64 fresh keys).
pub fn address_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => IpAddr::V6((u128::from(v6) & !u128::from(u64::MAX)).into()),
    }
}

/// Middleware: 429 `RATE_LIMITED` with `Retry-After` past the per-IP limit.
pub async fn limit_by_ip(State(limit): State<RateLimit>, request: Request, next: Next) -> Response {
    let ip = address_key(limit.client_ip(&request));
    if limit.seen.fetch_add(1, Ordering::Relaxed) % 4096 == 4095 {
        limit.limiter.retain_recent();
    }
    if let Some((counts, per_minute)) = &limit.shared {
        match counts.hit(&ip.to_string()).await {
            Ok((count, _)) if count <= u64::from(*per_minute) => return next.run(request).await,
            Ok((_, seconds_left)) => {
                return AuthError::RateLimited {
                    retry_after_secs: seconds_left.max(1),
                }
                .into_response()
            }
            Err(e) => tracing::warn!(error = %e, "shared rate limit unreachable; counting locally"),
        }
    }
    match RateLimit::check(&limit.limiter, &ip) {
        Ok(()) => next.run(request).await,
        Err(refused) => refused.into_response(),
    }
}

/// [`HardeningConfig::cors`]: CORS for requests with an `Origin`, a `Vary` for the rest.
#[derive(Clone)]
pub struct CorsIfOrigin(CorsLayer);

impl<S: Clone> tower::Layer<S> for CorsIfOrigin {
    type Service = CorsIfOriginService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CorsIfOriginService {
            cors: Arc::new(self.0.clone()),
            inner,
        }
    }
}

/// What CORS adds to every answer: a cache must not give an answer made for one origin
/// (or none) to another. Only `Origin`, not tower-http's default that also names the
/// preflight's `Access-Control-Request-*`: those come only on preflights (`OPTIONS`),
/// whose answers HTTP caches do not keep (RFC 9110 9.3.7), and 63 bytes more on every
/// answer cost the server, the kernel and the client.
pub const CORS_VARY: &str = "origin";

/// The CORS settings are shared, and put around the inner service only for a request
/// with an `Origin`: tower clones a route's services for every request, and cloning the
/// settings (lists of origins, methods and headers) cost an allocation each time.
#[derive(Clone)]
pub struct CorsIfOriginService<S> {
    cors: Arc<CorsLayer>,
    inner: S,
}

impl<S, B> tower::Service<axum::http::Request<B>> for CorsIfOriginService<S>
where
    S: tower::Service<axum::http::Request<B>, Response = Response> + Clone,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = S::Error;
    type Future = futures::future::Either<
        tower_http::cors::ResponseFuture<S::Future>,
        futures::future::MapOk<S::Future, fn(Response) -> Response>,
    >;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: axum::http::Request<B>) -> Self::Future {
        use futures::TryFutureExt;
        if request.headers().contains_key(header::ORIGIN) {
            // The readied service goes into the CORS wrapper; a clone stays for the next.
            let fresh = self.inner.clone();
            let ready = std::mem::replace(&mut self.inner, fresh);
            futures::future::Either::Left(self.cors.layer(ready).call(request))
        } else {
            let add_vary: fn(Response) -> Response = |mut response| {
                response
                    .headers_mut()
                    .append(header::VARY, HeaderValue::from_static(CORS_VARY));
                response
            };
            futures::future::Either::Right(self.inner.call(request).map_ok(add_vary))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_past_the_limit_waits_and_others_do_not() {
        let limiter = per_minute::<String>(NonZeroU32::new(3).unwrap());
        let a = "a".to_owned();
        for _ in 0..3 {
            RateLimit::check(&limiter, &a).unwrap();
        }
        match RateLimit::check(&limiter, &a) {
            Err(AuthError::RateLimited { retry_after_secs }) => {
                assert!((1..=20).contains(&retry_after_secs), "{retry_after_secs}")
            }
            other => panic!("expected 429, got {other:?}"),
        }
        RateLimit::check(&limiter, &"b".to_owned()).unwrap();
    }

    #[test]
    fn behind_one_proxy_the_last_forwarded_address_is_the_client() {
        let limit = RateLimit {
            limiter: per_minute(NonZeroU32::new(1).unwrap()),
            trusted_proxy_hops: 1,
            seen: Arc::new(AtomicU64::new(0)),
            shared: None,
        };
        let request = Request::builder()
            .header("x-forwarded-for", "6.6.6.6, 10.0.0.7")
            .body(axum::body::Body::empty())
            .unwrap();
        assert_eq!(
            limit.client_ip(&request),
            "10.0.0.7".parse::<IpAddr>().unwrap()
        );
    }

    fn client_behind(hops: usize, forwarded: &[&str]) -> IpAddr {
        let limit = RateLimit {
            limiter: per_minute(NonZeroU32::new(1).unwrap()),
            trusted_proxy_hops: hops,
            seen: Arc::new(AtomicU64::new(0)),
            shared: None,
        };
        let mut request = Request::builder();
        for header in forwarded {
            request = request.header("x-forwarded-for", *header);
        }
        let mut request = request.body(axum::body::Body::empty()).unwrap();
        request
            .extensions_mut()
            .insert(ConnectInfo(SocketAddr::from(([10, 0, 0, 1], 443))));
        limit.client_ip(&request)
    }

    #[test]
    fn the_client_is_the_entry_the_outermost_trusted_proxy_wrote_whatever_its_form() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let gateway = ip("10.0.0.1");
        // (trusted hops, X-Forwarded-For headers, the client)
        let cases: &[(usize, &[&str], IpAddr)] = &[
            (1, &["203.0.113.9:50112"], ip("203.0.113.9")),
            // A forged entry left of AGIC's `ip:port` is not taken for the client.
            (1, &["6.6.6.6, 203.0.113.9:50112"], ip("203.0.113.9")),
            (1, &["6.6.6.6", "203.0.113.9:50112"], ip("203.0.113.9")),
            (2, &["203.0.113.9:50112, 10.1.2.3"], ip("203.0.113.9")),
            (1, &["[2001:db8::7]:443"], ip("2001:db8::7")),
            (1, &["2001:db8::7"], ip("2001:db8::7")),
            (1, &["\"[2001:db8::7]\""], ip("2001:db8::7")),
            (1, &["::ffff:198.51.100.4"], ip("198.51.100.4")),
            // An unreadable entry where the client should be: the peer, never a forgery.
            (1, &["6.6.6.6, unknown"], gateway),
            (1, &["6.6.6.6, 203.0.113.9:notaport"], gateway),
            (1, &[], gateway),
            (0, &["6.6.6.6"], gateway),
            // Fewer entries than trusted proxies: every entry came from one of them.
            (2, &["203.0.113.9"], ip("203.0.113.9")),
        ];
        for (hops, headers, client) in cases {
            assert_eq!(
                client_behind(*hops, headers),
                *client,
                "{hops} hops, {headers:?}"
            );
        }
    }

    #[test]
    fn ipv6_clients_are_limited_per_64_block_and_ipv4_per_address() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(
            address_key(ip("2001:db8:1:2:aaaa::1")),
            address_key(ip("2001:db8:1:2:ffff::9"))
        );
        assert_ne!(
            address_key(ip("2001:db8:1:2::1")),
            address_key(ip("2001:db8:1:3::1"))
        );
        assert_eq!(address_key(ip("203.0.113.9")), ip("203.0.113.9"));
    }

    async fn answer(origin: Option<&str>, method: Method) -> Response {
        use tower::ServiceExt;
        let config = HardeningConfig {
            per_ip_per_minute: 0,
            per_customer_per_minute: 0,
            trusted_proxy_hops: 0,
            shared: false,
            cors_allowed_origins: "https://app.example".into(),
        };
        let app = Router::new()
            .route("/x", axum::routing::get(|| async { "ok" }))
            .layer(config.cors());
        let mut request = axum::http::Request::builder().method(method).uri("/x");
        if let Some(origin) = origin {
            request = request
                .header(header::ORIGIN, origin)
                .header(header::ACCESS_CONTROL_REQUEST_METHOD, "GET");
        }
        app.oneshot(request.body(axum::body::Body::empty()).unwrap())
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn a_cross_origin_call_gets_cors_headers_and_a_plain_call_only_the_vary() {
        // Given an allowed origin, when a browser calls from it, then CORS allows it
        let cross = answer(Some("https://app.example"), Method::GET).await;
        assert_eq!(
            cross.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN],
            "https://app.example"
        );
        // And a preflight is answered by CORS with the allowed methods
        let preflight = answer(Some("https://app.example"), Method::OPTIONS).await;
        assert!(preflight
            .headers()
            .contains_key(header::ACCESS_CONTROL_ALLOW_METHODS));
        // And another origin is not allowed
        let other = answer(Some("https://evil.example"), Method::GET).await;
        assert!(!other
            .headers()
            .contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN));
        // When a call has no Origin, then it is answered with the same Vary and no CORS
        let plain = answer(None, Method::GET).await;
        assert!(!plain
            .headers()
            .contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN));
        let vary = |r: &Response| -> Vec<String> {
            r.headers()
                .get_all(header::VARY)
                .iter()
                .map(|v| v.to_str().unwrap().to_owned())
                .collect::<Vec<_>>()
                .join(",")
                .split(',')
                .map(|v| v.trim().to_ascii_lowercase())
                .collect()
        };
        assert_eq!(vary(&plain), vary(&cross));
        assert_eq!(vary(&plain), ["origin"]);
        assert_eq!(vary(&preflight), ["origin"]);
    }
}
